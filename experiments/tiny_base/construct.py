"""E2: a constructed alignment. Fit the merger (only) so that each merged video token of the E1 training clips
becomes sum over objects of (share of the object's pixels in that token) x (emb(" <colour>") + emb(" <shape>")), the
input embeddings (tied to the output ones) of the words the queries use. MSE, Adam, merger only; the tower stays at
its random init. The clips' layouts are replayed from align.py's seeded generator (no video is decoded again).

    python construct.py --model ../../outputs/tiny_base/model-base --work ../../outputs/tiny_base/clips \
        --out ../../outputs/tiny_base/base-constructed
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

import align
import common
from vtg.data.synth import _shape_mask, cell_box
from vtg.train.policy import vision_tower


def layouts(n, seed):
    """The objects of each clip, replaying align.build's rng (make_clip, then one verify draw per clip)."""
    rng, out = random.Random(seed), []
    for _ in range(n):
        k = 1 if rng.random() < 0.3 else 2
        objs = rng.sample(align.COMBOS, k)
        cells = rng.sample(range(9), k)
        rng.randrange(2**31)
        visible = sorted(((c, s, cell) for (c, s), cell in zip(objs, cells)), key=lambda o: o[2])
        align.verify_query(rng, visible)
        out.append(visible)
    return out


def targets(visible, emb, tok, n_tokens):
    """[n_tokens, hidden]: merged tokens in (t, h, w) order, 2x2 per temporal step, 28 px each."""
    size = align.SIZE
    t = torch.zeros(n_tokens, emb.shape[1])
    for c, s, cell in visible:
        x0, y0, x1, y1 = cell_box(cell, size)
        full = np.zeros((size, size), bool)
        full[y0:y1, x0:x1] = _shape_mask(s, y1 - y0, x1 - x0)
        vec = emb[tok(" " + c, add_special_tokens=False)["input_ids"][0]] + \
            emb[tok(" " + s, add_special_tokens=False)["input_ids"][0]]
        for k in range(n_tokens):
            hm, wm = (k % 4) // 2, k % 2
            share = full[28 * hm:28 * hm + 28, 28 * wm:28 * wm + 28].sum() / full.sum()
            t[k] += float(share) * vec
    return t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train-clips", type=int, default=4000)
    p.add_argument("--test-clips", type=int, default=400)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--log", type=Path, default=None)
    args = p.parse_args()
    torch.manual_seed(0)
    model, processor, requests = common.load(args.model)
    tok = processor.tokenizer
    for w in [" red", " circle", " green", " triangle"]:
        assert len(tok(w, add_special_tokens=False)["input_ids"]) == 1, w
    emb = model.get_input_embeddings().weight.detach().clone()
    train, test = torch.load(args.work / f"items-{args.train_clips}-{args.test_clips}.pt")
    visual = vision_tower(model)

    def data(items, lays):
        pre = [it["_pre"] for it in items]
        rev = [it["_rev"] for it in items]
        tg = [targets(v, emb, tok, len(r)) for v, r in zip(lays, rev)]
        return pre, rev, tg

    tr = data(train["name"], layouts(args.train_clips, 1000))
    te = data(test["name"], layouts(args.test_clips, 999_999))
    # sanity: the replayed layouts name what the cached naming answers say
    for it, v in zip(test["name"][:50], layouts(50, 999_999)):
        ans = tok.decode(it["input_ids"][0][it["labels"][0] != -100]).replace("<|im_end|>", "").strip()
        assert ans == " and ".join(f"{c} {s}" for c, s, _ in v), (ans, v)
    opt = torch.optim.Adam(visual.merger.parameters(), lr=args.lr)

    def mse(d):
        with torch.no_grad():
            out = torch.cat([visual.merger(a)[r] for a, r in zip(d[0], d[1])])
            tg = torch.cat(d[2])
            return float(((out - tg) ** 2).sum(-1).mean()), float(1 - ((out - tg) ** 2).sum() / ((tg - tg.mean(0)) ** 2).sum())

    hist, t0 = [], time.time()
    base_mse, base_r2 = mse(te)
    hist.append({"epoch": 0, "test_mse": round(base_mse, 5), "test_r2": round(base_r2, 4)})
    print(hist[-1], flush=True)
    idx = list(range(len(tr[0])))
    for ep in range(1, args.epochs + 1):
        random.shuffle(idx)
        for i in range(0, len(idx), 32):
            b = idx[i:i + 32]
            out = torch.cat([visual.merger(tr[0][j])[tr[1][j]] for j in b])
            tg = torch.cat([tr[2][j] for j in b])
            loss = ((out - tg) ** 2).sum(-1).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
        m, r2 = mse(te)
        hist.append({"epoch": ep, "test_mse": round(m, 5), "test_r2": round(r2, 4), "wall_s": round(time.time() - t0, 1)})
        print(hist[-1], flush=True)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    for f in args.model.glob("vtg_*.json"):
        (args.out / f.name).write_text(f.read_text())
    if args.log:
        with open(args.log, "a") as fh:
            fh.write(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "history": hist}) + "\n")


if __name__ == "__main__":
    main()
