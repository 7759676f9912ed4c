"""Prior baselines: what a "model" scores that never looks at the video nor the question.

Each is computed from the TRAINING records only (never the test answers), in normalized time (moment ÷ duration),
and answers every test query with the same normalized moments scaled to its duration
(docs/eval.md#controls-and-baselines):
- `constant`: the best constant moment, the single [s, e] that maximizes the mean top-1 IoU over the training
  records with moments, searched over the grid s < e in steps of 1/CONSTANT_GRID;
- `mean_location`: [mean start, mean end] over every true moment of the training records;
- `count` (only when some training record has several moments): the most frequent number of moments k among the
  training records with moments (ties: the smaller k), the i-th placed at the mean [start, end] of the i-th moment
  (in time order) of the training records with exactly k moments.
They are scored with the model's metric code (`metrics.score_query`, `metrics.aggregate`), and a model "beats the
prior by N points" where N is its mIoU (and R@1,IoU=0.5) minus the best baseline's on the same queries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vtg.data.grammar import ParsedAnswer, iou_table
from vtg.data.records import ZERO_LENGTH_FLAG, Record
from vtg.errors import UserError
from vtg.eval.metrics import Conventions, aggregate, score_query

CONSTANT_GRID = 20  # grid steps per unit of normalized time: 0.05, finer than any benchmark's R@K thresholds need
GAP_METRICS = ("mIoU", "R@1,IoU=0.5")  # what "beats the prior by N points" reports
NAMES = {"constant": "best constant moment", "mean_location": "mean location", "count": "count prior"}

Moments = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class PriorBaselines:
    """The baselines' normalized moments, by name (`NAMES`), and how many training records they came from."""

    moments: dict[str, Moments]
    train_queries: int

    def answer(self, name: str, duration: float) -> list[tuple[float, float]]:
        return [(s * duration, e * duration) for s, e in self.moments[name]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "train_queries": self.train_queries,
            "moments": {k: [list(m) for m in v] for k, v in self.moments.items()},
        }


def _normalized(records: Iterable[Record]) -> list[list[tuple[float, float]]]:
    """Each training record's moments ÷ its duration, in time order (records without moments or flagged
    zero-length left out: they say nothing about where moments are)."""
    out = []
    for r in records:
        if r.moments and not r.extra.get(ZERO_LENGTH_FLAG):
            out.append(
                sorted((min(max(s / r.duration, 0.0), 1.0), min(max(e / r.duration, 0.0), 1.0)) for s, e in r.moments)
            )
    return out


def best_constant(train: list[list[tuple[float, float]]], grid: int = CONSTANT_GRID) -> tuple[float, float]:
    """The grid moment with the highest mean top-1 IoU (best over each record's moments); ties: the earliest."""
    import numpy as np

    cands = [(i / grid, j / grid) for i in range(grid) for j in range(i + 1, grid + 1)]
    flat = np.array([m for ms in train for m in ms])
    owner = np.repeat(np.arange(len(train)), [len(ms) for ms in train])
    table = iou_table(cands, flat)  # (candidates, moments)
    best = np.zeros((len(cands), len(train)))
    for k in range(len(cands)):  # best IoU per record: max over its moments
        np.maximum.at(best[k], owner, table[k])
    return cands[int(np.argmax(best.mean(axis=1)))]  # argmax takes the first of equal means


def mean_location(train: list[list[tuple[float, float]]]) -> tuple[float, float]:
    flat = [m for ms in train for m in ms]
    return (sum(s for s, _ in flat) / len(flat), sum(e for _, e in flat) / len(flat))


def count_prior(train: list[list[tuple[float, float]]]) -> Moments:
    counts = Counter(len(ms) for ms in train)
    k = min(counts, key=lambda n: (-counts[n], n))
    with_k = [ms for ms in train if len(ms) == k]
    return tuple(
        (sum(ms[i][0] for ms in with_k) / len(with_k), sum(ms[i][1] for ms in with_k) / len(with_k)) for i in range(k)
    )


def fit(train_records: Iterable[Record]) -> PriorBaselines:
    """The prior baselines of a training set."""
    train = _normalized(train_records)
    if not train:
        raise UserError("prior baselines: the training records have no moments to learn a prior from")
    moments: dict[str, Moments] = {"constant": (best_constant(train),), "mean_location": (mean_location(train),)}
    if any(len(ms) > 1 for ms in train):
        moments["count"] = count_prior(train)
    return PriorBaselines(moments, len(train))


def score(
    baselines: PriorBaselines, queries: Iterable[tuple[str, Sequence[Sequence[float]], float]], conv: Conventions
) -> dict[str, dict[str, Any]]:
    """Each baseline's metrics on `queries` ((id, true moments, duration), e.g. a run's scored queries), computed
    by the model's metric code."""
    queries = list(queries)
    out = {}
    for name in baselines.moments:
        scores = [
            score_query(rid, truth, d, ParsedAnswer(moments=baselines.answer(name, d), ok=True), conv)
            for rid, truth, d in queries
        ]
        out[name] = aggregate(scores, conv)["metrics"]
    return out


def prior_gap(model: dict[str, float], scored: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per GAP_METRICS: the best baseline (name, value) and the model's lead over it in points (negative: behind)."""
    out = {}
    for m in GAP_METRICS:
        best = max(scored, key=lambda n: (scored[n][m], -list(scored).index(n)))
        out[m] = {"baseline": best, "prior": scored[best][m], "gap": model[m] - scored[best][m]}
    return out


def prior_verdict(gap: dict[str, dict[str, Any]]) -> str:
    """ "beats the prior by N points": the mIoU and R@1,IoU=0.5 leads over the best baseline (negative: loses)."""
    return "beats the prior by " + " and ".join(
        f"{g['gap']:+.1f} {m} points ({NAMES[g['baseline']]} {g['prior']:.1f})" for m, g in gap.items()
    )
