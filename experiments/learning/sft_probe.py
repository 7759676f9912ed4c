"""A fast SFT probe for "does the tiny model start reading the video?": the records are encoded once by vtg's own
collator (same prompt, frames, metadata and labels as `vtg train sft`), then a plain AdamW loop trains on them and
reports, every --eval-every steps, the test loss with each query's own video and with another test video of the same
duration. The gap between the two is the video-use signal: 0 means the answers come from the text alone.

Single-event worlds make it sharp (`vtg data synth --kinds single`). Two switches isolate what we found:
--prompt short uses the "short" grounding prompt style, "<duration>s. <query>" (vtg.data.grammar), and
--positions transformers skips vtg.hf_fixes (transformers 5.19's Qwen2.5-VL positions, which start the text after
the video at a fixed offset from the video's start instead of after its end).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/learning/sft_probe.py \
        --model outputs/bench_learning/model-base --world outputs/exp_s3k/world --steps 6000 --prompt short

The encoded-record cache (--work) holds the pixel values of every record in float32: ~5.4 GB for a 3000-video
two-object world. Delete old ones (`outputs/sft_probe/*.pt`); a dozen of them filled this machine's disk once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from pathlib import Path


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a tiny model folder (vtg model tiny)")
    p.add_argument("--world", type=Path, required=True, help="a synthetic world (vtg data synth)")
    p.add_argument("--work", type=Path, default=Path("outputs/sft_probe"), help="encoded-record cache")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--pixels", type=int, default=None, help="frame pixel budget (default: the model's sampling)")
    p.add_argument("--prompt", choices=("full", "short", "query-first"), default="full")
    p.add_argument("--positions", choices=("reference", "transformers"), default="reference")
    p.add_argument("--freeze-vision", action="store_true", help="keep the vision tower at init (merger trains)")
    p.add_argument("--merger-lr-mult", type=float, default=1.0,
                   help="the vision merger's learning rate as a multiple of --lr (does a faster projector leave the "
                        "text-only plateau sooner?)")
    p.add_argument("--loss", choices=("answer-mean", "token"), default="answer-mean",
                   help="answer-mean: mean over each answer's tokens (what batch-1 SFT does); token: summed over "
                        "tokens and divided by the mean answer length, so every token weighs the same")
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--test", type=int, default=100, help="test queries in the own/swapped loss")
    p.add_argument("--binding", action="store_true",
                   help="two-object worlds: also the test loss with the *other* query's moments of the same video "
                        "as the answer; a model that ignores which object the query names scores both the same")
    p.add_argument("--aux-name", type=float, default=0.0, metavar="WEIGHT",
                   help="two-object worlds: add WEIGHT x an auxiliary loss that asks a linear head to read the named "
                        "object's colour and shape from the hidden state after --aux-layer decoder layers, at every "
                        "position that predicts an answer token (a training signal for moving the name to the "
                        "answer, one half of binding)")
    p.add_argument("--aux-query-words", type=float, default=0.0, metavar="WEIGHT",
                   help="the same signal without labels (any data set): add WEIGHT x a loss that asks a linear head "
                        "to predict the query's informative words (prompt tokens in fewer than half of the train "
                        "prompts: the system text, chat template and video tokens drop out) at the answer positions")
    p.add_argument("--aux-layer", type=int, default=1, help="hidden_states index the auxiliary head reads")
    p.add_argument("--think", default=None, metavar="TEMPLATE",
                   help='train and test with a <think> target made from the record, e.g. "the {target}" (the named '
                        "object said again in the answer, before its moments)")
    p.add_argument("--save", type=Path, default=None,
                   help="save the trained model (and its processor) here, for `vtg eval run` and binding.py")
    p.add_argument("--group-by-video", action="store_true",
                   help="each step trains on all queries of one video together (in a two-object world: both "
                        "objects' queries), so what does not depend on the name cancels within the batch; "
                        "--batch then counts videos")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def encode_sets(args, processor, sampling):
    """(train items, [(own item, swapped item)]) encoded by vtg's SFT collator; cached per configuration."""
    import torch

    from vtg.data.records import load_records
    from vtg.train.collator import VideoGroundingCollator

    # the folders' full paths, not their names: two worlds called "world" must not share a cache
    where = hashlib.sha1(f"{args.world.resolve()}|{args.model.resolve()}".encode()).hexdigest()[:8]
    tag = f"{args.world.name}-{args.model.name}-{where}-{sampling.max_pixels}-{args.prompt}-b{int(args.binding)}"
    if args.think:
        tag += "-think" + hashlib.sha1(args.think.encode()).hexdigest()[:6]
    cache = args.work / f"{tag}.pt"
    if cache.exists():
        return torch.load(cache)
    collator = VideoGroundingCollator(processor, sampling, mode="multi", think=bool(args.think),
                                      prompt_style=args.prompt)

    def row(r, video=None):
        out = {**r.to_dict(), "video": str(args.world / (video or r.video))}
        if args.think:  # a templated reasoning target from the record's own fields
            out["think"] = args.think.format(**out)
        return out

    train = [collator.encode(row(r)) for r in load_records(args.world / "train.jsonl")]
    test = load_records(args.world / "test.jsonl")
    by_duration: dict[float, list] = {}
    by_video: dict[str, list] = {}
    for r in test:
        by_duration.setdefault(r.duration, []).append(r)
        by_video.setdefault(r.video, []).append(r)
    rng, pairs = random.Random(0), []
    for r in test:
        others = [o for o in by_duration[r.duration] if o.video != r.video]
        # the other object's answer: another query of the same video, with other moments
        neighbours = [o for o in by_video[r.video] if o.moments and o.moments != r.moments]
        if not others or len(pairs) >= args.test or (args.binding and not (r.moments and neighbours)):
            continue
        pair = (collator.encode(row(r)), collator.encode(row(r, rng.choice(others).video)))
        if args.binding:
            pair += (collator.encode({**row(r), "moments": neighbours[0].moments}),)
        pairs.append(pair)
    args.work.mkdir(parents=True, exist_ok=True)
    torch.save((train, pairs), cache)
    return train, pairs


