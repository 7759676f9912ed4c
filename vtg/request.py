"""The one request path: a record or an API request → decoded video + chat messages + rendered prompt → engine input.

Every caller that asks a model something goes through here — the SFT collator, GRPO rollouts, curation, eval
(offline and against an endpoint) and the server — so that a model is asked in serving exactly as it was trained:

    GroundingPrompt.messages / .openai_messages   the question, as chat messages (vtg's or OpenAI's wire form)
    Requests.video                                 frames + time metadata, sampled as the model was trained
    Requests.build / .grounding / .record / .chat  messages + videos → a ModelRequest with the rendered prompt
    Requests.hf_inputs                             → transformers processor inputs (training, scoring)
    ModelRequest.vllm_input                        → a vLLM prompt dict (rollouts, eval, serving)

tests/test_request.py checks that one record gives token-identical prompts and identical video tensors through
every caller. See docs/architecture.md#the-request-path.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtg.data.grammar import MODES, PROMPT_STYLES, ParsedAnswer, grounding_prompt, parse_with
from vtg.errors import UserError
from vtg.profiles import DEFAULT_PROFILE, Profile, get_profile, sampling_for

if TYPE_CHECKING:
    from vtg.data.records import Record
    from vtg.data.video import DecodeBudget, DecodedVideo, FrameSampling
    from vtg.model_folder import ModelFolder

VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"


@dataclass(frozen=True)
class GroundingPrompt:
    """How a grounding question is worded and its answer read: `mode` (single | multi), `think`, the prompt `style`
    (full | short) and the `profile` (vtg.profiles: `vtg`, or a released model family's own wording and parser;
    other profiles word a single-moment question of their own, so `mode` and `style` do not change their text)."""

    mode: str = "multi"
    think: bool = False
    style: str = "full"
    profile: str | None = DEFAULT_PROFILE  # None: the default

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.style not in PROMPT_STYLES:
            raise UserError(f"prompt style must be one of {list(PROMPT_STYLES)}, got {self.style!r}")
        object.__setattr__(self, "profile", get_profile(self.profile).name)  # None: the default, `vtg`

    @property
    def _profile(self) -> Profile:
        return get_profile(self.profile)

    def text(self, query: str, duration: float) -> str:
        if self.profile == DEFAULT_PROFILE:
            return grounding_prompt(query, duration, mode=self.mode, think=self.think, style=self.style)
        return self._profile.question(query, duration)

    def suffix(self) -> str:
        """Text the profile puts after the chat template's generation prompt (Time-R1 without thinking)."""
        return self._profile.suffix(self.think)

    def parse(self, text: str | None) -> ParsedAnswer:
        """A completion read by the profile's parser (`vtg`: `grammar.parse_answer`)."""
        return parse_with(self._profile.parser, text)

    def _turns(self, video_part: dict, text: str) -> list[dict]:
        parts = [{"type": "text", "text": text}]
        parts = [*parts, video_part] if self._profile.text_first else [video_part, *parts]
        system = self._profile.system
        return ([{"role": "system", "content": system}] if system is not None else []) + [
            {"role": "user", "content": parts}
        ]

    def messages(self, query: str, duration: float, video: str) -> list[dict]:
        """vtg's chat messages: one user turn, the video (`video`: its path or URL) then the question (the profile
        may add a system turn, or put the question first)."""
        return self._turns({"type": "video", "video": str(video)}, self.text(query, duration))

    def openai_messages(self, query: str, duration: float, video_url: str) -> list[dict]:
        """The same turns in OpenAI's chat-completions form (what `vtg eval --endpoint` sends to a server)."""
        return self._turns({"type": "video_url", "video_url": {"url": video_url}}, self.text(query, duration))


def from_openai(messages: Sequence[dict]) -> tuple[list[dict], list[str]]:
    """OpenAI chat messages → vtg's chat messages and the video URLs they reference, in order (the inverse of
    `GroundingPrompt.openai_messages`; text parts and string contents pass through)."""
    out, urls = [], []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            out.append({"role": m["role"], "content": content})
            continue
        parts = []
        for p in content:
            if p["type"] == "video_url":
                urls.append(p["video_url"]["url"])
                parts.append({"type": "video", "video": urls[-1]})
            else:
                parts.append({"type": "text", "text": p["text"]})
        out.append({"role": m["role"], "content": parts})
    return out, urls


def _without_nulls(message: dict) -> dict:
    """A message without null part keys: messages read back from an Arrow dataset (GRPO's `prompt` column) carry
    every part's keys, and the Qwen chat templates take any part with a `video` key for a video."""
    if isinstance(message["content"], str):
        return message
    return {**message, "content": [{k: v for k, v in p.items() if v is not None} for p in message["content"]]}


def video_sources(messages: Sequence[dict]) -> list[str]:
    """The `video` of each video part of vtg's chat messages, in order."""
    return [
        p["video"]
        for m in messages
        if not isinstance(m["content"], str)
        for p in m["content"]
        if p.get("type") == "video"
    ]


@dataclass
class ModelRequest:
    """One rendered request: its messages, the prompt text (one video placeholder per video) and the videos."""

    messages: list[dict]
    prompt: str
    videos: list[DecodedVideo] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        """The video's duration when the request has exactly one video (moments are clamped to it)."""
        return float(self.videos[0].metadata.duration) if len(self.videos) == 1 else None

    def vllm_input(self) -> dict[str, Any]:
        """A vLLM prompt dict: text, the (frames, metadata) pairs, and processor kwargs that keep frames as sampled."""
        if not self.videos:
            return {"prompt": self.prompt}
        from vtg.vllm_engine import presampled_kwargs

        return {
            "prompt": self.prompt,
            "multi_modal_data": {"video": [v.vllm_video() for v in self.videos]},
            "mm_processor_kwargs": presampled_kwargs(),
        }


