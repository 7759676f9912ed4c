"""Supervised fine-tuning on video grounding records: TRL's SFTTrainer with our video collator.

The dataset stays raw (record columns); `VideoGroundingCollator` decodes frames, applies the chat template and the
processor with the true time metadata, and masks everything but the answer. TRL's own VLM collator would pass images
only, leaving the vision tower out of the gradient pass (DESIGN.md §8).
"""

from __future__ import annotations

from pathlib import Path

from vtg.train.config import SFTRecipe


def build_sft_trainer(recipe: SFTRecipe, callbacks: list | None = None):
    """The configured trainer (model loaded, LoRA applied, collator set); `run_sft` trains it."""
    from trl import SFTConfig, SFTTrainer

    from vtg.data.video import set_cache_budget
    from vtg.train import video_check, vision_cache
    from vtg.train.collator import VideoGroundingCollator
    from vtg.train.common import install_merger_learning_rate, load_training_records, records_dataset, trainer_kwargs
    from vtg.train.policy import load_model_and_processor, prepare_trainable

    rows = load_training_records(recipe.train_file, recipe.max_samples)
    set_cache_budget(recipe.video_cache_mb)
    model, processor = load_model_and_processor(recipe)
    model = prepare_trainable(model, recipe)
    vision_cache.install(model, recipe.vision_feature_cache_mb)
    collator = VideoGroundingCollator(
        processor,
        recipe.frame_sampling(),
        mode=recipe.mode,
        think=recipe.think,
        max_length=recipe.max_length,
        prompt_style=recipe.resolved_prompt_style(),
    )
    args = SFTConfig(
        **trainer_kwargs(recipe),
        max_length=None,  # the collator enforces max_length per record, naming it (truncating video tokens breaks)
        dataset_kwargs={"skip_prepare_dataset": True},
        packing=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=records_dataset(rows),
        data_collator=collator,
        processing_class=processor,
        callbacks=callbacks,
    )
    install_merger_learning_rate(trainer, recipe)
    video_check.install(trainer, recipe, collator, rows)
    return trainer


def run_sft(recipe: SFTRecipe, callbacks: list | None = None) -> Path:
    """Train and export: returns the folder of the final model (LoRA merged, `vtg_sampling.json` next to it)."""
    from vtg.train.common import train_and_export

    trainer = build_sft_trainer(recipe, callbacks)
    return train_and_export(trainer, recipe, "sft", f"output {recipe.output_dir}")
