"""Rewards for GRPO on temporal grounding: plain functions in a registry, picked by name in the recipe.

Every reward has the TRL signature `fn(completions, moments, duration, **kwargs) -> list[float]`: dataset columns
arrive as keyword arguments (one value per completion). Completions are strings or TRL's conversational form
`[{"role": "assistant", "content": "..."}]`. Parsing and IoU come from `vtg.data.grammar` (the one owner).

Conventions shared by the moment rewards (docs/rewards-and-metrics.md#rewards-grpo):
- unparseable answer → 0;
- empty truth ("not present" query): 1 for answering "not present", 0 for inventing moments;
- non-empty truth: 0 for answering "not present";
- a reversed pair is read as written-backwards and swapped (`ParsedAnswer.normalized`); predictions are clamped to
  [0, duration] before scoring so a wild number cannot make a Time-R1 factor negative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vtg.data.grammar import ParsedAnswer, clamp_moment, iou, match_moments, parse_answer

RewardFn = Callable[..., list[float]]


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or the content of TRL's conversational `[{"role", "content"}]`."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # content blocks
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content)
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return ""


def _predicted(parsed: ParsedAnswer, duration: float) -> list[tuple[float, float] | None]:
    """The predicted moments cut to the video; None for one that lies outside it (it scores nothing)."""
    return [clamp_moment(m, duration) for m in parsed.normalized()]


def _absent_rule(parsed: ParsedAnswer, truth: Sequence[Sequence[float]]) -> float | None:
    """The shared cases: unparseable → 0, empty truth → 1/0 for not present/invented, "not present" vs truth → 0."""
    if not parsed.ok:
        return 0.0
    if not truth:
        return 1.0 if parsed.not_present and not parsed.moments else 0.0
    if parsed.not_present and not parsed.moments:
        return 0.0
    return None


def _top1_score(text: str, truth: Sequence[Sequence[float]], duration: float, v2: bool) -> float:
    parsed = parse_answer(text)
    fixed = _absent_rule(parsed, truth)
    if fixed is not None:
        return fixed
    pred = _predicted(parsed, duration)[0]  # top-1: the first moment written
    if pred is None:
        return 0.0
    best = 0.0
    for gt in truth:
        score = iou(pred, gt)
        if v2:  # Time-R1 iou_v2: penalise boundary distance relative to the video length
            ds, de = abs(pred[0] - gt[0]) / duration, abs(pred[1] - gt[1]) / duration
            score *= max(0.0, 1.0 - ds) * max(0.0, 1.0 - de)
        best = max(best, score)
    return best


def tiou(completions: list, moments: list, duration: list, **kwargs: Any) -> list[float]:
    """Plain temporal IoU of the first predicted moment with the best-matching true moment."""
    return [_top1_score(completion_text(c), m, float(d), v2=False) for c, m, d in zip(completions, moments, duration)]


def tiou_v2(completions: list, moments: list, duration: list, **kwargs: Any) -> list[float]:
    """Time-R1's `IoU · (1 − |Δs|/D) · (1 − |Δe|/D)` on the first predicted moment (best-matching truth)."""
    return [_top1_score(completion_text(c), m, float(d), v2=True) for c, m, d in zip(completions, moments, duration)]


def _soft_f1(text: str, truth: Sequence[Sequence[float]], duration: float) -> float:
    parsed = parse_answer(text)
    fixed = _absent_rule(parsed, truth)
    if fixed is not None:
        return fixed
    pred = _predicted(parsed, duration)
    matched = sum(v for _, _, v in match_moments([p for p in pred if p is not None], truth))
    if matched == 0:
        return 0.0
    precision, recall = matched / len(pred), matched / len(truth)
    return 2 * precision * recall / (precision + recall)


def multi_moment(completions: list, moments: list, duration: list, **kwargs: Any) -> list[float]:
    """F1 of one-to-one matched moments with IoU as soft hits: extra or missing moments lower it."""
    return [_soft_f1(completion_text(c), m, float(d)) for c, m, d in zip(completions, moments, duration)]


def moment_count(completions: list, moments: list, duration: list, **kwargs: Any) -> list[float]:
    """How close the number of predicted moments is to the true number: 1 − |n − n_true| / max(n, n_true).

    Beside `multi_moment`: a soft F1 pays more for leaving out an uncertain moment than for keeping a poor one, and
    GRPO on it lowered the tiny model's count accuracy (experiments/learning/one_kind_per_video)."""
    out = []
    for c, m in zip(completions, moments):
        parsed = parse_answer(completion_text(c))
        fixed = _absent_rule(parsed, m)
        if fixed is not None:
            out.append(fixed)
            continue
        n, n_true = len(parsed.moments), len(m)
        out.append(1.0 - abs(n - n_true) / max(n, n_true))
    return out


def format_reward(completions: list, think: list | None = None, **kwargs: Any) -> list[float]:
    """1 for the canonical answer form exactly (`ParsedAnswer.strict`), else 0.

    When the dataset has a `think` column and it is true for a sample, the `<think>…</think>` block is required too.
    """
    out = []
    for i, c in enumerate(completions):
        parsed = parse_answer(completion_text(c))
        need_think = bool(think[i]) if think is not None else False
        out.append(1.0 if parsed.strict and (parsed.think is not None or not need_think) else 0.0)
    return out


def not_present(completions: list, moments: list, **kwargs: Any) -> list[float]:
    """Detection of absent queries alone: 1 when "not present" is said exactly when the truth is empty."""
    out = []
    for c, m in zip(completions, moments):
        parsed = parse_answer(completion_text(c))
        said_absent = parsed.ok and parsed.not_present and not parsed.moments
        out.append(1.0 if parsed.ok and said_absent == (not m) else 0.0)
    return out


REWARDS: dict[str, RewardFn] = {
    "format": format_reward,
    "tiou": tiou,
    "tiou_v2": tiou_v2,
    "multi_moment": multi_moment,
    "moment_count": moment_count,
    "not_present": not_present,
}


def get_reward(name: str) -> RewardFn:
    """The reward called `name`; an unknown name raises `UserError` listing the known ones."""
    from vtg.errors import UserError

    if name not in REWARDS:
        raise UserError(f"unknown reward {name!r}; known rewards: {sorted(REWARDS)}")
    fn = REWARDS[name]

    # TRL logs each reward under the function's __name__: give it the registry name
    def named(*args: Any, **kwargs: Any) -> list[float]:
        return fn(*args, **kwargs)

    named.__name__ = name
    named.__doc__ = fn.__doc__
    return named
