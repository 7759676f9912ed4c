"""vtg.train.vision_cache: the frozen tower's features are reused, and training is unchanged by it."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from vtg.train import vision_cache

pytestmark = pytest.mark.integration


def _videos(model_dir, world, n):
    """Processor inputs (pixel_values_videos, video_grid_thw) of n distinct train videos of the synthetic world."""
    from vtg.data.records import load_records
    from vtg.request import Requests

    requests = Requests.for_model(model_dir)
    out, seen = [], set()
    for r in load_records(world / "train.jsonl"):
        if r.video in seen or len(out) == n:
            continue
        seen.add(r.video)
        feats = requests.hf_inputs(requests.record(r, world))
        out.append((feats["pixel_values_videos"], feats["video_grid_thw"]))
    return out


def _frozen_model(model_dir):
    from transformers import AutoModelForImageTextToText

    from vtg.train.policy import vision_tower

    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    for name, p in vision_tower(model).named_parameters():
        p.requires_grad_(name.startswith("merger"))
    return model


def test_cached_features_equal_the_towers_and_skip_the_blocks(tiny_qwen25, synth_world):
    from vtg.train.policy import vision_tower

    model = _frozen_model(tiny_qwen25)
    visual = vision_tower(model)
    (pa, ga), (pb, gb) = _videos(tiny_qwen25, synth_world, 2)
    batch_pix, batch_grid = torch.cat([pa, pb]), torch.cat([ga, gb])
    with torch.no_grad():
        want = visual(batch_pix, grid_thw=batch_grid).pooler_output  # uncached, both videos in one call
    block_runs = []
    visual.blocks[0].register_forward_hook(lambda *a: block_runs.append(1))
    cache = vision_cache.FeatureCache(64 * 2**20)

    def cached(pix, grid, tower=visual):
        return torch.cat(cache.features(tower, pix, grid))

    first = cached(batch_pix, batch_grid)  # two misses (one per video)
    runs_after_miss = len(block_runs)
    again = cached(batch_pix, batch_grid)  # two hits: the blocks do not run
    assert (cache.misses, cache.hits) == (2, 2) and cache.checked and cache.enabled
    assert len(block_runs) == runs_after_miss == 2
    torch.testing.assert_close(first, want, rtol=0, atol=0)
    torch.testing.assert_close(again, want, rtol=1e-6, atol=1e-7)
    # one video alone hits its own entry; a different pixel tensor misses
    single = cached(pb, gb)
    torch.testing.assert_close(single, want[-single.shape[0] :], rtol=1e-6, atol=1e-7)
    assert cache.hits == 3
    cached(pb + 0.01, gb)
    assert cache.misses == 3

    # larger frames: several attention windows per frame, so window order != token order (the 56-px videos above
    # fit one window); the cached path must undo the reordering exactly as the tower does
    grid = torch.tensor([[2, 8, 12]])
    pix = torch.randn(int(grid.prod()), pa.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want_big = visual(pix, grid_thw=grid).pooler_output
    miss_big = cached(pix, grid)
    hit_big = cached(pix, grid)
    reverse = next(reversed(cache.entries.values()))[1]
    assert not torch.equal(reverse, torch.arange(len(reverse)))
    torch.testing.assert_close(miss_big, want_big, rtol=0, atol=0)
    torch.testing.assert_close(hit_big, want_big, rtol=1e-6, atol=1e-7)
    assert cache.enabled

    # the merger still trains on a hit
    again.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in visual.merger.parameters())

    # another model (TRL's reference copy) gets its own merger applied to the shared features, not the original's
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in vision_tower(twin).merger.parameters():
            p.mul_(2.0)
        twin_out = cached(pa, ga, tower=vision_tower(twin))
        torch.testing.assert_close(twin_out, vision_tower(twin)(pa, grid_thw=ga).pooler_output, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(twin_out, visual(pa, grid_thw=ga).pooler_output)

    # vision weights before the merger start training: the cache steps aside (the caller runs the tower)
    visual.blocks[0].mlp.gate_proj.weight.requires_grad_(True)
    hits = cache.hits
    assert cache.features(visual, pa, ga) is None and cache.hits == hits


def test_cache_refuses_what_it_cannot_cache(tiny_qwen3, tiny_qwen25):
    from vtg.train.policy import vision_tower

    assert not vision_cache.supported(vision_tower(_frozen_model(tiny_qwen3)))  # Qwen3-VL: deepstack reads inner blocks
    assert vision_cache.supported(vision_tower(_frozen_model(tiny_qwen25)))
    from vtg.train.config import RecipeError, VideoSFTConfig

    with pytest.raises(RecipeError, match="freeze_vision is false"):
        VideoSFTConfig(model="m", train_file="t", vision_feature_cache_mb=64, freeze_vision=False)
    with pytest.raises(RecipeError, match="vision_feature_cache_mb must be >= 0"):
        VideoSFTConfig(model="m", train_file="t", vision_feature_cache_mb=-1)


def test_sft_losses_identical_with_the_cache(tiny_qwen25, synth_world, tmp_path):
    """12 steps over 8 records (two videos, four queries each), batch 1: each video's tower runs once, and every
    logged loss matches the uncached run's."""
    from vtg.data.records import load_records, write_jsonl
    from vtg.train.config import VideoSFTConfig
    from vtg.train.sft import build_sft_trainer

    first8 = load_records(synth_world / "train.jsonl")[:8]
    train = tmp_path / "first8.jsonl"
    for r in first8:  # absolute videos: the file lives outside the world's folder
        r.video = str((synth_world / r.video).resolve())
    write_jsonl(first8, train)

    def losses(cache_mb, out):
        recipe = VideoSFTConfig(
            model=str(tiny_qwen25),
            train_file=str(train),
            output_dir=str(out),
            max_steps=12,
            per_device_train_batch_size=1,
            learning_rate=1e-3,
            tuning="full",
            train_merger=True,
            logging_steps=1,
            save_steps=100,
            seed=0,
            vision_feature_cache_mb=cache_mb,
            max_length=1024,
            sampling={"max_frames": 32},
        )
        trainer = build_sft_trainer(recipe)
        trainer.train()
        return [h["loss"] for h in trainer.state.log_history if "loss" in h], trainer.vision_cache

    plain, none = losses(0, tmp_path / "plain")
    cached, cache = losses(64, tmp_path / "cached")
    videos = {r.video for r in first8}
    assert none is None and cache.misses == len(videos) == 2 and cache.hits == 12 - 2
    assert len(plain) == 12
    assert cached == pytest.approx(plain, rel=1e-5)
    json.dumps(cached)  # plain floats
