"""Typed eval-job config (`recipes/eval/<benchmark>.yaml`); unknown keys are rejected by name.

Relative paths (`records`, `gt`) resolve against the current directory, where the recipe's first-line command runs.
`records` may contain `{split}` (ActivityNet: val_2 by default, `--split val_1` selects the other).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtg.data.grammar import PROMPT_STYLES
from vtg.errors import UserError

FORMATS = ("records", "qvhighlights")


def _check_keys(cls: type, d: dict[str, Any], where: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")


@dataclass
class ScoringConfig:
    threshold_op: str = ">="
    clamp: bool = False
    reversed: str = "swap"

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
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None  # per-request sampling seed: sampled (temperature > 0) runs repeat exactly, resumes too
    batch_size: int = 16  # prompts per engine call; also how often lines are made durable
    decode_workers: int = 2  # threads decoding videos while the engine runs
    sampling: dict[str, Any] = field(default_factory=dict)  # FrameSampling overrides; default: the model's recipe
    vllm: dict[str, Any] = field(default_factory=dict)  # passed to vtg.engine.make_llm (tensor_parallel_size, ...)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise UserError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.format == "qvhighlights" and not self.gt:
            raise UserError("format: qvhighlights needs `gt:` (the QVHighlights ground-truth JSONL)")
        if self.mode not in ("single", "multi"):
            raise UserError(f"mode must be 'single' or 'multi', got {self.mode!r}")
        if self.prompt_style is not None and self.prompt_style not in PROMPT_STYLES:
            raise UserError(
                f"prompt_style must be 'full', 'short' or null (the model's own), got {self.prompt_style!r}"
            )
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.decode_workers < 1:
            raise UserError("max_new_tokens, batch_size and decode_workers must be >= 1")
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0, got {self.temperature}")
        self.scoring.conventions()  # validate early

    @property
    def records_path(self) -> Path:
        return Path(self.records.format(split=self.split))

    @property
    def gt_path(self) -> Path | None:
        return Path(self.gt.format(split=self.split)) if self.gt else None

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> "EvalConfig":
        if not isinstance(d, dict):
            raise UserError(f"{where}: expected a mapping of keys, got {type(d).__name__}")
        _check_keys(cls, d, where)
        d = dict(d)
        for key, sub in (("endpoint", EndpointConfig), ("scoring", ScoringConfig)):
            if key in d:
                if not isinstance(d[key], dict):
                    raise UserError(f"{where}: '{key}' must be a mapping")
                _check_keys(sub, d[key], f"{where}: {key}")
                d[key] = sub(**d[key])
        for key in ("sampling", "vllm"):
            if key in d and not isinstance(d[key], dict):
                raise UserError(f"{where}: '{key}' must be a mapping")
        missing = [k for k in ("benchmark", "records") if k not in d]
        if missing:
            raise UserError(f"{where}: missing key(s) {missing}")
        try:
            return cls(**d)
        except TypeError as e:
            raise UserError(f"{where}: {e}") from None

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> "EvalConfig":
        import yaml

        p = Path(path)
        if not p.exists():
            raise UserError(f"config file not found: {p}")
        try:
            d = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{p}: not valid YAML ({e})") from None
        if isinstance(d, dict):
            d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d, str(p))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
