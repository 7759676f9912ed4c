"""E1: frame-level alignment pre-training of a tiny Qwen2.5-VL (frozen random tower, merger at 10x lr).

Short clips (4 frames at 2 fps = 2 temporal tokens x 4 merged tokens) rendered with the project's synth renderer
(data/synth.py: same background, noise, colours, shapes, 3x3 layout, mp4 encoding) with fresh seeds, so no record of
the grounding world (let alone its test split) is used. 1 or 2 objects per clip, constant over the clip. Asked through
vtg's request path with the model's short prompt ("2.0s. <question>"):

  name:   "what is on screen?"           -> "red circle" / "red circle and blue square" (layout order)
  verify: "is the <colour> <shape> on screen?" -> "present" / "not present", balanced; half of the negatives are
          conjunction lures when the clip allows it (the named colour AND the named shape are both on screen, on two
          different objects), the rest share the colour or the shape with a visible object when possible.

Held-out verification accuracy = argmax over the first answer token ("p" vs "not"), chance 0.5, split by negative
type. --schedule "name:2000,verify:6000" runs the phases in order; "mix:8000" alternates name and verify per step;
"name+echo:3000" alternates the listed tasks. echo: "say the <colour> <shape>." -> "<colour> <shape>" (text only).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

import common
from vtg.data.synth import COLOURS, GRID, NOISE, BASE_GREY, SHAPES, encode_mp4, paint_objects

COMBOS = [(c, s) for c in COLOURS for s in SHAPES]
FRAMES, FPS, SIZE = 4, 2.0, 56


def make_clip(rng: random.Random, path: Path) -> list[tuple[str, str, int]]:
    k = 1 if rng.random() < 0.3 else 2
    objs = rng.sample(COMBOS, k)
    cells = rng.sample(range(GRID * GRID), k)
    objects = sorted(({"colour": c, "shape": s, "cell": cell, "intervals": [[0, FRAMES]]}
                      for (c, s), cell in zip(objs, cells)), key=lambda o: o["cell"])
    nrng = np.random.default_rng(rng.randrange(2**31))
    frames = np.full((FRAMES, SIZE, SIZE, 3), int(nrng.integers(*BASE_GREY)), np.int16)
    frames += nrng.integers(-NOISE, NOISE + 1, size=(FRAMES, SIZE, SIZE, 1), dtype=np.int16)
    frames = frames.clip(0, 255).astype(np.uint8)
    paint_objects(frames, objects, SIZE)
    encode_mp4(frames, path, FPS)
    return [(o["colour"], o["shape"], o["cell"]) for o in objects]


def verify_query(rng: random.Random, visible):
    """(colour, shape), answer, kind"""
    seen = {(c, s) for c, s, _ in visible}
    if rng.random() < 0.5:
        c, s, _ = rng.choice(visible)
        return (c, s), "present", "positive"
    absent = [x for x in COMBOS if x not in seen]
    lures = [x for x in absent if any(x[0] == c for c, _ in seen) and any(x[1] == s for _, s in seen)]
    share = [x for x in absent if any(x[0] == c or x[1] == s for c, s in seen)]
    if lures and rng.random() < 0.5:
        return rng.choice(lures), "not present", "neg_conjunction"
    if share:
        return rng.choice(share), "not present", "neg_shares"
    return rng.choice(absent), "not present", "neg_other"


def build(model, requests, n, seed, folder: Path, tasks):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {t: [] for t in tasks}
    for i in range(n):
        path = folder / f"c{i:05d}.mp4"
        visible = make_clip(rng, path)
        video = requests.video(str(path))
        for t in tasks:
            if t == "name":
                q = "what is on screen?"
                a = " and ".join(f"{c} {s}" for c, s, _ in visible)
                kind = "name"
            else:
                (c, s), a, kind = verify_query(rng, visible)
                q = f"is the {c} {s} on screen?"
            req = requests.grounding(str(path), q, float(video.metadata.duration), video)
            item = common.encode(model, requests, req, a)
            item["_kind"] = kind
            out[t].append(item)
    return out


def build_echo(model, requests, folder: Path, n, seed):
    """echo: "say the <colour> <shape>." -> "<colour> <shape>" (a random object, on screen or not): text only, it
    trains the answer positions to read the name in the prompt, one half of binding, with its own signal."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        path = folder / f"c{i:05d}.mp4"
        video = requests.video(str(path))
        c, s = rng.choice(COMBOS)
        req = requests.grounding(str(path), f"say the {c} {s}.", float(video.metadata.duration), video)
        item = common.encode(model, requests, req, f"{c} {s}")
        item["_kind"] = "echo"
        out.append(item)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("outputs/tiny_base/clips"))
    p.add_argument("--train-clips", type=int, default=4000)
    p.add_argument("--test-clips", type=int, default=400)
    p.add_argument("--schedule", default="verify:6000")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--merger-mult", type=float, default=10.0)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--max-minutes", type=float, default=1e9, help="stop (and save) after this much wall time")
    p.add_argument("--save", type=Path, default=None)
    p.add_argument("--log", type=Path, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    model, processor, requests = common.load(args.model)
    tok = processor.tokenizer
    pad = tok.pad_token_id
    t0 = time.time()
    cache = args.work / f"items-{args.train_clips}-{args.test_clips}.pt"
    if cache.exists():
        train, test = torch.load(cache)
    else:
        train = build(model, requests, args.train_clips, 1000 + args.seed, args.work / "train", ("name", "verify"))
        test = build(model, requests, args.test_clips, 999_999, args.work / "test", ("name", "verify"))
        torch.save((train, test), cache)
    phases = [(name, int(n)) for name, n in (x.split(":") for x in args.schedule.split(","))]
    if any("echo" in ph for ph, _ in phases):
        echo_cache = args.work / f"echo-{args.train_clips}-{args.test_clips}.pt"
        if echo_cache.exists():
            train["echo"], test["echo"] = torch.load(echo_cache)
        else:
            train["echo"] = build_echo(model, requests, args.work / "train", args.train_clips, 7)
            test["echo"] = build_echo(model, requests, args.work / "test", args.test_clips, 8)
            torch.save((train["echo"], test["echo"]), echo_cache)
    print(f"clips ready in {time.time() - t0:.0f}s; tokens per verify item {train['verify'][0]['input_ids'].shape[-1]}",
          flush=True)
    yes_id, no_id = tok("p", add_special_tokens=False)["input_ids"][0], tok("not", add_special_tokens=False)["input_ids"][0]

    total = sum(n for _, n in phases)

    @torch.no_grad()
    def evaluate():
        model.eval()
        res = {}
        hits: dict[str, list[int]] = {}
        loss_v = 0.0
        for i in range(0, len(test["verify"]), 32):
            items = test["verify"][i:i + 32]
            out = common.forward(model, items, pad)
            for j, it in enumerate(items):
                lab = it["labels"][0]
                first = int((lab != -100).nonzero()[0])
                lg = out.logits[j, first - 1]
                pred_yes = bool(lg[yes_id] > lg[no_id])
                hits.setdefault(it["_kind"], []).append(int(pred_yes == (it["_kind"] == "positive")))
        allh = [h for v in hits.values() for h in v]
        res["verify_acc"] = round(sum(allh) / len(allh), 4)
        neg = [h for k, v in hits.items() if k != "positive" for h in v]
        res["verify_balanced"] = round(0.5 * (np.mean(hits["positive"]) + np.mean(neg)), 4)
        res.update({f"acc_{k}": round(float(np.mean(v)), 4) for k, v in sorted(hits.items())})
        # naming: teacher-forced token accuracy on the colour/shape words of the answer
        right = tot = 0
        exact = []
        for i in range(0, len(test["name"]), 32):
            items = test["name"][i:i + 32]
            out = common.forward(model, items, pad)
            for j, it in enumerate(items):
                lab = it["labels"][0]
                pos = (lab != -100).nonzero()[:, 0][:-1]  # skip the end-of-turn token
                pred = out.logits[j, pos - 1].argmax(-1)
                ok = (pred == lab[pos])
                right += int(ok.sum())
                tot += len(pos)
                exact.append(int(ok.all()))
        res["name_token_acc"] = round(right / tot, 4)
        res["name_exact"] = round(float(np.mean(exact)), 4)
        if "echo" in test:
            ex = []
            for i in range(0, len(test["echo"]), 32):
                items = test["echo"][i:i + 32]
                out = common.forward(model, items, pad)
                for j, it in enumerate(items):
                    lab = it["labels"][0]
                    pos = (lab != -100).nonzero()[:, 0][:-1]
                    ex.append(int((out.logits[j, pos - 1].argmax(-1) == lab[pos]).all()))
            res["echo_exact"] = round(float(np.mean(ex)), 4)
        model.train()
        return res

    opt = common.optimizer(model, args.lr, args.merger_mult)
    history = []
    rng = random.Random(args.seed)
    order = {t: [] for t in ("name", "verify", "echo")}
    step, t1, stopped = 0, time.time(), False
    r0 = evaluate()
    history.append({"step": 0, "phase": phases[0][0], "wall_s": 0.0, **r0})
    print(json.dumps(history[-1]), flush=True)
    running = None
    for phase, n in phases:
        for _ in range(n):
            step += 1
            common.set_lr(opt, args.lr, step, total, args.warmup)
            tasks = ["name", "verify"] if phase == "mix" else phase.split("+")
            task = tasks[step % len(tasks)]
            batch = []
            for _ in range(args.batch):
                order[task] = order[task] or rng.sample(range(len(train[task])), len(train[task]))
                batch.append(train[task][order[task].pop()])
            loss = common.forward(model, batch, pad).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            running = float(loss) if running is None else 0.98 * running + 0.02 * float(loss)
            if step % args.eval_every == 0:
                r = evaluate()
                history.append({"step": step, "phase": phase, "train_loss": round(running, 4),
                                "wall_s": round(time.time() - t1, 1), **r})
                print(json.dumps(history[-1]), flush=True)
                if (time.time() - t1) / 60 > args.max_minutes:
                    stopped = True
                    break
        if stopped:
            break
    if step % args.eval_every:
        r = evaluate()
        history.append({"step": step, "phase": phase, "train_loss": round(running, 4),
                        "wall_s": round(time.time() - t1, 1), **r})
        print(json.dumps(history[-1]), flush=True)
    if args.save:
        model.save_pretrained(args.save)
        processor.save_pretrained(args.save)
        for f in args.model.glob("vtg_*.json"):
            (args.save / f.name).write_text(f.read_text())
    rec = {"args": {k: str(v) for k, v in vars(args).items()}, "history": history}
    if args.log:
        with open(args.log, "a") as fh:
            fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
