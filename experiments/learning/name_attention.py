"""Where do the answer's tokens look? Per layer and head, the attention mass that the positions predicting the answer
put on the query's object-name tokens (colour and shape words) and on the video tokens, averaged over test queries.

A model that binds the query to its object must move the name to the answer somehow; with the question after the
video (the "short" prompt), the answer positions attending to the name tokens is the direct route. Uniform attention
over a ~150-token sequence gives two name tokens ~1.3 %. Needs a tokenizer in which the names are whole tokens (the
tiny tokenizer since 2026-11-27); with the older one the script finds no name tokens and says so.

    .venv/bin/python bench/learning/name_attention.py --model outputs/bl_sm48_tok/model-sft/final \\
        --world outputs/bl_sm48_tok/world --queries 40
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--world", type=Path, required=True)
    p.add_argument("--queries", type=int, default=40, help="first N test queries")
    args = p.parse_args()

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vtg import engine, hf_fixes
    from vtg.data.records import load_records
    from vtg.data.synth import COLOURS, SHAPES
    from vtg.train.collator import VideoGroundingCollator

    hf_fixes.apply()
    model = AutoModelForImageTextToText.from_pretrained(args.model, attn_implementation="eager").eval()
    processor = AutoProcessor.from_pretrained(args.model)
    collator = VideoGroundingCollator(processor, engine.sampling_for_model(args.model), mode="multi", think=False,
                                      prompt_style=engine.prompt_style_for_model(args.model))
    names = set(COLOURS) | set(SHAPES)
    sums: dict[tuple[int, int], list[float]] = {}
    n = 0
    for r in load_records(args.world / "test.jsonl")[: args.queries]:
        item = collator.encode({**r.to_dict(), "video": str(args.world / r.video)})
        ids, labels = item["input_ids"][0], item["labels"][0]
        predicting = (labels != -100).nonzero().flatten() - 1  # the positions whose logits predict answer tokens
        tokens = processor.tokenizer.convert_ids_to_tokens(ids.tolist())
        name_pos = [i for i, t in enumerate(tokens) if t.lstrip("Ġ") in names]
        if not name_pos:
            raise SystemExit(f"no whole-word colour/shape tokens in {r.id!r}'s prompt: this model's tokenizer splits "
                             f"the names: {processor.tokenizer.tokenize(' ' + r.query)}")
        video_pos = (ids == model.config.video_token_id).nonzero().flatten()
        with torch.no_grad():
            out = model(**{k: v for k, v in item.items() if k != "labels"}, output_attentions=True)
        for layer, att in enumerate(out.attentions):
            for head in range(att.shape[1]):
                a = att[0, head][predicting]
                s = sums.setdefault((layer, head), [0.0, 0.0])
                s[0] += float(a[:, name_pos].sum(-1).mean())
                s[1] += float(a[:, video_pos].sum(-1).mean())
        n += 1
    print(f"{n} test queries of {args.world}; model {args.model}")
    print("| layer | head | attention on the name tokens | on the video tokens |\n|---|---|---|---|")
    for (layer, head), (on_name, on_video) in sorted(sums.items()):
        print(f"| {layer} | {head} | {100 * on_name / n:.1f} % | {100 * on_video / n:.1f} % |")


if __name__ == "__main__":
    main()
