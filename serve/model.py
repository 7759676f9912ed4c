"""The served model: vLLM's `AsyncLLM` on the model folder, the model's requests (`vtg.request`), LoRA adapters.

Frame sampling is the one the model was trained with (its `vtg_sampling.json`), capped at `limits.max_frames`, so
the time scale at serving equals training's; the grounding prompt is worded in the model's own style. A released
checkpoint served with a profile (`profile:`, or its folder's; vtg.profiles) is asked, sampled and read as its
authors' code does.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

from vtg.serve.config import ServeConfig, check_direct
from vtg.serve.errors import not_found


def capped_sampling(sampling, max_frames: int):
    """The model's training-time FrameSampling with its frame count capped by the server limit: `max_frames` for
    fps sampling (the time scale stays the recipe's fps up to the cap), `nframes` (kept even) for a fixed count."""
    from vtg.data.video import FRAME_FACTOR

    cap: dict = {}
    if sampling.max_frames > max_frames:
        cap = {"max_frames": max_frames, "min_frames": min(sampling.min_frames, max_frames)}
    if sampling.nframes is not None and sampling.nframes > max_frames:
        cap["nframes"] = max_frames - max_frames % FRAME_FACTOR
    return sampling.updated(cap, "limits.max_frames")


def decode_budget(limits):
    """What decoding one request's video may cost (checked from its header before any frame is decoded, and on every
    frame as decoded), and how many threads one decode may use."""
    from vtg.data.video import DecodeBudget

    return DecodeBudget(
        limits.max_frame_pixels,
        limits.max_decoded_pixels,
        names=("limits.max_frame_pixels", "limits.max_decoded_pixels"),
        max_threads=limits.decode_threads,
    )


def _lora_rank(path: str) -> int:
    return int(json.loads(Path(path, "adapter_config.json").read_text()).get("r", 8))


def _fit_rank(r: int) -> int:
    # vLLM accepts only these ranks; pick the smallest that holds the adapters'.
    for ok in (1, 8, 16, 32, 64, 128, 256, 320, 512):
        if r <= ok:
            return ok
    return r


def engine_args(cfg: ServeConfig):
    """vtg's engine arguments for the model folder (`vtg.vllm_engine`) with the server's settings on top."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    from vtg.vllm_engine import engine_kwargs, llm_defaults, on_cpu

    kw = dict(
        served_model_name=[cfg.model_name],
        max_model_len=cfg.max_model_len,
        limit_mm_per_prompt={"video": cfg.limits.max_videos_per_request, "image": 0},
        max_num_seqs=max(llm_defaults(on_cpu()).get("max_num_seqs", 16), cfg.limits.max_concurrency),
    )
    if cfg.gpu_memory_utilization:
        kw["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    if cfg.tensor_parallel_size > 1:
        kw["tensor_parallel_size"] = cfg.tensor_parallel_size
    if cfg.data_parallel_size > 1:
        kw["data_parallel_size"] = cfg.data_parallel_size
    if cfg.lora:
        kw.update(
            enable_lora=True,
            max_loras=len(cfg.lora),
            max_lora_rank=_fit_rank(max(_lora_rank(p) for p in cfg.lora.values())),
        )
    kw.update(cfg.engine_args)  # the user's own engine arguments win
    check_engine_args(kw)
    return AsyncEngineArgs(**engine_kwargs(cfg.model, **kw))


def check_engine_args(kwargs: dict) -> None:
    """Unknown vLLM engine argument names are refused with close matches (vLLM would raise a bare TypeError)."""
    import dataclasses
    import difflib

    from vllm.engine.arg_utils import AsyncEngineArgs

    from vtg.serve.config import ServeConfigError

    known = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
    for name in kwargs:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ServeConfigError(f"engine_args: {name!r} is not a vLLM engine argument{hint}")


class ServedModel:
    """The model folder's requests and adapters; `start()` starts the engine (the port opens once it is ready)."""

    def __init__(self, cfg: ServeConfig):
        from vllm.lora.request import LoRARequest

        from vtg.model_folder import ModelFolder
        from vtg.profiles import sampling_for
        from vtg.request import Requests

        self.cfg = cfg
        folder = ModelFolder.read(cfg.model)
        profile = cfg.profile or folder.profile  # vtg.profiles: a released checkpoint asked as its authors asked it
        check_direct(profile, cfg.grounding_strategy)
        sampling = capped_sampling(sampling_for(folder, profile), cfg.limits.max_frames)
        # the grounding endpoint words the question as in training; the rest of the prompt is per request
        self.requests = dataclasses.replace(
            Requests.for_model(folder, sampling=sampling, profile=profile), budget=decode_budget(cfg.limits)
        )
        self.windows = folder.windows.updated(cfg.windows, "serve windows")  # how long videos are windowed
        self.loras = {
            name: LoRARequest(name, i + 1, str(Path(path).resolve()))
            for i, (name, path) in enumerate(sorted(cfg.lora.items()))
        }
        self.llm = None

    def start(self) -> ServedModel:
        from vllm.v1.engine.async_llm import AsyncLLM

        self.llm = AsyncLLM.from_engine_args(engine_args(self.cfg))
        return self

    @property
    def prompt_style(self) -> str:
        return self.requests.prompt.style

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

    async def engine_alive(self) -> dict:
        """Whether the engine can serve: vLLM's own health check (its output loop running, the core not reported
        dead) and every engine core process alive. Reads state only: no request, no wait for a slot."""
        try:
            await self.llm.check_health()
        except Exception as e:
            return {"alive": False, "detail": f"{type(e).__name__}: {e}"}
        manager = getattr(self.llm.engine_core.resources, "engine_manager", None)
        procs = list(getattr(manager, "processes", []) or [])
        stopped = [p.pid for p in procs if not p.is_alive()]
        if stopped:
            return {"alive": False, "detail": f"engine core process(es) {stopped} exited"}
        return {"alive": True, "core_processes": len(procs)}

    def shutdown(self) -> None:
        if self.llm is not None:
            self.llm.shutdown()
