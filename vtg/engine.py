"""The one place that turns (video, query) into model inputs: training, eval and serving all import it.

- `grounding_messages` / `render_prompt`: the chat turn (a video part, then `grammar.grounding_prompt`) rendered with
  the model's own chat template.
- `hf_inputs`: transformers processor inputs for already-sampled frames WITH their metadata, so Qwen2.5-VL gets the
  true `second_per_grid_ts` and Qwen3-VL the true `<t seconds>` (without metadata both are silently wrong).
- `vllm_prompt` / `make_llm`: the same frames and metadata for vLLM, which must neither resample nor resize them; the
  engine defaults are the ones that start fastest on a CPU.
- `save_sampling` / `sampling_for_model`: the FrameSampling a model was trained with lives next to its weights
  (`vtg_sampling.json`), so serving and eval sample frames exactly as training did; `save_prompt_style` /
  `prompt_style_for_model` do the same for the grounding prompt's style (`vtg_prompt.json`, "full" when absent).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from vtg.data.grammar import grounding_prompt, query_before_video
from vtg.errors import UserError

SAMPLING_FILE = "vtg_sampling.json"
PROMPT_FILE = "vtg_prompt.json"  # {"style": "short"}: the grounding prompt style a model was trained with
FAMILY_OF_MODEL_TYPE = {"qwen2_5_vl": "qwen2.5-vl", "qwen3_vl": "qwen3-vl", "qwen3_vl_moe": "qwen3-vl"}
IMAGE_FACTOR = {"qwen2.5-vl": 28, "qwen3-vl": 32}  # patch 14 x merge 2, patch 16 x merge 2
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"


# ---- messages and prompts -----------------------------------------------------------------------------------------


def grounding_messages(
    query: str,
    duration: float,
    *,
    mode: str = "multi",
    think: bool = True,
    style: str = "full",
    system: str | None = None,
) -> list[dict]:
    """Chat messages for one grounding question: [system], user = (video, grounding prompt in `style`), or (prompt,
    video) for a style that puts the query first."""
    parts = [
        {"type": "video"},
        {"type": "text", "text": grounding_prompt(query, duration, mode=mode, think=think, style=style)},
    ]
    user = {"role": "user", "content": parts[::-1] if query_before_video(style) else parts}
    if system is None:
        return [user]
    return [{"role": "system", "content": [{"type": "text", "text": system}]}, user]


def render_prompt(processor, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """The prompt text from the model's chat template (one video placeholder per video part)."""
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _check_one_video(prompt: str, where: str) -> None:
    n = prompt.count(VIDEO_PLACEHOLDER)
    if n != 1:
        raise ValueError(
            f"{where}: expected exactly one video placeholder {VIDEO_PLACEHOLDER!r} in the prompt, "
            f"found {n}; build it with render_prompt(processor, grounding_messages(...))"
        )


# ---- transformers -------------------------------------------------------------------------------------------------


def hf_inputs(processor, prompt_or_prompts: str | Sequence[str], video_or_videos, **processor_kwargs):
    """Processor inputs (BatchFeature, torch tensors) for prompt(s) with one DecodedVideo each.

    The frames' metadata always reaches the processor (`DecodedVideo.hf_processor_kwargs`), and frames are neither
    resampled nor resized again. Batches are padded on the tokenizer's padding side.
    """
    from vtg import hf_fixes

    hf_fixes.apply()  # Qwen2.5-VL positions as vLLM and the reference compute them (see vtg.hf_fixes)
    prompts = [prompt_or_prompts] if isinstance(prompt_or_prompts, str) else list(prompt_or_prompts)
    videos = video_or_videos if isinstance(video_or_videos, (list, tuple)) else [video_or_videos]
    if len(prompts) != len(videos):
        raise ValueError(f"hf_inputs: {len(prompts)} prompt(s) but {len(videos)} video(s); give one video per prompt")
    for i, p in enumerate(prompts):
        _check_one_video(p, f"prompt {i}")
    merged: dict[str, Any] = {}
    for v in videos:
        for key, value in v.hf_processor_kwargs().items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            else:
                merged[key] = value
    kwargs = {"return_tensors": "pt", "padding": len(prompts) > 1, **merged, **processor_kwargs}
    return processor(text=prompts, **kwargs)


# ---- vLLM ---------------------------------------------------------------------------------------------------------


def presampled_kwargs() -> dict[str, Any]:
    """Processor kwargs for frames sampled by vtg.data.video: no resampling, no second resize."""
    from vtg.data.video import PRESAMPLED_VIDEO_KWARGS

    return dict(PRESAMPLED_VIDEO_KWARGS)