class NameHead:
    """--aux-name: linear read-outs of the named object's colour and shape from a decoder layer's hidden state at the
    answer-predicting positions. Bench-only: it tests whether a signal for one half of binding breaks the saddle."""

    def __init__(self, hidden: int, args, tokenizer):
        import torch

        from vtg.data.synth import COLOURS, SHAPES

        self.colours, self.shapes, self.layer = list(COLOURS), list(SHAPES), args.aux_layer
        self.colour = torch.nn.Linear(hidden, len(self.colours))
        self.shape = torch.nn.Linear(hidden, len(self.shapes))
        self.tokenizer = tokenizer

    def parameters(self):
        return [*self.colour.parameters(), *self.shape.parameters()]

    def named_object(self, item) -> tuple[int, int]:
        """The named object of an encoded item, from its prompt: the last colour and shape words (in the relational
        wordings the queried object comes after the anchor)."""
        prompt = item["input_ids"][0][item["labels"][0] == -100]
        words = self.tokenizer.decode(prompt).replace("?", " ").replace(".", " ").split()
        colour = [w for w in words if w in self.colours][-1]
        shape = [w for w in words if w in self.shapes][-1]
        return self.colours.index(colour), self.shapes.index(shape)

    def _read(self, hidden, labels):
        predicting = labels[:, 1:] != -100  # position i predicts token i + 1
        h = hidden[:, :-1][predicting]
        rows = predicting.nonzero()[:, 0]
        return self.colour(h), self.shape(h), rows

    def loss(self, hidden, labels, names):
        import torch
        import torch.nn.functional as F

        colour, shape, rows = self._read(hidden, labels)
        want = torch.tensor(names)[rows]
        return F.cross_entropy(colour, want[:, 0]) + F.cross_entropy(shape, want[:, 1])

    def accuracy(self, model, pairs) -> float:
        """Share of the test pairs' answer positions where both read-outs name the right object (chance 1/12)."""
        hits = total = 0
        for item, *_ in pairs:
            out = model(**item, output_hidden_states=True)
            colour, shape, _ = self._read(out.hidden_states[self.layer], item["labels"])
            want = self.named_object(item)
            hits += int(((colour.argmax(-1) == want[0]) & (shape.argmax(-1) == want[1])).sum())
            total += colour.shape[0]
        return round(hits / max(1, total), 3)


