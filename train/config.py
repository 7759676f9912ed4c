"""Typed training recipes: YAML files + `--key value` overrides → `SFTRecipe` / `GRPORecipe`.

A recipe is checked when it is built, before any model loads: an unknown key names the close matches, and impossible
arithmetic (generation batch vs `num_generations`, video tokens + completion vs `max_length`) says how to fix it.
Nested sections: `sampling` (qwen-vl-utils frame keys → `vtg.data.video.FrameSampling`), `lora`, `rewards`
(GRPO: `{name: weight}`). Overrides use dotted keys for sections: `--lora.r 8`, `--sampling.fps 1`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from vtg.data.grammar import PROMPT_STYLES
from vtg.errors import UserError

# Language-model projection names of Qwen2.5-VL / Qwen3-VL. Targeted through a regex anchored on the language
# model, because `gate_proj/up_proj/down_proj` also exist in the Qwen2.5-VL vision MLP (DESIGN.md §8).
LM_LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPT_TEXT_TOKENS = 96  # the chat template + grounding prompt around the video, a safe upper bound for the check


class RecipeError(UserError, ValueError):
    """A recipe that cannot run; the message names the key and how to fix it."""


@dataclass
class LoraSection:
    enabled: bool = True
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LM_LORA_MODULES))

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise RecipeError(f"lora.r must be > 0, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise RecipeError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise RecipeError("lora.target_modules is empty; list the language-model projections to adapt")


@dataclass
class TrainRecipe:
    """Settings shared by SFT and GRPO. Paths are resolved by the caller (relative to the working directory)."""

    model: str = ""
    train_file: str = ""
    output_dir: str = "outputs/run"
    eval_file: str | None = None
    max_samples: int | None = None  # first N training records (smoke runs)
    sampling: dict[str, Any] = field(default_factory=dict)  # FrameSampling keys; the model's own recipe when empty
    video_cache_mb: int = 0  # keep decoded frames up to this many MB per process (and per data-loader worker, for
    # one epoch unless they persist), so later epochs skip decoding; 0: only the last 8 videos stay decoded
    vision_feature_cache_mb: int = 0  # keep the frozen vision tower's features (before the merger) per video up to
    # this many MB per process, so each video's tower forward runs once (Qwen2.5-VL; needs freeze_vision)
    mode: str = "multi"  # grounding prompt mode: "multi" (0..n moments) or "single"
    think: bool = False  # ask for / train on <think> reasoning
    prompt_style: str | None = None  # "full" or "short" (vtg.data.grammar); None: the model's own (vtg_prompt.json)
    tuning: str = "lora"  # "lora" or "full"
    lora: LoraSection = field(default_factory=LoraSection)
    train_merger: bool = False  # unfreeze the vision merger (projector); the rest of the vision tower stays frozen
    freeze_vision: bool = True
    learning_rate: float = 1e-5
    merger_learning_rate: float | None = None  # the merger's own rate (LLaVA's mm_projector_lr); None: learning_rate
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    precision: str = "auto"  # "auto" (bf16 on GPU, fp32 on CPU), "bf16", "fp32"
    max_length: int = 4096  # prompt (video included) + answer tokens
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    seed: int = 0
    deepspeed: str | None = None  # a DeepSpeed JSON/YAML config (or set by `accelerate launch --config_file`)
    report_to: str = "none"
    dataloader_num_workers: int = 0
    resume: bool = False  # continue from the last checkpoint-N in output_dir (after a crash or a kill)
    video_check_every: int = 0  # every N steps (and at step 0) log the answer loss of a few training records with
    # their frames in order vs shuffled in time: a gap near 0 says the model ignores the video (train/video_check.py)
    video_check_records: int = 16

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = _build(LoraSection, self.lora, "lora.")
        if self.mode not in ("multi", "single"):
            raise RecipeError(f"mode must be 'multi' or 'single', got {self.mode!r}")
        if self.prompt_style is not None and self.prompt_style not in PROMPT_STYLES:
            raise RecipeError(
                f"prompt_style must be one of {', '.join(map(repr, PROMPT_STYLES))} or null (the "
                f"model's own), got {self.prompt_style!r}"
            )
        if self.tuning not in ("lora", "full"):
            raise RecipeError(f"tuning must be 'lora' or 'full', got {self.tuning!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise RecipeError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        for key in (
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "max_length",
            "save_steps",
            "logging_steps",
        ):
            if getattr(self, key) <= 0:
                raise RecipeError(f"{key} must be > 0, got {getattr(self, key)}")
        if self.video_check_every < 0:
            raise RecipeError(f"video_check_every must be >= 0 (0: off), got {self.video_check_every}")
        if self.video_check_records <= 0:
            raise RecipeError(f"video_check_records must be > 0, got {self.video_check_records}")
        if self.video_cache_mb < 0:
            raise RecipeError(
                f"video_cache_mb must be >= 0 (0: only the last few videos stay decoded), got {self.video_cache_mb}"
            )
        if self.vision_feature_cache_mb < 0:
            raise RecipeError(f"vision_feature_cache_mb must be >= 0 (0: off), got {self.vision_feature_cache_mb}")
        if self.vision_feature_cache_mb and not self.freeze_vision:
            raise RecipeError(
                "vision_feature_cache_mb keeps the frozen vision tower's features, but freeze_vision is "
                "false (the tower trains): set vision_feature_cache_mb: 0, or freeze_vision: true"
            )
        if self.learning_rate <= 0:
            raise RecipeError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.merger_learning_rate is not None:
            if not self.merger_learning_rate > 0:
                raise RecipeError(
                    f"merger_learning_rate must be > 0 (or null: learning_rate), got {self.merger_learning_rate!r}"
                )
            if self.freeze_vision and not self.train_merger:
                raise RecipeError(
                    "merger_learning_rate is set but the merger does not train (freeze_vision: true, "
                    "train_merger: false): set train_merger: true, or drop merger_learning_rate"
                )
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise RecipeError("set max_steps > 0 or num_train_epochs > 0")
        if not isinstance(self.sampling, dict):
            raise RecipeError(f"sampling must be a mapping of frame-sampling keys, got {self.sampling!r}")
        self.frame_sampling()  # unknown sampling keys fail here, at load time

    # ---- derived values -----------------------------------------------------------------------------------------

    def frame_sampling(self):
        """The `FrameSampling` this recipe asks for (defaults filled in); unknown keys raise naming them."""
        from vtg.data.video import FrameSampling

        base: dict[str, Any] = {}
        if self.model and (Path(self.model) / "config.json").is_file():
            from vtg.engine import sampling_for_model

            base = sampling_for_model(self.model).to_dict()  # the model's own recipe (or its family's default)
            base.pop("nframes" if "fps" in self.sampling else "fps", None)
        try:
            return FrameSampling.from_dict({**base, **self.sampling}, where="sampling")
        except UserError as e:
            raise RecipeError(f"sampling: {e}") from None

    def resolved_prompt_style(self) -> str:
        """The grounding prompt style to train with: the recipe's, else the one the model was trained with."""
        if self.prompt_style is not None:
            return self.prompt_style
        if self.model and Path(self.model).is_dir():
            from vtg.engine import prompt_style_for_model

            return prompt_style_for_model(self.model)
        return "full"

    @property
    def world_size(self) -> int:
        return int(os.environ.get("WORLD_SIZE", "1"))

    def use_bf16(self) -> bool:
        if self.precision == "auto":
            import torch

            return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return self.precision == "bf16"

    def max_video_tokens(self) -> int:
        """Upper bound of the video's tokens: (max_frames / temporal patch 2) × merged patches per frame pair,
        with qwen-vl-utils' per-frame budget (DESIGN.md §7), capped by total_pixels when set."""
        from vtg.data.video import VIDEO_MAX_TOKEN_NUM, VIDEO_MIN_TOKEN_NUM

        s = self.frame_sampling()
        f2 = s.image_factor**2
        per_frame = s.max_pixels if s.max_pixels is not None else VIDEO_MAX_TOKEN_NUM * f2
        per_frame = max(per_frame, s.min_pixels if s.min_pixels is not None else VIDEO_MIN_TOKEN_NUM * f2)
        frames = s.nframes if s.nframes is not None else s.max_frames
        tokens = (frames // 2) * int(per_frame // f2)
        if s.total_pixels:
            tokens = min(tokens, int(s.total_pixels // f2))
        return tokens

    def answer_tokens(self) -> int:
        return 64 if not self.think else 256

    def check_lengths(self) -> None:
        need = self.max_video_tokens() + PROMPT_TEXT_TOKENS + self.answer_tokens()
        if need > self.max_length:
            s = self.frame_sampling()
            raise RecipeError(
                f"max_length {self.max_length} is too small: up to {self.max_video_tokens()} video tokens "
                f"(max_frames {s.max_frames} / 2 × per-frame pixels / {s.image_factor}²"
                f"{f', capped by total_pixels {s.total_pixels}' if s.total_pixels else ''}) + {PROMPT_TEXT_TOKENS} "
                f"prompt + {self.answer_tokens()} answer tokens = {need}. Raise max_length to ≥ {need}, or lower "
                "sampling.max_frames / sampling.max_pixels / sampling.total_pixels."
            )


@dataclass
class SFTRecipe(TrainRecipe):
    learning_rate: float = 2e-5
    completion_only_loss: bool = True  # loss on the assistant answer only

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_lengths()


@dataclass
class GRPORecipe(TrainRecipe):
    learning_rate: float = 1e-6
    rewards: dict[str, float] = field(default_factory=lambda: {"tiou_v2": 1.0, "format": 1.0})
    num_generations: int = 8
    max_completion_length: int = 200
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.04
    epsilon: float = 0.2
    num_iterations: int = 1
    loss_type: str = "grpo"
    scale_rewards: str = "group"
    use_vllm: bool = True  # vLLM colocated rollouts; False = HF generate (slow, for debugging / no vLLM)
    vllm_gpu_memory_utilization: float = 0.3  # on CPU: the KV-cache share of RAM (DESIGN.md §8)
    vllm_max_model_len: int | None = None  # default: max_length
    log_completions: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        from vtg.train.rewards import REWARDS

        if not isinstance(self.rewards, dict) or not self.rewards:
            raise RecipeError(
                f"rewards must map reward names to weights, e.g. {{tiou_v2: 1.0, format: 1.0}}; got {self.rewards!r}"
            )
        for name, w in self.rewards.items():
            if name not in REWARDS:
                close = difflib.get_close_matches(name, REWARDS, n=3)
                raise RecipeError(
                    f"rewards: unknown reward {name!r}"
                    f"{f' (did you mean {close}?)' if close else ''}; known: {sorted(REWARDS)}"
                )
            if not isinstance(w, (int, float)):
                raise RecipeError(f"rewards.{name}: weight must be a number, got {w!r}")
        if self.num_generations < 2:
            raise RecipeError(
                f"num_generations must be ≥ 2 (GRPO compares completions within a group), got {self.num_generations}"
            )
        if self.max_completion_length <= 0:
            raise RecipeError(f"max_completion_length must be > 0, got {self.max_completion_length}")
        if self.temperature <= 0:
            raise RecipeError(f"temperature must be > 0 for sampled rollouts, got {self.temperature}")
        self.check_batch()
        self.check_lengths()

    def answer_tokens(self) -> int:
        return self.max_completion_length

    def check_batch(self) -> None:
        batch = self.per_device_train_batch_size * self.gradient_accumulation_steps * self.world_size
        if batch % self.num_generations:
            ok = [g for g in range(2, batch + 1) if batch % g == 0]
            raise RecipeError(
                f"the generation batch per_device_train_batch_size {self.per_device_train_batch_size} × "
                f"gradient_accumulation_steps {self.gradient_accumulation_steps} × world size {self.world_size} = "
                f"{batch} is not divisible by num_generations {self.num_generations}: each prompt's group of "
                f"completions must fit in one batch. Make the product a multiple of {self.num_generations}"
                f"{f', or set num_generations to one of {ok}' if ok else ''}."
            )


# ---- loading ------------------------------------------------------------------------------------------------------


def _build(cls: type, data: dict[str, Any], prefix: str = ""):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, names, n=3)
            hints.append(f"{prefix}{k}" + (f" (did you mean {', '.join(prefix + c for c in close)}?)" if close else ""))
        raise RecipeError(f"unknown recipe key(s): {'; '.join(hints)}. Known keys: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    data = {k: _coerce(f"{prefix}{k}", v, hints[k]) for k, v in data.items()}
    try:
        return cls(**data)
    except TypeError as e:
        raise RecipeError(f"bad recipe value: {e}") from None


def parse_overrides(args: Sequence[str]) -> dict[str, Any]:
    """`["--lr", "1e-5", "--lora.r", "8", "--think"]` → a nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        key = args[i]
        if not key.startswith("--") or len(key) < 3:
            raise RecipeError(f"override {key!r}: expected --key value (e.g. --max_steps 10 or --lora.r 8)")
        key = key[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            raw = args[i + 1]
            i += 2
        else:  # a bare flag means true
            raw = "true"
            i += 1
        value = _scalar(raw)
        node = out
        parts = key.replace("-", "_").split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Numbers written as YAML strings (`1e-5`) become numbers; a wrong type is an error naming the key."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    allowed = set(typing.get_args(hint)) if union else {hint}
    if value is None and type(None) in allowed:
        return value
    for t in (int, float):
        if t in allowed and not isinstance(value, bool):
            if isinstance(value, int) and t is float:
                return float(value)
            if isinstance(value, str):
                try:
                    return t(value)
                except ValueError:
                    continue
            if isinstance(value, t):
                return value
            raise RecipeError(f"{key}: expected a number, got {value!r}")
    if allowed & {int, float} and not isinstance(value, (int, float)):
        raise RecipeError(f"{key}: expected a number, got {value!r}")
    if bool in allowed and not isinstance(value, bool):
        raise RecipeError(f"{key}: expected true or false, got {value!r}")
    return value


def _scalar(raw: str) -> Any:
    """A CLI value: numbers first (YAML 1.1 reads `1e-4` as a string), then YAML (true, [a, b], {r: 8}, ...)."""
    for conv in (int, float):
        try:
            return conv(raw)
        except ValueError:
            pass
    return yaml.safe_load(raw)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_recipe(cls: type, path: str | os.PathLike | None = None, overrides: Sequence[str] | dict | None = None):
    """Build a recipe of type `cls` from a YAML file (optional) and overrides (CLI list or dict)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise RecipeError(f"recipe file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise RecipeError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise RecipeError(f"{p}: expected a mapping of recipe keys at the top level")
    extra = parse_overrides(overrides) if isinstance(overrides, (list, tuple)) else dict(overrides or {})
    data = _merge(data, extra)
    try:
        return _build(cls, data)
    except RecipeError as e:
        raise RecipeError(f"{path}: {e}" if path else str(e)) from None


def to_yaml(recipe: TrainRecipe) -> str:
    return yaml.safe_dump(dataclasses.asdict(recipe), sort_keys=False)
