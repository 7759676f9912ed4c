"""Cache of the frozen vision tower's features, so each video's tower forward runs once per training run.

With the tower frozen except its merger (the tiny recipes, Time-R1's choice), what the blocks make of a video never
changes: only the merger trains. `install(model, budget_mb)` makes the Qwen2.5-VL tower keep its blocks' output
(before the merger) per distinct `pixel_values` + grid, up to `budget_mb`, and on a repeat run only the merger — so
the merger still gets its gradient every step and the loss is the same (18k tiny SFT steps logged identical losses).
Measured on the tiny model, one CPU thread: 22.9 → 20.7 ms per bare step (bench/learning/step_time.py), 545 → 526 s
for 18k steps of `vtg train sft` (bench/learning/one_kind_per_video/).

Guards, because a stale feature would be a silent error: the cache is bypassed (and says so once) whenever a
vision parameter other than the merger requires grad (e.g. LoRA put on the tower), and on every miss it checks that
merger(cached features) reproduces the tower's own output; if not (a transformers change), it turns itself off.
Qwen2.5-VL only: Qwen3-VL's deepstack mergers read intermediate blocks, which this does not keep.
"""

from __future__ import annotations

import hashlib
import logging
import types
from collections import OrderedDict

log = logging.getLogger(__name__)


def supported(visual) -> bool:
    return type(visual).__name__.startswith("Qwen2_5_Vision")


def install(model, budget_mb: int) -> bool:
    """Turn the cache on for `model`'s vision tower; False (and a log line) where it cannot apply."""
    from vtg.engine import vision_tower

    if budget_mb <= 0:
        return False
    visual = vision_tower(model)
    if not supported(visual):
        log.warning("vision_feature_cache_mb: %s is not a Qwen2.5-VL tower; running it uncached", type(visual).__name__)
        return False
    visual._vtg_feature_cache = FeatureCache(budget_mb * 2**20)
    # a bound method (not a closure) so that a deep copy (TRL's reference model) binds to the copy's own merger
    visual.forward = types.MethodType(_cached_forward, visual)
    return True


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


def _tower_once(visual, pixel_values, grid_thw, kwargs) -> tuple:
    """Run the tower uncached on one video; (output, cache entry)."""
    captured = []
    hook = visual.merger.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
    try:
        out = type(visual).forward(visual, pixel_values, grid_thw, **kwargs)
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


def _cached_forward(self, hidden_states, grid_thw, **kwargs):
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    cache: FeatureCache = self._vtg_feature_cache
    if not cache.enabled:
        return type(self).forward(self, hidden_states, grid_thw, **kwargs)
    if not _frozen_below_merger(self):
        if not cache.warned_unfrozen:
            log.warning("vision feature cache bypassed: vision weights before the merger are training")
            cache.warned_unfrozen = True
        return type(self).forward(self, hidden_states, grid_thw, **kwargs)
    # one entry per video: a batch is the videos' patches one after the other, each attended to on its own
    sizes = grid_thw.prod(-1).tolist()
    pres, merged = [], []
    for chunk, grid in zip(torch.split(hidden_states, sizes), grid_thw):
        key = _key(chunk, grid)
        entry = cache.get(key)
        if entry is None:
            cache.misses += 1
            out, entry = _tower_once(self, chunk, grid[None], kwargs)
            with torch.no_grad():  # before trusting an entry: it must give the tower's own output (cheap: merger only)
                again = _merged(self, entry)
            if again.shape != out.pooler_output.shape or not torch.allclose(
                again, out.pooler_output, rtol=1e-5, atol=1e-6
            ):
                log.warning(
                    "vision feature cache off: merger(cached features) differs from the tower's own output "
                    "(a transformers change?)"
                )
                cache.enabled = False
                return type(self).forward(self, hidden_states, grid_thw, **kwargs)
            cache.checked = True
            cache.put(key, entry)
            pres.append(entry[0])
            merged.append(out.pooler_output)
        else:
            cache.hits += 1
            pres.append(entry[0])
            merged.append(_merged(self, entry))
    return BaseModelOutputWithPooling(last_hidden_state=torch.cat(pres), pooler_output=torch.cat(merged))
