"""The settings of the session's second shared server, `keyed_server` (tests/conftest.py): auth on, one LoRA adapter
and tight stream limits, for the modules that need them (test_serve_web, test_serve_stream). One server for both
saves a vLLM engine start (~45 s of the suite)."""

from __future__ import annotations

from pathlib import Path

KEY = "keyed-server-key"
LORA_NAME = "sharp"
MAX_FRAME_BYTES = 200_000
# test_serve_stream checks these numbers: 2 streams at once, idle after 3 s, 60 s of media per session, 32 unsent
# events, frames over 200 kB or 640x640 pixels refused
RECIPE = f"""serve:
  grounding_samples: 4
  limits:
    max_tokens: 64
    max_frames: 16
    max_concurrency: 2
    max_streams: 2
    stream_idle_s: 3
    max_frame_bytes: {MAX_FRAME_BYTES}
    max_frame_pixels: 409600
    max_stream_s: 60
    max_stream_backlog: 32
"""


def random_lora_adapter(model_dir: Path, out: Path) -> Path:
    """A peft LoRA adapter on the language model with random (non-zero) A and B, so it changes the outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from vtg.train.policy import lora_target_regex

    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    cfg = LoraConfig(
        r=8,
        lora_alpha=64,
        target_modules=lora_target_regex(["q_proj", "v_proj"]),
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    get_peft_model(model, cfg).save_pretrained(out)
    return out
