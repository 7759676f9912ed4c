"""Regression: GRPO with colocated vLLM rollouts on a data set whose every row is the SAME video.

Bug (fixed in `vtg.train.rollout.make_colocated_llm` with `mm_processor_cache_gb=0`): after a weight sync,
`reset_prefix_cache()` emptied the engine's encoder cache while the front end's multimodal processor cache still
believed the video was cached, so the request went out without its pixels and step 2 failed with
`RuntimeError: Encoder cache miss for <hash>`. Every step here sees the same video right after a sync.
"""

from __future__ import annotations

import json

import pytest
from test_train_grpo import _length_reward, _recipe

pytestmark = pytest.mark.integration

STEPS = 3


def _same_video_records(world, out_path, n: int) -> str:
    """n records, all on the first training record's video (absolute path), each a distinct id and query."""
    first = json.loads((world / "train.jsonl").read_text().splitlines()[0])
    first["video"] = str((world / first["video"]).resolve())
    lines = [json.dumps({**first, "id": f"same-{i}", "query": f"{first['query']} ({i})"}) for i in range(n)]
    out_path.write_text("\n".join(lines) + "\n")
    return str(out_path)


def test_grpo_vllm_same_video_every_step(tiny_qwen25, synth_world, tmp_path):
    from vtg.train.grpo import build_grpo_trainer

    train_file = _same_video_records(synth_world, tmp_path / "same_video.jsonl", STEPS)
    # one prompt (a group of 2 completions) per step: each step's rollout re-sends the video after a weight sync
    recipe = _recipe(
        tiny_qwen25,
        synth_world,
        tmp_path / "grpo",
        train_file=train_file,
        max_steps=STEPS,
        num_generations=2,
        per_device_train_batch_size=2,
        max_completion_length=4,
        rewards={"tiou": 1.0},
        sampling={"max_frames": 8},
    )
    trainer = build_grpo_trainer(recipe, extra_rewards={"test_length": (_length_reward, 1.0)})
    try:
        assert trainer.llm is not None, "the regression needs vLLM rollouts"
        trainer.train()
        assert trainer.state.global_step == STEPS
        assert trainer.rollout_stats["vllm_syncs"] == STEPS  # a weight sync (and cache reset) before every rollout
        assert trainer.rollout_stats["completion_tokens"] > 0
    finally:
        trainer.close()
