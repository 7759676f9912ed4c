"""Collect align_runs.jsonl, construct_runs.jsonl, probe_runs.jsonl and any eval reports into results.json."""

import json
from pathlib import Path

here = Path(__file__).parent
out = {"align_runs": [], "construct_runs": [], "probe_runs": [], "eval": {}}
for name, key in (("align_runs.jsonl", "align_runs"), ("construct_runs.jsonl", "construct_runs"),
                  ("probe_runs.jsonl", "probe_runs")):
    f = here / name
    if f.exists():
        out[key] = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
for rep in sorted((here / "../../outputs/tiny_base/eval").glob("*/report/report.json")):
    out["eval"][rep.parent.parent.name] = json.loads(rep.read_text())
for m in sorted((here / "../../outputs/tiny_base/eval").glob("*/*/metrics.json")):
    out["eval"].setdefault(m.parent.parent.name + "_metrics", {})[m.parent.name] = json.loads(m.read_text())
(here / "results.json").write_text(json.dumps(out, indent=1) + "\n")
print({k: len(v) for k, v in out.items()})

# a compact summary: last eval point of every run, and the E4 control drops
summary = {"align": [], "probe": [], "construct": [], "eval": {}}
for r in out["align_runs"]:
    h = r["history"][-1]
    first_above = next((x["step"] for x in r["history"] if x["verify_acc"] >= 0.6), None)
    summary["align"].append({"model": r["args"]["model"], "schedule": r["args"]["schedule"], "seed": r["args"]["seed"],
                             "final": h, "first_step_verify_acc_ge_0.6": first_above})
for r in out["probe_runs"]:
    h = r["history"]
    summary["probe"].append({"label": r["label"], "model": r["args"]["model"], "world": r["args"]["world"],
                             "final": h[-1] if h else None,
                             "binding_gap_range_trained_points": [min(x["binding_gap"] for x in h if x["step"]), max(x["binding_gap"] for x in h if x["step"])]
                             if len(h) > 1 else None})
for r in out["construct_runs"]:
    summary["construct"].append({"final": r["history"][-1]})
for name, m in out["eval"].items():
    if name.endswith("_metrics"):
        own = m.get("own", {}).get("metrics", {})
        row = {k: {"R@1,IoU=0.5": round(v["metrics"]["R@1,IoU=0.5"], 2), "mIoU": round(v["metrics"]["mIoU"], 2)}
               for k, v in m.items()}
        for k in ("swapped_q", "swapped_v"):
            if k in m and own:
                row[k]["mIoU_lost"] = round(own["mIoU"] - m[k]["metrics"]["mIoU"], 2)
        summary["eval"][name[:-len("_metrics")]] = row
out = {"summary": summary, **out}
(here / "results.json").write_text(json.dumps(out, indent=1) + "\n")
print(json.dumps(summary["eval"], indent=1))
