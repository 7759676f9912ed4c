"""QVHighlights moment retrieval and highlight detection, computed as Moment-DETR's `standalone_eval/eval.py` does.

Our own code, ported from the reference's logic (jayleicn/moment_detr, standalone_eval/{eval,utils}.py):
- MR R1@θ: the FIRST listed predicted window vs the true window it overlaps most (first on ties), IoU >= θ.
- MR mAP@θ: per query, the first 10 listed windows sorted by score (stable), greedily matched to true windows in
  descending IoU order, each true window matched once per θ (`lock_gt`); VOC-2011 interpolated AP; mean over
  queries; θ ∈ 0.5:0.05:0.95 ("average" = mean over the ten), keys as the reference spells them ("0.5", "0.75").
- Length splits (true-window length in seconds): short (0, 10], middle (10, 30], long (30, 150], full = all;
  a split keeps only the in-range true windows and the queries that have one.
- Highlight detection: 2-second clips, truth = `saliency_scores` on `relevant_clip_ids` (0 elsewhere), binarised
  at >= 2 / 3 / 4 (Fair / Good / VeryGood); HIT@1 = any annotator's binarised label at the top-scored clip;
  mAP = mean over queries x 3 annotators of the video2gif interpolated AP (scores truncated or zero-padded to the
  number of clips), with sklearn's precision-recall curve reproduced in numpy.
- Numbers are percentages rounded to 2 decimals, as the reference prints them.

Differences, on purpose and labelled:
- Empty predictions: the reference silently drops queries whose `pred_relevant_windows` is empty from mAP (and
  crashes on them in R1). By default we keep them (AP 0, R1 miss) and count them; `reference_compat=True` drops
  them exactly like the reference's mAP does (and from R1 too, since the reference cannot score them there).
- IoU is `vtg.data.grammar.iou` (the project's one IoU). It equals the reference's for every window with
  start < end; for degenerate windows (zero length, reversed) the reference yields NaN/negative values where ours is
  defined (reversed pairs swapped, zero union 1.0 if identical else 0).
- Bad files raise a UserError naming the qid (mismatched qid sets, clip ids past the video) instead of asserting.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vtg.data.grammar import iou
from vtg.errors import UserError

MR_THRESHOLDS = [float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10)]
LENGTH_RANGES = {"short": (0, 10), "middle": (10, 30), "long": (30, 150), "full": (0, 150)}
SALIENCY_MINS = {"Fair": 2, "Good": 3, "VeryGood": 4}
MAX_PRED_WINDOWS = 10
CLIP_LENGTH = 2


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    from vtg.data.records import jsonl_lines

    out = []
    for n, text, problem in jsonl_lines(path):
        try:
            if problem:
                raise UserError(f"{path}: line {n} is {problem}")
            out.append(json.loads(text))
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: line {n} is not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(out[-1], dict) or "qid" not in out[-1]:
            raise UserError(f"{path}: line {n} has no 'qid'; QVHighlights files need one per line")
    return out


# ---- moment retrieval ------------------------------------------------------------------------------------------


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC-2011 interpolated AP (area under the monotone precision envelope)."""
    p = np.concatenate([[0.0], precision, [0.0]])
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    idx = np.where(r[1:] != r[:-1])[0] + 1
    return float(np.sum((r[idx] - r[idx - 1]) * p[idx]))


def query_ap(
    gt: Sequence[Sequence[float]], pred: Sequence[Sequence[float]], thresholds: Sequence[float] = MR_THRESHOLDS
) -> np.ndarray:
    """AP per threshold of one query's scored windows [s, e, score] against its true windows [s, e]."""
    ap = np.zeros(len(thresholds))
    if not pred:
        return ap
    pred = sorted(pred, key=lambda w: -w[2])  # stable, like list.sort in the reference
    lock = np.full((len(thresholds), len(gt)), -1)
    tp = np.zeros((len(thresholds), len(pred)))
    fp = np.zeros_like(tp)
    for i, w in enumerate(pred):
        ious = np.array([iou(w[:2], g) for g in gt])
        order = ious.argsort()[::-1]  # same tie order as the reference (numpy argsort, reversed)
        for t, theta in enumerate(thresholds):
            for j in order:
                if ious[j] < theta:
                    break
                if lock[t, j] >= 0:
                    continue
                tp[t, i], lock[t, j] = 1, i
                break
            fp[t, i] = 1 - tp[t, i]
    tp_c, fp_c = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    recall, precision = tp_c / len(gt), tp_c / (tp_c + fp_c)
    for t in range(len(thresholds)):
        ap[t] = interpolated_ap(precision[t], recall[t])
    return ap


def _r(v: float) -> float:
    return float(f"{100 * v:.2f}")


