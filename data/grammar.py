"""The answer grammar, the prompts and temporal IoU: the one module that owns them.

Rewards (vtg.train), metrics (vtg.eval) and the server (vtg.serve) import from here; nothing else parses answers.

Canonical output (docs/grammar.md):
    <think>reasoning</think> starts at 12.5s, ends at 17.0s
    <think>reasoning</think> starts at 3.0s, ends at 7.5s; starts at 40.0s, ends at 44.0s
    <think>reasoning</think> not present
The parser is tolerant: it also reads `12.5 to 17.0`, `12.5 - 17.0`, `[12.5, 17.0]`, `<answer>…</answer>` and
`<time>…</time>` wrappers, with or without a `<think>` block. `strict` says whether the text followed the canonical
form exactly (the format reward uses it); `ok` says whether an answer (moments or "not present") was found at all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from vtg.errors import UserError

NOT_PRESENT = "not present"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

Moment = tuple[float, float]

_NUM = r"[-+]?\d+(?:\.\d+)?"
_CANON_ONE = rf"starts at ({_NUM})s, ends at ({_NUM})s"
_CANON_RE = re.compile(rf"^{_CANON_ONE}(?:; {_CANON_ONE})*$")
_CANON_ITER = re.compile(_CANON_ONE)
_STRICT_RE = re.compile(
    rf"^(?:<think>(?:(?!</think>).)*</think> )?(?:{_CANON_ONE}(?:; {_CANON_ONE})*|{NOT_PRESENT})$", re.S
)
# Lenient pair forms, tried in order on the answer text: "starts at a(s), ends at b(s)", "[a, b]", "a to b", "a - b".
_LENIENT_PAIRS = [
    re.compile(
        rf"start(?:s)?(?: at)?\s*({_NUM})\s*s?(?:econds?)?\s*,?\s*(?:and\s+)?end(?:s)?(?: at)?\s*({_NUM})", re.I
    ),
    re.compile(rf"\[\s*({_NUM})\s*s?\s*,\s*({_NUM})\s*s?\s*\]"),
    re.compile(rf"({_NUM})\s*s?(?:econds?)?\s*(?:to|until|till|-|–|—|~)\s*({_NUM})", re.I),
]
_WRAPPER_RE = re.compile(r"<(answer|time)>(.*?)</\1>", re.S | re.I)
_NOT_PRESENT_RE = re.compile(
    r"\b(not present|not in the video|does not (?:appear|happen|occur)|no such (?:event|moment))\b", re.I
)


@dataclass
class ParsedAnswer:
    """What a model's text says: moments in seconds (as written, not clamped), the reasoning, and flags."""

    moments: list[Moment] = field(default_factory=list)
    think: str | None = None
    answer: str = ""  # the answer text after the reasoning
    not_present: bool = False  # the model said the event is absent
    ok: bool = False  # an answer was found (moments or "not present")
    strict: bool = False  # canonical form, exactly
    reversed_pairs: int = 0  # pairs written end-first; kept as written in `moments`, fixed by `normalized()`

    def normalized(self) -> list[Moment]:
        """Moments with each reversed pair swapped (start <= end)."""
        return [(min(s, e), max(s, e)) for s, e in self.moments]


def format_time(t: float, decimals: int = 1) -> str:
    return f"{t:.{decimals}f}"


def format_moments(moments: Sequence[Sequence[float]], decimals: int = 1) -> str:
    """The canonical answer for a list of moments; [] means the query is not in the video."""
    if not moments:
        return NOT_PRESENT
    return "; ".join(f"starts at {format_time(s, decimals)}s, ends at {format_time(e, decimals)}s" for s, e in moments)


def format_answer(moments: Sequence[Sequence[float]], think: str | None = None, decimals: int = 1) -> str:
    """Full target text: `<think>…</think> ` (when reasoning is given) + the canonical answer."""
    answer = format_moments(moments, decimals)
    if think is None:
        return answer
    return f"{THINK_OPEN}{think}{THINK_CLOSE} {answer}"


def split_reasoning(text: str, *, strip: bool = True) -> tuple[str | None, str]:
    """(reasoning, answer) of a finished completion, by the one rule (see `ReasoningSplitter`): reasoning is the
    text of a leading `<think>` block, None when the text does not open with `<think>`. A `<think>` without its
    closing tag leaves no answer (generation was cut). `strip=False` keeps both texts exactly as a stream of the
    same completion delivers them (the server's responses)."""
    splitter = ReasoningSplitter()
    splitter.feed(text)
    splitter.finish()
    reasoning, answer = (splitter.reasoning if splitter.opened else None), splitter.answer
    if strip:
        return (reasoning.strip() if reasoning is not None else None), answer.strip()
    return reasoning, answer