def vllm_prompt(prompt: str, video) -> dict:
    """A vLLM prompt dict: text, the (frames, metadata) pair, and processor kwargs that keep frames as sampled."""
    _check_one_video(prompt, "vllm_prompt")
    return {
        "prompt": prompt,
        "multi_modal_data": {"video": [video.vllm_video()]},
        "mm_processor_kwargs": presampled_kwargs(),
    }


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def llm_defaults(cpu: bool) -> dict[str, Any]:
    """vLLM engine arguments. On CPU: float32, eager, one process (`uni` executor + in-process engine core: two
    fewer interpreter start-ups, measured ~60 s saved on 2 cores), `gpu_memory_utilization` 0.1, which is the
    KV-cache RAM share there, and up to 128 sequences per step: decoding is bound by per-step overheads there, so
    the batch is what buys throughput (bench/rollouts/README.md: 32 prompts × 8 samples on the `small` tiny model,
    2 cores, ~3,600–4,200 tokens/s at 16 sequences, ~7,000–10,300 at 128 or 256)."""
    common = {
        "limit_mm_per_prompt": {"video": 1},
        "mm_processor_kwargs": presampled_kwargs(),
        "max_model_len": 8192,
        "seed": 0,
        "disable_log_stats": True,
    }
    if cpu:
        return {
            **common,
            "dtype": "float32",
            "enforce_eager": True,
            "gpu_memory_utilization": 0.1,
            "distributed_executor_backend": "uni",
            "max_num_seqs": 128,
        }
    return {**common, "dtype": "bfloat16", "gpu_memory_utilization": 0.85}


def pin_cpu_kv_cache(kwargs: dict[str, Any]) -> dict[str, Any]:
    """On CPU, an explicit KV-cache size: `gpu_memory_utilization` × RAM, as intended.

    vLLM 0.32's CPU worker otherwise sizes it as utilization × RAM minus the RSS of the process the engine core runs
    in. Ours runs in-process, so a process that has already trained, decoded videos or run another engine (GRPO, a
    benchmark, a long eval) can have nothing left, and the engine refuses to start ("Reduce CPU memory used by other
    processes") though the machine has plenty free: measured in bench/learning, where the fifth engine of one process
    failed with 18.6 of 23.6 GiB available. An explicit `kv_cache_memory_bytes` in kwargs is kept.
    """
    if "kv_cache_memory_bytes" in kwargs:
        return kwargs
    import psutil

    share = float(kwargs.get("gpu_memory_utilization", 0.1))
    return {**kwargs, "kv_cache_memory_bytes": int(share * psutil.virtual_memory().total)}


def video_normalization_overrides(model_dir: str | Path) -> dict[str, Any]:
    """vLLM engine arguments that keep video pixels normalized the way the transformers video processor does.

    vLLM 0.32 normalizes pixels on the device with the *image* processor's mean/std/rescale for images and videos
    alike (`mm_device_do_normalize`, on by default). When a model's video processor normalizes differently from
    its image processor, every video vLLM sees is off (measured on a Qwen3-VL folder with CLIP image statistics and
    0.5/0.5 video statistics: vision outputs differed by 0.03 and answer log-probs by 0.38 nats). Then we turn the
    device-side step off, so the processor (the same code transformers runs) normalizes.
    """
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(model_dir))
    image, video = getattr(processor, "image_processor", None), getattr(processor, "video_processor", None)
    if image is None or video is None:
        return {}
    keys = ("do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std")

    def stats(proc):
        return [list(v) if isinstance(v, (list, tuple)) else v for v in (getattr(proc, k, None) for k in keys)]

    return {} if stats(image) == stats(video) else {"mm_device_do_normalize": False}


def make_llm(model_dir: str | Path, **overrides):
    """A `vllm.LLM` for a model folder with CPU-safe defaults (see `llm_defaults`); keyword arguments override them.

    On CPU the engine core runs inside this process (VLLM_ENABLE_V1_MULTIPROCESSING=0 unless already set): no
    spawned workers, so callers need no `__main__` guard for it, and start-up is much faster.
    """
    import torch

    model_dir = _model_path(model_dir)
    cpu = on_cpu()
    if cpu:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM

    set_num_threads = torch.set_num_threads  # an in-process CPU worker replaces it with a no-op; close_llm restores
    kwargs = {**llm_defaults(cpu), **video_normalization_overrides(model_dir), **overrides}
    if cpu:
        kwargs = pin_cpu_kv_cache(kwargs)
    llm = LLM(model=str(model_dir), **kwargs)
    llm._vtg_set_num_threads = set_num_threads
    return llm


