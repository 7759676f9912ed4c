"""GRPO on video (Time-R1 style): `VideoGRPOTrainer`, TRL's GRPOTrainer with the video in the rollouts and in every
log-prob pass.

TRL 1.16 carries images only; given a video prompt it would run text-only and the vision tower would never see a
gradient. The video travels with the batch instead:
- the dataset's `prompt` column holds each record's request as chat messages naming its video (`vtg.request`);
- `rollout_func` (TRL's hook for custom generation) builds each prompt's request once (video decoded, prompt
  rendered), samples G completions from a colocated vLLM engine (or the policy's `generate`) with exactly the frames
  and metadata the loss pass uses, and returns the prompt token ids of the HF processor (video tokens expanded) and,
  as a TRL extra field, each row's video tensors (`video_inputs`), which TRL writes into the batch rows;
- `_generate_and_score_completions` moves them into the generated batch, where TRL's shuffling and splitting keep
  them with their rows, and computes the old / reference log-probs TRL asked for with them (TRL's generation step
  cannot pass video to `_get_per_token_logps_and_entropies`: there it gets NaN placeholders, replaced here);
- `_compute_loss` hands the batch's video to the log-prob pass along with the model (`WithVideo`).
Rewards are the plain functions of `vtg.train.rewards`, weighted by the recipe, logged as `rewards/<name>/mean`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from trl import GRPOTrainer

from vtg.train.config import VideoGRPOConfig
from vtg.train.rollout import VIDEO_KEYS
from vtg.train.trainer import VideoTrainerMixin

LOGP_KEYS = ("old_per_token_logps", "ref_per_token_logps")  # what TRL's generation step may precompute


def _video_rollout(prompts: list, trainer: VideoGRPOTrainer) -> dict[str, Any]:
    """TRL `rollout_func(prompts, trainer)`."""
    return trainer.video_rollout(prompts)


@dataclass
class WithVideo:
    """A model together with the video tensors of the batch it scores (one dict of VIDEO_KEYS per row)."""

    model: Any
    video_inputs: list[dict[str, torch.Tensor]]


class VideoGRPOTrainer(VideoTrainerMixin, GRPOTrainer):
    def __init__(self, *args, requests, **kwargs):
        self.requests = requests  # vtg.request.Requests: processor, frame sampling, grounding prompt
        self.llm = None
        self._synced_step = -1
        self.rollout_stats = {"vllm_syncs": 0, "rollout_seconds": 0.0, "completion_tokens": 0}
        super().__init__(*args, rollout_func=_video_rollout, **kwargs)
        from vtg.train import rollout

        self.suppressed_tokens = rollout.suppressed_token_ids(self.processing_class)
        if self.args.rollout_engine == "vllm":  # colocate: one engine per rank, each sampling its own prompts
            self.llm = rollout.make_colocated_llm(
                self.args.model,
                gpu_memory_utilization=self.args.vllm_gpu_memory_utilization,
                max_model_len=self.args.vllm_max_model_length or self.args.max_length,
                seed=self.args.seed + self.accelerator.process_index,
            )

    def close(self) -> None:
        """Shut the colocated engine down (frees its RAM; lets another engine start in this process)."""
        if self.llm is not None:
            from vtg.vllm_engine import close_llm

            close_llm(self.llm)
            self.llm = None

    # ---- rollouts ---------------------------------------------------------------------------------------------

    def video_rollout(self, prompts: list) -> dict[str, Any]:
        from vtg.train import rollout

        t0 = time.perf_counter()
        groups = rollout.build_groups(prompts, self.requests)
        a = self.args
        if self.llm is not None:
            if self._synced_step != self.state.global_step:  # after every optimizer step (and before the first)
                model = self.accelerator.unwrap_model(self.model)
                with self.gathered(model):
                    rollout.sync_weights(self.llm, model)
                self._synced_step = self.state.global_step
                self.rollout_stats["vllm_syncs"] += 1
            completions = rollout.vllm_generate(
                self.llm,
                groups,
                temperature=a.temperature,
                top_p=a.top_p,
                max_tokens=a.max_completion_length,
                suppress=self.suppressed_tokens,
            )
        else:
            model = self.accelerator.unwrap_model(self.model)
            was_training = model.training
            model.eval()
            with self.gathered(model):
                completions = rollout.hf_generate(
                    model,
                    self.processing_class,
                    groups,
                    temperature=a.temperature,
                    top_p=a.top_p,
                    max_tokens=a.max_completion_length,
                    eos_ids=list(self.eos_token_ids),
                    suppress=self.suppressed_tokens,
                )
            model.train(was_training)
        prompt_ids, video_inputs = [], []
        for g in groups:
            prompt_ids += [g.prompt_ids] * g.size
            video_inputs += [g.video_inputs] * g.size  # shared tensors: the video is decoded/processed once per group
        self.rollout_stats["rollout_seconds"] += time.perf_counter() - t0
        self.rollout_stats["completion_tokens"] += sum(len(c) for c in completions)
        return {"prompt_ids": prompt_ids, "completion_ids": completions, "logprobs": None, "video_inputs": video_inputs}

    # ---- the video in every log-prob pass ---------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs):
        batch = super()._generate_and_score_completions(inputs)
        batch["video_inputs"] = [row.pop("video_inputs") for row in inputs]  # set by TRL from the rollout's result
        if len(batch["video_inputs"]) != batch["prompt_ids"].size(0):
            raise RuntimeError(
                f"{len(batch['video_inputs'])} rows of video for {batch['prompt_ids'].size(0)} sequences"
            )
        self._score_with_video(batch, [k for k in LOGP_KEYS if k in batch])
        return batch

    def _score_with_video(self, batch: dict[str, Any], keys: list[str]) -> None:
        """The old / reference log-probs TRL's generation step asked for, now with the batch's video."""
        if not keys:
            return
        from trl.trainer.utils import use_adapter

        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        n = batch["completion_ids"].size(1)
        size = self.args.per_device_train_batch_size if self.model.training else self.args.per_device_eval_batch_size
        with torch.no_grad():
            for key in keys:
                if key == "old_per_token_logps":
                    model = self.model
                    logps, _, _ = self._get_per_token_logps_and_entropies(
                        model, ids, mask, n, batch_size=size, video_inputs=batch["video_inputs"]
                    )
                elif self.ref_model is not None:
                    logps, _, _ = self._get_per_token_logps_and_entropies(
                        self.ref_model, ids, mask, n, batch_size=size, video_inputs=batch["video_inputs"]
                    )
                else:  # as TRL does: a PEFT policy's reference is the base model (or a "ref" adapter)
                    unwrapped = self.accelerator.unwrap_model(self.model)
                    with use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
                        logps, _, _ = self._get_per_token_logps_and_entropies(
                            self.model, ids, mask, n, batch_size=size, video_inputs=batch["video_inputs"]
                        )
                batch[key] = logps

    def _compute_loss(self, model, inputs):
        # TRL's loss pass passes the model, but only its own (image) batch keys, to the log-prob pass
        return super()._compute_loss(WithVideo(model, inputs["video_inputs"]), inputs)

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        video_inputs=None,
        **image_kwargs,
    ):
        if isinstance(model, WithVideo):
            model, video_inputs = model.model, model.video_inputs
        if video_inputs is None:
            # TRL's generation step precomputing old / reference log-probs before the batch's video is known:
            # placeholders that `_generate_and_score_completions` replaces (NaN: any other use would show)
            nan = torch.full((input_ids.size(0), logits_to_keep), float("nan"), device=input_ids.device)
            return nan, (nan if compute_entropy else None), None
        if len(video_inputs) != input_ids.size(0):
            raise RuntimeError(f"{len(video_inputs)} rows of video for a batch of {input_ids.size(0)} sequences")
        batch_size = batch_size or input_ids.size(0)
        all_logps, all_entropies, all_aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            model_inputs = self._video_batch(
                model, input_ids[start:end], attention_mask[start:end], video_inputs[start:end]
            )
            if compute_aux_loss:
                model_inputs["output_router_logits"] = True
            ids, mask = model_inputs["input_ids"], model_inputs["attention_mask"]
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-logits_to_keep] = -100
            # TRL's fused LM head (added by GRPOTrainer.__init__ to the policy and the reference) divides the logits
            # by `temperature`: log-probs of the distribution the rollouts sampled from, as in TRL's own pass
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

    def _video_batch(self, model, ids, mask, rows: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        """Model inputs for a chunk of sequences and their rows' video tensors."""
        device = ids.device
        inputs = {
            "input_ids": ids,
            "attention_mask": mask,
            "mm_token_type_ids": torch.as_tensor(
                self.processing_class.create_mm_token_type_ids(ids.tolist()), device=device
            ),
        }
        for key in VIDEO_KEYS:
            if key in rows[0]:
                inputs[key] = torch.cat([r[key] for r in rows]).to(device)
        return self.video_model_inputs(model, inputs)