def _windows(d: dict[str, Any], key: str, qid: Any) -> list[list[float]]:
    ws = d.get(key)
    if not isinstance(ws, list):
        raise UserError(f"qid {qid}: '{key}' must be a list of windows, got {ws!r}")
    return ws


def mr_metrics(sub: dict[Any, list], gt: dict[Any, list], *, reference_compat: bool) -> dict[str, Any]:
    """R1 and mAP for one split. `sub`/`gt`: qid -> windows. Returns the reference's dict shape plus counts."""
    qids = [q for q in sub if gt.get(q)]
    empty = [q for q in qids if not sub[q]]
    if reference_compat:
        qids = [q for q in qids if sub[q]]
    if not qids:
        return {"MR-mAP": None, "MR-R1": None, "queries": 0, "empty_predictions": len(empty)}
    aps = np.array([query_ap(gt[q], [w[:3] for w in sub[q][:MAX_PRED_WINDOWS]]) for q in qids])
    ap_thds = aps.mean(0)
    mAP = {str(t): _r(v) for t, v in zip(MR_THRESHOLDS, ap_thds)}
    mAP["average"] = _r(float(np.mean(ap_thds)))
    top1 = []
    for q in qids:
        if not sub[q]:
            top1.append(0.0)
            continue
        w = sub[q][0][:2]
        ious = [iou(w, g) for g in gt[q]]
        top1.append(ious[int(np.argmax(ious))])
    top1 = np.array(top1)
    r1 = {str(t): _r(float(np.mean(top1 >= t))) for t in MR_THRESHOLDS}
    return {"MR-mAP": mAP, "MR-R1": r1, "queries": len(qids), "empty_predictions": len(empty)}


def _in_range(gt: dict[Any, list], lo: float, hi: float) -> dict[Any, list]:
    if (lo, hi) == LENGTH_RANGES["full"]:
        return gt  # the reference does not filter the full set at all
    out = {q: [w for w in ws if lo < w[1] - w[0] <= hi] for q, ws in gt.items()}
    return {q: ws for q, ws in out.items() if ws}


def eval_moment_retrieval(sub: dict[Any, list], gt: dict[Any, list], *, reference_compat: bool = False) -> dict:
    return {
        name: mr_metrics({q: w for q, w in sub.items() if q in g}, g, reference_compat=reference_compat)
        for name, (lo, hi) in LENGTH_RANGES.items()
        for g in [_in_range(gt, lo, hi)]
    }


# ---- highlight detection ---------------------------------------------------------------------------------------


def pr_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn.metrics.precision_recall_curve (binary, no weights): (precision, recall), last point (1, 0)."""
    order = np.argsort(y_score, kind="mergesort")[::-1]
    y_score, y_true = y_score[order], y_true[order]
    idx = np.r_[np.where(np.diff(y_score))[0], y_true.size - 1]
    tps = np.cumsum(y_true, dtype=float)[idx]
    fps = 1 + idx - tps
    precision = np.divide(tps, tps + fps, out=np.zeros_like(tps), where=(tps + fps) != 0)
    recall = np.ones_like(tps) if tps[-1] == 0 else tps / tps[-1]
    return np.hstack((precision[::-1], 1)), np.hstack((recall[::-1], 0))


def video2gif_ap(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """The reference's `get_ap(interpolate=True, point_11=False)`: all-negative truth 0, all-positive 1."""
    labels = set(y_true.tolist())
    if len(labels) == 1:
        return 0.0 if y_true[0] == 0 else 1.0
    if not labels:
        return 0.0
    precision, recall = pr_curve(y_true, y_score)
    recall = recall.astype(np.float32)  # as the reference does; it decides which steps count
    precision = np.maximum.accumulate(precision)
    return float(np.mean(precision[np.where(np.diff(recall))[0]]))


def gt_clip_scores(d: dict[str, Any]) -> np.ndarray:
    """(#clips, 3) annotator scores over the whole video, 0 outside `relevant_clip_ids`."""
    n = int(d["duration"] / CLIP_LENGTH)
    out = np.zeros((n, 3))
    ids = np.asarray(d.get("relevant_clip_ids", []), dtype=int)
    scores = np.asarray(d.get("saliency_scores", []), dtype=float).reshape(-1, 3) if len(ids) else np.zeros((0, 3))
    if len(ids) != len(scores):
        raise UserError(f"qid {d['qid']}: {len(ids)} relevant_clip_ids but {len(scores)} saliency_scores rows")
    if len(ids) and (ids.max() >= n or ids.min() < 0):
        raise UserError(
            f"qid {d['qid']}: relevant_clip_ids go up to {ids.max()} but a {d['duration']}s video has "
            f"{n} clips of {CLIP_LENGTH}s"
        )
    out[ids] = scores
    return out


def _fit(y_score: Sequence[float], n: int) -> np.ndarray:
    s = np.zeros(n)
    v = np.asarray(y_score, dtype=float)[:n]
    s[: len(v)] = v
    return s