class QueryWordsHead:
    """--aux-query-words: a linear read-out of the prompt's informative tokens (a bag of words, as a distribution:
    cross-entropy against the uniform distribution over the bag) at the answer-predicting positions. Needs no labels:
    "informative" = in fewer than half of the train prompts, so what every prompt shares drops out."""

    def __init__(self, hidden: int, args, tokenizer, train):
        import torch

        self.layer, self.tokenizer = args.aux_layer, tokenizer
        self.vocab = len(tokenizer)
        self.head = torch.nn.Linear(hidden, self.vocab)
        df = torch.zeros(self.vocab)
        for item in train:
            df[self._prompt_ids(item)] += 1
        self.common = df >= len(train) / 2

    def parameters(self):
        return list(self.head.parameters())

    @staticmethod
    def _prompt_ids(item):
        return item["input_ids"][0][item["labels"][0] == -100].unique()

    def named_object(self, item):  # the bag of the item's informative prompt tokens
        ids = self._prompt_ids(item)
        return ids[~self.common[ids]]

    def _read(self, hidden, labels):
        predicting = labels[:, 1:] != -100
        return self.head(hidden[:, :-1][predicting]), predicting.nonzero()[:, 0]

    def loss(self, hidden, labels, bags):
        import torch

        logits, rows = self._read(hidden, labels)
        target = torch.zeros(len(bags), self.vocab)
        for i, bag in enumerate(bags):
            target[i, bag] = 1.0 / len(bag)
        return -(target[rows] * logits.log_softmax(-1)).sum(-1).mean()

    def accuracy(self, model, pairs) -> float:
        """Share of the test pairs' answer positions whose top word is one of the query's informative words."""
        hits = total = 0
        for item, *_ in pairs:
            out = model(**item, output_hidden_states=True)
            logits, _ = self._read(out.hidden_states[self.layer], item["labels"])
            bag = set(self.named_object(item).tolist())
            hits += sum(int(t) in bag for t in logits.argmax(-1))
            total += logits.shape[0]
        return round(hits / max(1, total), 3)


