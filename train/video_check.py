"""Does the model use the video? A check that runs during training (recipe key `video_check_every`).

Every N optimizer steps a fixed handful of training records is scored twice by the model being trained: the mean
answer-token loss with each video as decoded, and with its frame pairs shuffled (the same frames, time metadata
and prompt; only *when* each thing is shown changes). A model that grounds time in the frames loses on the shuffled
videos; one that answers from the text alone scores both the same: the plateau a random-init tiny model can sit on
for thousands of steps (experiments/learning/qwen3), or a pipeline that drops the video. Logged as
`video_check/own_loss`, `video_check/shuffled_loss` and `video_check/gap` (shuffled minus own), at step 0 too.

Pairs, not frames, are shuffled because Qwen-VL merges two consecutive frames into one temporal token: a pair
stays one token's content, so the check moves content in time without making frames no token ever sees.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from typing import Any

log = logging.getLogger(__name__)

GAP_READS_VIDEO = 0.01  # nats per answer token; the "onset" threshold of experiments/learning (own vs swapped video)


def shuffled_pairs(video, seed: int):
    """`video` with its frame pairs in a seeded order that is never the original one (at least two pairs)."""
    n = video.frames.shape[0] // 2
    if n < 2:
        raise ValueError(f"{video.source}: {video.frames.shape[0]} frames, too few to shuffle in time")
    order = list(range(n))
    rng = random.Random(seed)
    while order == sorted(order):
        rng.shuffle(order)
    index = [2 * p + k for p in order for k in (0, 1)]
    return replace(video, frames=video.frames[index])


def pick_records(rows: list[dict[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """`count` records with at least one moment (an absent query's answer has no time to move), seeded."""
    present = [r for r in rows if r.get("moments")]
    return random.Random(seed).sample(present, min(count, len(present)))


def install(trainer, collator, rows: list[dict[str, Any]]):
    """Add the check to `trainer` when its `video_check_every` > 0; returns the callback (or None). The callback's
    `scores()` gives the (own, shuffled) answer loss of the trainer's model on the picked records."""
    args = trainer.args
    if not args.video_check_every:
        return None
    records = pick_records(rows, args.video_check_records, args.seed)
    if not records:
        from vtg.errors import UserError

        raise UserError(
            f"video_check_every: {args.train_file} has no record with a moment to check on; set video_check_every: 0"
        )
    import torch
    from transformers import Trainer, TrainerCallback

    every, seed = args.video_check_every, args.seed

    class VideoCheck(TrainerCallback):
        def __init__(self):
            self.history: list[dict[str, float]] = []

        def scores(self) -> tuple[float, float]:
            model = trainer.model
            was_training = model.training
            model.eval()
            own, shuffled = [], []
            try:
                with torch.no_grad():
                    for i, row in enumerate(records):
                        video = collator.requests.video(row["video"])
                        for out, v in ((own, video), (shuffled, shuffled_pairs(video, seed + i))):
                            # the base Trainer's: device (and DeepSpeed's dtype); GRPO's _prepare_inputs rolls out
                            inputs = Trainer._prepare_input(trainer, collator([row], videos=[v]))
                            with trainer.compute_loss_context_manager():
                                out.append(float(model(**trainer.video_model_inputs(model, inputs)).loss))
            finally:
                model.train(was_training)
            return sum(own) / len(own), sum(shuffled) / len(shuffled)

        def _run(self, state, control):
            own, shuffled = self.scores()
            logs = {
                "video_check/own_loss": own,
                "video_check/shuffled_loss": shuffled,
                "video_check/gap": shuffled - own,
            }
            self.history.append({"step": state.global_step, **logs})
            # the base Trainer.log: TRL's SFT/GRPO overrides would flush their step metrics into this entry;
            # logging clears control.should_log, which the trainer's own log of this step still needs
            should_log = control.should_log
            Trainer.log(trainer, dict(logs))
            control.should_log = should_log

        def on_train_begin(self, args, state, control, **kwargs):
            self._run(state, control)

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % every == 0:
                self._run(state, control)

        def on_train_end(self, args, state, control, **kwargs):
            if not self.history or not trainer.accelerator.is_main_process:
                return
            last = self.history[-1]
            verdict = (
                "uses the video"
                if last["video_check/gap"] >= GAP_READS_VIDEO
                else "does NOT yet use the video: its answers do not depend on when things are shown"
            )
            log.info(
                "video check at step %d: answer loss %.4f with the frames in order, %.4f shuffled (gap %+.4f; "
                ">= %s counts as reading): the model %s",
                last["step"],
                last["video_check/own_loss"],
                last["video_check/shuffled_loss"],
                last["video_check/gap"],
                GAP_READS_VIDEO,
                verdict,
            )

    check = VideoCheck()
    trainer.add_callback(check)
    return check
