"""The training-time video check (train/video_check.py): frames shuffled in time, scored on the trained model."""

from __future__ import annotations

import pytest
import torch

from vtg.train.video_check import pick_records, shuffled_pairs


def _video(synth_world):
    from vtg.data.records import load_records
    from vtg.data.video import FrameSampling, read_video_cached

    rec = load_records(synth_world / "train.jsonl")[0]
    return read_video_cached(str(rec.video_path(synth_world)), FrameSampling(fps=2.0, max_frames=32))


def test_shuffled_pairs_moves_whole_pairs_in_time_and_keeps_the_time_scale(synth_world):
    video = _video(synth_world)
    shuffled = shuffled_pairs(video, seed=0)
    pairs = video.frames.reshape(-1, 2, *video.frames.shape[1:])
    moved = shuffled.frames.reshape(-1, 2, *video.frames.shape[1:])
    # each shuffled pair is one of the original pairs, each original pair used once, and the order changed
    where = [next(j for j in range(len(pairs)) if torch.equal(moved[i], pairs[j])) for i in range(len(moved))]
    assert sorted(where) == list(range(len(pairs))) and where != sorted(where)
    assert shuffled.metadata == video.metadata and shuffled.frames.shape == video.frames.shape
    assert torch.equal(shuffled_pairs(video, seed=0).frames, shuffled.frames)  # seeded
    assert torch.equal(video.frames.reshape(pairs.shape), pairs)  # the (shared, cached) original is untouched
    with pytest.raises(ValueError, match="too few to shuffle"):
        shuffled_pairs(type(video)(video.frames[:2], video.metadata, video.source, video.sampling), seed=0)


def test_pick_records_skips_absent_queries():
    rows = [{"id": "a", "moments": []}, {"id": "b", "moments": [[1, 2]]}, {"id": "c", "moments": [[0, 1]]}]
    assert sorted(r["id"] for r in pick_records(rows, 5, seed=0)) == ["b", "c"]
    assert len(pick_records(rows, 1, seed=0)) == 1


@pytest.mark.integration
def test_sft_logs_the_check_at_step_zero_and_every_n_from_the_model_it_trains(
    tiny_qwen25, synth_world, tmp_path, caplog
):
    import logging

    from vtg.data.video import read_video_cached
    from vtg.train.config import VideoSFTConfig
    from vtg.train.dataset import load_training_records
    from vtg.train.sft import build_sft_trainer

    caplog.set_level(logging.INFO, logger="vtg")
    recipe = VideoSFTConfig(
        model=str(tiny_qwen25),
        train_file=str(synth_world / "train.jsonl"),
        output_dir=str(tmp_path),
        max_steps=4,
        learning_rate=1e-3,
        train_merger=True,
        logging_steps=1,
        save_steps=100,
        max_length=1024,
        sampling={"max_frames": 32},
        video_check_every=2,
        video_check_records=3,
    )
    trainer = build_sft_trainer(recipe)
    trainer.train()
    checks = [x for x in trainer.state.log_history if "video_check/gap" in x]
    assert [x["step"] for x in checks] == [0, 2, 4]
    # the trainer's own per-step logs are all still there (logging from a callback clears control.should_log)
    assert [x["step"] for x in trainer.state.log_history if "loss" in x] == [1, 2, 3, 4]
    # the last check scored the trained model on the picked records: recompute it outside the callback
    collator = trainer.data_collator
    records = pick_records(load_training_records(recipe.train_file), 3, recipe.seed)
    trainer.model.eval()
    with torch.no_grad():
        own = [float(trainer.model(**collator([r])).loss) for r in records]
        shuffled = [
            float(
                trainer.model(
                    **collator(
                        [r], videos=[shuffled_pairs(read_video_cached(r["video"], collator.sampling), recipe.seed + i)]
                    )
                ).loss
            )
            for i, r in enumerate(records)
        ]
    last = checks[-1]
    assert last["video_check/own_loss"] == pytest.approx(sum(own) / 3, abs=1e-4)
    assert last["video_check/shuffled_loss"] == pytest.approx(sum(shuffled) / 3, abs=1e-4)
    # a random-init model still attends to the video tokens: shuffling them changes the loss (if only a little),
    # so equal losses would mean the shuffled frames never reached the model
    assert all(x["video_check/own_loss"] != x["video_check/shuffled_loss"] for x in checks)
    assert "video check at step 4" in caplog.text


@pytest.mark.integration
def test_grpo_check_leaves_the_step_metrics_in_the_step_logs(tiny_qwen25, synth_world, tmp_path):
    from vtg.train.config import VideoGRPOConfig
    from vtg.train.grpo import build_grpo_trainer

    recipe = VideoGRPOConfig(
        model=str(tiny_qwen25),
        train_file=str(synth_world / "train.jsonl"),
        output_dir=str(tmp_path),
        max_steps=2,
        num_generations=2,
        per_device_train_batch_size=2,
        max_completion_length=8,
        learning_rate=1e-3,
        train_merger=True,
        logging_steps=1,
        save_steps=100,
        max_length=1024,
        sampling={"max_frames": 16},
        rollout_engine="transformers",
        video_check_every=1,
        video_check_records=2,
    )
    trainer = build_grpo_trainer(recipe)
    trainer.train()
    history = trainer.state.log_history
    assert [x["step"] for x in history if "video_check/gap" in x] == [0, 1, 2]
    steps = [x for x in history if "loss" in x]
    assert [x["step"] for x in steps] == [1, 2]
    assert all("rewards/tiou_v2/mean" in x for x in steps)  # TRL's step metrics were not flushed into the check's
    # 16 frames of a random-init model: shuffling moves the loss by ~1e-5, but it moves it
    assert all(x["video_check/own_loss"] != x["video_check/shuffled_loss"] for x in history if "video_check/gap" in x)
