"""Official tables: each benchmark's published evaluator, reproduced in vtg's own code, quirks included
(docs/eval.md#official-tables).

A run's official table is computed on the same input the official script reads: the submission vtg would hand it
(built from predictions.jsonl by `submission_from_run`) against the ground truth (from the records, or the release
file read unchanged by `gt_from_file`). The numbers equal the script's on the same files: tests/test_eval_official.py
checks them against the script's own output on tests/fixtures/official/.

Evaluators (repo, path, commit the rules were read from):
- `ego4d_nlq`: EGO4D/episodic-memory `NLQ/VSLNet/utils/evaluate_ego4d_nlq.py` @ 5275b95, with the challenge's
  `--thresholds 0.3 0.5 --topK 1 3 5`.
- `mad`: Soldelli/MAD `baselines/VLG-Net/lib/engine/evaluation.py` @ b1f1974 (`evaluate`, with the IoU of
  `lib/data/datasets/utils.py`, NMS 0.3 from `configs/mad.yml`, IoU (0.1, 0.3, 0.5) from `lib/engine/inference.py`).
- `vue_tr`, `vue_tr_v2`: bytedance/vidi `VUE_TR/qa_eval.py`, `VUE_TR_V2/qa_eval.py` @ fc30c87 (overall line).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vtg.errors import UserError
from vtg.eval import multispan

Window = list[float]


@dataclass(frozen=True)
class Official:
    """One benchmark's official evaluator, in vtg's code. `table(entries, gt)` gives the official numbers."""

    name: str
    label: str  # how the table is titled wherever it is shown
    source: str  # repo, path and commit of the script reproduced
    gt_from_records: Callable[[Sequence[Any]], dict]
    gt_from_file: Callable[[Path], dict]
    submission_from_run: Callable[[Sequence[Any], dict[str, dict]], list[dict]]
    read_submission: Callable[[Path], list[dict]]
    table: Callable[[list[dict], dict], dict[str, Any]]
    file_form: Callable[[list[dict]], Any] = lambda entries: entries  # what the script reads, around the entries


def _answer(line: dict[str, Any] | None) -> list[Window] | None:
    """A prediction line's moments as written (ranked), or None for no usable answer (error, parse failure)."""
    from vtg.eval.metrics import prediction_from_line

    if line is None:
        return None
    parsed, err = prediction_from_line(line)
    if err or parsed is None or not parsed.ok:
        return None
    return [[float(s), float(e)] for s, e in parsed.moments]


def _ranked(line: dict[str, Any] | None) -> list[Window] | None:
    """A prediction line's ranked list (`ranked`: written when the run asked for one, eval's `top_k`), else its
    answer's moments (a run without one, an endpoint's, a failed line)."""
    if line is None or line.get("error") or line.get("ranked") is None:
        return _answer(line)
    return _windows(line["ranked"], f"prediction {line.get('id')!r}: ranked")


def _windows(x: Any, where: str) -> list[Window]:
    if not isinstance(x, list) or any(not isinstance(w, list) or len(w) != 2 for w in x):
        raise UserError(f"{where}: expected a list of [start, end] windows, got {x!r:.80}")
    return [[float(s), float(e)] for s, e in x]


def _load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read JSON ({e})") from None


def _official_moments(rec: Any) -> list[Window]:
    """The truth the official script scores: the release's numbers as written (kept by `vtg data convert` as
    `official_moments`), else the record's moments."""
    return [[float(s), float(e)] for s, e in rec.extra.get("official_moments", rec.moments)]


def _pct(x: float) -> float:
    return 100.0 * x


# ---------------------------------------------------------------- Ego4D NLQ (evaluate_ego4d_nlq.py)

NLQ_THRESHOLDS = (0.3, 0.5)
NLQ_TOPK = (1, 3, 5)
# A failed or empty answer cannot be submitted as is (the script indexes the first window: IndexError): vtg writes
# this window, which overlaps no window at or after 0 s and has a positive union with every one, so it scores 0.
NLQ_NO_ANSWER: Window = [-1.0, 0.0]


def _nlq_key(clip_uid: Any, annotation_uid: Any, query_idx: Any) -> tuple[str, str, int]:
    return str(clip_uid), str(annotation_uid), int(query_idx)


