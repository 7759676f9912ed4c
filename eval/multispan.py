"""Several true spans against several predicted spans: the VUE-TR evaluator's definitions, in our own code
(docs/eval.md#several-true-spans).

Source: bytedance/vidi, `VUE_TR/qa_eval.py` and `VUE_TR_V2/qa_eval.py` (the official VUE-TR and VUE-TR-V2
evaluation; the function names below in quotes are that script's). Conventions, as it has them:

- Rounding (`load_result`): each predicted span is widened to whole seconds before anything else, start floored and
  end ceiled. Truth spans are used as written (the releases hold whole seconds, a few tenths).
- Set IoU (`overlap_ratio`): no truth → 1 for no prediction, else 0; truth but no prediction → 0. Otherwise spans
  with start > end are dropped, the rest merged where they overlap or touch, and
  IoU = Σ overlap(merged prediction, truth) / (Σ |merged prediction| + Σ |truth| − Σ overlap), clipped to [0, 1].
  Truth spans are not merged (the releases' spans are disjoint).
- IoU score (the tables' "IoU"): the area under the curve of the share of queries whose set IoU is `>` t, for
  t = 0, 0.01, …, 1 (trapezoid rule); close to, but not the same as, the mean set IoU.
- Precision and recall (`compute_precision_recall`): every span read as [min, max] (a reversed one is swapped here,
  unlike in the IoU), nothing merged; the intersection length is the script's two-pointer walk over the truth and
  the prediction in the order written, which is the length of their intersection when both lists are sorted and
  disjoint. Precision = intersection / Σ |prediction| over the queries with a predicted length (and 1 when truth and
  prediction are both empty: the V2 script's rule; V1 lacks it, and no query of either release has an empty truth);
  recall = intersection / Σ |truth| over the queries with a true length. Each is reported as the area under the
  curve of the share of queries at `>=` t (note: `>=` here, `>` for the IoU), same thresholds and rule.

vtg's own additions, labelled as such: the mean set IoU (`set_mIoU`); an AUC over no values is 0 (the reference
gives NaN); and a failed answer (parse failure, error line) counts as an empty answer, except on a query with no
truth, where an empty answer would earn IoU 1 and precision 1 and a failure earns 0 instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Spans = Sequence[Sequence[float]]

_GRID = np.linspace(0, 1, 101)  # the reference's thresholds, so ties at a threshold fall the same way
THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in _GRID)


def round_outward(spans: Spans) -> list[list[float]]:
    """Widen predicted spans to whole seconds: start floored, end ceiled."""
    return [[float(math.floor(s)), float(math.ceil(e))] for s, e in spans]


def merge_spans(spans: Spans) -> list[list[float]]:
    """Sort by start and merge spans that overlap or touch (next start <= current end)."""
    merged: list[list[float]] = []
    for s, e in sorted(([float(s), float(e)] for s, e in spans), key=lambda p: p[0]):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged


def set_iou(pred: Spans, truth: Spans) -> float:
    """The reference's `overlap_ratio` on already-rounded predictions. Dropping reversed spans before merging gives
    the reference's result (it merges first): a reversed span never extends or joins a valid one."""
    if not truth:
        return 1.0 if not pred else 0.0
    if not pred:
        return 0.0
    merged = merge_spans([p for p in pred if p[0] <= p[1]])
    inter = sum(max(0.0, min(pe, te) - max(ps, ts)) for ps, pe in merged for ts, te in truth)
    union = sum(e - s for s, e in merged) + sum(e - s for s, e in truth) - inter
    return max(0.0, min(1.0, inter / (union + 1e-16)))  # 1e-16 as the reference adds it


def walk_intersection(a: Spans, b: Spans) -> float:
    """Total overlap of two span lists by the reference's two-pointer walk (`interval_intersection`), in the order
    given: exact for sorted, disjoint lists, and reproduced as is for any other."""
    i = j = 0
    total = 0.0
    while i < len(a) and j < len(b):
        (a_s, a_e), (b_s, b_e) = a[i], b[j]
        if a_s <= b_e and b_s <= a_e:
            total += min(a_e, b_e) - max(a_s, b_s)
        if a_e < b_e:
            i += 1
        else:
            j += 1
    return total


def precision_recall(pred: Spans, truth: Spans) -> tuple[float | None, float | None]:
    """(precision, recall) of one query on already-rounded predictions; None where the query is left out of that
    mean (no predicted length for precision, no true length for recall)."""
    gt = [[min(s, e), max(s, e)] for s, e in truth]
    pr = [[min(s, e), max(s, e)] for s, e in pred]
    inter = walk_intersection(gt, pr)
    g, p = sum(e - s for s, e in gt), sum(e - s for s, e in pr)
    precision = 1.0 if g == 0 and p == 0 else (inter / p if p != 0 else None)
    return precision, (inter / g if g != 0 else None)


def auc(values: Sequence[float], *, strict: bool) -> float:
    """Area (trapezoid rule over THRESHOLDS) under the share of `values` > t (`strict`) or >= t; 0 for no values.
    Summed as np.trapz sums, so the last digit matches the reference's tables (62.445 rounds the same way)."""
    if not values:
        return 0.0
    v = np.asarray(values, dtype=float)[:, None]
    curve = ((v > _GRID) if strict else (v >= _GRID)).sum(axis=0) / len(values)
    return float(np.add.reduce(np.diff(_GRID) * (curve[1:] + curve[:-1]) / 2.0))


@dataclass(frozen=True)
class SpanScore:
    """One query by the VUE-TR definitions."""

    iou: float
    precision: float | None  # None: not in the precision mean
    recall: float | None  # None: not in the recall mean


def score_spans(pred: Spans, truth: Spans, *, failed: bool = False) -> SpanScore:
    """Score one query: `pred` as the model wrote it (rounded here), `truth` as recorded. `failed`: no usable answer."""
    if failed and not truth:
        return SpanScore(0.0, 0.0, None)
    rounded = [] if failed else round_outward(pred)
    precision, recall = precision_recall(rounded, truth)
    return SpanScore(set_iou(rounded, truth), precision, recall)


def summarize(scores: Sequence[SpanScore]) -> dict[str, float]:
    """The run's set-level metrics, in %: `set_IoU_AUC`, `set_P_AUC`, `set_R_AUC` are VUE-TR's IoU, Precision and
    Recall; `set_mIoU` is vtg's plain mean of the set IoUs."""
    ious = [s.iou for s in scores]
    return {
        "set_mIoU": 100.0 * sum(ious) / len(ious) if ious else 0.0,
        "set_IoU_AUC": 100.0 * auc(ious, strict=True),
        "set_P_AUC": 100.0 * auc([s.precision for s in scores if s.precision is not None], strict=False),
        "set_R_AUC": 100.0 * auc([s.recall for s in scores if s.recall is not None], strict=False),
    }
