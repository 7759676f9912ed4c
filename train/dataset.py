"""Training records: a validated records file → rows with absolute video paths → an HF dataset for the trainers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vtg.errors import UserError


def load_training_records(path: str) -> list[dict[str, Any]]:
    """Validated records as dicts with absolute video paths (the trainer runs from any working directory)."""
    from vtg.data.records import ZERO_LENGTH_FLAG, load_records

    if not path:
        raise UserError("train_file is not set: point it at a records JSONL (e.g. from `vtg data synth`)")
    if not Path(path).is_file():
        raise UserError(f"train_file not found: {path}")
    root = Path(path).resolve().parent
    # a true window of no length (kept by conversion for the official scorer) teaches nothing: not trained on
    records = [r for r in load_records(path, check_video=True) if r.extra.get(ZERO_LENGTH_FLAG) is not True]
    if not records:
        raise UserError(f"{path}: no records (records flagged {ZERO_LENGTH_FLAG} are not trained on)")
    rows = []
    for r in records:
        d = r.to_dict()
        d["video"] = str(Path(r.video_path(root)).resolve()) if "://" not in r.video else r.video
        rows.append(d)
    return rows


def records_dataset(rows: list[dict[str, Any]]):
    """An HF dataset of the core record columns (extras with mixed types are dropped; `think` kept if present)."""
    import datasets

    keep = ("id", "video", "duration", "query", "moments", "think")
    cols = {k: [r.get(k) for r in rows] for k in keep if any(k in r for r in rows)}
    cols["moments"] = [[[float(s), float(e)] for s, e in m] for m in cols["moments"]]
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "video": datasets.Value("string"),
            "duration": datasets.Value("float64"),
            "query": datasets.Value("string"),
            "moments": datasets.List(datasets.List(datasets.Value("float64"))),
            **({"think": datasets.Value("string")} if "think" in cols else {}),
        }
    )
    return datasets.Dataset.from_dict(cols, features=features)
