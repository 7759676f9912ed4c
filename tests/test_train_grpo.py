"""GRPO on video: vLLM CPU rollouts colocated with the trainer, weights synced, the vision tower in the loss pass."""

from __future__ import annotations

import pytest
import torch
from test_train_sft import VisionProbe

pytestmark = pytest.mark.integration


def _length_reward(completions, **kw):
    """Test-only reward that varies across random completions, so advantages (and gradients) are non-zero; a
    random-init model scores 0 on every grounding reward."""
    from vtg.train.rewards import completion_text

    return [len(completion_text(c)) / 50.0 for c in completions]


def _recipe(model, world, out, **kw):
    from vtg.train.config import VideoGRPOConfig

    base = dict(
        model=str(model),
        train_file=str(world / "train.jsonl"),
        output_dir=str(out),
        max_steps=2,
        num_generations=4,
        per_device_train_batch_size=4,
        max_completion_length=12,
        learning_rate=1e-2,
        train_merger=True,
        logging_steps=1,
        save_steps=100,
        max_length=1024,
        sampling={"max_frames": 32},
        rewards={"tiou_v2": 1.0, "format": 1.0, "multi_moment": 1.0},
        vllm_gpu_memory_utilization=0.1,
    )
    return VideoGRPOConfig(**{**base, **kw})


def _prompt_logprobs_hf(model, ids):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


def _prompt_logprobs_vllm(llm, ids):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    out = llm.generate(
        [TokensPrompt(prompt_token_ids=ids)], SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False
    )[0]
    return torch.tensor(
        [
            next(iter(d.values())).logprob if len(d) == 1 else d[t].logprob
            for d, t in zip(out.prompt_logprobs[1:], ids[1:])
        ]
    )


def test_grpo_vllm_rollouts_video_in_loss_and_weight_sync(tiny_qwen25, synth_world, tmp_path):
    from vtg.train.grpo import build_grpo_trainer

    probe = VisionProbe()
    trainer = build_grpo_trainer(
        _recipe(tiny_qwen25, synth_world, tmp_path / "grpo"),
        callbacks=[probe],
        extra_rewards={"test_length": (_length_reward, 1.0)},
    )
    try:
        assert trainer.llm is not None
        trainer.train()
        # rollouts: vLLM engine, weights pushed before each of the 2 generation rounds
        assert trainer.rollout_stats["vllm_syncs"] == 2 and trainer.rollout_stats["completion_tokens"] > 0
        # the video in the loss pass: one vision forward with gradients per optimizer step, and the merger moved
        assert probe.grad_forwards == 2
        assert probe.before and sorted(probe.changed) == sorted(probe.before)
        # per-reward metrics logged by name
        logged = {k for h in trainer.state.log_history for k in h}
        for name in ("tiou_v2", "format", "multi_moment", "test_length"):
            assert f"rewards/{name}/mean" in logged
        # weight sync: after pushing the trained policy, vLLM scores tokens as the HF policy does, and the trained
        # policy differs from the starting weights by more than the tolerance (so the check can fail)
        from transformers import AutoModelForImageTextToText

        from vtg.train.rollout import sync_weights

        policy = trainer.accelerator.unwrap_model(trainer.model).eval()
        sync_weights(trainer.llm, policy)
        ids = trainer.processing_class.tokenizer("starts at 1.0s, ends at 4.0s; not present")["input_ids"]
        hf = _prompt_logprobs_hf(policy, ids)
        vl = _prompt_logprobs_vllm(trainer.llm, ids)
        start = _prompt_logprobs_hf(AutoModelForImageTextToText.from_pretrained(tiny_qwen25).eval(), ids)
        assert (hf - vl).abs().max() < 1e-3
        assert (hf - start).abs().max() > 1e-2
    finally:
        trainer.close()


def test_grpo_hf_generate_fallback_qwen3_video_in_loss(tiny_qwen3, synth_world, tmp_path):
    from vtg.train.grpo import build_grpo_trainer

    probe = VisionProbe()
    trainer = build_grpo_trainer(
        _recipe(tiny_qwen3, synth_world, tmp_path / "grpo3", rollout_engine="transformers", max_steps=1),
        callbacks=[probe],
        extra_rewards={"test_length": (_length_reward, 1.0)},
    )
    assert trainer.llm is None
    trainer.train()
    assert probe.grad_forwards == 1
    assert probe.before and sorted(probe.changed) == sorted(probe.before)
