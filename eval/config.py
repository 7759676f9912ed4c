"""Typed eval-job config (`recipes/eval/<benchmark>.yaml`), loaded by `vtg.config` (unknown keys named).

Relative paths (`records`, `gt`) resolve against the current directory, where the recipe's first-line command runs.
`records` may contain `{split}` (ActivityNet: val_2 by default, `--split val_1` selects the other).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtg.data.grammar import MODES, PROMPT_STYLES
from vtg.errors import UserError

FORMATS = ("records", "qvhighlights")


@dataclass
class ScoringConfig:
    threshold_op: str = ">="
    clamp: bool = False
    reversed: str = "swap"
    official: str | None = None  # also the benchmark's official table, shown first (vtg.eval.official: ego4d_nlq,
    # mad, vue_tr, vue_tr_v2); the conventions above apply to vtg's own metrics only

    def __post_init__(self):
        if self.official is not None:
            from vtg.eval.official import OFFICIAL

            if self.official not in OFFICIAL:
                raise UserError(
                    f"scoring.official must be one of {list(OFFICIAL)} or null (no official table), got "
                    f"{self.official!r}"
                )

    def conventions(self):
        from vtg.eval.metrics import Conventions

        return Conventions(threshold_op=self.threshold_op, clamp=self.clamp, reversed=self.reversed)


@dataclass
class EndpointConfig:
    concurrency: int = 8  # requests in flight; the server batches them
    model: str | None = None  # model name to request; default: the first one the server lists
    api_key_env: str = "VTG_API_KEY"  # environment variable holding the key (never the key itself)
    timeout_s: float = 600.0

    def __post_init__(self):
        if self.concurrency < 1:
            raise UserError(f"endpoint.concurrency must be >= 1, got {self.concurrency}")


@dataclass
class EvalConfig:
    benchmark: str
    records: str
    split: str = ""
    format: str = "records"  # "qvhighlights": also score with the Moment-DETR definitions against `gt`
    gt: str | None = None  # QVHighlights ground-truth file (highlight_val_release.jsonl), read unchanged
    mode: str = "single"  # grammar.grounding_prompt mode: "single" or "multi"
    think: bool = False
    prompt_style: str | None = None  # grammar.grounding_prompt style; None: the model's own (vtg_prompt.json), or
    # "full" against an endpoint (set it to what the served model was trained with)
    profile: str | None = None  # vtg.profiles: how the checkpoint is asked and read (vtg, time-r1, timelens, ...);
    # None: the model's own (vtg_prompt.json), or "vtg" against an endpoint
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None  # per-request sampling seed: sampled (temperature > 0) runs repeat exactly, resumes too
    batch_size: int = 16  # prompts per engine call; also how often lines are made durable
    decode_workers: int = 2  # threads decoding videos while the engine runs
    sampling: dict[str, Any] = field(default_factory=dict)  # FrameSampling overrides; default: the model's recipe
    vllm: dict[str, Any] = field(default_factory=dict)  # passed to vtg.vllm_engine.make_llm (tensor_parallel_size, ...)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    strategy: str = "direct"  # vtg.grounding: direct | coarse_to_fine | auto (coarse_to_fine above the model's
    # direct_max_s); long-video benchmarks set coarse_to_fine; `streaming`: each video replayed as a live stream
    # (vtg.stream, offline only), its events scored too (vtg.eval.streaming)
    windows: dict[str, Any] = field(default_factory=dict)  # WindowSettings keys over the model's (vtg_sampling.json)
    stream: dict[str, Any] = field(default_factory=dict)  # strategy streaming: StreamSettings keys (vtg.stream) over
    # the model's window length and fps
    top_k: int | None = None  # windowed strategies: each line also keeps a ranked list of up to top_k moments for
    # R@K tables (the official MAD and Ego4D-NLQ tables read it); None: the answer only
    nms_iou: float = 0.5  # that list's NMS: a moment overlapping a better one at IoU >= nms_iou is dropped

    def __post_init__(self):
        from vtg.grounding import STRATEGIES

        if self.strategy not in STRATEGIES + ("streaming",):
            raise UserError(f"strategy must be one of {list(STRATEGIES) + ['streaming']}, got {self.strategy!r}")
        if self.stream:
            from vtg.stream import StreamSettings

            known = {f.name for f in dataclasses.fields(StreamSettings)}
            unknown = sorted(set(self.stream) - known)
            if unknown:
                raise UserError(f"stream: unknown key(s) {unknown}; StreamSettings has {sorted(known)}")
        if self.format not in FORMATS:
            raise UserError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.format == "qvhighlights" and not self.gt:
            raise UserError("format: qvhighlights needs `gt:` (the QVHighlights ground-truth JSONL)")
        if self.mode not in MODES:
            raise UserError(f"mode must be 'single' or 'multi', got {self.mode!r}")
        if self.prompt_style is not None and self.prompt_style not in PROMPT_STYLES:
            raise UserError(
                f"prompt_style must be one of {list(PROMPT_STYLES)} or null (the model's own), got "
                f"{self.prompt_style!r}"
            )
        from vtg.profiles import DEFAULT_PROFILE, check_profile

        check_profile(self.profile)
        if self.profile not in (None, DEFAULT_PROFILE) and self.strategy != "direct":
            raise UserError(
                f"profile {self.profile!r} asks one question about the whole video: set strategy: direct "
                f"(windowed strategies need the {DEFAULT_PROFILE} profile)"
            )
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.decode_workers < 1:
            raise UserError("max_new_tokens, batch_size and decode_workers must be >= 1")
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and not (isinstance(self.top_k, int) and self.top_k >= 1):
            raise UserError(f"top_k must be an integer >= 1 (ranked moments per line) or null, got {self.top_k!r}")
        if not 0 < self.nms_iou <= 1:
            raise UserError(f"nms_iou must be in (0, 1] (1: only identical moments are dropped), got {self.nms_iou!r}")
        self.scoring.conventions()  # validate early
        # names and values of the sampling and window overrides, before a model loads (over the defaults: the
        # model's own are checked again when they are combined)
        from vtg.data.video import FrameSampling
        from vtg.grounding import WindowSettings

        FrameSampling().updated(self.sampling, "sampling")
        WindowSettings().updated(self.windows, "windows")

    @property
    def records_path(self) -> Path:
        return Path(self.records.format(split=self.split))

    @property
    def gt_path(self) -> Path | None:
        return Path(self.gt.format(split=self.split)) if self.gt else None

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> EvalConfig:
        from vtg.config import ConfigError, build

        try:
            return build(cls, d)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> EvalConfig:
        """A config file with overrides (None values are "not given")."""
        from vtg.config import load

        return load(cls, path, {k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
