"""Score files: predictions (ours, or QVHighlights submissions) against records or QVHighlights ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vtg.eval import qvhighlights as qv
from vtg.eval.metrics import Conventions, QueryScore, score_predictions
from vtg.eval.predictions import read_predictions


def score_records_file(
    pred: str | Path, gt: str | Path, conv: Conventions, *, allow_missing: bool = False
) -> tuple[list[QueryScore], dict[str, Any]]:
    from vtg.data.records import load_records

    records = load_records(gt)
    scores, result = score_predictions(records, read_predictions(pred), conv, allow_missing=allow_missing)
    result["files"] = {"pred": str(pred), "gt": str(gt)}
    return scores, result


def score_qvhighlights_file(pred: str | Path, gt: str | Path, *, reference_compat: bool = False) -> dict[str, Any]:
    """A submission file (`pred_relevant_windows` lines) or our predictions.jsonl (converted by rank)."""
    if _is_submission(pred):
        sub = qv.load_jsonl(pred)
    else:
        sub = qv.submission_from_predictions(list(read_predictions(pred).values()))
    result = qv.eval_submission(sub, qv.load_jsonl(gt), reference_compat=reference_compat)
    result["files"] = {"pred": str(pred), "gt": str(gt)}
    return result


def _is_submission(path: str | Path) -> bool:
    with open(path, encoding="utf-8") as f:
        first = next((t for t in f if t.strip()), "")
    return '"pred_relevant_windows"' in first or '"pred_saliency_scores"' in first