def close_llm(llm) -> None:
    """Shut an engine down and free its (in-process) distributed state, so another engine can start in this process."""
    import gc

    llm.llm_engine.engine_core.shutdown()
    from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

    destroy_model_parallel()
    destroy_distributed_environment()
    import torch

    torch.set_num_threads = getattr(llm, "_vtg_set_num_threads", torch.set_num_threads)
    gc.collect()


# ---- is the video in the gradient? ---------------------------------------------------------------------------------


def vision_tower(model):
    """The vision encoder of a transformers Qwen-VL model (with or without a peft wrapper)."""
    for obj in (model, getattr(model, "model", None), getattr(getattr(model, "base_model", None), "model", None)):
        for holder in (obj, getattr(obj, "model", None)):
            if holder is not None and hasattr(holder, "visual"):
                return holder.visual
    raise ValueError(f"{type(model).__name__}: no vision tower (`visual`) found")


def vision_grad_norms(model) -> dict[str, float]:
    """Gradient L2 norm per vision-tower part after a backward pass: patch_embed, blocks, merger (Qwen3-VL also
    deepstack_merger_list). All zero (or a part missing) means the video did not reach the loss."""
    import torch

    groups: dict[str, list] = {}
    for name, param in vision_tower(model).named_parameters():
        part = name.split(".", 1)[0]
        if param.grad is not None:
            groups.setdefault(part, []).append(param.grad.detach().float().norm())
    return {k: float(torch.stack(v).norm()) for k, v in groups.items()}


# ---- model folders: family and frame sampling ---------------------------------------------------------------------


def _model_path(model_dir: str | Path) -> Path:
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise UserError(
            f"{path}: not a model folder (no config.json); give a folder written by save_pretrained or `vtg model tiny`"
        )
    return path


def family_of(model_dir: str | Path) -> str:
    """'qwen2.5-vl' or 'qwen3-vl' from config.json's model_type."""
    path = _model_path(model_dir) / "config.json"
    try:
        model_type = json.loads(path.read_text()).get("model_type")
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: unreadable config ({e})") from None
    if model_type not in FAMILY_OF_MODEL_TYPE:
        raise UserError(
            f"{path}: model_type {model_type!r} is not a supported family; expected one of "
            f"{sorted(FAMILY_OF_MODEL_TYPE)}"
        )
    return FAMILY_OF_MODEL_TYPE[model_type]


def default_sampling(family: str):
    from vtg.data.video import FrameSampling

    return FrameSampling(image_factor=IMAGE_FACTOR[family])


def save_sampling(model_dir: str | Path, sampling) -> Path:
    """Write the FrameSampling used in training next to the weights (vtg_sampling.json)."""
    path = Path(model_dir) / SAMPLING_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sampling.to_dict(), indent=1) + "\n")
    return path


def sampling_for_model(model_dir: str | Path):
    """The FrameSampling a model was trained with (vtg_sampling.json), or its family's default.

    Rejects a saved image_factor that does not match the family: frames would not split into the model's patches.
    """
    from vtg.data.video import FrameSampling

    family = family_of(model_dir)
    path = Path(model_dir) / SAMPLING_FILE
    if not path.is_file():
        return default_sampling(family)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    sampling = FrameSampling.from_dict(data, where=str(path))
    if sampling.image_factor != IMAGE_FACTOR[family]:
        raise UserError(
            f"{path}: image_factor {sampling.image_factor} does not fit a {family} model "
            f"(expected {IMAGE_FACTOR[family]}); fix the recipe's sampling and re-save"
        )
    return sampling


def save_prompt_style(model_dir: str | Path, style: str) -> Path:
    """Record the grounding prompt style a model is trained with (vtg_prompt.json)."""
    from vtg.data.grammar import PROMPT_STYLES

    if style not in PROMPT_STYLES:
        raise UserError(f"prompt style must be one of {list(PROMPT_STYLES)}, got {style!r}")
    path = Path(model_dir) / PROMPT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"style": style}) + "\n")
    return path


def prompt_style_for_model(model_dir: str | Path) -> str:
    """The grounding prompt style a model was trained with (vtg_prompt.json), "full" when it has none."""
    from vtg.data.grammar import PROMPT_STYLES

    path = Path(model_dir) / PROMPT_FILE
    if not path.is_file():
        return "full"
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    style = data.get("style") if isinstance(data, dict) else None
    if style not in PROMPT_STYLES:
        raise UserError(f"{path}: 'style' must be one of {list(PROMPT_STYLES)}, got {style!r}")
    return style


def read_video_for_model(source: str | os.PathLike, model_dir: str | Path):
    """Decode (cached) a video the way `model_dir` was trained to see it."""
    from vtg.data.video import read_video_cached

    return read_video_cached(source, sampling_for_model(model_dir))
