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


def test_grpo_log_probs_are_at_the_sampling_temperature_as_trl_computes_them(tiny_qwen25, synth_world, tmp_path):
    """Rollouts sample at `temperature`, so every log-prob pass (old, reference, the loss's) must score at it too, as
    TRL's GRPOTrainer does: TRL divides the logits by it in the fused LM head it puts on the policy and the
    reference model; vtg's video pass must go through that head. At 0.7, on one batch with its video, vtg's per-token
    log-probs equal TRL's `selective_log_softmax(logits, ids, temperature)` on the model's own logits, and on a
    text-only batch they equal TRL's own `_get_per_token_logps_and_entropies`."""
    from trl import GRPOTrainer
    from trl.trainer.utils import selective_log_softmax

    from vtg.train.grpo import WithVideo, build_grpo_trainer
    from vtg.train.rollout import build_groups

    temperature = 0.7
    trainer = build_grpo_trainer(
        _recipe(tiny_qwen25, synth_world, tmp_path / "grpo", rollout_engine="transformers", temperature=temperature)
    )
    prompt = trainer.train_dataset[0]["prompt"]
    (group,) = build_groups([prompt, prompt], trainer.requests)
    tok = trainer.processing_class.tokenizer
    answers = [tok(a)["input_ids"] for a in ("starts at 1.0s, ends at 4.0s", "not present; starts at 9.5s, ends")]
    n = max(map(len, answers))
    completions = torch.tensor([a + [tok.pad_token_id] * (n - len(a)) for a in answers])
    ids = torch.cat([torch.tensor([group.prompt_ids] * 2), completions], dim=1)
    mask = torch.cat([torch.ones(2, len(group.prompt_ids), dtype=torch.long), (completions != tok.pad_token_id)], 1)
    video = [group.video_inputs] * 2
    model = trainer.model
    with torch.no_grad():
        logits = model(**trainer._video_batch(model, ids, mask, video)).logits[:, -n - 1 : -1].float()
        trl_logps = selective_log_softmax(logits, completions, temperature=temperature)
        untempered = selective_log_softmax(logits, completions)
        logps, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, n, video_inputs=video)
        loss_pass, _, _ = trainer._get_per_token_logps_and_entropies(WithVideo(model, video), ids, mask, n)
        batch = {
            "prompt_ids": ids[:, :-n],
            "prompt_mask": mask[:, :-n],
            "completion_ids": completions,
            "completion_mask": mask[:, -n:],
            "video_inputs": video,
        }
        trainer._score_with_video(batch, ["old_per_token_logps", "ref_per_token_logps"])
        # text only (no video rows): TRL's own implementation on the same model
        text, text_mask = ids[:, -n - 8 :], mask[:, -n - 8 :]
        trl_text, _, _ = GRPOTrainer._get_per_token_logps_and_entropies(trainer, model, text, text_mask, n)
        vtg_text, _, _ = trainer._get_per_token_logps_and_entropies(model, text, text_mask, n, video_inputs=[{}] * 2)
    valid = mask[:, -n:].bool()
    assert (trl_logps - untempered)[valid].abs().max() > 1e-2  # the temperature matters on this batch
    for name, got in {
        "vtg's pass": logps,
        "the loss pass": loss_pass,
        "old_per_token_logps": batch["old_per_token_logps"],
        "ref_per_token_logps": batch["ref_per_token_logps"],  # LoRA just initialised: the reference is the policy
    }.items():
        assert (got - trl_logps)[valid].abs().max() < 1e-5, name
    assert (vtg_text - trl_text)[valid].abs().max() < 1e-6
