#!/bin/bash
# E3c: a short-video two-object curriculum world (seed 1), grounding SFT on it from the aligned base (12k steps), then
# 12k more steps on the target world (seed 0, 8-20 s).
set -x
cd "$(dirname "$0")"
while kill -0 1981 2>/dev/null; do sleep 5; done
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
../../.venv/bin/python make_short_world.py ../../outputs/tiny_base/world_short > ../../outputs/tiny_base/logs/world_short.log 2>&1
../../.venv/bin/python probe.py --model ../../outputs/tiny_base/base-name-verify --world ../../outputs/tiny_base/world_short   --work ../../outputs/tiny_base/probe_cache --steps 12000 --eval-every 1000 --verify-eval   --label aligned_on_short_world --save ../../outputs/tiny_base/sft-aligned-short --log probe_runs.jsonl   > ../../outputs/tiny_base/logs/e3_aligned_short.log 2>&1
../../.venv/bin/python probe.py --model ../../outputs/tiny_base/sft-aligned-short --world ../../outputs/tiny_base/world   --work ../../outputs/tiny_base/probe_cache --steps 12000 --eval-every 1000 --verify-eval   --label aligned_short12k_then_target --save ../../outputs/tiny_base/sft-aligned-short-target --log probe_runs.jsonl   > ../../outputs/tiny_base/logs/e3_aligned_short_target.log 2>&1
