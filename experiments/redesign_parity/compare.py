"""Compare the before/after runs of run.sh: SFT and GRPO log histories and eval predictions (timings excluded)."""

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
TIMINGS = {"step_time", "latency_s", "decode_s"}


def history(run: str, name: str) -> list[dict]:
    return json.loads((HERE / run / f"{name}_trainer_state.json").read_text())["log_history"]


def predictions(run: str) -> list[dict]:
    lines = (HERE / run / "eval_predictions.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


def same(a: list[dict], b: list[dict]) -> bool:
    return [{k: v for k, v in x.items() if k not in TIMINGS} for x in a] == \
        [{k: v for k, v in x.items() if k not in TIMINGS} for x in b]


if __name__ == "__main__":
    ok = True
    for name in ("sft", "grpo"):
        a, b = history("before", name), history("after", name)
        ok &= same(a, b)
        print(f"{name}: {len(a)} log entries, identical (timings aside): {same(a, b)}")
    for step in (100, 1000, 5000):
        losses = [next(x["loss"] for x in history(run, "sft") if x.get("step") == step and "loss" in x)
                  for run in ("before", "after")]
        print(f"sft loss at step {step}: before {losses[0]!r}, after {losses[1]!r}")
    a, b = predictions("before"), predictions("after")
    ok &= same(a, b)
    print(f"eval: {len(a)} predictions, identical (timings aside): {same(a, b)}")
    sys.exit(0 if ok else 1)
