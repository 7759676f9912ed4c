"""GRPO on video (Time-R1 style): TRL's GRPOTrainer with the video in the rollouts and in the policy's loss pass.

TRL 1.16 carries images only; given a video prompt it runs text-only and the vision tower never sees a gradient
(DESIGN.md §8). `VideoGRPOTrainer` closes the gap at three documented seams of GRPOTrainer:
- `rollout_func` (TRL's hook for custom generation): decode each prompt's video once, sample G completions from a
  colocated vLLM engine (or HF generate) with exactly the frames + metadata the loss pass uses; the prompt token ids
  returned are the HF processor's (video tokens expanded), so the forward pass lines up;
- `_generate_and_score_completions`: attaches each row's video tensors (`video_rows`) to the batch, so they survive
  TRL's shuffling and splitting into micro-batches;
- `_get_per_token_logps_and_entropies`: feeds `pixel_values_videos`, `video_grid_thw`, `second_per_grid_ts` and
  `mm_token_type_ids` to the model for old/reference/policy log-probs.
Rewards are the plain functions of `vtg.train.rewards`, weighted by the recipe, logged as `rewards/<name>/mean`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from trl import GRPOTrainer

from vtg.train.config import GRPORecipe
from vtg.train.rollout import VIDEO_KEYS


def _video_rollout(prompts: list, trainer: "VideoGRPOTrainer") -> dict[str, Any]:
    """TRL `rollout_func(prompts, trainer)`: delegates to the trainer, which knows the batch's records."""
    return trainer.video_rollout(prompts)


