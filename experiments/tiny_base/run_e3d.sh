#!/bin/bash
# E3d: the short curriculum world with verification clips mixed in (every 2nd step a batch of 8), from the aligned base.
set -x
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
../../.venv/bin/python probe.py --model ../../outputs/tiny_base/base-name-verify --world ../../outputs/tiny_base/world_short \
  --work ../../outputs/tiny_base/probe_cache --steps 12000 --eval-every 1000 --mix-verify 2 --mix-batch 8 \
  --label aligned_short_world_mixverify2 --log probe_runs.jsonl > ../../outputs/tiny_base/logs/e3_aligned_short_mix.log 2>&1
