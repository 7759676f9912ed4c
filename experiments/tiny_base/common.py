"""Shared by align.py (E1/E2) and probe.py (E3): load a tiny model with the frozen tower + merger recipe, encode
requests through vtg's own request path (vtg.request.Requests: chat template, short prompt, frame sampling), and
keep each video's frozen-tower features (before the merger) instead of its pixels, as the trainer's vision feature
cache does (train/vision_cache.py): exact, and far smaller in memory than float32 pixels."""

from __future__ import annotations

import torch

from vtg.train.policy import vision_tower
from vtg.train.collator import END_OF_TURN, IGNORE, pad_batch

torch.set_num_threads(1)


def load(model_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vtg import hf_fixes
    from vtg.request import Requests

    hf_fixes.apply()
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    processor = AutoProcessor.from_pretrained(model_dir)
    requests = Requests.for_model(model_dir, mode="multi")  # the folder's prompt style ("short") and sampling
    for name, p in vision_tower(model).named_parameters():
        p.requires_grad_(name.startswith("merger"))
    return model, processor, requests


def optimizer(model, lr, merger_mult=10.0):
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in trainable if "merger" not in n], "mult": 1.0},
              {"params": [p for n, p in trainable if "merger" in n], "mult": merger_mult}]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=0.0)


def set_lr(opt, lr, step, steps, warmup):
    frac = step / warmup if step <= warmup else max(0.0, (steps - step) / max(1, steps - warmup))
    for g in opt.param_groups:
        g["lr"] = lr * frac * g["mult"]


@torch.no_grad()
def encode(model, requests, request, answer: str):
    """One request + answer text -> tokens, labels on the answer (+ end of turn), and the tower's pre-merger
    features of its video (pixels dropped)."""
    from vtg.train.vision_cache import _tower_once

    target = answer + END_OF_TURN
    feats = dict(requests.hf_inputs(request, target))
    tok = requests.processor.tokenizer
    ids = feats["input_ids"][0]
    n = len(tok(target, add_special_tokens=False)["input_ids"])
    assert ids[-n:].tolist() == tok(target, add_special_tokens=False)["input_ids"]
    labels = torch.full_like(ids, IGNORE)
    labels[-n:] = ids[-n:]
    feats["labels"] = labels[None]
    visual = vision_tower(model)
    _, (pre, reverse) = _tower_once(visual, feats.pop("pixel_values_videos").type(visual.dtype),
                                    feats["video_grid_thw"])
    feats["_pre"], feats["_rev"] = pre, reverse
    return feats


def forward(model, items, pad_id, **kw):
    """model(**batch) with each video's merged tokens computed from its cached pre-merger features."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    visual = vision_tower(model)
    features = tuple(visual.merger(it["_pre"])[it["_rev"]] for it in items)
    batch = pad_batch([{k: v for k, v in it.items() if not k.startswith("_")} for it in items], pad_id)
    batch["mm_encoder_outputs"] = {"video": BaseModelOutputWithPooling(pooler_output=features)}
    return model(**batch, **kw)
