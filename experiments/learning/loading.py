"""What the bench scripts that score or step a trained tiny model share: the model and its SFT collator, one thread."""

from __future__ import annotations


def model_and_collator(model_dir):
    """(model, VideoGroundingCollator) with the folder's own frame sampling and prompt style, torch on one thread."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vtg import engine, hf_fixes
    from vtg.train.collator import VideoGroundingCollator

    hf_fixes.apply()
    torch.set_num_threads(1)
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    collator = VideoGroundingCollator(AutoProcessor.from_pretrained(model_dir), engine.sampling_for_model(model_dir),
                                      prompt_style=engine.prompt_style_for_model(model_dir))
    return model, collator