def join_reasoning(reasoning: str | None, answer: str) -> str:
    """A completion whose `split_reasoning` is (reasoning, answer): how eval reads back a server's split answer."""
    return answer if reasoning is None else f"{THINK_OPEN}{reasoning}{THINK_CLOSE} {answer}"


class ReasoningSplitter:
    """Splits a completion into reasoning and answer while it streams; the one rule vtg applies everywhere.

    A completion that opens (leading whitespace aside) with `<think>` has everything up to `</think>` as reasoning
    and the rest, leading whitespace dropped, as answer; any other completion is all answer. The rule is
    prefix-stable: streamed pieces concatenate to exactly the split of the finished text, and a half-written tag is
    held back rather than emitted as content.
    """

    def __init__(self) -> None:
        self._buf = ""  # text not yet emitted (a possible tag prefix)
        self._state = "start"  # start -> reasoning -> answer_lead -> answer | start -> answer
        self.opened = False  # the completion opened with <think>
        self.reasoning = ""
        self.answer = ""

    def feed(self, delta: str) -> tuple[str, str]:
        """Add generated text; return (reasoning_delta, answer_delta) safe to emit now."""
        self._buf += delta
        return self._emit(final=False)

    def finish(self) -> tuple[str, str]:
        """The end of the completion: emit what is held back."""
        return self._emit(final=True)

    def _emit(self, final: bool) -> tuple[str, str]:
        r, a = self._drain(final)
        self.reasoning += r
        self.answer += a
        return r, a

    def _drain(self, final: bool) -> tuple[str, str]:
        r_out = a_out = ""
        while True:
            if self._state == "start":
                s = self._buf.lstrip()
                if s.startswith(THINK_OPEN):
                    self._buf, self._state, self.opened = s[len(THINK_OPEN) :], "reasoning", True
                    continue
                if THINK_OPEN.startswith(s) and not final:
                    return r_out, a_out  # maybe the opening tag, still arriving
                self._state = "answer"
                continue
            if self._state == "reasoning":
                idx = self._buf.find(THINK_CLOSE)
                if idx >= 0:
                    r_out += self._buf[:idx]
                    self._buf, self._state = self._buf[idx + len(THINK_CLOSE) :], "answer_lead"
                    continue
                keep = 0 if final else _partial_suffix(self._buf, THINK_CLOSE)
                r_out += self._buf[: len(self._buf) - keep]
                self._buf = self._buf[len(self._buf) - keep :]
                return r_out, a_out
            if self._state == "answer_lead":
                s = self._buf.lstrip()
                if not s:
                    self._buf = ""
                    return r_out, a_out
                self._buf, self._state = s, "answer"
                continue
            a_out += self._buf
            self._buf = ""
            return r_out, a_out


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


def parse_answer(text: str | None) -> ParsedAnswer:
    """Parse a model completion. Never raises; an unparseable text gives `ok=False` and no moments."""
    if not text:
        return ParsedAnswer()
    think, answer = split_reasoning(text)
    out = ParsedAnswer(think=think, answer=answer)
    body = answer
    wrapped = _WRAPPER_RE.search(answer)
    if wrapped:
        body = wrapped.group(2).strip()
    if _CANON_RE.match(body) and not wrapped:
        out.moments = [(float(a), float(b)) for a, b in _CANON_ITER.findall(body)]
    elif body.strip().rstrip(".").lower() == NOT_PRESENT:
        out.not_present = True
    else:
        for pattern in _LENIENT_PAIRS:
            pairs = pattern.findall(body)
            if pairs:
                out.moments = [(float(a), float(b)) for a, b in pairs]
                break
        if not out.moments and _NOT_PRESENT_RE.search(body):
            out.not_present = True
    out.moments = [m for m in out.moments if all(math.isfinite(x) for x in m)]
    out.reversed_pairs = sum(1 for s, e in out.moments if s > e)
    out.ok = bool(out.moments) or out.not_present
    out.strict = out.ok and _STRICT_RE.match(text.strip()) is not None
    return out


