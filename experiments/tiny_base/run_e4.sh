#!/bin/bash
# E4: vtg eval on the two-object world's test split (own), the swapped-query and the swapped-video controls.
# usage: run_e4.sh MODEL_DIR NAME
set -ex
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
M=$1; N=$2; R=outputs/tiny_base/eval/$N
for set in own:outputs/tiny_base/world/test.jsonl swapped_q:outputs/tiny_base/controls/question/swapped.jsonl \
           swapped_v:outputs/tiny_base/controls/video/swapped.jsonl; do
  .venv/bin/vtg eval run --config experiments/tiny_base/eval_synthetic_1worker.yaml --model $M \
    --records ${set#*:} --out $R/${set%%:*}
done
.venv/bin/vtg eval report $R/own $R/swapped_q $R/swapped_v --labels own,swapped_query,swapped_video \
  --train outputs/tiny_base/world/train.jsonl --out $R/report
