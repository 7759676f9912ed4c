"""Optional constrained decoding: a regular expression of the canonical answer grammar (`vtg.data.grammar`), handed
to vLLM's structured outputs so that even a weak model's samples always parse. Off by default (`constrained` per
request, or `constrain_answers` in the serve recipe); tests assert that every string matching it parses strictly.
"""

from __future__ import annotations

from vtg.data.grammar import NOT_PRESENT, THINK_CLOSE, THINK_OPEN

_NUM = r"[0-9]{1,4}\.[0-9]"
_ONE = rf"starts at {_NUM}s, ends at {_NUM}s"


def answer_regex(mode: str, think: bool, max_moments: int = 5, max_think_chars: int = 200) -> str:
    """Regex of one canonical completion: optional `<think>…</think> ` then the answer for `mode`."""
    if mode == "single":
        answer = _ONE
    else:
        answer = rf"({_ONE}(; {_ONE}){{0,{max(max_moments - 1, 0)}}}|{NOT_PRESENT})"
    if not think:
        return answer
    return rf"{THINK_OPEN}[a-zA-Z0-9 ,.]{{1,{max_think_chars}}}{THINK_CLOSE} {answer}"


def structured(mode: str, think: bool, max_moments: int = 5):
    from vllm.sampling_params import StructuredOutputsParams

    return StructuredOutputsParams(regex=answer_regex(mode, think, max_moments))