class VideoGRPOTrainer(GRPOTrainer):
    def __init__(self, *args, recipe: GRPORecipe, **kwargs):
        self.recipe = recipe
        self.sampling = recipe.frame_sampling()
        self.prompt_style = recipe.resolved_prompt_style()
        self._batch_rows: list[dict[str, Any]] | None = None
        self._active_video_rows: list[dict[str, torch.Tensor]] | None = None
        self._pending_video_rows: list[dict[str, torch.Tensor]] | None = None
        self.llm = None
        self._synced_step = -1
        self.rollout_stats = {"vllm_syncs": 0, "rollout_seconds": 0.0, "completion_tokens": 0}
        super().__init__(*args, rollout_func=_video_rollout, **kwargs)
        if recipe.use_vllm:  # colocate: one engine per rank, each sampling its own share of prompts
            from vtg.train.rollout import make_colocated_llm

            self.llm = make_colocated_llm(
                recipe.model,
                gpu_memory_utilization=recipe.vllm_gpu_memory_utilization,
                max_model_len=recipe.vllm_max_model_len or recipe.max_length,
                seed=recipe.seed + self.accelerator.process_index,
            )

    def close_llm(self) -> None:
        """Shut the colocated engine down (frees its RAM; lets another engine start in this process)."""
        if self.llm is not None:
            from vtg.engine import close_llm

            close_llm(self.llm)
            self.llm = None

    # ---- rollouts ---------------------------------------------------------------------------------------------

    def video_rollout(self, prompts: list) -> dict[str, Any]:
        import time

        from vtg.train import rollout

        self._suppress = rollout.suppressed_token_ids(self.processing_class)
        rows = self._batch_rows
        assert rows is not None and len(rows) == len(prompts), "rollout called outside _generate_and_score_completions"
        t0 = time.perf_counter()
        groups = rollout.build_groups(
            rows,
            self.processing_class,
            self.sampling,
            mode=self.recipe.mode,
            think=self.recipe.think,
            for_vllm=self.llm is not None,
            prompt_style=self.prompt_style,
        )
        r = self.recipe
        if self.llm is not None:
            if self._synced_step != self.state.global_step:  # after every optimizer step (and before the first)
                model = self.accelerator.unwrap_model(self.model)
                with self._gathered(model):
                    rollout.sync_weights(self.llm, model)
                self._synced_step = self.state.global_step
                self.rollout_stats["vllm_syncs"] += 1
            completions = rollout.vllm_generate(
                self.llm,
                groups,
                temperature=r.temperature,
                top_p=r.top_p,
                max_tokens=r.max_completion_length,
                suppress=self._suppress,
            )
        else:
            model = self.accelerator.unwrap_model(self.model)
            was_training = model.training
            model.eval()
            with self._gathered(model):
                completions = rollout.hf_generate(
                    model,
                    self.processing_class,
                    groups,
                    temperature=r.temperature,
                    top_p=r.top_p,
                    max_tokens=r.max_completion_length,
                    eos_ids=list(self.eos_token_ids),
                    suppress=self._suppress,
                )
            model.train(was_training)
        prompt_ids, video_rows = [], []
        for g in groups:
            prompt_ids += [g.prompt_ids] * g.size
            video_rows += [g.video_inputs] * g.size  # shared tensors: the video is decoded/processed once per group
        self._pending_video_rows = video_rows
        self.rollout_stats["rollout_seconds"] += time.perf_counter() - t0
        self.rollout_stats["completion_tokens"] += sum(len(c) for c in completions)
        return {"prompt_ids": prompt_ids, "completion_ids": completions, "logprobs": None}

    def _gathered(self, model):
        from vtg.train.common import gathered_params

        return gathered_params(self, model)

    # ---- the video in the loss pass ---------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs):
        self._batch_rows = inputs
        try:
            # old/ref log-probs computed inside use the rows of this batch in rollout order
            self._active_video_rows = None
            output = super()._generate_and_score_completions(inputs)
        finally:
            self._batch_rows = None
            self._active_video_rows = None
        output["video_rows"] = self._pending_video_rows
        self._pending_video_rows = None
        return output

    def _compute_loss(self, model, inputs):
        self._active_video_rows = inputs["video_rows"]
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._active_video_rows = None

    def _video_rows_for(self, n: int) -> list[dict[str, torch.Tensor]] | None:
        rows = self._active_video_rows if self._active_video_rows is not None else self._pending_video_rows
        if rows is not None and len(rows) != n:
            raise RuntimeError(f"{len(rows)} video rows for a batch of {n} sequences")
        return rows

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **kwargs,
    ):
        rows = self._video_rows_for(input_ids.size(0))
        if rows is None:
            return super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                **kwargs,
            )
        batch_size = batch_size or input_ids.size(0)
        all_logps, all_entropies, all_aux = [], [], []
        device = input_ids.device
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            ids, mask = input_ids[start:end], attention_mask[start:end]
            model_inputs = {
                "input_ids": ids,
                "attention_mask": mask,
                "mm_token_type_ids": torch.as_tensor(
                    self.processing_class.create_mm_token_type_ids(ids.tolist()), device=device
                ),
            }
            for key in VIDEO_KEYS:
                if key in rows[start]:
                    model_inputs[key] = torch.cat([r[key] for r in rows[start:end]]).to(device)
            if compute_aux_loss:
                model_inputs["output_router_logits"] = True
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-logits_to_keep] = -100
            with self.accelerator.autocast():
                outputs = model(**model_inputs, labels=labels, fused_lm_head=True)
            all_logps.append(outputs.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                all_entropies.append(outputs.entropy[:, -logits_to_keep:])
            if compute_aux_loss:
                all_aux.append(outputs.aux_loss)
        logps = torch.cat(all_logps)
        entropies = torch.cat(all_entropies) if compute_entropy else None
        aux = torch.stack(all_aux).mean() if compute_aux_loss else None
        return logps, entropies, aux


def grpo_dataset(rows: list[dict[str, Any]], recipe: GRPORecipe):
    """Record columns + a conversational `prompt` (text only, used for TRL's logs; the video goes in the rollout)."""
    from vtg.data.grammar import grounding_prompt
    from vtg.train.common import records_dataset

    ds = records_dataset(rows)
    style = recipe.resolved_prompt_style()
    prompts = [
        [
            {
                "role": "user",
                "content": grounding_prompt(
                    r["query"], float(r["duration"]), mode=recipe.mode, think=recipe.think, style=style
                ),
            }
        ]
        for r in rows
    ]
    ds = ds.add_column("prompt", prompts)
    if recipe.think and "think" not in ds.column_names:
        ds = ds.add_column("think", [True] * len(rows))  # the format reward then requires the <think> block
    return ds


def build_grpo_trainer(
    recipe: GRPORecipe, callbacks: list | None = None, extra_rewards: dict[str, tuple[Any, float]] | None = None
) -> VideoGRPOTrainer:
    """The configured trainer. `extra_rewards` {name: (fn, weight)} adds reward functions outside the registry."""
    from trl import GRPOConfig

    from vtg.data.video import set_cache_budget
    from vtg.train import video_check, vision_cache
    from vtg.train.collator import VideoGroundingCollator
    from vtg.train.common import install_merger_learning_rate, load_training_records, trainer_kwargs
    from vtg.train.policy import load_model_and_processor, lora_config, prepare_trainable
    from vtg.train.rewards import get_reward

    rows = load_training_records(recipe.train_file, recipe.max_samples)
    set_cache_budget(recipe.video_cache_mb)
    model, processor = load_model_and_processor(recipe)
    peft_config = lora_config(model, recipe)
    model = prepare_trainable(model, recipe, wrap=False)
    vision_cache.install(model, recipe.vision_feature_cache_mb)
    names = list(recipe.rewards)
    funcs = [get_reward(n) for n in names]
    weights = [float(recipe.rewards[n]) for n in names]
    for name, (fn, weight) in (extra_rewards or {}).items():
        fn.__name__ = name
        funcs.append(fn)
        weights.append(float(weight))
    args = GRPOConfig(
        **trainer_kwargs(recipe),
        num_generations=recipe.num_generations,
        max_completion_length=recipe.max_completion_length,
        temperature=recipe.temperature,
        top_p=recipe.top_p,
        beta=recipe.beta,
        epsilon=recipe.epsilon,
        num_iterations=recipe.num_iterations,
        loss_type=recipe.loss_type,
        scale_rewards=recipe.scale_rewards,
        reward_weights=weights,
        use_vllm=False,  # rollouts go through our video-aware rollout_func (which uses vLLM itself)
        log_completions=recipe.log_completions,
    )
    trainer = VideoGRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=grpo_dataset(rows, recipe),
        processing_class=processor,
        callbacks=callbacks,
        peft_config=peft_config,
        recipe=recipe,
    )
    install_merger_learning_rate(trainer, recipe)
    if recipe.video_check_every:  # scored as SFT would score the true answer, with the policy's own prompt
        video_check.install(
            trainer,
            recipe,
            VideoGroundingCollator(
                processor,
                recipe.frame_sampling(),
                mode=recipe.mode,
                think=recipe.think,
                max_length=recipe.max_length,
                prompt_style=recipe.resolved_prompt_style(),
            ),
            rows,
        )
    return trainer


def run_grpo(recipe: GRPORecipe, callbacks: list | None = None) -> Path:
    """Train and export: returns the final model folder (LoRA merged, `vtg_sampling.json` next to it)."""
    from vtg.train.common import train_and_export

    trainer = build_grpo_trainer(recipe, callbacks)
    rollouts = "vLLM" if trainer.llm is not None else "HF generate"
    return train_and_export(
        trainer, recipe, "grpo", f"rewards {recipe.rewards}; rollouts via {rollouts}", close=trainer.close_llm
    )