# ---- the parsers of released checkpoints (vtg.profiles) --------------------------------------------------------------
# Each reads a model's answers by the rules of that model's own evaluation code (docs/eval.md#model-profiles), so a
# published number is scored as its authors scored it. They fill the same `ParsedAnswer`: moments as the official
# code extracts them, `ok` when it extracts any, reasoning split off for people (the rules read the whole text).
# None of these models has a "not present" answer, and none has vtg's canonical form: `strict` stays False.

_UNSIGNED = r"\d+(?:\.\d*)?"  # Time-R1's and TimeLens's number: digits, optionally a point and more digits
_TIME_R1_PAIR = re.compile(rf"({_UNSIGNED}) (?:to|and) ({_UNSIGNED})")
_CLOCK = re.compile(r"\b(\d{1,2}:\d{2}:\d{2}(?:\.\d+)?|\d{1,2}:\d{2}(?:\.\d+)?)\b")
_TIMELENS_PAIRS = [
    re.compile(rf"({_UNSIGNED})\s*-\s*({_UNSIGNED})"),
    re.compile(rf"({_UNSIGNED})\s+to\s+({_UNSIGNED})"),
]
_BARE_NUMBER = re.compile(r"\b(\d+\.\d+|\d+)\b")


def _profile_answer(text: str | None, moments: list[Moment]) -> ParsedAnswer:
    think, answer = split_reasoning(text or "")
    return ParsedAnswer(
        moments=moments,
        think=think,
        answer=answer,
        ok=bool(moments),
        reversed_pairs=sum(1 for s, e in moments if s > e),
    )


def parse_time_r1(text: str | None) -> ParsedAnswer:
    """Time-R1's reading: the last `A to B` or `A and B` (one space each side, unsigned numbers) anywhere in the
    text, reasoning included; nothing else counts. One moment at most."""
    pairs = _TIME_R1_PAIR.findall(text or "")
    return _profile_answer(text, [(float(pairs[-1][0]), float(pairs[-1][1]))] if pairs else [])


def _seconds(clock: str) -> float:
    *hm, s = clock.split(":")
    return sum(int(x) * 60 ** (len(hm) - i) for i, x in enumerate(hm)) + float(s)


def _paired(values: list[float]) -> list[Moment]:
    return [(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]


def parse_timestamps(text: str | None) -> ParsedAnswer:
    """TimeLens's reading of a free-form answer (lower-cased first), every pair in order: clock times (`M:SS`,
    `H:MM:SS`, fractions allowed) taken two by two; else every `A - B` pair, else every `A to B` pair; else every
    number in the text taken two by two. An odd one out is dropped."""
    low = (text or "").lower()
    moments = _paired([_seconds(c) for c in _CLOCK.findall(low)])
    for pattern in _TIMELENS_PAIRS:
        if moments:
            break
        moments = [(float(a), float(b)) for a, b in pattern.findall(low)]
    if not moments:
        moments = _paired([float(x) for x in _BARE_NUMBER.findall(low)])
    return _profile_answer(text, moments)


def parse_timelens(text: str | None) -> ParsedAnswer:
    """TimeLens's evaluation: `parse_timestamps`, each time then rounded to whole seconds (Python's `round`, half to
    even), as its eval script stores predictions. Its metric scores the first pair; vtg's R@1 does too."""
    parsed = parse_timestamps(text)
    parsed.moments = [(float(round(s)), float(round(e))) for s, e in parsed.moments]
    parsed.reversed_pairs = sum(1 for s, e in parsed.moments if s > e)
    return parsed


PARSERS = {"vtg": parse_answer, "time-r1": parse_time_r1, "timelens": parse_timelens, "timestamps": parse_timestamps}


def parse_with(parser: str, text: str | None) -> ParsedAnswer:
    """`text` read by the named parser (`PARSERS`); "vtg" is `parse_answer`."""
    if parser not in PARSERS:
        raise UserError(f"unknown answer parser {parser!r}; known: {', '.join(PARSERS)}")
    return PARSERS[parser](text)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Temporal IoU of two [start, end] intervals.

    IoU = max(0, min(e1, e2) - max(s1, s2)) / (max(e1, e2) - min(s1, s2)). Edge cases, defined rather than crashing:
    a reversed pair is swapped first; a zero union (two identical points) gives 1.0 if they coincide, else 0.0.
    """
    s1, e1 = sorted((float(a[0]), float(a[1])))
    s2, e2 = sorted((float(b[0]), float(b[1])))
    union = max(e1, e2) - min(s1, s2)
    if union <= 0:
        return 1.0 if (s1, e1) == (s2, e2) else 0.0
    return max(0.0, min(e1, e2) - max(s1, s2)) / union


def iou_table(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]):
    """`iou` of every interval of `a` with every interval of `b`, as a numpy array of shape (len(a), len(b)); the same
    definition and edge cases as `iou`, vectorized for grid searches over many intervals (eval's prior baselines)."""
    import numpy as np

    a = np.sort(np.asarray(a, dtype=float).reshape(-1, 2), axis=1)[:, None, :]
    b = np.sort(np.asarray(b, dtype=float).reshape(-1, 2), axis=1)[None, :, :]
    union = np.maximum(a[..., 1], b[..., 1]) - np.minimum(a[..., 0], b[..., 0])
    inter = np.maximum(0.0, np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0]))
    same = (a[..., 0] == b[..., 0]) & (a[..., 1] == b[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), same.astype(float))


