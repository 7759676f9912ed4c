"""Shared session fixtures: a tiny synthetic world and the two tiny model families, built once per session."""

from __future__ import annotations

import os

import pytest

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
