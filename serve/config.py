"""Server settings: one typed dataclass, filled from `recipes/serve/*.yaml` and then from command-line flags.

Every limit lives here so that the HTTP layer and the serving logic read the same numbers. Impossible settings are
rejected when the config is built, with a message that says how to fix them.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtg.config import ConfigError
from vtg.errors import UserError


class ServeConfigError(ConfigError):
    """A bad server setting (flag or recipe key)."""


@dataclass
class Limits:
    """Per-request limits. Anything over them gets a 4xx naming the limit, before the engine sees the request."""

    max_video_duration_s: float = 600.0  # grounded in one call (strategy `direct`, and chat without `grounding`)
    max_windowed_duration_s: float = 4 * 3600.0  # grounded by windows (strategy `coarse_to_fine`)
    max_windows: int = 2000  # coarse windows one request may ask for (its window settings decide how many)
    max_grounding_s: float = 900.0  # a windowed request's time budget (a request may ask for less: time_budget_s)
    max_video_bytes: int = 512 * 1024 * 1024
    max_upload_bytes: int = 256 * 1024 * 1024
    max_frames: int = 256  # caps the model's sampling (the time scale stays the recipe's fps until this cap)
    max_videos_per_request: int = 1
    max_tokens: int = 1024
    max_samples: int = 16  # `n` for chat, candidate samples for /v1/grounding
    request_timeout_s: float = 300.0
    max_concurrency: int = 8  # requests running in the engine at once
    max_queue: int = 64  # requests waiting for a slot; beyond this: 429
    max_frame_pixels: int = 3840 * 2160  # a video's frames: at most this many pixels each (4K UHD)
    max_decoded_pixels: int = 20_000_000_000  # pixels decoded to sample one video (~5 min of 1080p at 30 fps)
    # threads one video's decoder may use: each holds its own tables for the stream's frame size, so a stream that
    # announces huge frames costs this many copies before the decoder refuses its first frame
    decode_threads: int = 4
    body_timeout_s: float = 30.0  # a client sending a request body may pause this long between chunks
    header_timeout_s: float = 10.0  # a request's line and headers must all arrive within this
    max_header_bytes: int = 16384  # a request's line and headers together (431 beyond)
    media_url_ttl_s: float = 3600.0  # how long a signed /v1/media URL stays valid
    max_fetch_cache_bytes: int = 2 * 1024**3  # fetched videos kept on disk (least recently used go first)
    # live streams (/v1/streams, /v1/streams/read; docs/serving.md#streams)
    max_streams: int = 4  # stream sessions open at once, WebSocket and server-read together; beyond this: 429
    max_frame_bytes: int = 8 * 1024 * 1024  # one encoded frame a client appends (JPEG/PNG, before base64)
    max_stream_s: float = 4 * 3600.0  # media time one stream session may span
    stream_idle_s: float = 30.0  # a WebSocket session that appends no frame for this long is closed
    max_stream_queries: int = 8  # active queries per stream session
    max_stream_backlog: int = 256  # server events waiting for a client that does not read; beyond this: closed

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                if not (f.name == "max_queue" and v == 0):
                    raise ServeConfigError(f"limits.{f.name} must be a positive number, got {v!r}")


@dataclass
class ServeConfig:
    model: str = ""
    served_model_name: str | None = None  # the `model` name clients send; defaults to the model folder's name
    host: str = "127.0.0.1"
    port: int = 8000
    allowed_local_media_path: list[str] = field(default_factory=list)
    upload_dir: str | None = None  # where the web page's uploads go (an allowed root); None: no uploads
    api_key: str | None = None
    lora: dict[str, str] = field(default_factory=dict)  # adapter name -> folder
    allow_url_fetch: bool = False  # http(s) video URLs; off by default
    allow_private_urls: bool = False  # when fetching, allow loopback/private/link-local addresses
    max_model_len: int = 8192
    gpu_memory_utilization: float | None = None  # None: vtg.vllm_engine's device default
    default_think: bool = True
    profile: str | None = None  # vtg.profiles: how the model is asked and read; None: its folder's (vtg_prompt.json)
    grounding_samples: int = 8  # candidates sampled for /v1/grounding when mode=multi or top_k > 1
    grounding_temperature: float = 1.0
    nms_iou: float = 0.5
    constrain_answers: bool = False  # /v1/grounding default: decode under the answer grammar (serve/constrain.py)
    grounding_strategy: str = "auto"  # /v1/grounding default (vtg.grounding): auto = windows above direct_max_s
    windows: dict[str, Any] = field(default_factory=dict)  # WindowSettings keys over the model's vtg_sampling.json
    tensor_parallel_size: int = 1  # vLLM's: shard a model too large for one GPU over this many
    data_parallel_size: int = 1  # vLLM's: this many engine replicas share the traffic
    engine_args: dict[str, Any] = field(default_factory=dict)  # any other vLLM engine argument, by its name
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if isinstance(self.limits, dict):
            from vtg.config import build

            self.limits = build(Limits, self.limits, "limits.", error=ServeConfigError)
        if not (0 < int(self.port) < 65536):
            raise ServeConfigError(f"port must be in 1..65535, got {self.port}")
        if not (0.0 < self.nms_iou <= 1.0):
            raise ServeConfigError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.grounding_samples < 1 or self.grounding_samples > self.limits.max_samples:
            raise ServeConfigError(
                f"grounding_samples must be in 1..limits.max_samples ({self.limits.max_samples}), "
                f"got {self.grounding_samples}"
            )
        if self.grounding_temperature < 0:
            raise ServeConfigError(f"grounding_temperature must be >= 0, got {self.grounding_temperature}")
        from vtg.grounding import STRATEGIES, WindowSettings
        from vtg.profiles import DEFAULT_PROFILE, check_profile

        try:
            check_profile(self.profile)
        except UserError as e:
            raise ServeConfigError(str(e)) from None
        if self.profile not in (None, DEFAULT_PROFILE):
            check_direct(self.profile, self.grounding_strategy)

        if self.grounding_strategy not in STRATEGIES:
            raise ServeConfigError(
                f"grounding_strategy must be one of {list(STRATEGIES)}, got {self.grounding_strategy!r}"
            )
        try:
            WindowSettings.from_dict(self.windows)
        except UserError as e:
            raise ServeConfigError(str(e)) from None
        for name in ("tensor_parallel_size", "data_parallel_size"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ServeConfigError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ServeConfigError("api_key is empty: give a key or leave it out to serve without one")
        for name, path in self.lora.items():
            if not name or "=" in name or name == self.model_name:
                raise ServeConfigError(
                    f"bad LoRA name {name!r}: use --lora NAME=PATH with a NAME unlike the base model"
                )
            if not Path(path, "adapter_config.json").is_file():
                raise ServeConfigError(f"LoRA {name!r}: {path}/adapter_config.json not found (a peft adapter folder?)")
        for root in self.allowed_local_media_path:  # the upload folder is created at start-up
            if not os.path.isdir(root):
                raise ServeConfigError(f"allowed media root {root!r} is not a folder")

    @property
    def model_name(self) -> str:
        return self.served_model_name or Path(self.model.rstrip("/")).name or "model"

    def media_roots(self) -> list[str]:
        """Allowed roots as real paths (symlinks resolved), uploads folder included."""
        roots = list(self.allowed_local_media_path)
        if self.upload_dir:
            roots.append(self.upload_dir)
        return [os.path.realpath(r) for r in roots]


def check_direct(profile: str, strategy: str) -> None:
    """A profile other than vtg asks one question about the whole video: windows need vtg's "not present"."""
    if profile != "vtg" and strategy != "direct":
        raise ServeConfigError(
            f"profile {profile!r} asks one question about the whole video: serve it with --grounding-strategy "
            f"direct (windowed strategies need the vtg profile), not {strategy!r}"
        )


def load_config(path: str | None, overrides: dict[str, Any]) -> ServeConfig:
    """A recipe (YAML, optional; its settings may be nested under `serve:`) with flag overrides on top (None values
    are "not given")."""
    from vtg.config import load

    given = {k: v for k, v in overrides.items() if v is not None and v != [] and v != {}}
    return load(ServeConfig, path, given, section="serve", error=ServeConfigError)
