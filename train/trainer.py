"""What the SFT and GRPO trainers share on video, as a mixin over TRL's trainers (`VideoSFTTrainer`,
`VideoGRPOTrainer`): the vision merger's own learning rate (an optimizer group of its own, logged), the frozen vision
tower's feature cache, and the model inputs of a video batch.

Everything is done by overriding the Trainer's documented extension points (`create_optimizer`, `log`,
`compute_loss`); nothing in the model or the trainer is replaced at run time.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from vtg.errors import UserError
from vtg.train.policy import is_merger, vision_tower

log = logging.getLogger(__name__)

MERGER_GROUP = "vtg_merger"  # marks the merger's optimizer group (torch keeps extra keys in a group)


class VideoTrainerMixin:
    """Mixed in before a TRL trainer; `self.args` is a `VideoSFTConfig` / `VideoGRPOConfig`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.vision_cache = self._make_vision_cache()
        self.merger_rate = MergerRate()
        self.add_callback(self.merger_rate)

    # ---- the merger's learning rate ---------------------------------------------------------------------------

    def create_optimizer(self, model=None):
        """The Trainer's optimizer (class, settings, weight-decay split: the plain, DeepSpeed and resume paths all
        build it here), with the merger's weights in groups of their own at `merger_learning_rate`. The scheduler
        then scales every group alike."""
        rate = self.args.merger_learning_rate
        if self.optimizer is not None or rate is None:
            return super().create_optimizer(model)
        built = super().create_optimizer(model)
        merger = {id(p) for n, p in (model or self.model).named_parameters() if is_merger(n) and p.requires_grad}
        if not merger:
            raise UserError("merger_learning_rate: no trainable merger weight found in the model")
        groups = []
        for group in built.param_groups:
            settings = {k: v for k, v in group.items() if k != "params"}
            for in_merger in (False, True):
                params = [p for p in group["params"] if (id(p) in merger) == in_merger]
                if params:
                    groups.append(
                        {**settings, "params": params, **({"lr": rate, MERGER_GROUP: True} if in_merger else {})}
                    )
        accepted = inspect.signature(type(built)).parameters  # defaults can hold keys the constructor does not take
        self.optimizer = type(built)(groups, **{k: v for k, v in built.defaults.items() if k in accepted})
        return self.optimizer

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """The Trainer logs group 0's rate only; add the merger's, read back from the optimizer that steps
        (DeepSpeed's included): it shows the split reached it and that the scheduler keeps the two in proportion."""
        if "learning_rate" in logs and self.merger_rate.rate is not None:
            logs["merger_learning_rate"] = self.merger_rate.rate
        super().log(logs, *args, **kwargs)

    # ---- the video in the model's inputs ----------------------------------------------------------------------

    def _make_vision_cache(self):
        from vtg.train.vision_cache import FeatureCache, supported

        budget = self.args.vision_feature_cache_mb
        if budget <= 0:
            return None
        visual = vision_tower(self.model)
        if not supported(visual):
            log.warning(
                "vision_feature_cache_mb: %s is not a Qwen2.5-VL tower; running it uncached", type(visual).__name__
            )
            return None
        return FeatureCache(budget * 2**20)

    def video_model_inputs(self, model, inputs: dict[str, Any]) -> dict[str, Any]:
        """`inputs` for `model(**inputs)`: with the vision feature cache on, the video's merged features (computed
        through the cache) replace its pixels, as transformers' precomputed `mm_encoder_outputs`."""
        pixels = inputs.get("pixel_values_videos")
        if self.vision_cache is None or pixels is None:
            return inputs
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        features = self.vision_cache.features(vision_tower(model), pixels, inputs["video_grid_thw"])
        if features is None:
            return inputs
        out = {k: v for k, v in inputs.items() if k != "pixel_values_videos"}
        out["mm_encoder_outputs"] = {"video": BaseModelOutputWithPooling(pooler_output=tuple(features))}
        return out

    # ---- running and exporting ---------------------------------------------------------------------------------

    def run(self, detail: str = "") -> Path:
        """Describe the run, train (resuming when asked), export `output_dir/final`; returns that folder."""
        from vtg.train.policy import count_trainable

        trainable, total = count_trainable(self.model)
        self.describe_run()
        log.info(
            "%s: %s of %s parameters trainable (%s); %s",
            type(self).__name__,
            f"{trainable:,}",
            f"{total:,}",
            self.args.tuning,
            detail or f"output {self.args.output_dir}",
        )
        try:
            self.train(resume_from_checkpoint=self.resume_checkpoint())
        finally:
            self.close()
        return self.export_final()

    def close(self) -> None:
        """Release what the trainer holds beside the model (GRPO: its rollout engine)."""

    def describe_run(self) -> None:
        """One line saying how the run is distributed (so a silently single-process run is visible)."""
        acc = self.accelerator
        zero = f", DeepSpeed ZeRO-{acc.state.deepspeed_plugin.zero_stage}" if self.is_deepspeed_enabled else ""
        log.info(
            "rank %d/%d: %s%s, device %s",
            acc.process_index,
            acc.num_processes,
            acc.state.distributed_type,
            zero,
            acc.device,
        )

    def resume_checkpoint(self) -> str | None:
        """The checkpoint to resume from: `resume_from_checkpoint` as a path, or with `true`/`last` the last
        `checkpoint-N` in output_dir (none yet: start from step 0, and say so)."""
        wanted = self.args.resume_from_checkpoint
        if wanted in (None, False, "false", ""):
            return None
        if wanted not in (True, "true", "True", "last"):
            return str(wanted)
        from transformers.trainer_utils import get_last_checkpoint

        out = self.args.output_dir
        last = get_last_checkpoint(out) if os.path.isdir(out) else None
        if last is None:
            log.info("resume: no checkpoint in %s; starting from step 0", out)
        else:
            log.info("resuming from %s", last)
        return last

    def gathered(self, model):
        """ZeRO-3 shards parameters across ranks: gather them (on every rank) to read full weights; else a no-op."""
        if self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3:
            import deepspeed

            return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
        return contextlib.nullcontext()

    def window_settings(self) -> dict:
        """The recipe's `windows`, window_s defaulting to the longest training clip: the longest span the model
        has learnt to answer about in one call."""
        windows = dict(self.args.windows)
        ds = self.train_dataset
        if "window_s" not in windows and ds is not None and "duration" in getattr(ds, "column_names", []):
            windows["window_s"] = float(math.ceil(max(ds["duration"])))
        return windows

    def export_final(self) -> Path:
        """Export the trained policy to output_dir/final on the main process (all ranks take part in the gather):
        LoRA merged, with the model folder's sidecar files (frame sampling, prompt style) and the recipe."""
        from vtg.train.policy import export_final

        final = Path(self.args.output_dir) / "final"
        model = self.accelerator.unwrap_model(self.model)
        with self.gathered(model):
            if self.accelerator.is_main_process:
                export_final(
                    model,
                    self.processing_class,
                    final,
                    self.args.frame_sampling(),
                    recipe_yaml(self.args),
                    self.args.resolved_prompt_style(),
                    self.window_settings(),
                )
        self.accelerator.wait_for_everyone()
        return final


def recipe_yaml(args) -> str:
    """The recipe a model was trained with, as YAML (`vtg_recipe.yaml` in the exported folder)."""
    import yaml

    return yaml.safe_dump(args.recipe_dict(), sort_keys=False)


class MergerRate(TrainerCallback):
    """The merger group's rate, read where the Trainer reads the rate it logs: after the optimizer step, before the
    scheduler's."""

    def __init__(self) -> None:
        self.rate: float | None = None

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        rates = [g["lr"] for g in optimizer.param_groups if g.get(MERGER_GROUP)] if optimizer is not None else []
        self.rate = float(rates[0]) if rates else None
