"""The video collator for SFT: records → (frames + metadata through the processor) → padded model inputs + labels.

TRL's vision collator only handles images; this one builds each record's request through `vtg.request` (the video
decoded once per sampling and the prompt rendered as eval and serving render it), and returns
what Qwen-VL models need in the loss pass: `pixel_values_videos`, `video_grid_thw`, `second_per_grid_ts`
(Qwen2.5-VL), `mm_token_type_ids`. The loss is on the assistant answer only (optionally with `<think>` targets).
"""

from __future__ import annotations

from typing import Any

import torch

from vtg.data.grammar import format_answer
from vtg.errors import UserError

END_OF_TURN = "<|im_end|>"  # both Qwen-VL families end an assistant turn with it; it is the generation stop token
IGNORE = -100
# Keys that are per-token ([1, L]) and must be padded along the sequence; everything else is per-video and is
# concatenated along dim 0.
PER_TOKEN = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


def reasoning_of(row: dict[str, Any]) -> str | None:
    """A record's reasoning text for `<think>` targets, when the data set provides one."""
    for key in ("think", "reasoning"):
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def target_text(row: dict[str, Any], think: bool) -> str:
    """The assistant answer the model is trained to write, ending with the stop token."""
    reasoning = reasoning_of(row) if think else None
    return format_answer(row["moments"], think=reasoning) + END_OF_TURN


class VideoGroundingCollator:
    """Callable TRL/HF data collator over record dicts (with `video` already an absolute path)."""

    def __init__(self, requests, *, max_length: int = 4096):
        self.requests = requests  # vtg.request.Requests: processor, frame sampling, grounding prompt
        self.tokenizer = getattr(requests.processor, "tokenizer", requests.processor)
        self.max_length = max_length

    @property
    def sampling(self):
        return self.requests.sampling

    def encode(self, row: dict[str, Any], video=None) -> dict[str, torch.Tensor]:
        """One record → model inputs with labels on the answer tokens only; `video` (a DecodedVideo) replaces the
        record's own decoded frames (train/video_check.py passes them shuffled)."""
        request = self.requests.record(row, video=video)
        target = target_text(row, self.requests.prompt.think)
        feats = dict(self.requests.hf_inputs(request, target))
        ids = feats["input_ids"][0]
        answer_ids = self.tokenizer(target, add_special_tokens=False)["input_ids"]
        n = len(answer_ids)
        # The answer is text after the template's "assistant\n": its tokens must be the sequence's tail exactly.
        if ids[-n:].tolist() != list(answer_ids):
            raise RuntimeError(
                f"record {row.get('id')!r}: answer tokens do not align with the end of the prompt; "
                "the chat template or tokenizer merges across the prompt/answer boundary"
            )
        if ids.numel() > self.max_length:
            raise UserError(
                f"record {row.get('id')!r}: {ids.numel()} tokens (video included) exceed max_length "
                f"{self.max_length}; raise max_length or lower sampling.max_frames / max_pixels"
            )
        labels = torch.full_like(ids, IGNORE)
        labels[-n:] = ids[-n:]
        feats["labels"] = labels[None]
        return feats

    def __call__(self, rows: list[dict[str, Any]], videos: list | None = None) -> dict[str, torch.Tensor]:
        videos = [None] * len(rows) if videos is None else videos
        return pad_batch([self.encode(r, v) for r, v in zip(rows, videos, strict=True)], self.tokenizer.pad_token_id)


def pad_batch(items: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad per-token tensors, concatenate per-video tensors (pixel rows, grids, seconds per grid)."""
    length = max(it["input_ids"].shape[-1] for it in items)
    pad_value = {"input_ids": pad_id, "labels": IGNORE}
    out: dict[str, torch.Tensor] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if key in PER_TOKEN or key == "labels":
            rows = []
            for v in values:
                v = v if v.dim() == 2 else v[None]
                fill = pad_value.get(key, 0)
                rows.append(torch.cat([v, v.new_full((1, length - v.shape[-1]), fill)], dim=1))
            out[key] = torch.cat(rows, dim=0)
        else:
            out[key] = torch.cat([torch.as_tensor(v) for v in values], dim=0)
    return out