def clamp_moment(m: Sequence[float], duration: float) -> Moment | None:
    """`m` cut to [0, duration]; None when nothing of it is left (it lies entirely before 0 or after the end, or has no
    length): such a moment is invalid, and data, eval, rewards and the server all treat it so."""
    s, e = (min(max(float(m[0]), 0.0), duration), min(max(float(m[1]), 0.0), duration))
    return (s, e) if e > s else None


def match_moments(pred: Sequence[Sequence[float]], gt: Sequence[Sequence[float]]) -> list[tuple[int, int, float]]:
    """One-to-one matching of predicted and true moments, greedy by IoU (highest first): [(i_pred, j_gt, iou)]."""
    pairs = sorted(
        ((iou(p, g), i, j) for i, p in enumerate(pred) for j, g in enumerate(gt)), key=lambda t: (-t[0], t[1], t[2])
    )
    used_p, used_g, out = set(), set(), []
    for v, i, j in pairs:
        if v <= 0 or i in used_p or j in used_g:
            continue
        used_p.add(i)
        used_g.add(j)
        out.append((i, j, v))
    return out


def moment_f1(pred: Sequence[Sequence[float] | None], gt: Sequence[Sequence[float]], threshold: float = 0.5) -> float:
    """F1 of one-to-one matched moments at an IoU threshold (`>=`). Both empty: 1.0 (correctly "not present"). A None
    in `pred` is an invalid moment: it matches nothing and counts as a wrong prediction."""
    if not pred and not gt:
        return 1.0
    if not pred or not gt:
        return 0.0
    hits = sum(1 for _, _, v in match_moments([p for p in pred if p is not None], gt) if v >= threshold)
    precision, recall = hits / len(pred), hits / len(gt)
    return 0.0 if hits == 0 else 2 * precision * recall / (precision + recall)


# ---- prompts -----------------------------------------------------------------------------------------------------

MODES = ("single", "multi")  # one moment, or any number of them (none included)
_TASK = {
    "single": "Find the moment in the video that matches the query.",
    "multi": "Find every moment in the video that matches the query; there may be one, several, or none.",
}


# "full": the instruction prompt below, for pretrained models. "short": "<duration>s. <query>" only, for models
# trained from scratch (tiny ones): ~140 instruction tokens between the video and the answer delay a random-init
# model's learning to read the video (experiments/learning/probe_results.md). A model folder records its style
# (`vtg_prompt.json`, see vtg.model_folder) so training, eval and serving keep using the same text.
PROMPT_STYLES = ("full", "short")


def grounding_prompt(
    query: str, duration: float, *, mode: str = "multi", think: bool = True, style: str = "full"
) -> str:
    """The user turn's text, after the video. Training, eval and serving all use this one text (through
    `vtg.request.GroundingPrompt`)."""
    if mode not in _TASK:
        raise ValueError(f"mode must be one of {sorted(_TASK)}, got {mode!r}")
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt style must be one of {list(PROMPT_STYLES)}, got {style!r}")
    if style == "short":  # mode and think are learned from the training answers, not asked for
        return f"{duration:.1f}s. {query.strip()}"
    fmt = "'starts at Xs, ends at Ys' (several moments separated by '; ')"
    fmt += f", or '{NOT_PRESENT}' if it does not happen" if mode == "multi" else ""
    reasoning = "First think inside <think></think>, then answer " if think else "Answer "
    return (
        f'The video lasts {duration:.1f} seconds. {_TASK[mode]} Query: "{query.strip()}". {reasoning}in the form {fmt}.'
    )


def moments_as_lists(moments: Iterable[Sequence[float]]) -> list[list[float]]:
    return [[float(s), float(e)] for s, e in moments]
