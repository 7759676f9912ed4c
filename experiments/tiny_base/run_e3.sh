#!/bin/bash
# E3: grounding SFT probe (12k steps, lr 3e-4, merger 10x, batch 1) from the aligned base, then from the random-init base.
set -x
cd "$(dirname "$0")"
while kill -0 18017 2>/dev/null; do sleep 5; done
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
../../.venv/bin/python probe.py --model ../../outputs/tiny_base/base-name-verify --world ../../outputs/tiny_base/world \
  --work ../../outputs/tiny_base/probe_cache --steps 12000 --eval-every 1000 --label aligned_name3k_verify8k \
  --save ../../outputs/tiny_base/sft-aligned --log probe_runs.jsonl > ../../outputs/tiny_base/logs/e3_aligned.log 2>&1
../../.venv/bin/python probe.py --model ../../outputs/tiny_base/model-base --world ../../outputs/tiny_base/world \
  --work ../../outputs/tiny_base/probe_cache --steps 12000 --eval-every 1000 --label random_init \
  --save ../../outputs/tiny_base/sft-random --log probe_runs.jsonl > ../../outputs/tiny_base/logs/e3_random.log 2>&1
