#!/usr/bin/env bash
# Every GPU check of bench/gpu in one device call (the lease is 15 minutes in all), tables printed last.
#   carry: .whl (../shared/gpu/fetch-wheels.sh .whl) and outputs/bl_single_recipe/model-sft/final (optional: a
#   tiny model trained by bench/learning, so the smoke's Qwen2.5-VL GRPO rows see real rewards)
#   bash bench/gpu/run_all.sh        # writes $OUT/*.json and $OUT/*.log; each step has its own time limit
set -uo pipefail
OUT=${OUT:-/tmp/vtg_gpu_out}; mkdir -p "$OUT"
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 TRL_EXPERIMENTAL_SILENCE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
echo "install: $(( $(date +%s) - t0 )) s"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

step() {  # name, limit seconds, command...: log to $OUT/name.log, keep its table for the end
  local name=$1 limit=$2; shift 2
  local s=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "$name: rc $? in $(( $(date +%s) - s )) s (limit $limit)" | tee -a "$OUT/summary.txt"
}
trained=outputs/bl_single_recipe/model-sft/final
step grpo_step_3b 200 python3 bench/gpu/grpo_step.py --json "$OUT/grpo_step_3b.json"
step cli_smoke 240 python3 bench/gpu/cli_smoke.py --json "$OUT/cli_smoke.json" \
  $( [ -d $trained ] && echo --trained-sft $trained )
step grpo_step_3b_nockpt 150 python3 bench/gpu/grpo_step.py --no-grad-ckpt --json "$OUT/grpo_step_3b_nockpt.json"
echo "total: $(( $(date +%s) - t0 )) s"
for name in grpo_step_3b cli_smoke grpo_step_3b_nockpt; do
  echo "===== $name"; grep -v -E "it/s\]|s/it\]" "$OUT/$name.log" | tail -14
done
cat "$OUT/summary.txt"