@dataclass(frozen=True)
class Requests:
    """Builds the requests of one model: its processor (chat template), frame sampling and grounding prompt."""

    processor: Any
    sampling: FrameSampling
    prompt: GroundingPrompt = GroundingPrompt()
    budget: DecodeBudget | None = None  # what decoding one video may cost (the server's limits); None: no limit

    @classmethod
    def for_model(
        cls,
        model: str | Path | ModelFolder,
        *,
        mode: str = "multi",
        think: bool = False,
        style: str | None = None,
        sampling: FrameSampling | None = None,
        processor: Any = None,
        profile: str | None = DEFAULT_PROFILE,
    ) -> Requests:
        """Requests for a model folder: its processor, its sampling and prompt style unless given. A `profile` other
        than `vtg` (vtg.profiles) words the question and samples frames as that model family's own code does."""
        from vtg.model_folder import ModelFolder

        folder = model if isinstance(model, ModelFolder) else ModelFolder.read(model)
        return cls(
            processor=processor if processor is not None else folder.processor(),
            sampling=sampling or sampling_for(folder, profile),
            prompt=GroundingPrompt(mode=mode, think=think, style=style or folder.prompt_style, profile=profile),
        )

    def asking(self, **prompt_fields: Any) -> Requests:
        """The same requests with other prompt settings (`mode`, `think`, `style`, `profile`)."""
        return dataclasses.replace(self, prompt=dataclasses.replace(self.prompt, **prompt_fields))

    # ---- building ----------------------------------------------------------------------------------------------

    def video(self, source: str) -> DecodedVideo:
        """Decode (cached) a video the way this model was trained to see it."""
        from vtg.data.video import NO_BUDGET, read_video_cached

        return read_video_cached(source, self.sampling, self.budget or NO_BUDGET)

    def render(self, messages: Sequence[dict]) -> str:
        """The prompt text from the model's own chat template, ready for the assistant's answer."""
        return self.processor.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def build(self, messages: Sequence[dict], videos: Sequence[DecodedVideo], suffix: str = "") -> ModelRequest:
        """A request for chat messages whose video parts are `videos`, in order (`suffix`: text after the generation
        prompt, which the answer continues)."""
        messages = [_without_nulls(m) for m in messages]
        prompt = self.render(messages) + suffix
        n = prompt.count(VIDEO_PLACEHOLDER)
        if n != len(videos):
            raise ValueError(
                f"the prompt has {n} video placeholder(s) {VIDEO_PLACEHOLDER!r} but {len(videos)} "
                "video(s) were given: build it from chat messages with one video part per video"
            )
        return ModelRequest(messages=list(messages), prompt=prompt, videos=list(videos))

    def chat(self, messages: Sequence[dict]) -> ModelRequest:
        """A request for vtg's chat messages, decoding the video of each video part."""
        return self.build(messages, [self.video(src) for src in video_sources(messages)])

    def grounding(self, source: str, query: str, duration: float, video: DecodedVideo | None = None) -> ModelRequest:
        """The grounding question about the video at `source` (`video`: its frames, when already decoded)."""
        video = video if video is not None else self.video(source)
        return self.build(self.prompt.messages(query, duration, source), [video], self.prompt.suffix())

    def record(
        self, record: Record | dict, root: str | Path | None = None, video: DecodedVideo | None = None
    ) -> ModelRequest:
        """The grounding question of a record (a `Record`, or a training row whose `video` is already absolute)."""
        if isinstance(record, dict):
            return self.grounding(record["video"], record["query"], float(record["duration"]), video)
        return self.grounding(record.video_path(root), record.query, record.duration, video)

    # ---- transformers ------------------------------------------------------------------------------------------

    def hf_inputs(self, requests: ModelRequest | Sequence[ModelRequest], answers: str | Sequence[str] = ""):
        """transformers processor inputs (torch tensors) for one request or a batch, each prompt followed by its
        answer text (training targets; "" to generate). The frames' metadata always reaches the processor, and
        frames are neither resampled nor resized again. Batches are padded on the tokenizer's padding side."""
        from vtg import hf_fixes

        hf_fixes.apply()  # Qwen2.5-VL positions as vLLM and the reference compute them (see vtg.hf_fixes)
        batch = [requests] if isinstance(requests, ModelRequest) else list(requests)
        answers = [answers] * len(batch) if isinstance(answers, str) else list(answers)
        if len(answers) != len(batch):
            raise ValueError(f"hf_inputs: {len(batch)} request(s) but {len(answers)} answer(s)")
        merged: dict[str, Any] = {}
        for req in batch:
            if not req.videos:
                raise UserError("hf_inputs: a request without a video; vtg trains and scores video requests only")
            for v in req.videos:
                for key, value in v.hf_processor_kwargs().items():
                    if isinstance(value, list):
                        merged.setdefault(key, []).extend(value)
                    else:
                        merged[key] = value
        texts = [req.prompt + answer for req, answer in zip(batch, answers)]
        return self.processor(text=texts, return_tensors="pt", padding=len(texts) > 1, **merged)


def request_seed(seed: int | None, rid: str) -> int | None:
    """Per-query sampling seed from a run's seed and the query's id: a query samples the same text whatever its
    batch, shard or position, so resumed and sharded runs reproduce an uninterrupted one."""
    return None if seed is None else (seed + zlib.crc32(rid.encode())) % 2**31
