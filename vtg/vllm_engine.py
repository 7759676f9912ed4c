"""vLLM engines for a model folder: the offline `LLM` (eval, curation, GRPO rollouts) and the `AsyncLLM` (serving).

Both take the same arguments from `engine_kwargs`: device defaults (on CPU: float32, eager, one process, an explicit
KV-cache size), the video processor kwargs that keep vtg's sampled frames as they are, and the normalization
override of docs/video-and-time.md#vllm-normalizes-video-with-the-image-statistics.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from vtg.model_folder import model_path

log = logging.getLogger(__name__)


def presampled_kwargs() -> dict[str, Any]:
    """Processor kwargs for frames sampled by vtg.data.video: no resampling, no second resize."""
    from vtg.data.video import PRESAMPLED_VIDEO_KWARGS

    return dict(PRESAMPLED_VIDEO_KWARGS)


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def llm_defaults(cpu: bool) -> dict[str, Any]:
    """vLLM engine arguments. On CPU: float32, eager, one process (`uni` executor + in-process engine core: two
    fewer interpreter start-ups), `gpu_memory_utilization` 0.1, which is the KV-cache RAM share there, and up to 128
    sequences per step: decoding is bound by per-step overheads on a CPU, so the batch is what buys throughput
    (bench/rollouts/README.md)."""
    common = {
        "limit_mm_per_prompt": {"video": 1},
        "mm_processor_kwargs": presampled_kwargs(),
        # vLLM keeps every processed video (up to 4 GiB) in case it comes again. vtg samples frames itself and
        # keeps its own decode cache; the windows of a long video each come once, so that cache only grew memory:
        # 3.85 vs 4.72 GB peak for 6 one-hour queries (docs/long-videos.md#decoding-that-scales).
        "mm_processor_cache_gb": 0,
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
    in. Ours runs in-process, so a process that has already trained, decoded videos or run another engine can have
    nothing left, and the engine refuses to start ("Reduce CPU memory used by other processes") though the machine
    has plenty free (tests/test_request.py starts its engines that way). An explicit `kv_cache_memory_bytes` is kept.
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
    its image processor, every video vLLM sees is off. Then the device-side step is turned off, so the processor
    (the same code transformers runs) normalizes.
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


def engine_kwargs(model_dir: str | Path, **overrides) -> dict[str, Any]:
    """Arguments for `vllm.LLM` / `AsyncEngineArgs`: device defaults, then the model's own needs, then `overrides`."""
    model_dir = model_path(model_dir)
    cpu = on_cpu()
    kwargs = {**llm_defaults(cpu), **video_normalization_overrides(model_dir), **overrides, "model": str(model_dir)}
    return pin_cpu_kv_cache(kwargs) if cpu else kwargs


def make_llm(model_dir: str | Path, **overrides):
    """A `vllm.LLM` for a model folder (see `engine_kwargs`); keyword arguments override the defaults.

    On CPU the engine core runs inside this process (VLLM_ENABLE_V1_MULTIPROCESSING=0 unless already set): no
    spawned workers, so callers need no `__main__` guard for it, and start-up is much faster.
    """
    import torch

    if on_cpu():
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM

    set_num_threads = torch.set_num_threads  # an in-process CPU worker replaces it with a no-op; close_llm restores
    kwargs = engine_kwargs(model_dir, **overrides)
    llm = LLM(**kwargs)
    llm._vtg_set_num_threads = set_num_threads
    log.info("vLLM engine for %s started", kwargs["model"])
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
