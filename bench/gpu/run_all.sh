#!/usr/bin/env bash
# Every GPU check of bench/gpu in one device call (the lease is 15 minutes in all), tables printed last.
#   carry: .whl (../shared/gpu/fetch-wheels.sh .whl) and outputs/bl_single_recipe/model-sft/final (optional: a
#   tiny model trained by bench/learning, so the smoke's Qwen2.5-VL GRPO rows see real rewards)
#   bash bench/gpu/run_all.sh   # writes $OUT/*.json, $OUT/summary.txt and $OUT/logs.tgz (at most 8 files come back);
#                               # each step has its own time limit, all end by DEADLINE s (default 540) from the start,
#                               # and each step's table is printed as soon as it ends (a cut-off run keeps the rest)
set -uo pipefail
OUT=${OUT:-/tmp/vtg_gpu_out}; LOGS=/tmp/vtg_gpu_logs; mkdir -p "$OUT" "$LOGS"
t0=$(date +%s); deadline=$(( t0 + ${DEADLINE:-540} ))
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 TRL_EXPERIMENTAL_SILENCE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
echo "install: $(( $(date +%s) - t0 )) s"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

step() {  # name, limit seconds, command...: log to $LOGS/name.log, print its table, tar the logs into $OUT
  local name=$1 limit=$2; shift 2
  local s=$(date +%s); local left=$(( deadline - s ))
  (( left < limit )) && limit=$left
  if (( limit < 30 )); then echo "$name: skipped, $left s left" | tee -a "$OUT/summary.txt"; return; fi
  timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  echo "===== $name"; grep -v -E "it/s\]|s/it\]" "$LOGS/$name.log" | tail -14
  echo "$name: rc $rc in $(( $(date +%s) - s )) s (limit $limit)" | tee -a "$OUT/summary.txt"
  tar -czf "$OUT/logs.tgz" -C "$LOGS" .
}
trained=outputs/bl_single_recipe/model-sft/final
# first: the tiny CLI jobs (on 2026-11-27 they hung at step 0 there before the fork fix in vtg.data.video)
step cli_smoke 220 python3 bench/gpu/cli_smoke.py --json "$OUT/cli_smoke.json" \
  $( [ -d $trained ] && echo --trained-sft $trained )
step grpo_step_3b 150 python3 bench/gpu/grpo_step.py --video-check 8 --json "$OUT/grpo_step_3b.json"
step grpo_step_7b 200 python3 bench/gpu/grpo_step.py --size 7b --video-check 8 --json "$OUT/grpo_step_7b.json"
step grpo_step_3b_kl 150 python3 bench/gpu/grpo_step.py --beta 0.04 --json "$OUT/grpo_step_3b_kl.json"
step grpo_step_3b_mb8 120 python3 bench/gpu/grpo_step.py --micro-batch 8 --json "$OUT/grpo_step_3b_mb8.json"
echo "total: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/summary.txt"
cat "$OUT/summary.txt"
