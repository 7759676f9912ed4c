#!/bin/bash
# E1b replicate: other data order (seed 1), shorter verify phase.
set -x
cd "$(dirname "$0")"
while kill -0 736 2>/dev/null; do sleep 5; done
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
../../.venv/bin/python align.py --model ../../outputs/tiny_base/model-base --work ../../outputs/tiny_base/clips   --schedule name:3000,verify:3000 --batch 8 --eval-every 500 --seed 1 --log align_runs.jsonl   > ../../outputs/tiny_base/logs/e1b_seed1.log 2>&1
