#!/usr/bin/env bash
# Same seed, same data, same CLI: SFT loss log, eval predictions, GRPO log. Usage: run.sh OUT
set -euo pipefail
out=$1; mkdir -p "$out"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false VLLM_NO_USAGE_STATS=1
vtg=${VTG:-.venv/bin/vtg}
[ -f "$out/base/config.json" ] || $vtg model tiny --family qwen2.5-vl --size small --seed 0 --out "$out/base"
[ -f "$out/world/test.jsonl" ] || $vtg data synth --out "$out/world" --n 400 --seed 0 --kinds single --min-duration 8 --max-duration 20 > "$out/synth.log"
$vtg train sft --config recipes/tiny/sft/config_default.yaml --model "$out/base" --train_file "$out/world/train.jsonl" \
  --output_dir "$out/sft" --max_steps 5000 --save_steps 5000 > "$out/sft.log" 2>&1
$vtg eval run --config recipes/eval/synthetic.yaml --records "$out/world/test.jsonl" --model "$out/sft/final" --out "$out/eval" > "$out/eval.log" 2>&1
$vtg train grpo --config recipes/tiny/grpo/config_default.yaml --model "$out/sft/final" --train_file "$out/world/train.jsonl" \
  --output_dir "$out/grpo" --max_steps 20 --save_steps 20 --logging_steps 5 > "$out/grpo.log" 2>&1