def main() -> None:
    args = parse_args()
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vtg import engine, hf_fixes
    from vtg.train.collator import pad_batch

    if args.positions == "reference":
        hf_fixes.apply()
    else:  # keep transformers' own get_rope_index (hf_inputs would otherwise install the fix)
        hf_fixes._applied = True
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    model = AutoModelForImageTextToText.from_pretrained(args.model)
    processor = AutoProcessor.from_pretrained(args.model)
    sampling = engine.sampling_for_model(args.model)
    if args.pixels:
        from dataclasses import replace

        sampling = replace(sampling, min_pixels=args.pixels, max_pixels=args.pixels)
    t0 = time.time()
    train, pairs = encode_sets(args, processor, sampling)
    print(f"{len(train)} train / {len(pairs)} test pairs ready in {time.time() - t0:.0f}s; "
          f"{train[0]['input_ids'].shape[-1]} tokens in the first sequence", flush=True)
    if args.freeze_vision:  # random features keep their contrast; the merger still learns to project them
        for name, param in engine.vision_tower(model).named_parameters():
            param.requires_grad_("merger" in name)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in trainable if "merger" not in n], "mult": 1.0},
              {"params": [p for n, p in trainable if "merger" in n], "mult": args.merger_lr_mult}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=args.lr, weight_decay=0.0)
    pad = processor.tokenizer.pad_token_id
    mean_len = sum(int((t["labels"] != -100).sum()) for t in train) / len(train)
    hidden = model.config.get_text_config().hidden_size
    if args.aux_name and args.aux_query_words:
        raise SystemExit("--aux-name and --aux-query-words: pick one")
    aux_weight = args.aux_name or args.aux_query_words
    aux = (NameHead(hidden, args, processor.tokenizer) if args.aux_name else
           QueryWordsHead(hidden, args, processor.tokenizer, train) if args.aux_query_words else None)
    if aux:
        opt.add_param_group({"params": list(aux.parameters()), "mult": 1.0})
        train_names = [aux.named_object(item) for item in train]

    def batch_loss(inputs, names=None):
        """(the loss to minimise, the answer loss alone: what "train" reports)"""
        if aux:
            out = model(**inputs, output_hidden_states=True)
            name_loss = aux.loss(out.hidden_states[args.aux_layer], inputs["labels"], names)
            return out.loss + aux_weight * name_loss, out.loss
        if args.loss == "answer-mean":
            loss = model(**inputs).loss
            return loss, loss
        labels = inputs["labels"]
        logits = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits[:, :-1]
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=-100,
                                               reduction="sum")
        loss = ce / (mean_len * labels.shape[0])
        return loss, loss

    def first_token_hits(items) -> dict[str, float]:
        """Greedy first answer token right? Split by whether the answer is "not present"."""
        hits: dict[str, list[bool]] = {"absent": [], "present": []}
        for it in items:
            labels = it["labels"][0]
            first = int((labels != -100).nonzero()[0])
            logits = model(**{k: v for k, v in it.items() if k != "labels"}).logits[0, first - 1]
            kind = "absent" if processor.tokenizer.decode([int(labels[first])]).strip() == "not" else "present"
            hits[kind].append(int(logits.argmax()) == int(labels[first]))
        return {k: round(sum(v) / len(v), 3) for k, v in hits.items() if v}

    def test_losses():
        model.eval()
        with torch.no_grad():
            own = sum(float(model(**p[0]).loss) for p in pairs) / len(pairs)
            swapped = sum(float(model(**p[1]).loss) for p in pairs) / len(pairs)
            other = sum(float(model(**p[2]).loss) for p in pairs) / len(pairs) if args.binding else None
            first = first_token_hits([p[0] for p in pairs])
            name_read = aux.accuracy(model, pairs) if aux else None
        model.train()
        return own, swapped, other, first, name_read

    units = [[i] for i in range(len(train))]
    if args.group_by_video:
        from vtg.data.records import load_records

        videos: dict[str, list[int]] = {}
        for i, r in enumerate(load_records(args.world / "train.jsonl")):
            videos.setdefault(r.video, []).append(i)
        assert sum(map(len, videos.values())) == len(train), "train cache and train.jsonl disagree"
        units = list(videos.values())
    order: list[int] = []
    running, history, t0 = None, [], time.time()
    model.train()
    for step in range(1, args.steps + 1):
        frac = step / args.warmup if step <= args.warmup else (args.steps - step) / max(1, args.steps - args.warmup)
        for group in opt.param_groups:
            group["lr"] = args.lr * frac * group["mult"]
        batch, names = [], []
        for _ in range(args.batch):
            order = order or random.sample(range(len(units)), len(units))
            for index in units[order.pop()]:
                batch.append(train[index])
                names.append(train_names[index] if aux else None)
        loss, answer_loss = batch_loss(pad_batch(batch, pad), names)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        answer_loss = float(answer_loss.detach())  # a number for the log, off the graph
        running = answer_loss if running is None else 0.98 * running + 0.02 * answer_loss
        if step % args.eval_every == 0 or step == args.steps:
            own, swapped, other, first, name_read = test_losses()
            history.append({"step": step, "train": round(running, 4), "own": round(own, 4),
                            "swapped": round(swapped, 4), "gap": round(swapped - own, 4), "first_token": first})
            bind = ""
            if other is not None:
                history[-1].update(other_object=round(other, 4), binding_gap=round(other - own, 4))
                bind = f"other-object answer {other:.4f}  binding gap {other - own:+.4f}  "
            if name_read is not None:
                history[-1]["aux_name_accuracy"] = name_read
                bind += f"aux head reads the name {name_read}  "
            print(f"step {step}: train {running:.4f}  test own-video {own:.4f}  swapped-video {swapped:.4f}  "
                  f"gap {swapped - own:+.4f}  {bind}first answer token right {first}  ({time.time() - t0:.0f}s)",
                  flush=True)
    if args.save:
        model.save_pretrained(args.save)
        processor.save_pretrained(args.save)
        for extra in (engine.PROMPT_FILE, engine.SAMPLING_FILE):  # the model's own prompt style and frame sampling
            if (args.model / extra).exists():
                (args.save / extra).write_text((args.model / extra).read_text())
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "history": history}))


if __name__ == "__main__":
    main()
