"""Splitting a completion into reasoning and answer *while it streams*.

`vtg.data.grammar.split_reasoning` works on a finished text; a stream needs the same split decided chunk by chunk,
without emitting a half-written `<think>` tag as content. Rule (prefix-stable, so streamed pieces concatenate to
exactly the non-streamed split): if the completion, leading whitespace aside, opens with `<think>`, everything up to
`</think>` is reasoning and the rest (leading whitespace dropped) is the answer; otherwise it is all answer. The
non-streamed path runs the same splitter over the whole text, so both paths agree by construction.
"""

from __future__ import annotations

from vtg.data.grammar import THINK_CLOSE, THINK_OPEN


class ReasoningSplitter:
    def __init__(self) -> None:
        self._buf = ""  # text not yet emitted (a possible tag prefix)
        self._state = "start"  # start -> reasoning -> answer_lead -> answer | start -> answer
        self.reasoning = ""
        self.answer = ""

    def feed(self, delta: str) -> tuple[str, str]:
        """Add generated text; return (reasoning_delta, answer_delta) safe to emit now."""
        self._buf += delta
        r, a = self._drain(final=False)
        self.reasoning += r
        self.answer += a
        return r, a

    def finish(self) -> tuple[str, str]:
        r, a = self._drain(final=True)
        self.reasoning += r
        self.answer += a
        return r, a

    def _drain(self, final: bool) -> tuple[str, str]:
        r_out = a_out = ""
        while True:
            if self._state == "start":
                s = self._buf.lstrip()
                if s.startswith(THINK_OPEN):
                    self._buf, self._state = s[len(THINK_OPEN) :], "reasoning"
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


def split_completion(text: str) -> tuple[str | None, str]:
    """(reasoning or None, answer) of a finished completion, by the streaming rule."""
    sp = ReasoningSplitter()
    sp.feed(text)
    sp.finish()
    return (sp.reasoning if _opened(text) else None), sp.answer


def _opened(text: str) -> bool:
    return text.lstrip().startswith(THINK_OPEN)
