"""Shared session fixtures, built once per session and read-only for tests (copy before changing anything):

- `synth_world`: a tiny synthetic world; `tiny_qwen25`, `tiny_qwen3`: the two tiny model families.
- `shared_server`: one running `vtg serve` (tiny Qwen2.5-VL on the vLLM CPU engine, served as `tiny`, no API key,
  the limits in SHARED_SERVE_RECIPE, default window settings) for every test module that needs no settings of its
  own. Starting a server is the slow part of a server test (~40 s idle, ~100 s on a busy machine), so a new server
  test (say, a streaming endpoint's) takes this fixture rather than calling `start_server` itself:

      def test_something(shared_server):
          httpx.post(shared_server.url + "/v1/grounding", json={"video": ..., "query": ...})

  It serves the synthetic world and `shared_server.media` (an empty folder; a module writes its own files there,
  under names no other module uses) and uploads into `shared_server.uploads`. Tests must leave it as they found
  it: no killed engine, no slots held, and metrics read as differences (other modules' requests count too). A
  module that needs other settings (an API key, URL fetching, a LoRA, window settings, tighter limits, a killed
  engine) uses `keyed_server` if its settings fit, or starts its own server with `support.server.start_server`, as
  test_serve_hardening and test_serve_long do.
- `keyed_server`: a second shared server with an API key, a LoRA adapter and tight stream limits
  (`support.keyed_server`), for test_serve_web and test_serve_stream (one engine start instead of two).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.server import RunningServer, start_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def synth_world(tmp_path_factory):
    """A tiny synthetic world (12 videos, 8–16 s, 2 fps, 56×56, all four query kinds): videos/, {train,val,test}.jsonl,
    scenes.jsonl, world.json. Read-only for tests: copy it before changing anything."""
    from vtg.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth_world")
    generate(SynthConfig(n_videos=12, seed=0, fps=2.0, size=56, min_duration=8.0, max_duration=16.0), out, workers=1)
    return out


@pytest.fixture(scope="session")
def tiny_qwen25(tmp_path_factory):
    """A tiny random-init Qwen2.5-VL folder (weights, local tokenizer, chat template, processor, vtg_sampling.json).
    Read-only for tests: copy it before training into it."""
    from vtg.train.tiny_model import build_tiny_model

    return build_tiny_model("qwen2.5-vl", tmp_path_factory.mktemp("tiny_qwen25"))


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory):
    """A tiny random-init Qwen3-VL folder, like tiny_qwen25."""
    from vtg.train.tiny_model import build_tiny_model

    return build_tiny_model("qwen3-vl", tmp_path_factory.mktemp("tiny_qwen3"))


# Limits of the shared server (test_serve_api checks these numbers: the 30 s video limit, max_samples 8, 429 once
# 4 running + 16 queued requests are exceeded).
SHARED_SERVE_RECIPE = (
    "serve:\n  grounding_samples: 4\n  limits:\n    max_video_duration_s: 30\n    max_tokens: 64\n"
    "    max_samples: 8\n    max_frames: 16\n    max_concurrency: 4\n    max_queue: 16\n"
)


@dataclass
class SharedServer(RunningServer):
    world: Path  # the session's synth_world (an allowed root)
    media: Path  # an allowed root for modules' own files; its parent folder is outside every root
    uploads: Path  # the upload folder (--upload-dir)


@pytest.fixture(scope="session")
def shared_server(tiny_qwen25, synth_world, tmp_path_factory):
    """The session's one default `vtg serve` (see the module docstring): a `support.server.RunningServer` with
    `.url`, `.log`, `.proc`, plus `.world` (the synthetic world), `.media` and `.uploads` (allowed roots)."""
    tmp = tmp_path_factory.mktemp("shared_server")
    media, uploads = tmp / "media", tmp / "uploads"
    media.mkdir()
    recipe = tmp / "serve.yaml"
    recipe.write_text(SHARED_SERVE_RECIPE)
    server = start_server(
        [
            "--model",
            str(tiny_qwen25),
            "--config",
            str(recipe),
            "--served-model-name",
            "tiny",
            "--allowed-local-media-path",
            str(synth_world),
            "--allowed-local-media-path",
            str(media),
            "--upload-dir",
            str(uploads),
        ],
        tmp / "server.log",
    )
    yield SharedServer(**vars(server), world=synth_world, media=media, uploads=uploads)
    server.stop()


@pytest.fixture(scope="session")
def keyed_server(tiny_qwen25, synth_world, tmp_path_factory):
    """The session's server with auth on (`support.keyed_server.KEY`), the LoRA adapter `sharp`, the stream limits in
    `support.keyed_server.RECIPE` and URL fetching allowed on loopback (tests serve their own URLs): a `SharedServer`
    (`.media` is an allowed root for modules' own files, under names no other module uses). Tests leave it as they
    found it: no session left open, no slot held."""
    from support.keyed_server import KEY, LORA_NAME, RECIPE, random_lora_adapter

    tmp = tmp_path_factory.mktemp("keyed_server")
    media, uploads = tmp / "media", tmp / "uploads"
    media.mkdir()
    recipe = tmp / "serve.yaml"
    recipe.write_text(RECIPE)
    adapter = random_lora_adapter(tiny_qwen25, tmp / "adapter")
    server = start_server(
        ["--model", str(tiny_qwen25), "--config", str(recipe), "--api-key", KEY, "--lora", f"{LORA_NAME}={adapter}",
         "--allowed-local-media-path", str(synth_world), "--allowed-local-media-path", str(media),
         "--upload-dir", str(uploads), "--allow-url-fetch", "--allow-private-urls"],
        tmp / "server.log",
    )  # fmt: skip
    yield SharedServer(**vars(server), world=synth_world, media=media, uploads=uploads)
    server.stop()
