#!/bin/bash
# E3 follow-ups: (1) verification accuracy of the aligned base and of the aligned base after 12k grounding steps
# (0 training steps: evaluation only); (2) grounding SFT from the aligned base with verification clips mixed in
# (every 2nd step one extra batch of 8 verify clips), 12k grounding steps.
set -x
cd "$(dirname "$0")"
while kill -0 18528 2>/dev/null; do sleep 5; done
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
for m in base-name-verify sft-aligned; do
  ../../.venv/bin/python probe.py --model ../../outputs/tiny_base/$m --world ../../outputs/tiny_base/world     --work ../../outputs/tiny_base/probe_cache --steps 0 --verify-eval --label eval_only_$m --log probe_runs.jsonl     > ../../outputs/tiny_base/logs/e3_evalonly_$m.log 2>&1
done
../../.venv/bin/python probe.py --model ../../outputs/tiny_base/base-name-verify --world ../../outputs/tiny_base/world   --work ../../outputs/tiny_base/probe_cache --steps 12000 --eval-every 1000 --mix-verify 2 --mix-batch 8   --label aligned_mixverify2 --save ../../outputs/tiny_base/sft-aligned-mix --log probe_runs.jsonl   > ../../outputs/tiny_base/logs/e3_aligned_mix.log 2>&1
