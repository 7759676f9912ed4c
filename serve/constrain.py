"""Optional constrained decoding: a regular expression of the canonical answer grammar (`vtg.data.grammar`), handed
to vLLM's structured outputs so that even a weak model's samples always parse. Off by default (`constrained` per
request, or `constrain_answers` in the serve recipe); tests assert that every string matching it parses strictly.
"""

from __future__ import annotations

from vtg.data.grammar import NOT_PRESENT, THINK_CLOSE, THINK_OPEN


def int_upto(n: int) -> str:
    """Regex of the integers 0..n (no leading zeros), so constrained times stay inside the video."""
    digits = str(int(n))
    alts = ["[0-9]"] if len(digits) > 1 else []
    alts += [f"[1-9][0-9]{{{m - 1}}}" for m in range(2, len(digits))]
    alts.append(_same_len(digits, 1 if len(digits) > 1 else 0))
    return "(" + "|".join(alts) + ")"


def _same_len(s: str, low: int) -> str:
    """Numbers with len(s) digits, first digit >= low, <= s."""
    d, rest = int(s[0]), s[1:]
    alts = [f"[{low}-{d - 1}]" + "[0-9]" * len(rest)] if d > low else []
    alts.append(s[0] + (_same_len(rest, 0) if rest else ""))
    return "(" + "|".join(alts) + ")"


def _one(duration: float | None) -> str:
    num = (int_upto(int(duration)) if duration is not None else "[0-9]{1,4}") + r"\.[0-9]"
    return rf"starts at {num}s, ends at {num}s"


def answer_regex(
    mode: str, think: bool, max_moments: int = 5, max_think_chars: int = 200, duration: float | None = None
) -> str:
    """Regex of one canonical completion: optional `<think>…</think> ` then the answer for `mode`.
    With `duration`, times are bounded by it (integer part <= the duration's)."""
    one = _one(duration)
    if mode == "single":
        answer = one
    else:
        answer = rf"({one}(; {one}){{0,{max(max_moments - 1, 0)}}}|{NOT_PRESENT})"
    if not think:
        return answer
    return rf"{THINK_OPEN}[a-zA-Z0-9 ,.]{{1,{max_think_chars}}}{THINK_CLOSE} {answer}"


def structured(mode: str, think: bool, max_moments: int, duration: float | None, max_tokens: int):
    """vLLM structured-output params; the reasoning is capped so that the answer still fits in `max_tokens`
    (a token is at least one character; an answer needs about 32 characters a moment)."""
    from vllm.sampling_params import StructuredOutputsParams

    answer_chars = 32 * (1 if mode == "single" else max_moments) + 16
    think_chars = max(4, min(200, max_tokens - answer_chars))
    return StructuredOutputsParams(regex=answer_regex(mode, think, max_moments, think_chars, duration))
