"""Grounding metrics on our record schema: R@{1,5} at IoU {0.3, 0.5, 0.7}, mIoU, multi-moment F1, "not present".

Parsing and IoU come from `vtg.data.grammar` (the one owner); this module only decides how to count.

Definitions (docs/rewards-and-metrics.md#eval-metrics; every convention is in `Conventions` and printed with the
results):
- A prediction is a model text (parsed with `grammar.parse_answer`, or the profile parser its line names) or a list
  of moments. Its moments are ranked in the order written; top-K = the first K.
- Queries with a true moment ("present"): top-1 IoU = IoU of the first predicted moment with the best-matching true
  moment (max over the truths; for single-moment sets that is the truth). R@K,θ = share of present queries where any
  of the first K predicted moments reaches θ with any true moment. mIoU = mean top-1 IoU over present queries.
  A parse failure, an empty answer or a "not present" answer scores IoU 0 and stays in the denominator.
- Threshold: `>=` (default; TimeLens, lmms-eval, Moment-DETR) or `>` (Time-R1, 2D-TAN). No epsilon, as they do.
- Clamping predictions to [0, duration]: off by default (the reference evaluators score the numbers as written);
  on, a moment past the end is cut to it (example: [25, 40] vs [24.3, 30.4] is 0.34, 0.81 clamped
  to 30.96 s).
- Reversed pairs (end written before start): "swap" (default; read as the interval) or "fail" (that moment
  scores IoU 0).
- Multi-moment queries additionally get F1@0.5 (`grammar.moment_f1`, one-to-one matching) averaged over all queries.
- Records flagged `zero_length_window` (a true window of no length, kept by `vtg data convert ego4d-nlq` for the
  official table, `vtg.eval.official`) are left out and counted (`zero_length_excluded`).
- Absent queries (truth `[]`): scored by "absent accuracy" = share where the answer is exactly "not present"
  (parsed, no moments); they are not in R@K/mIoU. "false absent" = share of present queries answered "not present".
- A run with a query of several true spans also gets the set-level metrics of `vtg.eval.multispan` (VUE-TR's
  definitions, over all queries): `set_mIoU`, `set_IoU_AUC`, `set_P_AUC`, `set_R_AUC`. They follow the VUE-TR
  evaluator's own handling of predictions (rounded outward to whole seconds, reversed spans dropped, no clamping),
  whatever the conventions above say.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from vtg.data.grammar import ParsedAnswer, clamp_moment, iou, moment_f1, parse_with
from vtg.errors import UserError
from vtg.eval import multispan

THRESHOLDS = (0.3, 0.5, 0.7)
KS = (1, 5)


@dataclass(frozen=True)
class Conventions:
    threshold_op: str = ">="
    clamp: bool = False
    reversed: str = "swap"  # "swap" | "fail"
    thresholds: tuple[float, ...] = THRESHOLDS
    ks: tuple[int, ...] = KS
    f1_threshold: float = 0.5

    def __post_init__(self):
        if self.threshold_op not in (">=", ">"):
            raise UserError(f"threshold_op must be '>=' or '>', got {self.threshold_op!r}")
        if self.reversed not in ("swap", "fail"):
            raise UserError(f"reversed must be 'swap' (read as the interval) or 'fail' (IoU 0), got {self.reversed!r}")
        if not self.thresholds or any(not 0 < t <= 1 for t in self.thresholds):
            raise UserError(f"thresholds must be IoU values in (0, 1], got {self.thresholds!r}")
        if not self.ks or any(k < 1 for k in self.ks):
            raise UserError(f"ks must be positive integers, got {self.ks!r}")

    def passes(self, value: float, theta: float) -> bool:
        return value >= theta if self.threshold_op == ">=" else value > theta

    def describe(self) -> str:
        return (
            f"IoU threshold test: iou {self.threshold_op} θ; clamp predictions to [0, duration]: "
            f"{'on' if self.clamp else 'off'}; reversed pairs: {self.reversed}; parse failures and empty "
            f"answers: IoU 0, kept in the denominator"
        )


@dataclass
class QueryScore:
    """Everything the aggregates and plots need about one query."""

    id: str
    duration: float
    truth: list[list[float]]
    status: str  # "ok" | "parse_failure" | "error" (video/engine failure recorded by the job)
    said_absent: bool
    n_pred: int
    ious: list[float] = field(default_factory=list)  # per predicted moment: best IoU with any truth
    f1: float = 0.0
    reversed_pairs: int = 0
    clamped: int = 0
    pred: list[list[float]] = field(default_factory=list)  # moments as written (before the conventions): the
    # set-level metrics (vtg.eval.multispan) apply VUE-TR's own rules to them

    @property
    def present(self) -> bool:
        return bool(self.truth)

    @property
    def top1_iou(self) -> float:
        return self.ious[0] if self.ious else 0.0

    def hit(self, k: int, theta: float, conv: Conventions) -> bool:
        return any(conv.passes(v, theta) for v in self.ious[:k])


def _prepare(moments: Sequence[Sequence[float]], duration: float, conv: Conventions) -> tuple[list, int, int]:
    """Apply the reversed/clamp conventions: (moments or None for a failed one, #reversed, #clamped)."""
    out, n_rev, n_clamp = [], 0, 0
    for s, e in ((float(m[0]), float(m[1])) for m in moments):
        if s > e:
            n_rev += 1
            if conv.reversed == "fail":
                out.append(None)
                continue
            s, e = e, s
        if conv.clamp:
            c = clamp_moment((s, e), duration)
            n_clamp += c != (s, e)
            if c is None:  # nothing of it inside the video: an invalid moment (IoU 0, a wrong prediction for F1)
                out.append(None)
                continue
            s, e = c
        out.append((s, e))
    return out, n_rev, n_clamp


def score_query(
    rid: str,
    truth: Sequence[Sequence[float]],
    duration: float,
    prediction: ParsedAnswer | None,
    conv: Conventions,
    *,
    error: bool = False,
) -> QueryScore:
    """Score one query. `prediction=None` or `error=True` = no usable answer (IoU 0, counted)."""
    truth = [[float(s), float(e)] for s, e in truth]
    if prediction is None or error or not prediction.ok:
        return QueryScore(rid, duration, truth, "error" if error else "parse_failure", False, 0)
    moments, n_rev, n_clamp = _prepare(prediction.moments, duration, conv)
    ious = [0.0 if m is None else max((iou(m, g) for g in truth), default=0.0) for m in moments]
    said_absent = prediction.not_present and not prediction.moments
    return QueryScore(
        rid,
        duration,
        truth,
        "ok",
        said_absent,
        len(moments),
        ious,
        f1=moment_f1(moments, truth, conv.f1_threshold) if (moments or said_absent) else 0.0,
        reversed_pairs=n_rev,
        clamped=n_clamp,
        pred=[[float(s), float(e)] for s, e in prediction.moments],
    )


def prediction_from_line(line: dict[str, Any]) -> tuple[ParsedAnswer | None, bool]:
    """(parsed answer, error flag) from a predictions line: the raw `text` is re-parsed with the grammar when
    present (so scoring never trusts a stored parse), by the profile parser the line names if any; a line with only
    `moments` is taken as those moments."""
    if line.get("error"):
        return None, True
    if line.get("text") is not None:
        return parse_with(line.get("parser", "vtg"), line["text"]), False
    if "moments" in line and isinstance(line["moments"], list):
        ms = [(float(m[0]), float(m[1])) for m in line["moments"]]
        return ParsedAnswer(
            moments=ms, ok=True, not_present=not ms, reversed_pairs=sum(1 for s, e in ms if s > e)
        ), False
    return None, False


def pct(n: float, d: int) -> float:
    return 100.0 * n / d if d else 0.0


def aggregate(scores: Sequence[QueryScore], conv: Conventions) -> dict[str, Any]:
    """The metrics table (percentages, unrounded) plus counts; the same dict feeds the CLI, JSON and reports."""
    present = [s for s in scores if s.present]
    absent = [s for s in scores if not s.present]
    m: dict[str, Any] = {}
    for k in conv.ks:
        for t in conv.thresholds:
            m[f"R@{k},IoU={t:g}"] = pct(sum(s.hit(k, t, conv) for s in present), len(present))
    m["mIoU"] = pct(sum(s.top1_iou for s in present), len(present))
    m[f"F1@{conv.f1_threshold:g}"] = pct(sum(s.f1 for s in scores), len(scores))
    if absent:
        m["absent_acc"] = pct(sum(s.said_absent for s in absent), len(absent))
    counts = {
        "queries": len(scores),
        "present": len(present),
        "absent": len(absent),
        "multi_moment": sum(len(s.truth) > 1 for s in scores),
        "parse_failures": sum(s.status == "parse_failure" for s in scores),
        "errors": sum(s.status == "error" for s in scores),
        "said_absent_on_present": sum(s.said_absent for s in present),
        "reversed_pairs": sum(s.reversed_pairs for s in scores),
        "clamped_moments": sum(s.clamped for s in scores),
    }
    m["parse_failure_rate"] = pct(counts["parse_failures"] + counts["errors"], len(scores))
    if counts["multi_moment"]:  # several true spans: also the set-level definitions (VUE-TR's), after the rest
        m.update(multispan.summarize([multispan.score_spans(s.pred, s.truth, failed=s.status != "ok") for s in scores]))
    return {"metrics": m, "counts": counts, "conventions": asdict(conv)}


def score_predictions(
    records: Iterable[Any], predictions: dict[str, dict[str, Any]], conv: Conventions, *, allow_missing: bool = False
) -> tuple[list[QueryScore], dict[str, Any]]:
    """Score prediction lines (keyed by id) against records (`vtg.data.records.Record`).

    A record without a prediction is an error unless `allow_missing`, where it counts as a failure (IoU 0);
    predictions for unknown ids are an error: both usually mean the wrong file was passed. Records flagged
    `zero_length_window` (a true window of no length, kept for the official table) are left out of these metrics
    and counted (`counts.zero_length_excluded`).
    """
    from vtg.data.records import ZERO_LENGTH_FLAG

    records = list(records)
    ids = {r.id for r in records}
    unknown = sorted(set(predictions) - ids)
    if unknown:
        raise UserError(
            f"{len(unknown)} prediction id(s) not in the ground truth, e.g. {unknown[:3]}: is it the right --gt file?"
        )
    missing = [r.id for r in records if r.id not in predictions]
    if missing and not allow_missing:
        raise UserError(
            f"{len(missing)} of {len(records)} queries have no prediction, e.g. {missing[:3]}; "
            "finish or merge the run, or pass --allow-missing to count them as failures"
        )
    zero = [r for r in records if r.extra.get(ZERO_LENGTH_FLAG)]
    scores = []
    for r in (r for r in records if not r.extra.get(ZERO_LENGTH_FLAG)):
        line = predictions.get(r.id)
        parsed, err = prediction_from_line(line) if line is not None else (None, True)
        scores.append(score_query(r.id, r.moments, r.duration, parsed, conv, error=err))
    result = aggregate(scores, conv)
    result["counts"]["missing"] = len(missing)
    if zero:
        result["counts"]["zero_length_excluded"] = len(zero)
    return scores, result


def format_table(result: dict[str, Any]) -> str:
    """Plain-text results for the terminal, conventions first so nobody compares numbers across conventions."""
    conv = Conventions(**{k: tuple(v) if isinstance(v, list) else v for k, v in result["conventions"].items()})
    lines = ["conventions: " + conv.describe()]
    lines += [f"{k:>16}: {v:6.2f}" for k, v in result["metrics"].items()]
    lines.append("counts: " + ", ".join(f"{k} {v}" for k, v in result["counts"].items()))
    return "\n".join(lines)
