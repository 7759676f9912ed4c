"""Supervised fine-tuning on video grounding records: TRL's SFTTrainer with our video collator.

The dataset stays raw (record columns); `VideoGroundingCollator` decodes frames, applies the chat template and the
processor with the true time metadata, and masks everything but the answer. TRL's own VLM collator would pass images
only, leaving the vision tower out of the gradient pass (DESIGN.md §8).
"""

from __future__ import annotations

from pathlib import Path

from vtg.train.config import SFTRecipe, to_yaml


def build_sft_trainer(recipe: SFTRecipe, callbacks: list | None = None):
    """The configured trainer (model loaded, LoRA applied, collator set); `run_sft` trains it."""
    from trl import SFTConfig, SFTTrainer

    from vtg.train.collator import VideoGroundingCollator
    from vtg.train.common import load_training_records, records_dataset, trainer_kwargs
    from vtg.train.policy import load_model_and_processor, prepare_trainable

    rows = load_training_records(recipe.train_file, recipe.max_samples)
    model, processor = load_model_and_processor(recipe)
    model = prepare_trainable(model, recipe)
    collator = VideoGroundingCollator(processor, recipe.frame_sampling(), mode=recipe.mode, think=recipe.think,
                                      max_length=recipe.max_length)
    args = SFTConfig(
        **trainer_kwargs(recipe),
        max_length=None,  # the collator enforces max_length per record, naming it (truncating video tokens breaks)
        dataset_kwargs={"skip_prepare_dataset": True},
        packing=False,
    )
    return SFTTrainer(model=model, args=args, train_dataset=records_dataset(rows), data_collator=collator,
                      processing_class=processor, callbacks=callbacks)


def run_sft(recipe: SFTRecipe, callbacks: list | None = None) -> Path:
    """Train and export: returns the folder of the final model (LoRA merged, `vtg_sampling.json` next to it)."""
    from vtg.train.common import describe_run, export_from_trainer, resume_checkpoint
    from vtg.train.policy import count_trainable

    trainer = build_sft_trainer(recipe, callbacks)
    trainable, total = count_trainable(trainer.model)
    describe_run(trainer)
    print(f"[vtg] sft: {trainable:,} of {total:,} parameters trainable ({recipe.tuning}); "
          f"output {recipe.output_dir}")
    trainer.train(resume_from_checkpoint=resume_checkpoint(recipe))
    return export_from_trainer(trainer, recipe, to_yaml(recipe))
