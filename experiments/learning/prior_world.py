"""A two-object world whose *training* split carries a name prior: which object of a video is shown once and which
several times depends on its colour more often than chance. Made by dropping training videos, never by editing one.

Why: binding needs the query's object name at the answer positions (`aux_name/README.md`). With a prior, moving the
name there pays off even for a model that cannot yet tell the objects apart in the video (the name predicts how many
moments to answer), so plain SFT gets a signal for that half of binding from the data alone. The test split is left as
it is (no prior), so binding measured on it is binding, not the prior.

In a `single,multi` world a video's single-event object is `--single-colours` and its multi-event one is not
("consistent"), the reverse ("reversed"), or neither ("mixed"). `--keep mixed` drops the reversed videos (given a
`--single-colours` name, the object is the single one in ~69 % of the kept queries); `--keep consistent` drops the
mixed ones too (100 %).

    .venv/bin/python bench/learning/prior_world.py --world outputs/bl_sm48/world --out outputs/prior_world --keep mixed

`--binding-run RUN` instead reports `binding.py`'s numbers for an eval run on the world's (unbiased) test split, per
video class: a model that only learned the prior binds on consistent videos and swaps on reversed ones; binding on
mixed videos (both objects in one colour group, so the prior says nothing) is binding.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path


def classify(records: list[dict], single_colours: set[str]) -> str:
    """consistent / reversed / mixed for one video's single and multi queries."""
    kind_of = {r["kind"]: r["target"].split()[0] in single_colours for r in records}
    single_in, multi_in = kind_of["single"], kind_of["multi"]
    if single_in and not multi_in:
        return "consistent"
    if multi_in and not single_in:
        return "reversed"
    return "mixed"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=Path, required=True, help="a `vtg data synth --kinds single,multi` world")
    p.add_argument("--out", type=Path, help="the new world (required unless --binding-run)")
    p.add_argument("--binding-run", type=Path, help="an eval run on --world's test split: binding per video class")
    p.add_argument("--single-colours", action="append",
                   help="colours whose objects are the single-event ones (default red,green); repeat it for a union "
                        "of priors: a video is kept when it is kept under any of them")
    p.add_argument("--keep", choices=("mixed", "consistent"), default="mixed")
    args = p.parse_args()
    priors = [set(c.split(",")) for c in (args.single_colours or ["red,green"])]
    single_colours = priors[0]
    keep = {"consistent"} | ({"mixed"} if args.keep == "mixed" else set())
    if args.binding_run:
        from binding import binding  # this folder is on sys.path when the script runs

        for cls in ("consistent", "reversed", "mixed"):
            print(cls, json.dumps(binding(args.world, args.binding_run,
                                          lambda rs, c=cls: classify(rs, single_colours) == c)))
        return
    if args.out is None:
        raise SystemExit("--out is required to write a world")

    lines = (args.world / "train.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    by_video: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_video[r["video"]].append(r)
    classes = {v: classify(rs, single_colours) for v, rs in by_video.items()}
    kept_videos = {v for v, rs in by_video.items() if any(classify(rs, c) in keep for c in priors)}
    kept = [(line, r) for line, r in zip(lines, records) if r["video"] in kept_videos]

    args.out.mkdir(parents=True, exist_ok=True)
    for entry in os.listdir(args.world):  # videos hard-linked, the other splits copied as they are
        src, dst = args.world / entry, args.out / entry
        if entry == "train.jsonl" or dst.exists():
            continue
        if src.is_dir():
            shutil.copytree(src, dst, copy_function=os.link)
        else:
            shutil.copy2(src, dst)
    (args.out / "train.jsonl").write_text("".join(line + "\n" for line, _ in kept))
    named_single = Counter(r["kind"] for _, r in kept if r["target"].split()[0] in single_colours)
    summary = {"videos": Counter(classes.values()), "kept_records": len(kept), "of": len(lines),
               "single_share_when_a_single_colour_is_named":
                   round(named_single["single"] / max(1, sum(named_single.values())), 3)}
    (args.out / "prior.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **summary},
                                                    indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
