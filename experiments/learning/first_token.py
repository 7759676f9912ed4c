"""First answer token of a trained model: mean p("not") (of "not present") and p("starts") per query kind.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/learning/first_token.py --model outputs/bl_four_lr3e4/model-sft/final \
        --world outputs/bl_four_lr3e4/world

Single, multi and absent queries of the synthetic world share their wording: a model that reads the video puts
p("not") high on absent queries only; one that answers from the text puts the same value on all three.
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--world", required=True)
    ap.add_argument("--per-kind", type=int, default=20)
    args = ap.parse_args()
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vtg import engine
    from vtg.data.records import load_records
    from vtg.data.video import read_video

    processor = AutoProcessor.from_pretrained(args.model)
    model = AutoModelForImageTextToText.from_pretrained(args.model).eval()
    sampling, style = engine.sampling_for_model(args.model), engine.prompt_style_for_model(args.model)
    token = {w: processor.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("not", "starts")}
    seen: dict[str, list[tuple[float, float]]] = {}
    for r in load_records(f"{args.world}/test.jsonl"):
        kind = r.extra.get("kind")
        if kind not in ("single", "multi", "absent") or len(seen.setdefault(kind, [])) >= args.per_kind:
            continue
        prompt = engine.render_prompt(processor, engine.grounding_messages(r.query, r.duration, think=False,
                                                                           style=style))
        inputs = engine.hf_inputs(processor, prompt, read_video(r.video_path(args.world), sampling))
        with torch.no_grad():
            p = model(**inputs).logits[0, -1].softmax(-1)
        seen[kind].append((float(p[token["not"]]), float(p[token["starts"]])))
    for kind, ps in seen.items():
        print(f"{kind} ({len(ps)} queries): p(not) {sum(a for a, _ in ps) / len(ps):.3f}  "
              f"p(starts) {sum(b for _, b in ps) / len(ps):.3f}")


if __name__ == "__main__":
    main()
