#!/bin/bash
# E4 on the random-init 12k probe model, then E2: the constructed alignment and verification training from it.
set -x
cd "$(dirname "$0")"
while kill -0 31086 2>/dev/null; do sleep 5; done
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
./run_e4.sh outputs/tiny_base/sft-random random_init > ../../outputs/tiny_base/logs/e4_random.log 2>&1
../../.venv/bin/python construct.py --model ../../outputs/tiny_base/model-base --work ../../outputs/tiny_base/clips   --out ../../outputs/tiny_base/base-constructed --epochs 20 --log construct_runs.jsonl > ../../outputs/tiny_base/logs/e2_construct.log 2>&1
../../.venv/bin/python align.py --model ../../outputs/tiny_base/base-constructed --work ../../outputs/tiny_base/clips   --schedule verify:6000 --batch 8 --eval-every 500 --save ../../outputs/tiny_base/base-constructed-verify   --log align_runs.jsonl > ../../outputs/tiny_base/logs/e2_constructed_verify.log 2>&1
