"""`vtg data …`: convert public data sets to records, synthesize the video world, validate record files."""

from __future__ import annotations

import argparse
from pathlib import Path

from vtg.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="convert, synthesize and validate grounding records",
        description="Data tools. Records are JSONL, one grounding sample a line (see README).",
    )
    dsub = p.add_subparsers(dest="data_command", metavar="<data command>", required=True)

    from vtg.data.adapters import FORMATS

    c = dsub.add_parser(
        "convert",
        help="convert official release files of a data set to records JSONL",
        description="Convert official release files, unchanged, to vtg records. Formats: "
        + ", ".join(f"{k} ({v.help})" for k, v in FORMATS.items()),
    )
    c.add_argument("format", help="one of: " + ", ".join(FORMATS))
    c.add_argument("files", nargs="+", help="release files (e.g. charades_sta_test.txt Charades_v1_test.csv)")
    c.add_argument("--out", required=True, help="output records JSONL")
    c.add_argument(
        "--video-dir",
        default="",
        help="folder the videos live in; written into each record's 'video' (a relative folder "
        "is resolved against the output file's folder when the records are read)",
    )
    c.add_argument("--video-ext", default=".mp4", help="video file extension when the release names ids (default .mp4)")
    c.add_argument("--split", default=None, help="split name to write (default: guessed from the file name)")
    c.add_argument(
        "--didemo-consensus",
        choices=["mode", "all"],
        default="mode",
        help="DiDeMo: 'mode' keeps the most frequent annotator pair (ties: earliest, then shortest); "
        "'all' keeps every distinct annotator pair as a moment",
    )
    c.add_argument(
        "--durations",
        default=None,
        help="DiDeMo: CSV (video,duration) or JSON {video: seconds} of the videos' durations; without it "
        "a video is assumed to last 5 s x num_segments (30 s for 6 segments), capped at 30 s",
    )
    c.add_argument("--fix-reversed", action="store_true", help="swap reversed moments instead of rejecting them")
    c.add_argument("--check-video", action="store_true", help="reject records whose video file does not exist")
    c.set_defaults(func=_convert)

    s = dsub.add_parser(
        "synth",
        help="write the synthetic grounding world: real MP4 videos + exact records",
        description="Synthetic videos with exact ground truth: single, multi-occurrence, "
        "compositional and absent-event queries, split into train/val/test.",
    )
    s.add_argument("--out", required=True, help="output folder (videos/ and {train,val,test}.jsonl)")
    s.add_argument("--n", type=int, default=200, help="number of videos (default 200)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fps", type=float, default=2.0, help="frames per second of the encoded videos (default 2)")
    s.add_argument("--size", type=int, default=56, help="frame width and height in pixels (default 56)")
    s.add_argument("--min-duration", type=float, default=5.0)
    s.add_argument("--max-duration", type=float, default=120.0)
    s.add_argument(
        "--kinds",
        default="single,multi,compositional,absent",
        help="query kinds to draw, comma-separated (default all four)",
    )
    s.add_argument("--split-fractions", default="0.8,0.1,0.1", help="train,val,test fractions of the videos")
    s.add_argument(
        "--one-kind-per-video",
        action="store_true",
        help="each video shows the objects of one query kind only (kinds in turn), one query per video; "
        "default: one query of every kind per video, their objects side by side",
    )
    s.set_defaults(func=_synth)

    v = dsub.add_parser("validate", help="check a records JSONL against the schema and print a summary")
    v.add_argument("file")
    v.add_argument("--check-video", action="store_true", help="also check that video files exist")
    v.set_defaults(func=_validate)

    from vtg.data import curate

    curate.register(dsub)


def _convert(args: argparse.Namespace) -> int:
    from vtg.data.adapters import convert_files
    from vtg.data.records import describe, rejected_report_path, write_jsonl

    records, report = convert_files(
        args.format,
        args.files,
        video_dir=args.video_dir,
        video_ext=args.video_ext,
        split=args.split,
        didemo_consensus=args.didemo_consensus,
        fix_reversed=args.fix_reversed,
        check_video=args.check_video,
        durations=args.durations,
        video_root=Path(args.out).parent,  # relative videos resolve next to the output
    )
    print(report.summary(full_report=rejected_report_path(args.out)))
    if not records:
        raise UserError(f"nothing could be converted from {args.files} as {args.format!r}")
    n = write_jsonl(records, args.out)
    print(describe(records))
    print(f"wrote {n} records to {args.out}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from vtg.data.synth import SynthConfig, generate

    try:
        fractions = tuple(float(x) for x in args.split_fractions.split(","))
    except ValueError:
        raise UserError(
            f"--split-fractions must be three numbers like 0.8,0.1,0.1, got {args.split_fractions!r}"
        ) from None
    cfg = SynthConfig(
        n_videos=args.n,
        seed=args.seed,
        fps=args.fps,
        size=args.size,
        min_duration=args.min_duration,
        max_duration=args.max_duration,
        kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
        split_fractions=fractions,
        one_kind_per_video=args.one_kind_per_video,
    )
    generate(cfg, args.out, progress=print)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from vtg.data.records import describe, read_jsonl, rejected_report_path

    records, report = read_jsonl(args.file, check_video=args.check_video)
    print(report.summary(full_report=rejected_report_path(args.file)))
    print(describe(records))
    return 1 if report.errors else 0
