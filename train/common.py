"""What SFT and GRPO share: records → dataset, the trainer arguments a recipe implies, checkpoints and resume."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vtg.errors import UserError


def load_training_records(path: str, max_samples: int | None = None) -> list[dict[str, Any]]:
    """Validated records as dicts with absolute video paths (the trainer runs from any working directory)."""
    from vtg.data.records import load_records

    if not path:
        raise UserError("train_file is not set: point it at a records JSONL (e.g. from `vtg data synth`)")
    if not Path(path).is_file():
        raise UserError(f"train_file not found: {path}")
    root = Path(path).resolve().parent
    records = load_records(path, check_video=True)
    if max_samples:
        records = records[:max_samples]
    if not records:
        raise UserError(f"{path}: no records")
    rows = []
    for r in records:
        d = r.to_dict()
        d["video"] = str(Path(r.video_path(root)).resolve()) if "://" not in r.video else r.video
        rows.append(d)
    return rows


def records_dataset(rows: list[dict[str, Any]]):
    """An HF dataset of the core record columns (extras with mixed types are dropped; `think` kept if present)."""
    import datasets

    keep = ("id", "video", "duration", "query", "moments", "think")
    cols = {k: [r.get(k) for r in rows] for k in keep if any(k in r for r in rows)}
    cols["moments"] = [[[float(s), float(e)] for s, e in m] for m in cols["moments"]]
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "video": datasets.Value("string"),
            "duration": datasets.Value("float64"),
            "query": datasets.Value("string"),
            "moments": datasets.List(datasets.List(datasets.Value("float64"))),
            **({"think": datasets.Value("string")} if "think" in cols else {}),
        }
    )
    return datasets.Dataset.from_dict(cols, features=features)


def trainer_kwargs(recipe) -> dict[str, Any]:
    """`TrainingArguments` fields common to SFTConfig and GRPOConfig."""
    bf16 = recipe.use_bf16()
    kwargs = dict(
        output_dir=recipe.output_dir,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler_type,
        warmup_steps=recipe.warmup_steps,
        weight_decay=recipe.weight_decay,
        max_grad_norm=recipe.max_grad_norm,
        num_train_epochs=recipe.num_train_epochs,
        max_steps=recipe.max_steps,
        per_device_train_batch_size=recipe.per_device_train_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        gradient_checkpointing=recipe.gradient_checkpointing,
        bf16=bf16,
        fp16=False,
        logging_steps=recipe.logging_steps,
        save_strategy="steps",
        save_steps=recipe.save_steps,
        save_total_limit=recipe.save_total_limit,
        seed=recipe.seed,
        data_seed=recipe.seed,
        report_to=recipe.report_to,
        remove_unused_columns=False,  # the video collator / rollout needs the raw record columns
        dataloader_num_workers=recipe.dataloader_num_workers,
        # workers live through epochs, so their decoded-video cache (video_cache_mb) does too
        dataloader_persistent_workers=recipe.dataloader_num_workers > 0,
        use_cpu=not _has_gpu(),
    )
    if recipe.deepspeed:
        kwargs["deepspeed"] = recipe.deepspeed
    return kwargs


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def resume_checkpoint(recipe) -> str | None:
    """The checkpoint to resume from: the last `checkpoint-N` in output_dir when `resume` is on, else None."""
    if not recipe.resume:
        return None
    from transformers.trainer_utils import get_last_checkpoint

    if not os.path.isdir(recipe.output_dir):
        print(f"[vtg] resume: {recipe.output_dir} does not exist yet; starting from step 0")
        return None
    last = get_last_checkpoint(recipe.output_dir)
    if last is None:
        print(f"[vtg] resume: no checkpoint in {recipe.output_dir}; starting from step 0")
    else:
        print(f"[vtg] resuming from {last}")
    return last


def describe_run(trainer) -> None:
    """One line saying how the run is distributed (so a silently single-process run is visible)."""
    acc = trainer.accelerator
    zero = ""
    if getattr(trainer, "is_deepspeed_enabled", False):
        zero = f", DeepSpeed ZeRO-{acc.state.deepspeed_plugin.zero_stage}"
    print(
        f"[vtg] rank {acc.process_index}/{acc.num_processes}: {acc.state.distributed_type}{zero}, device {acc.device}",
        flush=True,
    )


def gathered_params(trainer, model):
    """ZeRO-3 shards parameters across ranks: gather them (on every rank) to read full weights; a no-op otherwise."""
    import contextlib

    if getattr(trainer, "is_deepspeed_enabled", False) and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
    return contextlib.nullcontext()


def export_from_trainer(trainer, recipe, to_yaml_text: str):
    """Export the trained policy to output_dir/final on the main process (all ranks take part in the gather)."""
    from pathlib import Path

    from vtg.train.policy import export_final

    final = Path(recipe.output_dir) / "final"
    model = trainer.accelerator.unwrap_model(trainer.model)
    with gathered_params(trainer, model):
        if trainer.accelerator.is_main_process:
            export_final(
                model,
                trainer.processing_class,
                final,
                recipe.frame_sampling(),
                to_yaml_text,
                recipe.resolved_prompt_style(),
            )
    trainer.accelerator.wait_for_everyone()
    return final


def train_and_export(trainer, recipe, method: str, detail: str, close=None):
    """Describe the run, train (resuming when asked), export output_dir/final; `close` runs even if training fails."""
    from vtg.train.config import to_yaml
    from vtg.train.policy import count_trainable

    trainable, total = count_trainable(trainer.model)
    describe_run(trainer)
    print(f"[vtg] {method}: {trainable:,} of {total:,} parameters trainable ({recipe.tuning}); {detail}")
    try:
        trainer.train(resume_from_checkpoint=resume_checkpoint(recipe))
    finally:
        if close is not None:
            close()
    return export_from_trainer(trainer, recipe, to_yaml(recipe))


MERGER_GROUP = "vtg_merger"  # marks the merger's optimizer group (torch keeps extra keys in a group)


def install_merger_learning_rate(trainer, recipe) -> None:
    """Give the vision merger's trainable weights `recipe.merger_learning_rate` (the scheduler scales every group
    alike). Wraps the trainer's own `create_optimizer`, which the plain, DeepSpeed and resume paths all call, so the
    optimizer class, its settings and the weight-decay split stay the trainer's."""
    if recipe.merger_learning_rate is None:
        return
    import inspect
    import types

    from transformers import TrainerCallback

    from vtg.train.policy import is_merger

    build = trainer.create_optimizer

    def create_optimizer(self, model=None):
        if self.optimizer is not None:
            return self.optimizer
        opt = build(model)
        merger = {id(p) for n, p in (model or self.model).named_parameters() if is_merger(n) and p.requires_grad}
        if not merger:
            raise UserError("merger_learning_rate: no trainable merger weight found in the model")
        groups = []
        for group in opt.param_groups:
            settings = {k: v for k, v in group.items() if k != "params"}
            for is_m in (False, True):
                params = [p for p in group["params"] if (id(p) in merger) == is_m]
                if params:
                    groups.append(
                        {
                            **settings,
                            "params": params,
                            **({"lr": recipe.merger_learning_rate, MERGER_GROUP: True} if is_m else {}),
                        }
                    )
        accepted = inspect.signature(type(opt)).parameters  # defaults can hold keys the constructor does not take
        self.optimizer = type(opt)(groups, **{k: v for k, v in opt.defaults.items() if k in accepted})
        return self.optimizer

    trainer.create_optimizer = types.MethodType(create_optimizer, trainer)
    used = {}

    class RecordMergerRate(TrainerCallback):
        # read where the Trainer reads the rate it logs: after the optimizer step, before the scheduler's
        def on_optimizer_step(self, args, state, control, **kwargs):
            rates = [g["lr"] for g in trainer.optimizer.param_groups if g.get(MERGER_GROUP)]
            used["rate"] = float(rates[0]) if rates else None

    trainer.add_callback(RecordMergerRate())
    log = trainer.log

    def log_with_merger_rate(self, logs, *args, **kwargs):
        # the Trainer logs group 0's rate only; the merger's, read back from the optimizer that steps (DeepSpeed's
        # included), shows the split reached it and that the scheduler keeps the two in proportion
        if "learning_rate" in logs and used.get("rate") is not None:
            logs["merger_learning_rate"] = used["rate"]
        return log(logs, *args, **kwargs)

    trainer.log = types.MethodType(log_with_merger_rate, trainer)
