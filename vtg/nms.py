"""Merging sampled candidates into one ranked list of moments: consensus scores + temporal NMS.

A generative model gives one answer per sample. To return an R@K-style ranked list we sample N answers and:
1. score every candidate moment m by consensus: the mean over the N samples of the best IoU between m and that
   sample's moments (0 for a sample with no moments). A moment that all samples agree on scores 1.0; a moment only
   its own sample proposed scores about 1/N. This is a soft vote: near-misses count partly.
2. greedy temporal NMS: take candidates by score (ties: earlier sample, then earlier start), drop any candidate whose
   IoU with an already-kept moment is >= `iou_threshold`, stop at `top_k`.
IoU comes from `vtg.data.grammar.iou` (the one definition).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vtg.data.grammar import iou

Moment = Sequence[float]


@dataclass(frozen=True)
class ScoredMoment:
    start: float
    end: float
    score: float
    sample: int  # which sample proposed it (its reasoning is the one shown)


def consensus_scores(samples: Sequence[Sequence[Moment]]) -> list[ScoredMoment]:
    """Every candidate of every sample, scored by its mean best-IoU agreement with all samples."""
    n = len(samples)
    out = []
    for i, moments in enumerate(samples):
        for m in moments:
            agree = sum(max((iou(m, o) for o in other), default=0.0) for other in samples)
            out.append(ScoredMoment(float(m[0]), float(m[1]), agree / n if n else 0.0, i))
    return out


def temporal_nms(cands: Sequence[ScoredMoment], iou_threshold: float = 0.5, top_k: int = 5) -> list[ScoredMoment]:
    """Greedy NMS over 1-D intervals, highest score first."""
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    kept: list[ScoredMoment] = []
    for c in sorted(cands, key=lambda c: (-c.score, c.sample, c.start, c.end)):
        if len(kept) >= top_k:
            break
        if all(iou((c.start, c.end), (k.start, k.end)) < iou_threshold for k in kept):
            kept.append(c)
    return kept


def merge_samples(samples: Sequence[Sequence[Moment]], top_k: int, iou_threshold: float = 0.5) -> list[ScoredMoment]:
    return temporal_nms(consensus_scores(samples), iou_threshold, top_k)
