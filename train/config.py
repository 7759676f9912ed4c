"""Training recipes: TRL's own `SFTConfig` / `GRPOConfig`, subclassed with vtg's video keys.

Every `SFTConfig`/`GRPOConfig` (and so every transformers `TrainingArguments`) field is a recipe key and a command
line override, with no copy kept here: `optim`, `adam_beta2`, `epsilon_high`, `run_name`, … reach the trainer as
TRL documents them. vtg adds what video grounding needs (model, data, frame sampling, the prompt, tuning, the
merger's rate, the caches, the video check) and a few defaults of its own (listed in docs/training.md#recipes).

Recipes load through `vtg.config.load` (YAML + `--key value` overrides, unknown keys named with close matches), and
`__post_init__` rejects impossible settings before any model loads: generation batch vs `num_generations`, video
tokens + answer vs `max_length`, a merger rate without a training merger, …
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import GRPOConfig, SFTConfig

from vtg.config import ConfigError, build
from vtg.data.grammar import MODES, PROMPT_STYLES

# Language-model projection names of Qwen2.5-VL / Qwen3-VL. Targeted through a regex anchored on the language
# model, because `gate_proj/up_proj/down_proj` also exist in the Qwen2.5-VL vision MLP (docs/training.md#lora).
LM_LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPT_TEXT_TOKENS = 96  # the chat template + grounding prompt around the video, a safe upper bound for the check
PRECISIONS = ("auto", "bf16", "fp32")
ROLLOUT_ENGINES = ("vllm", "transformers")


class RecipeError(ConfigError):
    """A recipe that cannot run; the message names the key and how to fix it."""


# TRL / transformers options vtg's video trainers cannot honour: key -> (the values that leave it off, why and what
# to do). A recipe setting one otherwise is refused by name, instead of the option being silently ignored.
ROLLOUTS_SAMPLE = "vtg's video rollouts sample with temperature, top_p and max_completion_length only"
UNSUPPORTED_BOTH = {
    "use_liger_kernel": (
        (False,),
        "Liger's kernels replace Qwen-VL modules at run time, and vtg's video path (positions after the video, the "
        "vision feature cache, TRL's fused log-prob head) is checked against transformers' own; Liger is not "
        "installed either. Set use_liger_kernel: false",
    ),
    "model_init_kwargs": (
        (None, {}),
        "vtg loads the model itself, from `model` with the dtype `precision` picks. Drop model_init_kwargs",
    ),
}
UNSUPPORTED_SFT = {
    "pad_to_multiple_of": (("auto", None), "vtg's video collator pads to the batch's longest record. Drop it")
}
UNSUPPORTED_GRPO = {
    "top_k": ((0, None), f"{ROLLOUTS_SAMPLE}. Drop top_k"),
    "min_p": ((None,), f"{ROLLOUTS_SAMPLE}. Drop min_p"),
    "repetition_penalty": ((1.0,), f"{ROLLOUTS_SAMPLE}. Drop repetition_penalty"),
    "generation_kwargs": ((None, {}), f"{ROLLOUTS_SAMPLE}. Drop generation_kwargs"),
    "cache_implementation": ((None,), f"{ROLLOUTS_SAMPLE}. Drop cache_implementation"),
    "use_transformers_paged": ((False,), "rollouts run on rollout_engine: vllm or transformers (plain generate)"),
    "use_transformers_continuous_batching": (
        (False,),
        "rollouts run on rollout_engine: vllm or transformers (plain generate)",
    ),
    "transformers_continuous_batching_config": ((None, {}), "rollouts run on rollout_engine: vllm or transformers"),
    "chat_template_kwargs": (
        (None, {}),
        "vtg renders every prompt with the model's chat template as eval and serving do (vtg.request). Drop it",
    ),
    "vllm_mode": (("colocate",), "vtg's vLLM engine runs colocated in each training process (rollout_engine: vllm)"),
    "vllm_tensor_parallel_size": ((1,), "vtg's colocated vLLM engine runs on its process's own device. Drop it"),
    "vllm_enable_sleep_mode": ((False,), "vtg's colocated vLLM engine does not sleep. Drop it"),
    "vllm_model_impl": (("vllm",), "vtg's colocated vLLM engine uses vLLM's own model. Drop it"),
    "vllm_structured_outputs_regex": ((None,), "vtg's video rollouts do not constrain decoding. Drop it"),
    "vllm_importance_sampling_correction": (
        (False,),
        "vtg's rollouts return no sampling log-probs, so TRL's correction cannot run. Leave it false (vtg's default)",
    ),
    "ds3_gather_for_generation": (
        (True,),
        "vtg's rollouts always gather ZeRO-3 weights, to sync its vLLM engine or to generate. Drop it",
    ),
}


@dataclass
class LoraSection:
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
class VideoFields:
    """vtg's own recipe keys, shared by SFT and GRPO. Paths are relative to the working directory."""

    model: str = ""
    train_file: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)  # FrameSampling keys; the model's own recipe when empty
    video_cache_mb: int = 0  # keep decoded frames up to this many MB per process (and per data-loader worker), so
    # later epochs skip decoding; 0: only the last 8 videos stay decoded
    vision_feature_cache_mb: int = 0  # keep the frozen vision tower's features (before the merger) per video up to
    # this many MB, so each video's tower forward runs once (Qwen2.5-VL; needs freeze_vision)
    mode: str = "multi"  # grounding prompt mode: "multi" (0..n moments) or "single"
    think: bool = False  # ask for / train on <think> reasoning
    prompt_style: str | None = None  # "full" or "short"; None: the model's own (vtg_prompt.json)
    tuning: str = "lora"  # "lora" or "full"
    lora: LoraSection = field(default_factory=LoraSection)
    train_merger: bool = False  # unfreeze the vision merger (projector); the rest of the vision tower stays frozen
    freeze_vision: bool = True
    merger_learning_rate: float | None = None  # the merger's own rate (LLaVA's mm_projector_lr); None: learning_rate
    precision: str = "auto"  # "auto" (bf16 where the GPU supports it, else fp32), "bf16", "fp32"; sets bf16/fp16
    video_check_every: int = 0  # every N steps (and at step 0) log the answer loss of a few training records with
    # their frames in order vs shuffled in time: a gap near 0 says the model ignores the video (train/video_check.py)
    video_check_records: int = 16
    windows: dict[str, Any] = field(default_factory=dict)  # how eval and serving window videos longer than the
    # training clips (vtg.grounding.WindowSettings keys), saved in the model folder; window_s defaults to the
    # longest training clip

    def check_video_fields(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = build(LoraSection, self.lora, "lora.", error=RecipeError)
        if self.mode not in MODES:
            raise RecipeError(f"mode must be 'multi' or 'single', got {self.mode!r}")
        if self.prompt_style is not None and self.prompt_style not in PROMPT_STYLES:
            raise RecipeError(
                f"prompt_style must be one of {', '.join(map(repr, PROMPT_STYLES))} or null (the "
                f"model's own), got {self.prompt_style!r}"
            )
        if self.tuning not in ("lora", "full"):
            raise RecipeError(f"tuning must be 'lora' or 'full', got {self.tuning!r}")
        if self.precision not in PRECISIONS:
            raise RecipeError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        if self.video_check_every < 0:
            raise RecipeError(f"video_check_every must be >= 0 (0: off), got {self.video_check_every}")
        if self.windows:
            from vtg.errors import UserError
            from vtg.grounding import WindowSettings

            try:
                WindowSettings.from_dict(self.windows)
            except UserError as e:
                raise RecipeError(str(e)) from None
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
        if not isinstance(self.sampling, dict):
            raise RecipeError(f"sampling must be a mapping of frame-sampling keys, got {self.sampling!r}")
        self.frame_sampling()  # unknown sampling keys fail here, at load time

    UNSUPPORTED = UNSUPPORTED_BOTH  # per trainer: TRL options its video path cannot honour

    def check_trainer_fields(self) -> None:
        """TrainingArguments fields that vtg sets itself, or that its trainers cannot honour."""
        for key, (off, why) in self.UNSUPPORTED.items():
            value = getattr(self, key)
            if value not in off:
                raise RecipeError(f"{key}: {value!r} is not supported on video: {why}")
        if self.learning_rate <= 0:
            raise RecipeError(f"learning_rate must be > 0, got {self.learning_rate}")
        for key in (
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "max_length",
            "save_steps",
            "logging_steps",
        ):
            if getattr(self, key) <= 0:
                raise RecipeError(f"{key} must be > 0, got {getattr(self, key)}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise RecipeError("set max_steps > 0 or num_train_epochs > 0")
        if self.bf16 is not None or self.fp16:
            raise RecipeError(
                "set the precision with `precision: auto | bf16 | fp32`, not bf16/fp16 (vtg picks bf16 "
                "where the GPU supports it and fp32 on CPU)"
            )

    def apply_vtg_defaults(self) -> None:
        """The TrainingArguments that follow from vtg's keys; run before TRL's own `__post_init__`."""
        self.bf16 = self.use_bf16()
        self.fp16 = False
        self.use_cpu = not _has_gpu()
        if self.data_seed is None:
            self.data_seed = self.seed
        # workers live through epochs, so their decoded-video cache (video_cache_mb) does too
        self.dataloader_persistent_workers = self.dataloader_num_workers > 0

    # ---- derived values -----------------------------------------------------------------------------------------

    def frame_sampling(self):
        """The `FrameSampling` this recipe asks for (defaults filled in); unknown keys raise naming them."""
        from vtg.data.video import FrameSampling
        from vtg.errors import UserError

        base = FrameSampling()
        if self.model and (Path(self.model) / "config.json").is_file():
            from vtg.model_folder import read_sampling

            base = read_sampling(self.model)  # the model's own recipe (or its family's default)
        try:
            return base.updated(self.sampling, where="sampling")
        except UserError as e:
            raise RecipeError(str(e)) from None

    def resolved_prompt_style(self) -> str:
        """The grounding prompt style to train with: the recipe's, else the one the model was trained with."""
        if self.prompt_style is not None:
            return self.prompt_style
        if self.model and Path(self.model).is_dir():
            from vtg.model_folder import read_prompt_style

            return read_prompt_style(self.model)
        return "full"

    @property
    def processes(self) -> int:
        return int(os.environ.get("WORLD_SIZE", "1"))

    def use_bf16(self) -> bool:
        if self.precision == "auto":
            import torch

            return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return self.precision == "bf16"

    def max_video_tokens(self) -> int:
        """Upper bound of the video's tokens: (max_frames / temporal patch 2) × merged patches per frame pair,
        with qwen-vl-utils' per-frame budget, capped by total_pixels when set."""
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

    def recipe_dict(self) -> dict[str, Any]:
        """The recipe as saved next to the exported model (`vtg_recipe.yaml`): every field, YAML-safe."""
        return {**self.to_dict(), "lora": dataclasses.asdict(self.lora)}


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _post_init(config, parent) -> None:
    config.check_video_fields()
    config.check_trainer_fields()
    config.check_lengths()
    config.apply_vtg_defaults()
    try:
        parent.__post_init__(config)
    except ValueError as e:  # TRL's / transformers' own checks: same one-line error as ours
        raise RecipeError(str(e)) from None


@dataclass
class VideoSFTConfig(VideoFields, SFTConfig):
    """`SFTConfig` + vtg's video keys. `max_length` is the limit of prompt (video included) + answer tokens: the
    video collator refuses a longer record, naming it (cutting video tokens would break the model's input)."""

    output_dir: str = "outputs/run"
    learning_rate: float = 2e-5
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 1
    gradient_checkpointing: bool = False
    save_total_limit: int | None = 2
    seed: int = 0
    max_length: int | None = 4096
    remove_unused_columns: bool = False  # the video collator needs the raw record columns
    UNSUPPORTED = {**UNSUPPORTED_BOTH, **UNSUPPORTED_SFT}

    def __post_init__(self) -> None:
        if self.completion_only_loss is False:
            raise RecipeError(
                "completion_only_loss: false is not supported: vtg's video collator trains on the answer tokens only"
            )
        if self.packing or self.padding_free:
            raise RecipeError(
                "packing / padding_free are not supported with video records (one video per "
                "sequence): set packing: false, padding_free: false"
            )
        self.dataset_kwargs = {**(self.dataset_kwargs or {}), "skip_prepare_dataset": True}  # the collator does it
        _post_init(self, SFTConfig)


@dataclass
class VideoGRPOConfig(VideoFields, GRPOConfig):
    """`GRPOConfig` + vtg's video keys. Rollouts run on vtg's colocated vLLM engine (`rollout_engine: vllm`, sized by
    TRL's `vllm_gpu_memory_utilization` / `vllm_max_model_length`) or the policy's own `generate`
    (`rollout_engine: transformers`); TRL's `use_vllm` stays false, because TRL's vLLM path cannot carry video."""

    output_dir: str = "outputs/run"
    learning_rate: float = 1e-6
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 1
    gradient_checkpointing: bool = False
    save_total_limit: int | None = 2
    seed: int = 0
    remove_unused_columns: bool = False
    max_length: int = 4096  # prompt (video included) + completion tokens
    max_completion_length: int | None = 200
    beta: float = 0.04
    loss_type: str = "grpo"
    rewards: dict[str, float] = field(default_factory=lambda: {"tiou_v2": 1.0, "format": 1.0})
    rollout_engine: str = "vllm"
    vllm_importance_sampling_correction: bool = False  # TRL's needs rollouts' log-probs, which vtg's do not return
    UNSUPPORTED = {**UNSUPPORTED_BOTH, **UNSUPPORTED_GRPO}

    def __post_init__(self) -> None:
        from vtg.train.rewards import REWARDS

        if self.use_vllm:
            raise RecipeError(
                "use_vllm: true is TRL's own vLLM path, which cannot carry video; vtg runs its own "
                "colocated vLLM engine: set rollout_engine: vllm (the default) and drop use_vllm"
            )
        if self.rollout_engine not in ROLLOUT_ENGINES:
            raise RecipeError(f"rollout_engine must be one of {list(ROLLOUT_ENGINES)}, got {self.rollout_engine!r}")
        if self.reward_weights is not None:
            raise RecipeError("set reward weights in `rewards: {name: weight}`, not reward_weights")
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
            if not isinstance(w, (int, float)) or isinstance(w, bool):
                raise RecipeError(f"rewards.{name}: weight must be a number, got {w!r}")
        if self.num_generations is None or self.num_generations < 2:
            raise RecipeError(
                f"num_generations must be ≥ 2 (GRPO compares completions within a group), got {self.num_generations}"
            )
        if not self.max_completion_length or self.max_completion_length <= 0:
            raise RecipeError(f"max_completion_length must be > 0, got {self.max_completion_length}")
        if self.temperature <= 0:
            raise RecipeError(f"temperature must be > 0 for sampled rollouts, got {self.temperature}")
        self.check_batch()
        self.reward_weights = [float(w) for w in self.rewards.values()]
        _post_init(self, GRPOConfig)

    def answer_tokens(self) -> int:
        return self.max_completion_length

    def check_batch(self) -> None:
        check_generation_batch(
            self.per_device_train_batch_size, self.gradient_accumulation_steps, self.processes, self.num_generations
        )


def check_generation_batch(per_device: int, accumulation: int, processes: int, num_generations: int) -> None:
    """Whole groups of `num_generations` completions in every generation batch (per device × accumulation ×
    processes rows), or a RecipeError saying how to get there."""
    batch = per_device * accumulation * processes
    if batch % num_generations:
        ok = [g for g in range(2, batch + 1) if batch % g == 0]
        raise RecipeError(
            f"the generation batch per_device_train_batch_size {per_device} × gradient_accumulation_steps "
            f"{accumulation} × world size {processes} = {batch} is not divisible by num_generations {num_generations}: "
            f"each prompt's group of completions must fit in one batch. Make the product a multiple of "
            f"{num_generations}{f', or set num_generations to one of {ok}' if ok else ''}."
        )


def load_recipe(cls: type, path: str | os.PathLike | None = None, overrides=None):
    """A `VideoSFTConfig` / `VideoGRPOConfig` from a YAML recipe (optional) and overrides (CLI list or dict)."""
    from vtg import config

    return config.load(cls, path, overrides, error=RecipeError)