def eval_highlight(sub_scores: dict[Any, list], gt_rows: dict[Any, dict]) -> dict[str, Any]:
    full = {q: gt_clip_scores(gt_rows[q]) for q in sub_scores}
    out: dict[str, Any] = {}
    for name, lo in SALIENCY_MINS.items():
        hits, aps = [], []
        for q, pred in sub_scores.items():
            binary = (full[q] >= lo).astype(float)
            top = int(np.argmax(pred)) if len(pred) else len(binary)  # empty scores: no clip, a miss
            hits.append(binary[top].max() if top < len(binary) else 0.0)
            y = _fit(pred, len(binary))
            aps += [video2gif_ap(binary[:, a], y) for a in range(3)]
        out[f"HL-min-{name}"] = {"HL-mAP": _r(float(np.mean(aps))), "HL-Hit1": _r(float(np.mean(hits)))}
    out["empty_saliency"] = sum(1 for p in sub_scores.values() if not len(p))
    return out


# ---- whole submission ------------------------------------------------------------------------------------------


def eval_submission(submission: list[dict], ground_truth: list[dict], *, reference_compat: bool = False) -> dict:
    """Score a QVHighlights submission (lines with `pred_relevant_windows` and/or `pred_saliency_scores`)."""
    sub = {d["qid"]: d for d in submission}
    gt = {d["qid"]: d for d in ground_truth}
    if len(sub) != len(submission):
        raise UserError("the submission has duplicate qids; one line per query")
    if set(sub) != set(gt):
        miss, extra = sorted(set(gt) - set(sub), key=str), sorted(set(sub) - set(gt), key=str)
        raise UserError(
            f"qids in the submission and the ground truth must match: {len(miss)} missing "
            f"(e.g. {miss[:3]}), {len(extra)} unknown (e.g. {extra[:3]})"
        )
    result: dict[str, Any] = {"brief": {}, "reference_compat": reference_compat}
    if any("pred_relevant_windows" in d for d in submission):
        mr = eval_moment_retrieval(
            {q: _windows(d, "pred_relevant_windows", q) for q, d in sub.items()},
            {q: _windows(d, "relevant_windows", q) for q, d in gt.items()},
            reference_compat=reference_compat,
        )
        result.update(mr)
        f = mr["full"]
        if f["MR-mAP"] is not None:
            result["brief"].update(
                {
                    "MR-full-mAP": f["MR-mAP"]["average"],
                    "MR-full-mAP@0.5": f["MR-mAP"]["0.5"],
                    "MR-full-mAP@0.75": f["MR-mAP"]["0.75"],
                    "MR-full-R1@0.5": f["MR-R1"]["0.5"],
                    "MR-full-R1@0.7": f["MR-R1"]["0.7"],
                }
            )
        for name in ("short", "middle", "long"):
            if mr[name]["MR-mAP"] is not None:
                result["brief"][f"MR-{name}-mAP"] = mr[name]["MR-mAP"]["average"]
        result["brief"]["MR-empty-predictions"] = f["empty_predictions"]
    if any("pred_saliency_scores" in d for d in submission):
        hl = eval_highlight({q: d.get("pred_saliency_scores") or [] for q, d in sub.items()}, gt)
        result.update(hl)
        for k, v in hl.items():
            if isinstance(v, dict):
                result["brief"].update({f"{k}-{m.split('-')[1]}": x for m, x in v.items()})
        result["brief"]["HL-empty-saliency"] = hl["empty_saliency"]
    result["brief"] = dict(sorted(result["brief"].items()))
    return result


def submission_from_predictions(pred_lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn our predictions.jsonl lines (with a `qid` carried from the records) into submission lines: the parsed
    moments in the order written, scored by rank (first = highest)."""
    from vtg.eval.metrics import prediction_from_line

    out = []
    for line in pred_lines:
        if "qid" not in line:
            raise UserError(
                f"prediction {line.get('id')!r} has no 'qid'; QVHighlights scoring needs records "
                "converted with their qid (vtg data convert keeps it)"
            )
        parsed, err = prediction_from_line(line)
        ms = parsed.normalized() if parsed is not None and not err else []
        out.append(
            {"qid": line["qid"], "pred_relevant_windows": [[s, e, float(len(ms) - i)] for i, (s, e) in enumerate(ms)]}
        )
    return out


def format_brief(result: dict[str, Any]) -> str:
    mode = (
        "reference-compatible: queries with no predicted window dropped from MR, as Moment-DETR's eval.py"
        if result["reference_compat"]
        else "empty predictions kept (AP 0, R1 miss) and counted"
    )
    lines = [f"QVHighlights metrics (Moment-DETR standalone_eval definitions; {mode})"]
    lines += [f"{k:>24}: {v}" for k, v in result["brief"].items()]
    return "\n".join(lines)
