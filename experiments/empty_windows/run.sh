#!/usr/bin/env bash
# Does the long-video tiny model need empty clips in its training mix? The bench/long recipe and world, but the
# training clips drawn with --empty-fraction 0 (every clip shows part of an event); evaluated on the bench's
# held-out clips (30 % empty) and its 10- and 30-min test videos with coarse_to_fine.
#   HF_HUB_OFFLINE=1 bash experiments/empty_windows/run.sh BENCH_OUT WORK
# (BENCH_OUT: the --out of `python -m bench.long.run --seed 0`: a choice is made here, on the validation families,
# never on the bench's held-out test seed, which is refused)
set -euo pipefail
BENCH=${1:-outputs/bench-long-val}
WORK=${2:-outputs/empty-windows}
VTG=".venv/bin/python -m vtg"
.venv/bin/python -c "import sys; from bench.long.run import refuse_test_world; refuse_test_world(sys.argv[1])" "$BENCH"
mkdir -p "$WORK"
[ -f "$WORK/world/train.jsonl" ] || $VTG data synth --long --out "$WORK/world" --durations-min 2,10,30,60 \
  --videos-per-length 25 --train-clips 3000 --val-clips 300 --empty-fraction 0 --seed 0 > "$WORK/world.log" 2>&1
[ -f "$WORK/sft/final/config.json" ] || $VTG train sft --config recipes/tiny/sft/config_long.yaml \
  --model "$BENCH/model-base" --train_file "$WORK/world/train.jsonl" --output_dir "$WORK/sft" > "$WORK/sft.log" 2>&1
for run in short:val.jsonl:direct 10min:test_10min.jsonl:coarse_to_fine 30min:test_30min.jsonl:coarse_to_fine; do
  IFS=: read -r name records strategy <<< "$run"
  [ -f "$WORK/eval/$name/metrics.json" ] || $VTG eval run --config recipes/eval/synth_long.yaml \
    --model "$WORK/sft/final" --records "$BENCH/world/$records" --strategy "$strategy" --out "$WORK/eval/$name" \
    > "$WORK/eval-$name.log" 2>&1
done
.venv/bin/python - "$BENCH" "$WORK" <<'PY'
import json, sys
from pathlib import Path
bench, work = map(Path, sys.argv[1:])
rows = {}
for label, root, names in (("with 30 % empty clips (bench/long)", bench / "eval", {"short": "short", "10min": "10min-coarse_to_fine", "30min": "30min-coarse_to_fine"}),
                           ("no empty clips", work / "eval", {"short": "short", "10min": "10min", "30min": "30min"})):
    for key, name in names.items():
        m = json.loads((root / name / "metrics.json").read_text())["metrics"]
        rows.setdefault(label, {})[key] = {k: round(m[k], 1) for k in ("R@1,IoU=0.5", "mIoU", "F1@0.5") if k in m} | (
            {"absent_acc": round(m["absent_acc"], 1)} if "absent_acc" in m else {})
Path("experiments/empty_windows/results.json").write_text(json.dumps(rows, indent=1) + "\n")
print(json.dumps(rows, indent=1))
PY