def nlq_gt_from_file(path: Path) -> dict:
    """(clip_uid, annotation_uid, query index) -> its window as the release writes it (None when it has none), plus
    the number of language queries the file holds (the script's "/ M")."""
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise UserError(f"{path}: not an Ego4D NLQ annotation file (no 'videos' list)")
    windows, total = {}, 0
    for video in data["videos"]:
        for clip in video["clips"]:
            for ann in clip["annotations"]:
                for n, q in enumerate(ann["language_queries"]):
                    total += 1
                    has = q.get("clip_start_sec") is not None and q.get("clip_end_sec") is not None
                    key = _nlq_key(clip["clip_uid"], ann["annotation_uid"], n)
                    windows[key] = [float(q["clip_start_sec"]), float(q["clip_end_sec"])] if has else None
    return {"windows": windows, "total": total}


def nlq_gt_from_records(records: Sequence[Any]) -> dict:
    windows = {
        _nlq_key(r.extra["clip_uid"], r.extra["annotation_uid"], r.extra["query_idx"]): _official_moments(r)[0]
        for r in records
    }
    return {"windows": windows, "total": len(records)}


def nlq_submission_from_run(records: Sequence[Any], preds: dict[str, dict]) -> list[dict]:
    """The challenge's `results` entries: every record with a prediction line (a missing one is left out, as a
    partial submission would be), its ranked list (else its windows as written), a failed or empty answer as
    `NLQ_NO_ANSWER`."""
    out = []
    for r in records:
        if r.id not in preds:
            continue
        answer = _ranked(preds[r.id]) or [list(NLQ_NO_ANSWER)]
        out.append(
            {
                "clip_uid": r.extra["clip_uid"],
                "annotation_uid": r.extra["annotation_uid"],
                "query_idx": r.extra["query_idx"],
                "predicted_times": answer,
            }
        )
    return out


def nlq_read_submission(path: Path) -> list[dict]:
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise UserError(f"{path}: an Ego4D NLQ submission is {{'version', 'challenge', 'results': [...]}}")
    # the script refuses any other header (evaluate_ego4d_nlq.py:118-121)
    if data.get("version") != "1.0" or data.get("challenge") != "ego4d_nlq_challenge":
        raise UserError(f"{path}: needs version '1.0' and challenge 'ego4d_nlq_challenge', as the evaluator asserts")
    return data["results"]


def nlq_iou(p: Sequence[float], g: Sequence[float]) -> float:
    """evaluate_ego4d_nlq.py `compute_IoU` for one pair: union is the hull, clipped at 0; nothing is swapped, so a
    reversed window overlaps nothing, and 0 / 0 (a point against the same point, or a reversed window around a
    zero-length truth) is NaN, as numpy gives it."""
    inter = max(0.0, min(p[1], g[1]) - max(p[0], g[0]))
    union = max(0.0, max(p[1], g[1]) - min(p[0], g[0]))
    return inter / union if union > 0 else math.nan


def nlq_table(entries: list[dict], gt: dict) -> dict[str, Any]:
    hits = {(t, k): 0 for t in NLQ_THRESHOLDS for k in NLQ_TOPK}
    top1: list[float] = []
    for i, e in enumerate(entries):
        key = _nlq_key(e["clip_uid"], e["annotation_uid"], e["query_idx"])
        if key not in gt["windows"]:
            raise UserError(f"results[{i}]: {key} is not in the ground truth (the evaluator: 'Instance not present!')")
        truth = gt["windows"][key]
        if truth is None:
            raise UserError(f"results[{i}]: {key} has no window in the ground truth (unannotated file?)")
        pred = e["predicted_times"]
        if not pred or not isinstance(pred[0], list):
            raise UserError(
                f"results[{i}]: predicted_times must be a non-empty list of [start, end] windows "
                "(the evaluator crashes on an empty or flat list)"
            )
        ious = [nlq_iou(_windows([p], f"results[{i}]")[0], truth) for p in pred]
        top1.append(ious[0])  # np.mean(np.sort(overlap[0])[-3:]) with one truth is the first window's IoU
        for t in NLQ_THRESHOLDS:
            for k in NLQ_TOPK:
                hits[(t, k)] += any(v > t for v in ious[:k])  # NaN > t is False
    n = len(entries)
    metrics = {
        f"Rank@{k} mIoU@{t}": (hits[(t, k)] / n) * 100 if n else math.nan for k in NLQ_TOPK for t in NLQ_THRESHOLDS
    }
    metrics["mIoU"] = float(np.mean(top1)) * 100 if n else math.nan  # np.mean: the script's summation order
    counts = {"evaluated": n, "gt_queries": gt["total"], "nan_iou": sum(math.isnan(v) for v in top1)}
    return {"metrics": metrics, "counts": counts}


