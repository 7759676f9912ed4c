"""`vtg serve …` command line (flag names as vLLM spells them where vLLM has one)."""

from __future__ import annotations

import argparse

from vtg.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    from vtg.profiles import PROFILES

    p = sub.add_parser(
        "serve",
        help="serve a model: OpenAI-compatible API + /v1/grounding + a web page, on vLLM",
        description="Serve a model with vLLM behind an OpenAI-compatible API (chat completions with parsed moments, "
        "/v1/grounding with ranked moments), auth, limits and a web page at /.",
    )
    p.add_argument("--model", help="model folder (weights, processor, chat template)")
    p.add_argument("--config", help="serve recipe (YAML), e.g. recipes/serve/cpu_tiny.yaml; flags override it")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--served-model-name", help="the `model` name clients send (default: the model folder's name)")
    p.add_argument(
        "--allowed-local-media-path",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder requests may read videos from (repeatable); nothing outside is readable",
    )
    p.add_argument("--upload-dir", help="folder for videos uploaded from the web page (becomes an allowed root)")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 (or set VTG_API_KEY)")
    p.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="serve a LoRA adapter as model NAME (repeatable)",
    )
    p.add_argument("--allow-url-fetch", action="store_true", default=None, help="allow http(s) video URLs")
    p.add_argument(
        "--allow-private-urls",
        action="store_true",
        default=None,
        help="with --allow-url-fetch: also loopback/private addresses",
    )
    p.add_argument("--tensor-parallel-size", type=int, help="vLLM: shard the model over this many GPUs")
    p.add_argument("--data-parallel-size", type=int, help="vLLM: run this many engine replicas")
    p.add_argument(
        "--engine-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other vLLM engine argument (repeatable; VALUE read as YAML), "
        "e.g. --engine-arg enable_prefix_caching=true",
    )
    p.add_argument(
        "--grounding-strategy",
        choices=["direct", "coarse_to_fine", "auto"],
        help="/v1/grounding's default strategy (default auto: windows above the model's direct_max_s)",
    )
    p.add_argument(
        "--profile",
        choices=list(PROFILES),
        help="how the checkpoint is asked and read (vtg.profiles; default: the folder's vtg_prompt.json, else vtg)",
    )
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--gpu-memory-utilization", type=float)
    p.add_argument("--max-concurrency", type=int, help="requests in the engine at once (limits.max_concurrency)")
    p.add_argument("--max-queue", type=int, help="requests waiting for a slot before 429 (limits.max_queue)")
    p.add_argument("--request-timeout", type=float, help="seconds per request (limits.request_timeout_s)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_serve)


def _lora_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--lora {item!r}: expected NAME=PATH")
        out[name] = path
    return out


def _engine_args(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--engine-arg {item!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value) if value else value
    return out


def config_from_args(args: argparse.Namespace):
    import os

    from vtg.serve.config import load_config

    limits = {
        k: v
        for k, v in {
            "max_concurrency": args.max_concurrency,
            "max_queue": args.max_queue,
            "request_timeout_s": args.request_timeout,
        }.items()
        if v is not None
    }
    cfg = load_config(
        args.config,
        {
            "model": args.model,
            "host": args.host,
            "port": args.port,
            "served_model_name": args.served_model_name,
            "allowed_local_media_path": args.allowed_local_media_path,
            "upload_dir": args.upload_dir,
            "api_key": args.api_key or os.environ.get("VTG_API_KEY"),
            "lora": _lora_map(args.lora),
            "allow_url_fetch": args.allow_url_fetch,
            "allow_private_urls": args.allow_private_urls,
            "max_model_len": args.max_model_len,
            "gpu_memory_utilization": args.gpu_memory_utilization,
            "tensor_parallel_size": args.tensor_parallel_size,
            "data_parallel_size": args.data_parallel_size,
            "engine_args": _engine_args(args.engine_arg),
            "grounding_strategy": args.grounding_strategy,
            "profile": args.profile,
            "limits": limits,
        },
    )
    if not cfg.model:
        raise UserError("no model: pass --model DIR (or `model:` in --config)")
    if not os.path.isfile(os.path.join(cfg.model, "config.json")):
        raise UserError(f"--model {cfg.model}: no config.json there (a model folder is expected)")
    if cfg.upload_dir:
        os.makedirs(cfg.upload_dir, exist_ok=True)
    return cfg


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from vtg.serve.app import build_app
    from vtg.serve.guard import guarded_http_protocol
    from vtg.serve.streams import ws_max_size

    cfg = config_from_args(args)
    print(
        f"[vtg serve] model {cfg.model} as {cfg.model_name!r} on http://{cfg.host}:{cfg.port} "
        f"(media roots: {cfg.media_roots() or 'none'}; auth: {'on' if cfg.api_key else 'off'})",
        flush=True,
    )
    http = guarded_http_protocol(cfg.limits.max_header_bytes, cfg.limits.header_timeout_s)
    uvicorn.run(
        build_app(cfg),
        host=cfg.host,
        port=cfg.port,
        http=http,
        ws_max_size=ws_max_size(cfg.limits),  # a larger message closes the connection (1009) before it is read
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
    )
    return 0
