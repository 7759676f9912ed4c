"""Supervised fine-tuning on video grounding records: `VideoSFTTrainer`, TRL's SFTTrainer with the video.

The dataset stays raw (record columns); `VideoGroundingCollator` builds each record's request through `vtg.request`
(frames + time metadata, the prompt as eval and serving render it) and masks everything but the answer. TRL's own
VLM collator would pass images only, leaving the vision tower out of the gradient pass.
"""

from __future__ import annotations

from pathlib import Path

from trl import SFTTrainer

from vtg.train.config import VideoSFTConfig
from vtg.train.trainer import VideoTrainerMixin


class VideoSFTTrainer(VideoTrainerMixin, SFTTrainer):
    """SFTTrainer whose loss pass sees each record's video (through the vision feature cache when it is on)."""

    def compute_loss(self, model, inputs, *args, **kwargs):
        return super().compute_loss(model, self.video_model_inputs(model, inputs), *args, **kwargs)


def build_sft_trainer(args: VideoSFTConfig, callbacks: list | None = None) -> VideoSFTTrainer:
    """The configured trainer (model loaded, LoRA applied, collator set); `trainer.run()` trains and exports it."""
    from vtg.data.video import set_cache_budget
    from vtg.request import Requests
    from vtg.train import video_check
    from vtg.train.collator import VideoGroundingCollator
    from vtg.train.dataset import load_training_records, records_dataset
    from vtg.train.policy import load_model_and_processor, prepare_trainable

    rows = load_training_records(args.train_file)
    set_cache_budget(args.video_cache_mb)
    model, processor = load_model_and_processor(args)
    model = prepare_trainable(model, args)
    requests = Requests(processor, args.frame_sampling()).asking(
        mode=args.mode, think=args.think, style=args.resolved_prompt_style()
    )
    collator = VideoGroundingCollator(requests, max_length=args.max_length)
    trainer = VideoSFTTrainer(
        model=model,
        args=args,
        train_dataset=records_dataset(rows),
        data_collator=collator,
        processing_class=processor,
        callbacks=callbacks,
    )
    video_check.install(trainer, collator, rows)
    return trainer


def run_sft(args: VideoSFTConfig, callbacks: list | None = None) -> Path:
    """Train and export: returns the folder of the final model (LoRA merged, its sidecar files next to it)."""
    return build_sft_trainer(args, callbacks).run()