# ---------------------------------------------------------------- MAD (VLG-Net lib/engine/evaluation.py)

MAD_KS = (1, 5, 10, 50, 100)
MAD_THRESHOLDS = (0.1, 0.3, 0.5)
MAD_NMS = 0.3
_F32 = np.float32


def mad_iou(cands: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """VLG-Net `iou` in float32: inter clipped at 0 over the hull (not clipped: a negative or zero hull gives -0 or
    NaN, never a hit)."""
    inter = np.minimum(cands[:, 1], gt[1]) - np.maximum(cands[:, 0], gt[0])
    union = np.maximum(cands[:, 1], gt[1]) - np.minimum(cands[:, 0], gt[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum(inter, _F32(0)) / union


def mad_nms(moments: np.ndarray, topk: int = MAD_KS[-1], thresh: float = MAD_NMS) -> np.ndarray:
    """VLG-Net `nms` on moments already in rank order: greedy, a later moment with IoU > thresh against a kept one
    is dropped; the first `topk` kept. (Its early stop, every `topk` moments, never changes those first `topk`.)"""
    keep = np.ones(len(moments), dtype=bool)
    for i in range(len(moments) - 1):
        if not keep[i]:
            continue
        keep[i + 1 :] &= ~(mad_iou(moments[i + 1 :], moments[i]) > _F32(thresh))
        if keep[: i + 1].sum() >= topk:
            break
    return moments[keep][:topk]


def mad_gt_from_file(path: Path) -> dict:
    """id -> the moment VLG-Net's MAD loader scores against (lib/data/datasets/mad.py:147-148): ext_timestamps cut
    to [0, movie_duration] in float32, and only when start < end; otherwise the loader keeps the PREVIOUS query's
    moment (a stale variable), reproduced here (the first query of the file has none: an error, as there)."""
    data = _load_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a MAD annotation file ({{id: {{movie, sentence, ext_timestamps, ...}}}})")
    out, moment = {}, None
    for key, a in data.items():
        if not isinstance(a, dict) or "ext_timestamps" not in a:
            raise UserError(f"{path}: {key}: no 'ext_timestamps' (the window VLG-Net scores against)")
        s, e = a["ext_timestamps"]
        if s < e:
            moment = np.array([max(s, 0), min(e, a["movie_duration"])], dtype=_F32)
        if moment is None:
            raise UserError(f"{path}: {key}: first query has ext_timestamps with start >= end (the loader fails too)")
        out[str(key)] = moment
    return {"moments": out}


def mad_gt_from_records(records: Sequence[Any]) -> dict:
    # records hold ext_timestamps already cut to [0, duration], as the loader cuts them
    return {"moments": {r.id.rsplit("/", 1)[-1]: np.array(r.moments[0], dtype=_F32) for r in records}}


def mad_submission_from_run(records: Sequence[Any], preds: dict[str, dict]) -> list[dict]:
    """One entry per record (the evaluator scores every query of the set): its ranked list (else its answer's
    moments), in rank order; a missing, failed or empty answer is no moment at all (padded with IoU 0: a miss)."""
    return [{"id": r.id.rsplit("/", 1)[-1], "moments": _ranked(preds.get(r.id)) or []} for r in records]


def mad_read_submission(path: Path) -> list[dict]:
    """vtg predictions (JSONL, ids `mad/<split>/<key>`) or a JSON list of {"id", "moments"} in rank order."""
    from vtg.eval.predictions import read_predictions

    if Path(path).suffix == ".jsonl":
        return [
            {"id": rid.rsplit("/", 1)[-1], "moments": _ranked(line) or []}
            for rid, line in read_predictions(path).items()
        ]
    data = _load_json(path)
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a list of {{'id', 'moments'}}")
    return data


def mad_table(entries: list[dict], gt: dict) -> dict[str, Any]:
    """Counts per (K, θ) of queries whose first K kept moments (padded to 100 with IoU 0) reach IoU >= θ in float32,
    over every query of the ground truth; recall = count / n in float32, as the script divides a float32 tensor."""
    by_id = {str(e["id"]): e for e in entries}
    unknown = sorted(set(by_id) - set(gt["moments"]))
    if unknown:
        raise UserError(f"{len(unknown)} prediction id(s) not in the MAD ground truth, e.g. {unknown[:3]}")
    counts = np.zeros((len(MAD_KS), len(MAD_THRESHOLDS)), dtype=_F32)
    thetas = np.array(MAD_THRESHOLDS, dtype=_F32)
    for key, truth in gt["moments"].items():
        moments = _windows(by_id.get(key, {}).get("moments", []), f"id {key}")
        kept = mad_nms(np.array(moments, dtype=_F32).reshape(-1, 2))
        ious = np.zeros(MAD_KS[-1], dtype=_F32)
        ious[: len(kept)] = mad_iou(kept, truth)
        hit = ious[:, None] >= thetas  # NaN >= θ is False
        for i, k in enumerate(MAD_KS):
            counts[i] += hit[:k].any(axis=0)
    n = len(gt["moments"])
    recall = counts / _F32(n) if n else np.full_like(counts, np.nan)
    metrics = {
        f"Recall@{k},mIoU@{t:.1f}": float(recall[i, j] * _F32(100))
        for i, k in enumerate(MAD_KS)
        for j, t in enumerate(MAD_THRESHOLDS)
    }
    return {"metrics": metrics, "counts": {"evaluated": n, "predicted": sum(1 for k in gt["moments"] if by_id.get(k))}}


# ---------------------------------------------------------------- VUE-TR, VUE-TR-V2 (qa_eval.py)


def vue_gt_from_file(path: Path) -> dict:
    data = _load_json(path)
    if not isinstance(data, list):
        raise UserError(f"{path}: not a VUE-TR ground-truth file (a JSON list of {{query_id, gt, ...}})")
    return {"spans": {str(d["query_id"]): _windows(d["gt"], f"query_id {d['query_id']}") for d in data}}


def vue_gt_from_records(records: Sequence[Any]) -> dict:
    return {"spans": {str(r.extra["query_id"]): _official_moments(r) for r in records}}


def vue_submission_from_run(records: Sequence[Any], preds: dict[str, dict]) -> list[dict]:
    """qa_eval.py's results: {"query_id", "answer"} for every record with a line (a missing one is left out: the
    script averages over the lines it is given); a failed answer is an empty answer."""
    return [{"query_id": r.extra["query_id"], "answer": _answer(preds[r.id]) or []} for r in records if r.id in preds]


def vue_read_submission(path: Path) -> list[dict]:
    """A results JSON list or JSONL of {"query_id" (or "id"), "answer"}, as `load_result` reads them."""
    if Path(path).suffix == ".jsonl":
        return [json.loads(t) for t in Path(path).read_text(encoding="utf-8").splitlines() if t.strip()]
    data = _load_json(path)
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of {{'query_id', 'answer'}}")
    return data


def _vue_answer(e: dict, i: int) -> list[Window]:
    answer = e.get("answer")
    if answer == [] or answer == [[]]:  # load_result: both mean no answer
        return []
    return multispan.round_outward(_windows(answer, f"results[{i}]"))


def _length(spans: Sequence[Window]) -> float:
    return sum(max(s, e) - min(s, e) for s, e in spans)


def _auc_or_nan(values: list[float], strict: bool) -> float:
    return multispan.auc(values, strict=strict) if values else math.nan  # np.mean([]) is NaN in the script


def vue_table(entries: list[dict], gt: dict, *, v2: bool) -> dict[str, Any]:
    ious, precisions, recalls = [], [], []
    for i, e in enumerate(entries):
        qid = str(e.get("query_id", e.get("id")) if v2 else e.get("query_id"))
        if qid not in gt["spans"]:
            raise UserError(f"results[{i}]: query_id {qid} is not in the ground truth (the script: KeyError)")
        truth, pred = gt["spans"][qid], _vue_answer(e, i)
        ious.append(multispan.set_iou(pred, truth))
        p, r = multispan.precision_recall(pred, truth)
        if p is not None and (v2 or _length(pred) != 0):  # V1 lacks V2's "no length either side: precision 1"
            precisions.append(p)
        if r is not None:
            recalls.append(r)
    metrics = {
        "Precision": _pct(_auc_or_nan(precisions, strict=False)),
        "Recall": _pct(_auc_or_nan(recalls, strict=False)),
        "IoU": _pct(_auc_or_nan(ious, strict=True)),
    }
    return {"metrics": metrics, "counts": {"evaluated": len(entries), "gt_queries": len(gt["spans"])}}


# ---------------------------------------------------------------- registry and entry points

OFFICIAL: dict[str, Official] = {
    "ego4d_nlq": Official(
        "ego4d_nlq",
        "official (evaluate_ego4d_nlq.py)",
        "EGO4D/episodic-memory NLQ/VSLNet/utils/evaluate_ego4d_nlq.py @ 5275b95",
        nlq_gt_from_records,
        nlq_gt_from_file,
        nlq_submission_from_run,
        nlq_read_submission,
        nlq_table,
        lambda entries: {"version": "1.0", "challenge": "ego4d_nlq_challenge", "results": entries},
    ),
    "mad": Official(
        "mad",
        "official (MAD VLG-Net evaluation.py)",
        "Soldelli/MAD baselines/VLG-Net/lib/engine/evaluation.py @ b1f1974",
        mad_gt_from_records,
        mad_gt_from_file,
        mad_submission_from_run,
        mad_read_submission,
        mad_table,
    ),
    "vue_tr": Official(
        "vue_tr",
        "official (VUE_TR/qa_eval.py)",
        "bytedance/vidi VUE_TR/qa_eval.py @ fc30c87",
        vue_gt_from_records,
        vue_gt_from_file,
        vue_submission_from_run,
        vue_read_submission,
        lambda entries, gt: vue_table(entries, gt, v2=False),
    ),
    "vue_tr_v2": Official(
        "vue_tr_v2",
        "official (VUE_TR_V2/qa_eval.py)",
        "bytedance/vidi VUE_TR_V2/qa_eval.py @ fc30c87",
        vue_gt_from_records,
        vue_gt_from_file,
        vue_submission_from_run,
        vue_read_submission,
        lambda entries, gt: vue_table(entries, gt, v2=True),
    ),
}


def get(name: str) -> Official:
    if name not in OFFICIAL:
        raise UserError(f"unknown official evaluator {name!r}; valid: {', '.join(OFFICIAL)}")
    return OFFICIAL[name]


def _result(ev: Official, table: dict[str, Any]) -> dict[str, Any]:
    return {"evaluator": ev.name, "label": ev.label, "source": ev.source, **table}


def score_run(name: str, records: Sequence[Any], preds: dict[str, dict]) -> tuple[dict[str, Any], Any]:
    """(official table, the submission it scored, in the form the script reads) for a run's labelled records and
    prediction lines."""
    ev = get(name)
    try:
        gt = ev.gt_from_records(records)
        entries = ev.submission_from_run(records, preds)
    except KeyError as e:
        raise UserError(
            f"scoring.official: {name} needs records made by `vtg data convert` from the benchmark's release "
            f"(a record lacks {e})"
        ) from None
    return _result(ev, ev.table(entries, gt)), ev.file_form(entries)


def score_files(name: str, pred: str | Path, gt: str | Path) -> dict[str, Any]:
    """The official table of a submission file against the release's ground-truth file, both read unchanged."""
    ev = get(name)
    try:
        entries, truth = ev.read_submission(Path(pred)), ev.gt_from_file(Path(gt))
        result = _result(ev, ev.table(entries, truth))
    except (KeyError, TypeError, ValueError) as e:  # what the script would crash on, named
        raise UserError(f"--official {name}: {pred} or {gt} is not in the format its evaluator reads ({e!r})") from None
    result["files"] = {"pred": str(pred), "gt": str(gt)}
    return result


def format_official(result: dict[str, Any]) -> str:
    """The official table for the terminal, titled with its evaluator, values in % with 2 decimals as printed."""
    lines = [f"{result['label']} [{result['source']}]"]
    lines += [f"{k:>22}: {v:6.2f}" for k, v in result["metrics"].items()]
    lines.append("counts: " + ", ".join(f"{k} {v}" for k, v in result["counts"].items()))
    return "\n".join(lines)
