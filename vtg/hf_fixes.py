"""Corrections to transformers that change what a model computes. `apply()` is idempotent and is called before every
transformers forward pass vtg makes (`vtg.request.Requests.hf_inputs`, `vtg.train.policy.load_model_and_processor`).

Qwen2.5-VL text positions after a video (transformers 5.19, `Qwen2_5_VLModel.get_rope_index`):
transformers advances the text position after a vision span by max(grid_h, grid_w) / merge only, ignoring the
video's temporal extent. For a video of T temporal grids spaced `tokens_per_second * second_per_grid_t` apart, the
text after it then starts inside the video's time range (e.g. at 41 when the last frame sits at 65). Qwen's
reference implementation (the one Qwen2.5-VL was trained with) and vLLM start it at max(vision positions) + 1.
So a model trained or scored through transformers saw other positions than the one vLLM serves: measured on a tiny
model that reads the video, the answer digits' log-probs differed by up to 7.4 nats between the two, and greedy
answers disagreed (experiments/learning/probe_results.md). `tests/test_request.py::
test_vllm_and_transformers_give_text_after_the_video_the_same_positions` checks transformers' positions and log-probs
against vLLM's for both families.
"""

from __future__ import annotations

import itertools

_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl

    modeling_qwen2_5_vl.Qwen2_5_VLModel.get_rope_index = qwen25_rope_index
    _applied = True


def qwen25_rope_index(
    self,
    input_ids,
    mm_token_type_ids,
    image_grid_thw=None,
    video_grid_thw=None,
    second_per_grid_ts=None,
    attention_mask=None,
    **kwargs,
):
    """transformers' Qwen2_5_VLModel.get_rope_index with the reference rule for what follows a vision span:
    the next text position is max(vision positions) + 1."""
    import torch

    merge = self.config.vision_config.spatial_merge_size
    tokens_per_second = self.config.vision_config.tokens_per_second
    position_ids = torch.zeros(3, *input_ids.shape, dtype=input_ids.dtype, device=input_ids.device)
    grids = {
        1: iter(image_grid_thw) if image_grid_thw is not None else None,
        2: iter(video_grid_thw) if video_grid_thw is not None else None,
    }
    seconds = iter(second_per_grid_ts) if second_per_grid_ts is not None else itertools.repeat(1)
    deltas = []
    for b, ids in enumerate(input_ids):
        types = mm_token_type_ids[b]
        keep = attention_mask[b].bool() if attention_mask is not None else torch.ones_like(ids, dtype=torch.bool)
        types = types[keep]
        pos, parts = 0, []
        for modality, group in itertools.groupby(types.tolist()):
            n = len(list(group))
            if modality == 0:
                parts.append(torch.arange(n, device=ids.device).view(1, -1).expand(3, -1) + pos)
                pos += n
                continue
            grid = next(grids[modality])
            interval = tokens_per_second * next(seconds) if modality == 2 else 1  # images have no time axis
            vision = self.get_vision_position_ids(pos, grid, 1, merge, interval, device=ids.device)
            if vision.shape[1] != n:
                raise ValueError(
                    f"rope index: a vision span of {n} tokens but grid {grid.tolist()} gives "
                    f"{vision.shape[1]} positions"
                )
            parts.append(vision)
            pos = int(vision.max()) + 1  # the reference rule (transformers: pos += max(h, w) // merge)
        positions = torch.cat(parts, dim=1)
        position_ids[:, b, keep] = positions.to(position_ids.device)
        deltas.append(int(positions.max()) + 1 - int(keep.sum()))
    return position_ids, torch.tensor(deltas, device=input_ids.device).unsqueeze(1)
