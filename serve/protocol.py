"""Request and response models of the HTTP API (OpenAI chat completions + our grounding endpoint).

Requests are validated here, before any media is touched or the engine sees them; a validation failure becomes a
400 with the OpenAI error envelope naming the offending field (see `errors.py`).
Extra response fields (`moments`, `reasoning`) ride along in OpenAI's objects: the `openai` client keeps them.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _unicode_text(cls, v):
        """Text must be valid Unicode: JSON can spell a lone surrogate (\\ud800), which no tokenizer accepts."""
        for text in v if isinstance(v, list) else (v,):
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise ValueError(
                        f"not valid Unicode text: a lone surrogate U+{ord(text[e.start]):04X} at character {e.start}"
                    ) from None
        return v


# ---- chat messages ---------------------------------------------------------------------------------------------


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class VideoURL(_Strict):
    url: str = Field(min_length=1, max_length=4096)


class VideoPart(_Strict):
    type: Literal["video_url"]
    video_url: VideoURL


ContentPart = Annotated[TextPart | VideoPart, Field(discriminator="type")]


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _known_parts(cls, v):
        # Name the unknown part type ourselves: pydantic's union error is long and unclear.
        if isinstance(v, list):
            for i, part in enumerate(v):
                t = part.get("type") if isinstance(part, dict) else None
                if t not in ("text", "video_url"):
                    raise ValueError(f"content[{i}]: unknown content part type {t!r}; expected 'text' or 'video_url'")
        return v

    def videos(self) -> list[str]:
        return (
            [p.video_url.url for p in self.content if isinstance(p, VideoPart)]
            if isinstance(self.content, list)
            else []
        )

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))


class StreamOptions(_Strict):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class SamplingFields(_Strict):
    """Sampling parameters shared by both endpoints; ranges are checked here (bad values → 400)."""

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    max_tokens: int | None = Field(default=None, ge=1)


class StructuredOutputsIn(_Strict):
    """vLLM's `structured_outputs` extension (subset): constrain decoding to a regex or a choice list."""

    regex: str | None = Field(default=None, max_length=4000)
    choice: list[str] | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.regex is None) == (self.choice is None):
            raise ValueError("structured_outputs: give exactly one of 'regex' or 'choice'")
        return self


Strategy = Literal["direct", "coarse_to_fine", "auto"]


class WindowsIn(_Strict):
    """Per-request window settings for `coarse_to_fine` (vtg.grounding.WindowSettings keys a client may set);
    unset keys are the server's. The number of windows is capped by `limits.max_windows`."""

    window_s: float | None = Field(default=None, gt=0)
    stride_s: float | None = Field(default=None, gt=0)
    coarse_fps: float | None = Field(default=None, gt=0)
    candidates: int | None = Field(default=None, ge=1, le=100)
    fine_windows: int | None = Field(default=None, ge=0, le=100)
    score: Literal["not_present", "likelihood", "agreement"] | None = None
    samples: int | None = Field(default=None, ge=1)
    min_score: float | None = Field(default=None, ge=0, le=1)


class GroundingFields(_Strict):
    """How a question is grounded (vtg.grounding): shared by /v1/grounding and, as an extension, chat completions."""

    strategy: Strategy | None = Field(
        default=None,
        description="direct (one call), coarse_to_fine (windows), auto (coarse_to_fine above the model's "
        "direct_max_s); default: the server's grounding_strategy",
    )
    windows: WindowsIn | None = None
    time_budget_s: float | None = Field(
        default=None, gt=0, description="windowed grounding: seconds this request may take (<= limits.max_grounding_s)"
    )


class ChatCompletionRequest(SamplingFields):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1)
    top_k: int | None = Field(default=None, ge=-1)  # sampling top-k, as vLLM's extension
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    user: str | None = None
    structured_outputs: StructuredOutputsIn | None = None
    # vtg extension: the video's duration is told to the model by the prompt; clamp parsed moments to it.
    clamp_moments: bool = True
    # vtg extension: ground `query` in the request's one video with a strategy (the server words the question as
    # the model was trained, as /v1/grounding does); without `grounding`, the messages are sent as they are.
    grounding: ChatGrounding | None = None

    @model_validator(mode="after")
    def _one_user_turn(self):
        if self.messages[-1].role != "user":
            raise ValueError("messages: the last message must have role 'user'")
        return self

    def token_budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def video_urls(self) -> list[str]:
        return [u for m in self.messages for u in m.videos()]


class ChatGrounding(GroundingFields):
    query: str | None = Field(default=None, max_length=2000, description="default: the last user message's text")
    mode: Literal["single", "multi"] = "multi"
    think: bool | None = None


