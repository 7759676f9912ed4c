"""`vtg eval run | score | merge | report`: offline evaluation jobs, reference-exact scores, reports."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from vtg.profiles import PROFILES

    p = sub.add_parser(
        "eval",
        help="offline evaluation: run a model on a benchmark, score, merge shards, report",
        description="Offline evaluation jobs. `vtg eval <command> --help` for each.",
    )
    s = p.add_subparsers(dest="eval_command", metavar="<command>")
    p.set_defaults(func=lambda args: p.print_help() or 2)

    r = s.add_parser("run", help="run a model over a benchmark's records, appending predictions.jsonl (resumable)")
    r.add_argument("--config", required=True, help="recipes/eval/<benchmark>.yaml")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="local model folder: offline batched vLLM engine")
    src.add_argument("--endpoint", help="OpenAI-compatible base URL (e.g. http://host:8000/v1)")
    r.add_argument("--out", required=True, help="run folder (predictions, run.json, metrics.json)")
    r.add_argument("--shard", help="i/n: this process takes records i, i+n, … (merge with `vtg eval merge`)")
    r.add_argument("--limit", type=int, help="only the first N records (after sharding)")
    r.add_argument("--split", help="value for {split} in the config's records path (ActivityNet: val_1 / val_2)")
    r.add_argument("--records", help="override the config's records file")
    r.add_argument(
        "--strategy",
        choices=("direct", "coarse_to_fine", "auto", "streaming"),
        help="override the config's grounding strategy (vtg.grounding; docs/long-videos.md); streaming: each video "
        "replayed as a live stream, its events scored too (docs/streaming.md)",
    )
    r.add_argument(
        "--profile",
        choices=list(PROFILES),
        help="how the checkpoint is asked and read (vtg.profiles; default: the config's, else the folder's)",
    )
    r.add_argument("--max-new-tokens", type=int, help="override the config's generation budget (max_new_tokens)")
    r.set_defaults(func=_run)

    sc = s.add_parser("score", help="score predictions against ground truth; conventions printed with the numbers")
    sc.add_argument("--pred", required=True, help="predictions.jsonl (ours) or a QVHighlights submission")
    sc.add_argument("--gt", required=True, help="records JSONL, or the QVHighlights ground-truth JSONL")
    sc.add_argument("--format", choices=("records", "qvhighlights"), default="records")
    sc.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sc.add_argument(
        "--threshold-op",
        choices=(">=", ">"),
        default=">=",
        help="IoU test: >= (TimeLens, lmms-eval, Moment-DETR; default) or > (Time-R1, 2D-TAN)",
    )
    sc.add_argument("--clamp", action="store_true", help="clamp predicted moments to [0, duration] first")
    sc.add_argument(
        "--reversed",
        choices=("swap", "fail"),
        default="swap",
        help="a pair written end-first: read as the interval (swap) or score it IoU 0 (fail)",
    )
    sc.add_argument("--allow-missing", action="store_true", help="score queries without a prediction as failures")
    sc.add_argument(
        "--official",
        choices=("ego4d_nlq", "mad", "vue_tr", "vue_tr_v2"),
        help="the benchmark's official table instead: --pred is the file its evaluator reads (Ego4D challenge JSON, "
        "MAD ranked moments or vtg predictions.jsonl, VUE-TR results), --gt the release's ground truth, unchanged",
    )
    sc.add_argument(
        "--reference-compat",
        action="store_true",
        help="QVHighlights: drop queries with no predicted window, as Moment-DETR's eval.py silently does",
    )
    sc.set_defaults(func=_score)

    m = s.add_parser("merge", help="join shard prediction files; checks for duplicate and missing ids")
    m.add_argument("inputs", nargs="+", help="shard files or run folders")
    m.add_argument("--out", required=True, help="folder for the merged predictions.jsonl")
    g = m.add_mutually_exclusive_group()
    g.add_argument("--config", help="eval config: its records give the expected ids and order")
    g.add_argument("--records", help="records JSONL giving the expected ids and order")
    m.add_argument("--split", help="{split} value for the config's records path")
    m.set_defaults(func=_merge)

    rp = s.add_parser("report", help="JSON + Markdown table + PNG plots comparing runs")
    rp.add_argument("runs", nargs="+", help="run folders written by `vtg eval run`")
    rp.add_argument("--out", required=True)
    rp.add_argument("--labels", help="comma-separated names for the runs (default: folder names)")
    rp.add_argument(
        "--train",
        help="training records JSONL: score the prior baselines on each run's queries and say by how much each "
        "run beats them (docs/eval.md#controls-and-baselines)",
    )
    rp.set_defaults(func=_report)

    c = s.add_parser(
        "controls",
        help="write the control record sets (swapped videos, swapped questions) of a records file",
        description="Writes OUT/video/{own,swapped}.jsonl and OUT/question/{own,swapped}.jsonl: run a model on own "
        "and swapped of each, then `vtg eval report OWN SWAPPED …` prints whether it reads the video and the question.",
    )
    c.add_argument("--records", required=True, help="test records JSONL")
    c.add_argument("--out", required=True, help="folder for the control sets")
    c.add_argument("--seed", type=int, default=0, help="which partner each record gets (default 0)")
    c.add_argument(
        "--kinds", help="only records of these `kind`s, comma-separated (default: every record with moments)"
    )
    c.set_defaults(func=_controls)


def _run(args: argparse.Namespace) -> int:
    from vtg.eval.config import EvalConfig
    from vtg.eval.job import run_job
    from vtg.eval.predictions import parse_shard

    cfg = EvalConfig.load(
        args.config,
        split=args.split,
        records=args.records,
        strategy=args.strategy,
        profile=args.profile,
        max_new_tokens=args.max_new_tokens,
    )
    summary = run_job(
        cfg,
        out=args.out,
        model=args.model,
        endpoint=args.endpoint,
        shard=parse_shard(args.shard) if args.shard else None,
        limit=args.limit,
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    print(json.dumps(summary, indent=1))
    return 0


def _score(args: argparse.Namespace) -> int:
    from vtg.eval.metrics import Conventions, format_table
    from vtg.eval.qvhighlights import format_brief
    from vtg.eval.score import score_qvhighlights_file, score_records_file

    if args.official:
        from vtg.eval.official import format_official, score_files

        result = score_files(args.official, args.pred, args.gt)
        print(json.dumps(result, indent=1) if args.json else format_official(result))
        return 0
    if args.format == "qvhighlights":
        result = score_qvhighlights_file(args.pred, args.gt, reference_compat=args.reference_compat)
        print(json.dumps(result, indent=1) if args.json else format_brief(result))
        return 0
    conv = Conventions(threshold_op=args.threshold_op, clamp=args.clamp, reversed=args.reversed)
    _, result = score_records_file(args.pred, args.gt, conv, allow_missing=args.allow_missing)
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from vtg.data.records import load_records
    from vtg.eval.predictions import merge

    ids = None
    if args.config or args.records:
        from vtg.eval.config import EvalConfig

        path = args.records or EvalConfig.load(args.config, split=args.split).records_path
        ids = [r.id for r in load_records(path)]
    info = merge(args.inputs, ids, args.out)
    _carry_run_meta(args.inputs, args.out)
    from vtg.eval.streaming import merge_events

    if merge_events(args.inputs, args.out):  # a streaming run's shards: their events too
        print(f"merged the events into {args.out}/events.jsonl")
    print(
        f"merged {info['lines']} predictions from {info['files']} file(s) into {args.out}/predictions.jsonl"
        + ("" if ids is not None else " (no --config/--records: completeness not checked)")
    )
    return 0


def _carry_run_meta(inputs: list[str], out: str) -> None:
    """The merged folder gets the shards' run.json (as one unsharded run) so `vtg eval report` can read it."""
    from pathlib import Path

    for x in map(Path, inputs):
        meta = x / "run.json" if x.is_dir() else x.parent / "run.json"
        if meta.exists():
            d = json.loads(meta.read_text())
            d.update(shard=None, limit=None, merged_from=[str(i) for i in inputs])
            Path(out, "run.json").write_text(json.dumps(d, indent=1))
            return


def _report(args: argparse.Namespace) -> int:
    from vtg.eval.report import write_report

    labels = args.labels.split(",") if args.labels else None
    paths = write_report(args.runs, args.out, labels=labels, train=args.train)
    for p in paths:
        print(p)
    return 0


def _controls(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vtg.errors import UserError
    from vtg.eval.controls import CONTROLS, write_control_sets

    if not Path(args.records).exists():
        raise UserError(f"--records {args.records}: file not found")
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip()) if args.kinds else None
    for control in CONTROLS:
        own, swapped, n = write_control_sets(args.records, Path(args.out) / control, args.seed, kinds, control)
        print(f"{control} control: {n} queries -> {own}, {swapped}")
    return 0
