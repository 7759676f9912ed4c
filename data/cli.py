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
        "compositional and absent-event queries, split into train/val/test. With --long: the long world instead, "
        "long test videos (minutes) and short training clips cut from other long videos (docs/data.md).",
    )
    s.add_argument("--out", required=True, help="output folder (videos/ and {train,val,test}.jsonl)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fps", type=float, default=2.0, help="frames per second of the encoded videos (default 2)")
    s.add_argument("--size", type=int, default=56, help="frame width and height in pixels (default 56)")
    short = s.add_argument_group("the short world (without --long)")
    short.add_argument("--n", type=int, default=None, help="number of videos (default 200)")
    short.add_argument("--min-duration", type=float, default=None, help="seconds (default 5)")
    short.add_argument("--max-duration", type=float, default=None, help="seconds (default 120)")
    short.add_argument(
        "--kinds",
        default=None,
        help="query kinds to draw, comma-separated (default all four: single,multi,compositional,absent)",
    )
    short.add_argument(
        "--split-fractions", default=None, help="train,val,test fractions of the videos (default 0.8,0.1,0.1)"
    )
    short.add_argument(
        "--one-kind-per-video",
        action="store_true",
        help="each video shows the objects of one query kind only (kinds in turn), one query per video; "
        "default: one query of every kind per video, their objects side by side",
    )
    _long_arguments(s)
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


SHORT_ONLY = ("n", "min_duration", "max_duration", "kinds", "split_fractions", "one_kind_per_video")
LONG_ONLY = (
    "durations_min", "videos_per_length", "events_per_video", "event_seconds", "max_event_share", "absent_fraction",
    "distractors", "colour_decoys", "shape_decoys", "train_clips", "val_clips", "clip_seconds", "empty_fraction",
)  # fmt: skip


def _long_arguments(s: argparse.ArgumentParser) -> None:
    from vtg.data.synth_long import LongSynthConfig

    d = LongSynthConfig()  # the defaults, said once

    def csv(xs) -> str:
        return ",".join(f"{x:g}" for x in xs)

    g = s.add_argument_group(
        "the long world (--long)",
        "long test videos, one queried object among long empty stretches, video j of every length holding the "
        "same events; and short train/val clips cut from other long videos, like the windows a coarse-to-fine "
        "grounder asks about",
    )
    g.add_argument("--long", action="store_true", help="write the long world instead of the short one")
    g.add_argument(
        "--durations-min", help=f"test video lengths in minutes, comma-separated (default {csv(d.durations_min)})"
    )
    g.add_argument(
        "--videos-per-length",
        type=int,
        help=f"test videos per length, = query families: video j of every length shows the same events "
        f"(default {d.videos_per_length})",
    )
    g.add_argument(
        "--events-per-video",
        help=f"min,max times the queried object appears in a video (default {csv(d.events_per_video)})",
    )
    g.add_argument("--event-seconds", help=f"min,max event length, log-uniform (default {csv(d.event_s)})")
    g.add_argument(
        "--max-event-share",
        type=float,
        help="an object's events fill at most this share of the shortest length, so they fit at every length "
        f"(default {d.max_event_share:g})",
    )
    g.add_argument(
        "--absent-fraction",
        type=float,
        help=f"share of test videos (and of empty clips' sources) that never show the queried object "
        f"(default {d.absent_fraction:g})",
    )
    g.add_argument(
        "--distractors",
        type=int,
        help=f"objects of other kinds shown besides the queried one (default {d.distractors})",
    )
    g.add_argument(
        "--colour-decoys",
        type=int,
        help="of the distractors, this many in the queried object's colour with another shape "
        f"(default {d.colour_decoys})",
    )
    g.add_argument(
        "--shape-decoys",
        type=int,
        help="of the distractors, this many in the queried object's shape with another colour "
        f"(default {d.shape_decoys})",
    )
    g.add_argument("--train-clips", type=int, help=f"training clips to write (default {d.train_clips})")
    g.add_argument("--val-clips", type=int, help=f"held-out clips, from separate val videos (default {d.val_clips})")
    g.add_argument("--clip-seconds", help=f"min,max clip length, uniform (default {csv(d.clip_s)})")
    g.add_argument(
        "--empty-fraction",
        type=float,
        help=f"share of clips showing no part of an event, answer 'not present' (default {d.empty_fraction:g})",
    )


def _numbers(text: str, flag: str, example: str, kind: type = float, any_count: bool = False) -> tuple:
    """A comma-separated flag value as numbers, as many as `example` has (or any number of them)."""
    count = 0 if any_count else len(example.split(","))
    try:
        out = tuple(kind(x) for x in text.split(","))
    except ValueError:
        out = ()
    if not out or (count and len(out) != count):
        noun = "integers" if kind is int else "numbers"
        what = f"{count} comma-separated {noun}" if count else f"comma-separated {noun}"
        raise UserError(f"--{flag} must be {what} like {example}, got {text!r}")
    return out


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n) is not None and getattr(args, n) is not False]


def _synth(args: argparse.Namespace) -> int:
    wrong = _given(args, SHORT_ONLY if args.long else LONG_ONLY)
    if wrong:
        world = "short world (without --long)" if args.long else "long world (--long)"
        raise UserError(f"{', '.join(wrong)}: only for the {world}; " + ("drop it" if args.long else "add --long"))
    from vtg.data.synth_long import check_world_folder

    check_world_folder(args.out, long_world=args.long)
    if args.long:
        return _synth_long(args)
    from vtg.data.synth import SynthConfig, generate

    kw = {"n_videos": args.n, "min_duration": args.min_duration, "max_duration": args.max_duration}
    if args.kinds is not None:
        kw["kinds"] = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    if args.split_fractions is not None:
        kw["split_fractions"] = _numbers(args.split_fractions, "split-fractions", "0.8,0.1,0.1")
    given = {k: v for k, v in kw.items() if v is not None}  # the rest: SynthConfig's defaults
    cfg = SynthConfig(seed=args.seed, fps=args.fps, size=args.size, one_kind_per_video=args.one_kind_per_video, **given)
    generate(cfg, args.out, progress=print)
    return 0


def _synth_long(args: argparse.Namespace) -> int:
    from vtg.data.synth_long import LongSynthConfig, generate_long

    kw = {
        "videos_per_length": args.videos_per_length,
        "max_event_share": args.max_event_share,
        "absent_fraction": args.absent_fraction,
        "distractors": args.distractors,
        "colour_decoys": args.colour_decoys,
        "shape_decoys": args.shape_decoys,
        "train_clips": args.train_clips,
        "val_clips": args.val_clips,
        "empty_fraction": args.empty_fraction,
    }
    for key, flag, example, kind in (
        ("durations_min", "durations_min", "2,10,30,60", float),
        ("events_per_video", "events_per_video", "1,3", int),
        ("event_s", "event_seconds", "2,180", float),
        ("clip_s", "clip_seconds", "8,20", float),
    ):
        text = getattr(args, flag)
        if text is not None:
            kw[key] = _numbers(text, flag.replace("_", "-"), example, kind, any_count=key == "durations_min")
    given = {k: v for k, v in kw.items() if v is not None}  # the rest: LongSynthConfig's defaults
    cfg = LongSynthConfig(seed=args.seed, fps=args.fps, size=args.size, **given)
    generate_long(cfg, args.out, progress=print)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from vtg.data.records import describe, read_jsonl, rejected_report_path

    records, report = read_jsonl(args.file, check_video=args.check_video)
    print(report.summary(full_report=rejected_report_path(args.file)))
    print(describe(records))
    return 1 if report.errors else 0
