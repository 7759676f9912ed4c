"""E3: the SFT probe of experiments/learning/sft_probe.py (--binding), ported to the current request path
(vtg.request.Requests + the collator's answer format) and to cached frozen-tower features (common.py).

Trains batch-1 SFT (AdamW, linear warmup/decay, grad-clip 1, merger at --merger-mult x lr) on the world's train
records and every --eval-every steps reports, on --test test queries of two-object videos:
  own      the answer loss with the query's own video
  swapped  the same with another test video of the same duration        -> video gap = swapped - own
  other    own video, but the *other* object's moments as the answer    -> binding gap = other - own
as sft_probe.py does (same pair selection, rng seed 0). Test records only enter these losses, never training.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from pathlib import Path

import torch

import common
from vtg.data.grammar import format_answer
from vtg.train.policy import vision_tower


def tower_hash(model) -> str:
    h = hashlib.sha1()
    for n, p in sorted(vision_tower(model).named_parameters()):
        if not n.startswith("merger"):
            h.update(p.detach().numpy().tobytes())
    return h.hexdigest()[:8]


def encode_sets(args, model, requests):
    from vtg.data.records import load_records

    tag = hashlib.sha1(str(args.world.resolve()).encode()).hexdigest()[:8]
    cache = args.work / f"probe-{args.world.name}-{tag}-{tower_hash(model)}-t{args.test}.pt"
    if cache.exists():
        return torch.load(cache)

    def item(r, video=None, moments=None):
        row = {**r.to_dict(), "video": str(args.world / (video or r.video))}
        return common.encode(model, requests, requests.record(row),
                             format_answer(r.moments if moments is None else moments))

    train = [item(r) for r in load_records(args.world / "train.jsonl")]
    test = load_records(args.world / "test.jsonl")
    by_duration, by_video = {}, {}
    for r in test:
        by_duration.setdefault(r.duration, []).append(r)
        by_video.setdefault(r.video, []).append(r)
    rng, pairs = random.Random(0), []
    for r in test:
        others = [o for o in by_duration[r.duration] if o.video != r.video]
        neighbours = [o for o in by_video[r.video] if o.moments and o.moments != r.moments]
        if not others or len(pairs) >= args.test or not (r.moments and neighbours):
            continue
        pairs.append((item(r), item(r, rng.choice(others).video), item(r, moments=neighbours[0].moments)))
    args.work.mkdir(parents=True, exist_ok=True)
    torch.save((train, pairs), cache)
    return train, pairs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--world", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("outputs/tiny_base/probe_cache"))
    p.add_argument("--steps", type=int, default=12000)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--merger-mult", type=float, default=10.0)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--save", type=Path, default=None)
    p.add_argument("--log", type=Path, default=None)
    p.add_argument("--label", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mix-verify", type=int, default=0, metavar="K",
                   help="every K-th step is a batch of --mix-batch frame-level verification clips (align.py's "
                        "cached train items) instead of a grounding record: keeps the pretrained task alive")
    p.add_argument("--mix-batch", type=int, default=8)
    p.add_argument("--clips", type=Path, default=Path("../../outputs/tiny_base/clips/items-4000-400.pt"))
    p.add_argument("--verify-eval", action="store_true", help="also report frame-level verification accuracy")
    args = p.parse_args()
    args.verify_eval = args.verify_eval or bool(args.mix_verify)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    model, processor, requests = common.load(args.model)
    pad = processor.tokenizer.pad_token_id
    t0 = time.time()
    train, pairs = encode_sets(args, model, requests)
    print(f"{len(train)} train / {len(pairs)} test triples ready in {time.time() - t0:.0f}s", flush=True)
    opt = common.optimizer(model, args.lr, args.merger_mult)

    @torch.no_grad()
    def test_losses():
        model.eval()
        own = sum(float(common.forward(model, [q[0]], pad).loss) for q in pairs) / len(pairs)
        swapped = sum(float(common.forward(model, [q[1]], pad).loss) for q in pairs) / len(pairs)
        other = sum(float(common.forward(model, [q[2]], pad).loss) for q in pairs) / len(pairs)
        model.train()
        return own, swapped, other

    if args.verify_eval:
        clip_train, clip_test = torch.load(args.clips)
        vtrain, vtest = clip_train["verify"], clip_test["verify"]
        tok = processor.tokenizer
        yes_id = tok("p", add_special_tokens=False)["input_ids"][0]
        no_id = tok("not", add_special_tokens=False)["input_ids"][0]
        vorder = []

    @torch.no_grad()
    def verify_acc():
        if not args.mix_verify and not args.verify_eval:
            return None
        model.eval()
        hits = []
        for i in range(0, len(vtest), 32):
            items = vtest[i:i + 32]
            out = common.forward(model, items, pad)
            for j, it in enumerate(items):
                first = int((it["labels"][0] != -100).nonzero()[0])
                lg = out.logits[j, first - 1]
                hits.append(int(bool(lg[yes_id] > lg[no_id]) == (it["_kind"] == "positive")))
        model.train()
        return round(sum(hits) / len(hits), 4)

    history, order, running, t1 = [], [], None, time.time()
    own, swapped, other = test_losses()
    history.append({"step": 0, "wall_s": 0.0, "own": round(own, 4), "swapped": round(swapped, 4),
                    "video_gap": round(swapped - own, 4), "other_object": round(other, 4),
                    "binding_gap": round(other - own, 4), "verify_acc": verify_acc()})
    print(json.dumps(history[-1]), flush=True)
    model.train()
    for step in range(1, args.steps + 1):
        common.set_lr(opt, args.lr, step, args.steps, args.warmup)
        if args.mix_verify and step % args.mix_verify == 0:
            batch = []
            for _ in range(args.mix_batch):
                vorder = vorder or random.sample(range(len(vtrain)), len(vtrain))
                batch.append(vtrain[vorder.pop()])
            common.forward(model, batch, pad).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
        order = order or random.sample(range(len(train)), len(train))
        loss = common.forward(model, [train[order.pop()]], pad).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        running = float(loss.detach()) if running is None else 0.98 * running + 0.02 * float(loss.detach())
        if step % args.eval_every == 0 or step == args.steps:
            own, swapped, other = test_losses()
            history.append({"step": step, "wall_s": round(time.time() - t1, 1), "train": round(running, 4),
                            "own": round(own, 4), "swapped": round(swapped, 4), "video_gap": round(swapped - own, 4),
                            "other_object": round(other, 4), "binding_gap": round(other - own, 4),
                            "verify_acc": verify_acc()})
            print(json.dumps(history[-1]), flush=True)
    if args.save:
        model.save_pretrained(args.save)
        processor.save_pretrained(args.save)
        for f in args.model.glob("vtg_*.json"):
            (args.save / f.name).write_text(f.read_text())
    rec = {"label": args.label, "args": {k: str(v) for k, v in vars(args).items()}, "history": history}
    if args.log:
        with open(args.log, "a") as fh:
            fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
