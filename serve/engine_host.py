"""The in-process vLLM engine (`AsyncLLM`), the model's processor and frame sampling, and LoRA adapters by name.

Frame sampling is the one the model was trained with (`vtg.engine`'s recipe lookup), capped at `limits.max_frames`,
so the time scale at serving equals training's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, AsyncIterator

from vtg.serve.config import ServeConfig
from vtg.serve.errors import not_found


def model_sampling(model_dir: str, max_frames: int):
    """The model's training-time FrameSampling, with max_frames capped by the server limit."""
    from vtg import engine

    base = engine.sampling_for_model(model_dir)
    if base.max_frames > max_frames:
        base = dataclasses.replace(base, max_frames=max_frames, min_frames=min(base.min_frames, max_frames))
    return base


def _lora_rank(path: str) -> int:
    return int(json.loads(Path(path, "adapter_config.json").read_text()).get("r", 8))


def engine_args(cfg: ServeConfig):
    """vtg.engine's device defaults (CPU: float32, eager, KV share 0.1) with the server's settings on top."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    from vtg import engine

    kw: dict[str, Any] = {**engine.llm_defaults(engine.on_cpu()), **engine.video_normalization_overrides(cfg.model)}
    kw.update(
        model=cfg.model,
        served_model_name=[cfg.model_name],
        max_model_len=cfg.max_model_len,
        limit_mm_per_prompt={"video": cfg.limits.max_videos_per_request, "image": 0},
        max_num_seqs=max(kw.get("max_num_seqs", 16), cfg.limits.max_concurrency),
    )
    if cfg.gpu_memory_utilization:
        kw["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    if cfg.lora:
        kw.update(
            enable_lora=True,
            max_loras=len(cfg.lora),
            max_lora_rank=_fit_rank(max(_lora_rank(p) for p in cfg.lora.values())),
        )
    if engine.on_cpu():
        kw = engine.pin_cpu_kv_cache(kw)
    return AsyncEngineArgs(**kw)


def _fit_rank(r: int) -> int:
    # vLLM accepts only these ranks; pick the smallest that holds the adapters'.
    for ok in (1, 8, 16, 32, 64, 128, 256, 320, 512):
        if r <= ok:
            return ok
    return r


class EngineHost:
    def __init__(self, cfg: ServeConfig):
        from transformers import AutoProcessor
        from vllm.lora.request import LoRARequest
        from vllm.v1.engine.async_llm import AsyncLLM

        from vtg import engine

        self.cfg = cfg
        self.processor = AutoProcessor.from_pretrained(cfg.model)
        self.sampling = model_sampling(cfg.model, cfg.limits.max_frames)
        self.prompt_style = engine.prompt_style_for_model(cfg.model)  # the grounding endpoint words it as in training
        self.loras = {
            name: LoRARequest(name, i + 1, str(Path(path).resolve()))
            for i, (name, path) in enumerate(sorted(cfg.lora.items()))
        }
        self.llm = AsyncLLM.from_engine_args(engine_args(cfg))

    def model_names(self) -> list[str]:
        return [self.cfg.model_name, *self.loras]

    def lora_for(self, model: str | None):
        """The LoRARequest for a `model` name (None for the base model); 404 for an unknown name."""
        if model in (None, "", self.cfg.model_name):
            return None
        if model in self.loras:
            return self.loras[model]
        raise not_found(f"model {model!r} does not exist; served: {', '.join(self.model_names())}", "model")

    def generate(self, inputs: dict, params, request_id: str, lora=None) -> AsyncIterator:
        return self.llm.generate(inputs, params, request_id, lora_request=lora)

    @property
    def dead(self) -> bool:
        return bool(self.llm.errored)

    def shutdown(self) -> None:
        self.llm.shutdown()
