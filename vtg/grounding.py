"""Grounding strategies: how one question about one video becomes one or several calls of the request path.

- `direct`: one call, the whole video sampled as the model was trained (`n` samples merged by consensus + NMS).
- `coarse_to_fine`: the coarse pass asks the model about overlapping windows covering the whole video at a coarse
  frame rate (each window shown as a clip of its own, "not present" allowed); moments are mapped back to the
  video's seconds, joined across window borders, and scored by how sure the model was of the answer it wrote
  (exp of its tokens' mean log-probability; it ranked best of the scores tried: experiments/long_scores). The fine
  pass re-asks, at the model's own sampling, windows centred on the best candidates (or on each border of a
  candidate longer than a window) and replaces the coarse borders with the fine ones. A query absent from every
  window is "not present". A caller that scores R@K (eval's `top_k`) asks for a `ranked` list of up to K moments:
  every candidate, NMS-separated, the fine pass refining the best of them within its budget, the answer its head.
- `auto`: `direct` up to `WindowSettings.direct_max_s` seconds, `coarse_to_fine` above.

A strategy is a generator that does no engine I/O: it yields `Ask`s (model requests built by `vtg.request`, plus
what to ask of the engine), is sent each ask's `Completion`s, and returns a `Grounding`. Drivers run strategies on
an engine: `StrategyRunner` on a `vllm.LLM` (eval: many queries stepped together), `arun` on an AsyncLLM (the
server). Video decoding happens inside the generator, so drivers step it off the event loop. See
docs/long-videos.md.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vtg.data.grammar import NOT_PRESENT, clamp_moment, format_moments, iou, parse_answer, split_reasoning
from vtg.errors import UserError

if TYPE_CHECKING:
    from vtg.data.video import DecodeBudget, DecodedVideo
    from vtg.request import ModelRequest, Requests

STRATEGIES = ("direct", "coarse_to_fine", "auto")
SCORES = ("not_present", "likelihood", "agreement")
TOP_LOGPROBS = 20  # vLLM's default max_logprobs: the "not present" token is among them unless it is ~impossible


# ---- settings ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowSettings:
    """How `coarse_to_fine` covers a video. A model folder's `vtg_sampling.json` may hold a `windows` mapping of
    these keys (written by `vtg train` from the recipe's `windows:`); eval configs and requests override them."""

    window_s: float = 60.0  # a window's length: about the clip length the model was trained on
    stride_s: float | None = None  # between window starts; None: 3/4 of window_s (windows overlap by a quarter)
    coarse_fps: float | None = 1.0  # the coarse pass's frame rate; None: the model's own
    candidates: int = 5  # moments a `multi` answer holds (single mode: the best one); a ranked list is not cut by it
    fine_windows: int = 8  # the fine pass's budget: model calls at most (0: no fine pass)
    direct_max_s: float | None = None  # `auto` grounds longer videos by windows; None: 1.5 x window_s
    batch_windows: int = 16  # windows decoded and asked at once: bounds memory, lets other requests in between
    score: str = "likelihood"  # how moments from different windows are ranked (SCORES; experiments/long_scores)
    samples: int = 4  # `agreement` only: sampled answers per window
    min_score: float = 0.5  # a moment scored lower is dropped (with `not_present`: the model's own yes/no at 0.5)

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise UserError(f"windows.window_s must be > 0 seconds, got {self.window_s!r}")
        if self.stride_s is not None and not 0 < self.stride_s <= self.window_s:
            raise UserError(
                f"windows.stride_s must be in (0, window_s={self.window_s:g}] so windows cover the video, "
                f"got {self.stride_s!r}"
            )
        if self.coarse_fps is not None and not self.coarse_fps > 0:
            raise UserError(f"windows.coarse_fps must be > 0 (or null: the model's fps), got {self.coarse_fps!r}")
        for name in ("candidates", "batch_windows", "samples"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise UserError(f"windows.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not (isinstance(self.fine_windows, int) and self.fine_windows >= 0):
            raise UserError(
                f"windows.fine_windows must be an integer >= 0 (0: no fine pass), got {self.fine_windows!r}"
            )
        if self.score not in SCORES:
            raise UserError(f"windows.score must be one of {list(SCORES)}, got {self.score!r}")
        if not 0 <= self.min_score <= 1:
            raise UserError(f"windows.min_score must be in [0, 1], got {self.min_score!r}")

    @property
    def stride(self) -> float:
        return self.stride_s if self.stride_s is not None else 0.75 * self.window_s

    @property
    def direct_max(self) -> float:
        return self.direct_max_s if self.direct_max_s is not None else 1.5 * self.window_s

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, where: str = "windows") -> WindowSettings:
        from vtg.config import ConfigError, build

        try:
            return build(cls, dict(d or {}), f"{where}.")
        except ConfigError as e:
            raise UserError(str(e)) from None

    def updated(self, overrides: dict[str, Any] | None, where: str = "windows") -> WindowSettings:
        return WindowSettings.from_dict({**dataclasses.asdict(self), **(overrides or {})}, where)


def choose(strategy: str, duration: float, settings: WindowSettings) -> str:
    """The strategy `auto` stands for at this duration; others pass through."""
    if strategy not in STRATEGIES:
        raise UserError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    if strategy == "auto":
        return "coarse_to_fine" if duration > settings.direct_max else "direct"
    return strategy


# ---- what strategies and drivers exchange ------------------------------------------------------------------------


@dataclass
class Call:
    """One model request and what to ask of the engine beyond the caller's sampling (None: the caller's)."""

    request: ModelRequest
    n: int | None = None
    temperature: float | None = None
    logprobs: int | None = None


@dataclass
class Ask:
    """A batch of calls a strategy wants answered, with where it stands (for progress reports)."""

    calls: list[Call]
    stage: str  # "direct" | "coarse" | "fine"
    done: int = 0  # windows of this stage answered before this ask
    windows: int = 1  # windows this ask covers (`agreement` makes two calls a window)
    total: int = 1  # windows of this stage in all


@dataclass
class Completion:
    """One sampled answer: its text, token ids, and per position the top log-probabilities (when asked)."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    top_logprobs: list[dict[int, float]] | None = None
    prompt_tokens: int = 0


@dataclass
class Grounding:
    """A strategy's answer: ranked moments in the video's seconds, their scores, and how it was reached. `ranked`
    (with `ranked_scores`) is the longer list a caller asked for to score R@K (`coarse_to_fine(ranked=K)`); the
    answer (`moments`) is its head. None: not asked for, the answer is the whole list."""

    moments: list[tuple[float, float]]
    scores: list[float]
    text: str  # the model's own text (direct, first sample) or the canonical answer for the moments (windowed)
    strategy: str
    reasoning: str | None = None
    samples: list[str] = field(default_factory=list)  # direct: every sample's text
    calls: int = 0
    windows: int = 0  # coarse windows asked
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ranked: list[tuple[float, float]] | None = None  # coarse_to_fine(ranked=K): up to K moments, best first
    ranked_scores: list[float] | None = None  # their scores (the coarse pass's, on one scale)

    @property
    def not_present(self) -> bool:
        return not self.moments


Strategy = Generator[Ask, list[list[Completion]], Grounding]


def ground(
    requests: Requests,
    source: str,
    query: str,
    duration: float,
    strategy: str = "direct",
    settings: WindowSettings | None = None,
    *,
    video: DecodedVideo | None = None,
    samples: int = 1,
    top_k: int = 5,
    nms_iou: float = 0.5,
    ranked: int | None = None,
) -> Strategy:
    """The strategy generator for one question about a local video (`auto` resolved by `duration`). `ranked`: the
    windowed strategy also returns a ranked list of up to that many moments, NMS-separated at `nms_iou`
    (`direct`'s answer, one call, is its own list)."""
    from vtg.data.video import probe_video

    settings = settings or WindowSettings()
    name = choose(strategy, duration, settings)
    if name == "direct":
        return direct(requests, source, query, video=video, samples=samples, top_k=top_k, nms_iou=nms_iou)
    # windows cover the video as its header gives it, not the duration a caller was told (a record's)
    duration = probe_video(source).duration
    return coarse_to_fine(requests, source, query, duration, settings, top_k=top_k, ranked=ranked, nms_iou=nms_iou)


# ---- direct ------------------------------------------------------------------------------------------------------


def direct(
    requests: Requests,
    source: str,
    query: str,
    *,
    video: DecodedVideo | None = None,
    samples: int = 1,
    top_k: int = 5,
    nms_iou: float = 0.5,
) -> Strategy:
    """One call on the whole video; `samples` answers merged into a ranked list (consensus scores + NMS)."""
    from vtg.nms import merge_samples

    video = video if video is not None else requests.video(source)
    request = requests.grounding(source, query, float(video.metadata.duration), video=video)
    (completions,) = yield Ask([Call(request, n=samples)], "direct")
    duration = float(video.metadata.duration)
    texts = [c.text for c in completions]
    per_sample = [_moments_of(t, duration, requests.prompt.mode, requests.prompt.parse) for t in texts]
    merged = merge_samples(per_sample, top_k=top_k, iou_threshold=nms_iou)
    best = merged[0].sample if merged else 0
    return Grounding(
        moments=[(m.start, m.end) for m in merged],
        scores=[round(m.score, 4) for m in merged],
        text=texts[0] if texts else "",
        strategy="direct",
        reasoning=split_reasoning(texts[best])[0] if texts else None,
        samples=texts,
        calls=1,
        prompt_tokens=completions[0].prompt_tokens if completions else 0,
        completion_tokens=sum(len(c.token_ids) for c in completions),
    )


def _moments_of(text: str, duration: float, mode: str, parse=parse_answer) -> list[tuple[float, float]]:
    """A text's moments (read by `parse`: the profile's parser), clamped to the video (emptied ones dropped); single
    mode keeps the first."""
    out = [c for c in (clamp_moment(m, duration) for m in parse(text).normalized()) if c is not None]
    return out[:1] if mode == "single" else out


# ---- coarse to fine ----------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    start: float
    end: float
    score: float


def coarse_to_fine(
    requests: Requests,
    source: str,
    query: str,
    duration: float,
    settings: WindowSettings,
    *,
    top_k: int = 5,
    ranked: int | None = None,
    nms_iou: float = 0.5,
) -> Strategy:
    """See the module docstring. `duration` is the video's, from its header. Every window is asked in `multi` mode
    (so "not present" is an answer it may give); the question's own mode decides how many moments are answered
    (`single`: the best; `multi`: up to `settings.candidates` and `top_k`).

    `ranked=K` also returns the ranked list R@K tables score: every candidate, ranked by score, NMS at `nms_iou`
    (higher-scored first), the first K; the fine pass refines its best within `fine_windows` calls and the rest
    keep their coarse borders. The answer is then the list's head. Without it (the server's way) only the answer's
    candidates are kept, refined and returned, and no NMS runs (the coarse pass's candidates never overlap)."""
    if ranked is not None and not (isinstance(ranked, int) and ranked >= 1):
        raise UserError(f"ranked must be an integer >= 1 (moments in the ranked list), got {ranked!r}")
    if requests.prompt.profile != "vtg":  # windows are judged by "not present" answers: only vtg's prompt offers them
        raise UserError(
            f"profile {requests.prompt.profile!r}: windowed grounding (coarse_to_fine) needs the vtg profile; "
            "ground this video with strategy `direct`"
        )
    from vtg.data.windows import coarse_sampling, plan_windows, read_windows

    mode = requests.prompt.mode
    asking = requests.asking(mode="multi")
    windows = plan_windows(duration, settings.window_s, settings.stride)
    sampling = coarse_sampling(requests.sampling, settings.coarse_fps)
    no_ids = not_present_token_ids(requests.processor)
    tokenizer = getattr(requests.processor, "tokenizer", requests.processor)
    scorer = _Scorer(settings, no_ids, tokenizer.decode)
    found: list[Candidate] = []
    stats = _Tally()
    frames = read_windows(source, windows, sampling, _budget(requests))
    for start in range(0, len(windows), settings.batch_windows):
        batch = [next(frames) for _ in windows[start : start + settings.batch_windows]]
        calls = _coarse_calls(asking, source, query, batch, settings)
        answers = yield Ask(calls, "coarse", done=start, windows=len(batch), total=len(windows))
        stats.add(answers)
        found += scorer.moments(batch, answers)
        del batch
    frames.close()
    join_gap = 1.0 / (settings.coarse_fps or requests.sampling.fps)
    candidates = [c for c in join(found, join_gap) if c.score >= settings.min_score]
    candidates.sort(key=lambda c: (-c.score, c.start))
    answered = 1 if mode == "single" else min(settings.candidates, top_k)
    if ranked is None:
        candidates = candidates[:answered]
    if candidates and settings.fine_windows:  # best first, within the budget: the rest keep their coarse borders
        candidates = yield from _fine_pass(asking, source, query, duration, candidates, settings, stats)
    candidates.sort(key=lambda c: (-c.score, c.start))
    if ranked is not None:  # refined borders may now overlap: NMS before the cut, as R@K tables count
        candidates = rank(candidates, nms_iou, ranked)
    moments = [(round(c.start, 3), round(c.end, 3)) for c in candidates]
    scores = [round(c.score, 4) for c in candidates]
    return Grounding(
        moments=moments[:answered],
        scores=scores[:answered],
        text=format_moments(moments[:answered]) if moments else NOT_PRESENT,
        strategy="coarse_to_fine",
        calls=stats.calls,
        windows=len(windows),
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        ranked=moments if ranked is not None else None,
        ranked_scores=scores if ranked is not None else None,
    )


def _budget(requests: Requests) -> DecodeBudget:
    from vtg.data.video import NO_BUDGET

    return requests.budget or NO_BUDGET


@dataclass
class _Tally:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, answers: list[list[Completion]]) -> None:
        for completions in answers:
            self.calls += 1
            self.prompt_tokens += completions[0].prompt_tokens if completions else 0
            self.completion_tokens += sum(len(c.token_ids) for c in completions)


def _coarse_calls(asking: Requests, source: str, query: str, batch, settings: WindowSettings) -> list[Call]:
    """Per window: the greedy answer with its top log-probabilities; `agreement` adds sampled answers."""
    calls = []
    for w in batch:
        request = asking.grounding(source, query, float(w.metadata.duration), video=w)
        calls.append(Call(request, n=1, temperature=0.0, logprobs=TOP_LOGPROBS))
        if settings.score == "agreement":
            calls.append(Call(request, n=settings.samples, temperature=1.0))
    return calls


@dataclass
class _Scorer:
    settings: WindowSettings
    no_ids: frozenset[int]
    decode: Callable[[list[int]], str]

    def moments(self, batch, answers: list[list[Completion]]) -> list[Candidate]:
        """Each window's greedy moments in the video's seconds, with their score."""
        from vtg.data.windows import to_video

        per_window = 2 if self.settings.score == "agreement" else 1
        out = []
        for k, w in enumerate(batch):
            greedy = answers[k * per_window][0]
            length = float(w.metadata.duration)
            moments = _moments_of(greedy.text, length, "multi")
            if not moments:
                continue
            if self.settings.score == "not_present":
                p = p_not_present(greedy, self.no_ids, answer_start(greedy, self.decode))
                scores = [1.0 - p] * len(moments)
            elif self.settings.score == "likelihood":
                scores = [answer_likelihood(greedy)] * len(moments)
            else:
                sampled = [_moments_of(c.text, length, "multi") for c in answers[k * per_window + 1]]
                scores = [agreement(m, sampled) for m in moments]
            out += [Candidate(*to_video(m, w), s) for m, s in zip(moments, scores)]
        return out


def _fine_pass(asking, source, query, duration, candidates, settings, stats) -> Generator:
    """Re-ask windows at the model's own sampling around each candidate, best first, within the budget."""
    from vtg.data.windows import around, read_windows, to_video

    w_s = settings.window_s
    plans: list[tuple[int, str, Any]] = []  # (candidate, "whole" | "start" | "end", window)
    for i, c in enumerate(candidates):
        fits = c.end - c.start <= 0.8 * w_s  # room for context on both sides
        need = [("whole", (c.start + c.end) / 2)] if fits else [("start", c.start), ("end", c.end)]
        if len(plans) + len(need) > settings.fine_windows:
            break
        plans += [(i, part, around(t, w_s, duration)) for part, t in need]
    if not plans:
        return candidates
    order = sorted(range(len(plans)), key=lambda k: plans[k][2].start)
    videos = dict(zip(order, read_windows(source, [plans[k][2] for k in order], asking.sampling, _budget(asking))))
    calls = [Call(asking.grounding(source, query, float(videos[k].metadata.duration), video=videos[k]), n=1,
                  temperature=0.0) for k in range(len(plans))]  # fmt: skip
    answers = yield Ask(calls, "fine", done=0, windows=len(plans), total=len(plans))
    stats.add(answers)
    refined = [dataclasses.replace(c) for c in candidates]
    for k, (i, part, _) in enumerate(plans):
        v = videos[k]
        fine = [to_video(m, v) for m in _moments_of(answers[k][0].text, float(v.metadata.duration), "multi")]
        _refine(refined[i], part, fine)
    return refined


def _refine(c: Candidate, part: str, fine: list[tuple[float, float]]) -> None:
    """Take the fine pass's border(s) from the fine moment that overlaps the candidate most; none: keep the coarse."""
    touching = [m for m in fine if min(m[1], c.end) - max(m[0], c.start) > 0]
    if not touching:
        return
    best = max(touching, key=lambda m: iou(m, (c.start, c.end)))
    if part in ("whole", "start"):
        c.start = best[0]
    if part in ("whole", "end"):
        c.end = best[1]
    if c.end <= c.start:  # the two borders' windows disagree: keep the wider reading
        c.start, c.end = min(c.start, best[0]), max(c.end, best[1])


def rank(candidates: Sequence[Candidate], nms_iou: float, k: int) -> list[Candidate]:
    """Candidates in rank order, a later one overlapping a kept one at IoU >= `nms_iou` dropped, the first `k` kept
    (vtg.nms's temporal NMS; each candidate's rank stands for the sample number it breaks ties by)."""
    from vtg.nms import ScoredMoment, temporal_nms

    scored = [ScoredMoment(c.start, c.end, c.score, i) for i, c in enumerate(candidates)]
    return [candidates[m.sample] for m in temporal_nms(scored, nms_iou, k)]


def join(moments: Sequence[Candidate], gap: float) -> list[Candidate]:
    """Moments that overlap or lie within `gap` seconds of each other (the same event seen by overlapping or
    neighbouring windows) become one, scored by the best of them."""
    out: list[Candidate] = []
    for m in sorted(moments, key=lambda m: (m.start, m.end)):
        if out and m.start <= out[-1].end + gap:
            last = out[-1]
            last.end, last.score = max(last.end, m.end), max(last.score, m.score)
        else:
            out.append(dataclasses.replace(m))
    return out


# ---- scores ------------------------------------------------------------------------------------------------------


def not_present_token_ids(processor) -> frozenset[int]:
    """Token ids that begin the answer "not present" (alone, or after a space as in `</think> not present`)."""
    tok = getattr(processor, "tokenizer", processor)
    ids = set()
    for text in (NOT_PRESENT, " " + NOT_PRESENT):
        encoded = tok.encode(text, add_special_tokens=False)
        if encoded:
            ids.add(encoded[0])
    return frozenset(ids)


def answer_start(completion: Completion, decode: Callable[[list[int]], str]) -> int:
    """The position of the answer's first token (after a `<think>` block, if any)."""
    if not completion.text.lstrip().startswith("<think>"):
        return 0
    for k in range(1, len(completion.token_ids) + 1):
        if split_reasoning(decode(completion.token_ids[:k]))[1]:
            return k - 1
    return len(completion.token_ids)


def p_not_present(completion: Completion, no_ids: frozenset[int], start: int = 0) -> float:
    """The model's probability of answering "not present" at the answer's first token, position `start` (0 when
    not among the top log-probabilities returned: below the least of them)."""
    top = completion.top_logprobs or []
    k = start
    if k >= len(top):
        return 0.0
    return min(1.0, sum(math.exp(lp) for tid, lp in top[k].items() if tid in no_ids))


def answer_likelihood(completion: Completion) -> float:
    """exp(mean log-probability) of the sampled answer's tokens: how sure the model was of what it wrote."""
    top = completion.top_logprobs or []
    lps = [pos[t] for t, pos in zip(completion.token_ids, top) if t in pos]
    return math.exp(sum(lps) / len(lps)) if lps else 0.0


def agreement(moment: tuple[float, float], sampled: Sequence[Sequence[tuple[float, float]]]) -> float:
    """The share of sampled answers with a moment overlapping `moment` at IoU >= 0.5."""
    if not sampled:
        return 0.0
    return sum(any(iou(moment, m) >= 0.5 for m in s) for s in sampled) / len(sampled)


# ---- drivers -----------------------------------------------------------------------------------------------------


def _completions(output, n: int) -> list[Completion]:
    out = []
    for c in sorted(output.outputs, key=lambda c: c.index)[:n]:
        top = None
        if c.logprobs is not None:
            top = [{tid: lp.logprob for tid, lp in pos.items()} for pos in c.logprobs]
        out.append(Completion(c.text, list(c.token_ids), top, len(output.prompt_token_ids or [])))
    return out


def engine_params(base, call: Call):
    """The caller's vLLM SamplingParams with what a call asks for on top."""
    params = base.clone()
    if call.n is not None:
        params.n = call.n
    if call.temperature is not None:
        params.temperature = call.temperature
    if call.logprobs is not None:
        params.logprobs = call.logprobs
    return params


@dataclass
class Outcome:
    """What a driver returns per question: the grounding, or why there is none; and where the time went."""

    grounding: Grounding | None = None
    error: str | None = None
    engine_s: float = 0.0
    decode_s: float = 0.0


class StrategyRunner:
    """Runs strategies on a `vllm.LLM`: the asks of all running questions pooled into one `generate` per round.

    Strategies are created and stepped (which decodes their videos) in `pool`, so `start` on the next batch
    decodes while `finish` keeps the engine busy with this one. `params(key)` is a question's base SamplingParams.
    A question whose video cannot be read, or whose request the engine refuses, gets an `error`; the others go on.
    """

    def __init__(self, llm, params: Callable[[Any], Any], pool: ThreadPoolExecutor, on_ask=None):
        self.llm, self.params, self.pool, self.on_ask = llm, params, pool, on_ask

    def start(self, strategies: dict[Any, Callable[[], Strategy]]) -> dict[Any, Any]:
        """Create each strategy and take its first ask, in the pool; returns futures of `_Running`."""
        return {key: self.pool.submit(_Running.begin, make) for key, make in strategies.items()}

    def finish(self, started: dict[Any, Any]) -> dict[Any, Outcome]:
        running = {key: f.result() for key, f in started.items()}
        while any(r.ask is not None for r in running.values()):
            active = {k: r for k, r in running.items() if r.ask is not None}
            flat = [(k, call) for k, r in active.items() for call in r.ask.calls]
            if self.on_ask:
                for k, r in active.items():
                    self.on_ask(k, r.ask)
            t0 = time.perf_counter()
            results = _generate_all(self.llm, flat, self.params)
            per_call = (time.perf_counter() - t0) / max(len(flat), 1)
            answers: dict[Any, list] = {k: [] for k in active}
            for (k, _), result in zip(flat, results):
                active[k].outcome.engine_s += per_call
                answers[k].append(result)
            list(self.pool.map(lambda k, a=active, got=answers: a[k].advance(got[k]), active))
        return {k: r.outcome for k, r in running.items()}

    def run(self, strategies: dict[Any, Callable[[], Strategy]]) -> dict[Any, Outcome]:
        return self.finish(self.start(strategies))


class _Running:
    """One question's strategy between rounds: its next ask, or its outcome."""

    def __init__(self) -> None:
        self.gen: Strategy | None = None
        self.ask: Ask | None = None
        self.outcome = Outcome()

    @classmethod
    def begin(cls, make: Callable[[], Strategy]) -> _Running:
        r = cls()
        r._step(lambda: next(r._make(make)))
        return r

    def _make(self, make):
        self.gen = make()
        return self.gen

    def advance(self, answers: list) -> None:
        failed = next((a for a in answers if isinstance(a, str)), None)
        if failed is not None:
            self.outcome.error, self.ask = failed, None
            self.gen.close()
            return
        self._step(lambda: self.gen.send(answers))

    def _step(self, fn) -> None:
        t0 = time.perf_counter()
        try:
            self.ask = fn()
        except StopIteration as done:
            self.ask, self.outcome.grounding = None, done.value
        except (UserError, OSError, ValueError, RuntimeError) as e:
            self.ask, self.outcome.error = None, f"{type(e).__name__}: {e}"
        finally:
            self.outcome.decode_s += time.perf_counter() - t0


def _generate_all(llm, flat: list[tuple[int, Call]], params) -> list:
    """Completions per call; when the engine rejects the batch, call by call, so only the bad ones fail."""
    if not flat:
        return []
    try:
        outs = llm.generate(
            [c.request.vllm_input() for _, c in flat], [engine_params(params(i), c) for i, c in flat], use_tqdm=False
        )
        return [_completions(o, engine_params(params(i), c).n) for (i, c), o in zip(flat, outs)]
    except (ValueError, RuntimeError, TypeError) as e:
        if len(flat) == 1:
            return [f"engine rejected the prompt: {type(e).__name__}: {e}"]
        return [r for item in flat for r in _generate_all(llm, [item], params)]


async def arun(
    strategy: Strategy,
    generate: Callable[[dict, Any], Any],
    base_params,
    *,
    on_ask: Callable[[Ask], None] | None = None,
) -> Grounding:
    """Run one strategy on an async engine: `generate(inputs, params)` is an awaitable for one request's final
    output. Steps (which decode video) run in a worker thread, and so does building the engine inputs of their
    calls (copying a round's frames takes tens of ms: on the event loop it would stall every other request); a
    round's calls run concurrently, and the next round is only asked once they are done, so a long question shares
    the engine with other requests between rounds."""
    import asyncio

    def advance(answers, spent=()):  # StopIteration cannot cross a thread's future: hand the result back instead
        if spent:
            spent.clear()  # the last round's frames are freed here too, not on the event loop
        try:
            ask = strategy.send(answers)
        except StopIteration as done:
            return None, [], done.value
        return ask, [c.request.vllm_input() for c in ask.calls], None

    try:
        ask, inputs, result = await asyncio.to_thread(advance, None)
        while ask is not None:
            if on_ask:
                on_ask(ask)
            calls = zip(inputs, ask.calls)
            outs = await asyncio.gather(*(generate(i, engine_params(base_params, c)) for i, c in calls))
            answers = [_completions(o, engine_params(base_params, c).n) for c, o in zip(ask.calls, outs)]
            del outs
            ask, inputs, result = await asyncio.to_thread(advance, answers, inputs)
        return result
    finally:
        try:
            strategy.close()
        except ValueError:  # cancelled while a step runs in its thread: that step ends on its own
            pass
