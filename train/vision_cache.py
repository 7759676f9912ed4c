"""Cache of the frozen vision tower's features, so each video's tower forward runs once per training run.

With the tower frozen except its merger (the tiny recipes, Time-R1's choice), what the blocks make of a video never
changes: only the merger trains. The trainers (`vtg.train.trainer.VideoTrainerMixin.video_features`) keep the
blocks' output (before the merger) per distinct `pixel_values` + grid, up to a budget, and on a repeat run only the
merger, then hand the model the merged features through transformers' `mm_encoder_outputs` input: the merger still
gets its gradient every step and the loss is the same (tests/test_train_vision_cache.py).

Guards, because a stale feature would be a silent error: the cache is bypassed (and says so once) whenever a
vision parameter other than the merger requires grad (e.g. LoRA put on the tower), and on every miss it checks that
merger(cached features) reproduces the tower's own output; if not (a transformers change), it turns itself off.
Qwen2.5-VL only: Qwen3-VL's deepstack mergers read intermediate blocks, which this does not keep.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict

log = logging.getLogger(__name__)


def supported(visual) -> bool:
    return type(visual).__name__.startswith("Qwen2_5_Vision")


class FeatureCache:
    """Per video: (the blocks' output in window order, the merged tokens' reverse order), least recently used first."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self.used = 0
        self.entries: OrderedDict[tuple, tuple] = OrderedDict()
        self.hits = self.misses = 0
        self.enabled = True
        self.checked = False
        self.warned_unfrozen = False

    @staticmethod
    def _bytes(entry) -> int:
        return sum(t.numel() * t.element_size() for t in entry)

    def get(self, key):
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
        return entry

    def put(self, key, entry) -> None:
        size = self._bytes(entry)
        if size > self.budget:
            return
        self.entries[key] = entry
        self.used += size
        while self.used > self.budget:
            _, old = self.entries.popitem(last=False)
            self.used -= self._bytes(old)

    def features(self, visual, pixel_values, grid_thw) -> list | None:
        """The merged features of each video in the batch (what `visual(pixel_values, grid_thw)` pools), computed
        through the cache; None when the cache cannot apply (the caller runs the tower as usual)."""
        import torch

        if not self.enabled:
            return None
        if not _frozen_below_merger(visual):
            if not self.warned_unfrozen:
                log.warning("vision feature cache bypassed: vision weights before the merger are training")
                self.warned_unfrozen = True
            return None
        pixel_values = pixel_values.type(visual.dtype)
        merged = []
        # one entry per video: a batch is the videos' patches one after the other, each attended to on its own
        for chunk, grid in zip(torch.split(pixel_values, grid_thw.prod(-1).tolist()), grid_thw):
            key = _key(chunk, grid)
            entry = self.get(key)
            if entry is not None:
                self.hits += 1
                merged.append(_merged(visual, entry))
                continue
            self.misses += 1
            out, entry = _tower_once(visual, chunk, grid[None])
            with torch.no_grad():  # before trusting an entry: it must give the tower's own output (cheap: merger only)
                again = _merged(visual, entry)
            if again.shape != out.shape or not torch.allclose(again, out, rtol=1e-5, atol=1e-6):
                log.warning(
                    "vision feature cache off: merger(cached features) differs from the tower's own output "
                    "(a transformers change?)"
                )
                self.enabled = False
                return None
            self.checked = True
            self.put(key, entry)
            merged.append(out)
        return merged


def _key(pixel_values, grid) -> tuple:
    import torch

    data = pixel_values.detach().contiguous().view(-1).view(torch.uint8).cpu().numpy()
    return (
        tuple(grid.tolist()),
        str(pixel_values.dtype),
        hashlib.sha256(data).digest(),
    )  # ~2x faster than blake2b here


def _frozen_below_merger(visual) -> bool:
    return not any(p.requires_grad for n, p in visual.named_parameters() if not n.startswith("merger"))


def _tower_once(visual, pixel_values, grid_thw) -> tuple:
    """Run the tower on one video; (its pooled output, cache entry). The merger's input is read by a hook that lives
    for this one call."""
    captured = []
    hook = visual.merger.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
    try:
        out = visual(pixel_values, grid_thw=grid_thw).pooler_output
    finally:
        hook.remove()
    from transformers.vision_utils import get_vision_window_index

    window_index, _ = get_vision_window_index(
        grid_thw,
        spatial_merge_size=visual.spatial_merge_size,
        window_size=visual.window_size,
        patch_size=visual.patch_size,
    )
    return out, (captured[0], window_index.argsort().to(captured[0].device))


def _merged(visual, entry):
    pre, reverse = entry
    return visual.merger(pre)[reverse]