class GroundingRequest(SamplingFields, GroundingFields):
    model: str | None = None
    video: str = Field(min_length=1, max_length=4096, description="file:// URL or path under an allowed root")
    query: str = Field(min_length=1, max_length=2000)
    mode: Literal["single", "multi"] = "multi"
    # Here `top_k` is the number of ranked moments returned (R@K style), not the sampling top-k.
    top_k: int = Field(default=5, ge=1, le=100, description="ranked moments to return")
    samples: int | None = Field(default=None, ge=1, description="candidate generations merged by NMS")
    think: bool | None = None
    constrained: bool | None = Field(default=None, description="decode under the answer grammar (always parses)")

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query is blank")
        return v


# ---- responses -------------------------------------------------------------------------------------------------


class MomentOut(BaseModel):
    start: float
    end: float
    score: float


class UsageInfo(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    finish_reason: str | None = None
    logprobs: None = None
    moments: list[MomentOut] = []
    reasoning: str | None = None
    not_present: bool = False


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: _id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: UsageInfo


class DeltaMessage(BaseModel):
    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    finish_reason: str | None = None
    logprobs: None = None
    moments: list[MomentOut] | None = None  # on the last chunk of each choice
    reasoning: str | None = None
    not_present: bool | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageInfo | None = None


class GroundingSample(BaseModel):
    text: str
    moments: list[list[float]]
    not_present: bool
    parsed: bool


class GroundingResponse(BaseModel):
    id: str = Field(default_factory=lambda: _id("grd"))
    object: Literal["grounding"] = "grounding"
    model: str
    video: str
    duration: float
    query: str
    mode: str
    moments: list[MomentOut]
    reasoning: str | None
    not_present_score: float = Field(
        description="direct: share of samples that answered 'not present'; windowed: 1 - the best moment's score"
    )
    samples: list[GroundingSample]
    usage: UsageInfo
    strategy: str = "direct"
    calls: int = 1  # model calls made
    windows: int = 0  # coarse windows asked (windowed strategies)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "vtg"
    root: str | None = None
    parent: str | None = None
    prompt_style: str | None = None  # vtg extension: the grounding prompt style the model was trained with
    profile: str | None = None  # vtg extension: how the checkpoint is asked and read (vtg.profiles)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int | str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


class VideoEntry(BaseModel):
    url: str
    name: str
    root: str
    bytes: int
    media_url: str = Field(description="where the page loads it from (signed for a short time when a key is set)")


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VideoEntry]


# ---- live streams (docs/serving.md#streams) --------------------------------------------------------------------


class StreamQueryIn(_Strict):
    id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    text: str = Field(min_length=1, max_length=2000)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query text is blank")
        return v


class StreamSessionIn(_Strict):
    queries: list[StreamQueryIn] = Field(default_factory=list, max_length=64)
    options: dict[str, Any] = Field(default_factory=dict, description="vtg.stream.StreamSettings keys")


class _ClientEvent(_Strict):
    event_id: str | None = Field(default=None, max_length=128, description="echoed by an error about this event")


class SessionCreate(_ClientEvent):
    type: Literal["session.create"]
    session: StreamSessionIn = Field(default_factory=StreamSessionIn)


class QueryAdd(_ClientEvent):
    type: Literal["query.add"]
    query: StreamQueryIn


class QueryRemove(_ClientEvent):
    type: Literal["query.remove"]
    query_id: str = Field(min_length=1, max_length=64)


class FrameIn(_Strict):
    image: str = Field(min_length=1, description="a JPEG or PNG image, base64 (or a data: URL)")
    media_time: float = Field(ge=0, allow_inf_nan=False, description="seconds from the stream's start")


class FrameAppend(_ClientEvent):
    type: Literal["frame.append"]
    frame: FrameIn


class SessionClose(_ClientEvent):
    type: Literal["session.close"]


CLIENT_EVENT_TYPES = ("session.create", "query.add", "query.remove", "frame.append", "session.close")
ClientEvent = Annotated[
    SessionCreate | QueryAdd | QueryRemove | FrameAppend | SessionClose, Field(discriminator="type")
]
CLIENT_EVENTS: TypeAdapter = TypeAdapter(ClientEvent)


class StreamReadRequest(_Strict):
    """`POST /v1/streams/read`: the server reads `source` itself and sends the session's events as SSE."""

    source: str = Field(min_length=1, max_length=4096, description="file:// URL, path under a media root, http(s)")
    queries: list[StreamQueryIn] = Field(min_length=1, max_length=64)
    options: dict[str, Any] = Field(default_factory=dict, description="vtg.stream.StreamSettings keys")
    realtime: bool = Field(
        default=False,
        description="pace the file at its own speed (windows are skipped when the model falls behind); false: as "
        "fast as the model answers, no window skipped",
    )


ChatCompletionRequest.model_rebuild()  # its `grounding` field names a model defined after it