def grpo_dataset(rows: list[dict[str, Any]], requests):
    """Record columns + `prompt`: each record's request as chat messages naming its video (what the rollout builds
    the request from, and what TRL logs)."""
    from vtg.train.dataset import records_dataset

    ds = records_dataset(rows)
    ds = ds.add_column("prompt", [requests.prompt.messages(r["query"], float(r["duration"]), r["video"]) for r in rows])
    if requests.prompt.think and "think" not in ds.column_names:
        ds = ds.add_column("think", [True] * len(rows))  # the format reward then requires the <think> block
    return ds


def build_grpo_trainer(
    args: VideoGRPOConfig, callbacks: list | None = None, extra_rewards: dict[str, tuple[Any, float]] | None = None
) -> VideoGRPOTrainer:
    """The configured trainer. `extra_rewards` {name: (fn, weight)} adds reward functions outside the registry."""
    import copy

    from vtg.data.video import set_cache_budget
    from vtg.request import Requests
    from vtg.train import video_check
    from vtg.train.collator import VideoGroundingCollator
    from vtg.train.dataset import load_training_records
    from vtg.train.policy import load_model_and_processor, lora_config, prepare_trainable
    from vtg.train.rewards import get_reward

    rows = load_training_records(args.train_file)
    set_cache_budget(args.video_cache_mb)
    model, processor = load_model_and_processor(args)
    peft_config = lora_config(model, args)
    model = prepare_trainable(model, args, wrap=False)
    requests = Requests(processor, args.frame_sampling()).asking(
        mode=args.mode, think=args.think, style=args.resolved_prompt_style()
    )
    funcs = [get_reward(n) for n in args.rewards]
    if extra_rewards:  # weighted like the recipe's: a copy of the config with their weights appended
        args = copy.copy(args)
        args.reward_weights = list(args.reward_weights)
        for name, (fn, weight) in extra_rewards.items():
            fn.__name__ = name
            funcs.append(fn)
            args.reward_weights.append(float(weight))
    trainer = VideoGRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=grpo_dataset(rows, requests),
        processing_class=processor,
        callbacks=callbacks,
        peft_config=peft_config,
        requests=requests,
    )
    if args.video_check_every:  # scored as SFT would score the true answer, with the policy's own prompt
        video_check.install(trainer, VideoGroundingCollator(requests, max_length=args.max_length), rows)
    return trainer


def run_grpo(args: VideoGRPOConfig, callbacks: list | None = None) -> Path:
    """Train and export: returns the final model folder (LoRA merged, its sidecar files next to it)."""
    trainer = build_grpo_trainer(args, callbacks)
    rollouts = "vLLM" if trainer.llm is not None else "HF generate"
    return trainer.run(f"rewards {args.rewards}; rollouts via {rollouts}")
