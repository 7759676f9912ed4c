"""`vtg data curate`: keep training records by difficulty for a given model (TimeRFT-style selection).

Time-R1 built TimeRFT by scoring candidate samples with the base model and keeping the medium-to-hard ones (the
idea as the paper describes it, from memory; not its code or thresholds). Why it matters for GRPO: a record where
all G rollouts score the same (all perfect, or all 0) has zero group advantage and teaches nothing.

How a record is scored: its request is built once (`vtg.request`: the model's own frame sampling and prompt), one vLLM
request samples `samples` answers (`SamplingParams(n=…)`), and each answer is scored with the training reward of
the same name from `vtg.train.rewards` (`metric`, default `tiou`: IoU of the first predicted moment with the
best-matching truth; unparseable → 0). The record's score is the mean over its samples.

Selection (inclusive window): `keep_iou_min <= score <= keep_iou_max` → kept; above → `too_easy`; below →
`too_hard`. Default window [0.05, 0.7]: drops what the model already solves (mean IoU > 0.7) and what it never
touches (mean < 0.05: GRPO would see no reward signal). A video or prompt that fails → `error`, dropped, counted.
"Absent" records (truth `[]`, answer "not present") have no IoU. `absent` decides: `keep` (default: all kept, so
the model still learns to say "not present" — the window is an IoU rule), `drop`, or `window` (score = share of
samples answering exactly "not present", the rewards' rule, then the same window).

Scores file (JSONL, one line per record, in input order): id, metric, score (mean), scores (per sample), mean_iou +
ious (plain tIoU per sample, whatever the metric), parse_rate (share of samples the grammar parsed), absent,
reason, kept, error. `--from-scores` re-selects from such a file without running the model (tune the window).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from vtg.data.grammar import PROMPT_STYLES
from vtg.errors import UserError

METRICS = ("tiou", "tiou_v2", "multi_moment")  # reward names whose value is a per-answer score in [0, 1]
ABSENT_POLICIES = ("keep", "drop", "window")
KEPT_REASONS = ("kept", "absent_kept")


@dataclass
class CurateConfig:
    records: str
    out: str
    model: str | None = None
    scores: str | None = None  # where the scores go; default: OUT's name with .scores.jsonl
    from_scores: str | None = None  # select from an existing scores file instead of running the model
    samples: int = 8
    keep_iou_min: float = 0.05
    keep_iou_max: float = 0.7
    metric: str = "tiou"
    absent: str = "keep"
    temperature: float = 1.0
    max_new_tokens: int = 200
    limit: int | None = None
    mode: str = "multi"
    think: bool = False
    prompt_style: str | None = None  # None: the model's own (vtg_prompt.json)
    seed: int = 0
    batch_size: int = 8

    def __post_init__(self) -> None:
        if not (0.0 <= self.keep_iou_min <= self.keep_iou_max <= 1.0):
            raise UserError(
                f"bad window --keep-iou-min {self.keep_iou_min} --keep-iou-max {self.keep_iou_max}: "
                "need 0 <= min <= max <= 1 (scores are mean IoUs)"
            )
        if self.metric not in METRICS:
            raise UserError(f"--metric {self.metric!r}: expected one of {', '.join(METRICS)}")
        if self.absent not in ABSENT_POLICIES:
            raise UserError(f"--absent {self.absent!r}: expected one of {', '.join(ABSENT_POLICIES)}")
        if self.samples < 1:
            raise UserError(f"--samples must be >= 1, got {self.samples}")
        if self.temperature < 0 or (self.temperature == 0 and self.samples > 1):
            raise UserError(
                f"--temperature {self.temperature}: need > 0 for {self.samples} different samples "
                "(0 makes them identical); or use --samples 1"
            )
        for key in ("max_new_tokens", "batch_size"):
            if getattr(self, key) < 1:
                raise UserError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be >= 1, got {self.limit}")
        if self.mode not in ("multi", "single"):
            raise UserError(f"--mode must be 'multi' or 'single', got {self.mode!r}")
        if self.prompt_style is not None and self.prompt_style not in PROMPT_STYLES:
            raise UserError(
                f"--prompt-style must be one of {list(PROMPT_STYLES)} or unset (the model's own), "
                f"got {self.prompt_style!r}"
            )
        if not Path(self.records).is_file():
            raise UserError(f"--records {self.records}: file not found (a records JSONL, e.g. from `vtg data synth`)")
        if Path(self.out).resolve() == Path(self.records).resolve():
            raise UserError(f"--out {self.out} is the input records file: write the curated set elsewhere")
        if self.from_scores is not None:
            if not Path(self.from_scores).is_file():
                raise UserError(f"--from-scores {self.from_scores}: file not found")
        elif not self.model:
            raise UserError("--model is required (a model folder) unless --from-scores gives existing scores")
        elif not (Path(self.model) / "config.json").is_file():
            raise UserError(f"--model {self.model}: not a model folder (no config.json)")
        if self.scores is None:
            self.scores = str(Path(self.out).with_suffix("")) + ".scores.jsonl"
        if Path(self.scores).resolve() in (Path(self.out).resolve(), Path(self.records).resolve()):
            raise UserError(f"--scores {self.scores} would overwrite --out or --records: choose another file")


# ---- scoring ------------------------------------------------------------------------------------------------------


def score_line(rec, texts: list[str], metric: str) -> dict[str, Any]:
    """One scores line for a record and its sampled answers (scored by the training rewards)."""
    from vtg.data.grammar import parse_answer
    from vtg.train.rewards import get_reward, tiou

    n = len(texts)
    cols = {"moments": [rec.moments] * n, "duration": [rec.duration] * n}
    scores = get_reward(metric)(texts, **cols)
    ious = tiou(texts, **cols)
    return {
        "id": rec.id,
        "metric": metric,
        "score": sum(scores) / n,
        "scores": scores,
        "mean_iou": sum(ious) / n,
        "ious": ious,
        "parse_rate": sum(parse_answer(t).ok for t in texts) / n,
        "absent": not rec.moments,
        "error": None,
    }


def error_line(rec, error: str) -> dict[str, Any]:
    return {
        "id": rec.id,
        "metric": None,
        "score": None,
        "scores": [],
        "mean_iou": None,
        "ious": [],
        "parse_rate": None,
        "absent": not rec.moments,
        "error": error,
    }


def requests_for(cfg: CurateConfig):
    """The scoring model's requests: its frame sampling, the question worded as configured (style: the model's)."""
    from vtg.request import Requests

    return Requests.for_model(cfg.model, mode=cfg.mode, think=cfg.think, style=cfg.prompt_style)


def score_records(cfg: CurateConfig, records: list, root: Path, progress=print) -> list[dict[str, Any]]:
    """Score every record with `cfg.samples` vLLM samples; a record that fails becomes an error line."""
    from vllm import SamplingParams

    from vtg.request import request_seed
    from vtg.vllm_engine import close_llm, make_llm

    requests = requests_for(cfg)
    llm = make_llm(cfg.model)
    lines: list[dict[str, Any]] = []
    try:
        for start in range(0, len(records), cfg.batch_size):
            batch, ready = records[start : start + cfg.batch_size], []
            for rec in batch:
                try:  # the video decoded once per record, for all its samples
                    ready.append((rec, requests.record(rec, root).vllm_input()))
                except (UserError, OSError, ValueError, RuntimeError) as e:
                    lines.append(error_line(rec, f"{type(e).__name__}: {e}"))
            if ready:
                params = [
                    SamplingParams(
                        n=cfg.samples,
                        temperature=cfg.temperature,
                        max_tokens=cfg.max_new_tokens,
                        seed=request_seed(cfg.seed, rec.id),
                    )
                    for rec, _ in ready
                ]
                outs = llm.generate([req for _, req in ready], params, use_tqdm=False)
                lines += [
                    score_line(rec, [c.text for c in out.outputs], cfg.metric) for (rec, _), out in zip(ready, outs)
                ]
            if progress:
                progress(f"[vtg curate] scored {min(start + cfg.batch_size, len(records))}/{len(records)}")
    finally:
        close_llm(llm)
    order = {r.id: i for i, r in enumerate(records)}
    return sorted(lines, key=lambda d: order[d["id"]])


# ---- selection ----------------------------------------------------------------------------------------------------


def decide(line: dict[str, Any], cfg: CurateConfig) -> str:
    """Why a scored record is kept or dropped: kept | absent_kept | too_easy | too_hard | absent_dropped | error."""
    if line.get("error"):
        return "error"
    if line["absent"] and cfg.absent != "window":
        return "absent_kept" if cfg.absent == "keep" else "absent_dropped"
    score = line["score"]
    if score > cfg.keep_iou_max:
        return "too_easy"
    if score < cfg.keep_iou_min:
        return "too_hard"
    return "kept"


def read_scores(path: str | Path, records: list) -> list[dict[str, Any]]:
    """Scores lines for exactly `records` (by id); a missing id or an unreadable line names the problem."""
    by_id: dict[str, dict[str, Any]] = {}
    from vtg.data.records import jsonl_lines

    for n, raw, problem in jsonl_lines(path):
        try:
            if problem:
                raise ValueError(problem)
            line = json.loads(raw)
            by_id[line["id"]] = line
            line["score"] = None if line["score"] is None else float(line["score"])
            line["absent"] = bool(line["absent"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise UserError(
                f"{path}, line {n}: not a scores line with id, score, absent ({type(e).__name__}: {e})"
            ) from None
    missing = [r.id for r in records if r.id not in by_id]
    if missing:
        raise UserError(
            f"{path}: no scores for {len(missing)} record(s), e.g. {missing[:3]}: score them first "
            "(run without --from-scores) or pass the records file that was scored"
        )
    return [by_id[r.id] for r in records]


def _portable(rec, root: Path, out_dir: Path):
    """The record with its video path absolute when the output lives in another folder (relative paths resolve
    against the JSONL file's folder)."""
    if "://" in rec.video or Path(rec.video).is_absolute() or root.resolve() == out_dir.resolve():
        return rec
    return replace(rec, video=str(Path(rec.video_path(root)).resolve()))


def curate(cfg: CurateConfig, progress=print) -> dict[str, Any]:
    """Score (or read scores), select, write the kept records and the scores; returns counts per reason."""
    from vtg.data.records import load_records, write_jsonl

    root = Path(cfg.records).parent
    records = load_records(cfg.records)[: cfg.limit]
    if not records:
        raise UserError(f"{cfg.records}: no records")
    lines = read_scores(cfg.from_scores, records) if cfg.from_scores else score_records(cfg, records, root, progress)
    reasons = Counter()
    kept = []
    for rec, line in zip(records, lines):
        line["reason"] = decide(line, cfg)
        line["kept"] = line["reason"] in KEPT_REASONS
        reasons[line["reason"]] += 1
        if line["kept"]:
            kept.append(_portable(rec, root, Path(cfg.out).parent))
    write_jsonl(lines, cfg.scores)
    write_jsonl(kept, cfg.out)
    summary = {
        "records": len(records),
        "kept": len(kept),
        "reasons": dict(reasons),
        "out": cfg.out,
        "scores": cfg.scores,
    }
    if progress:
        progress(describe(summary, lines, cfg))
    return summary


def describe(summary: dict[str, Any], lines: list[dict[str, Any]], cfg: CurateConfig) -> str:
    scored = [d for d in lines if not d.get("error")]
    parse = [d["parse_rate"] for d in scored if d.get("parse_rate") is not None]
    mean = [d["score"] for d in scored if d.get("score") is not None and math.isfinite(d["score"])]
    dropped = {k: v for k, v in summary["reasons"].items() if k not in KEPT_REASONS}
    kept = {k: v for k, v in summary["reasons"].items() if k in KEPT_REASONS}
    metric = next((d["metric"] for d in scored if d.get("metric")), cfg.metric)  # --from-scores: the file's
    return "\n".join(
        [
            f"[vtg curate] {summary['records']} records, window {cfg.keep_iou_min} <= mean {metric} <= "
            f"{cfg.keep_iou_max}, absent records: {cfg.absent}",
            f"[vtg curate] mean score {sum(mean) / max(len(mean), 1):.3f}, parse rate "
            f"{100 * sum(parse) / max(len(parse), 1):.1f}% over {len(scored)} scored records",
            f"[vtg curate] kept {summary['kept']} ({', '.join(f'{k} {v}' for k, v in kept.items()) or 'none'}); "
            f"dropped {summary['records'] - summary['kept']} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(dropped.items())) or 'none'})",
            f"[vtg curate] wrote {summary['out']} and {summary['scores']}",
        ]
    )


# ---- CLI ----------------------------------------------------------------------------------------------------------


def register(dsub: argparse._SubParsersAction) -> None:
    """Add `vtg data curate` to the `vtg data` sub-commands."""
    c = dsub.add_parser(
        "curate",
        help="keep records by difficulty for a model (TimeRFT-style), writing scores",
        description=__doc__.split("\n\n")[0] + " Each record gets N sampled answers from the model "
        "(vLLM); records whose mean score lies in the window are kept. Absent records: see --absent.",
    )
    c.add_argument("--records", required=True, help="input records JSONL")
    c.add_argument("--out", required=True, help="output JSONL of the kept records")
    c.add_argument("--model", default=None, help="model folder that scores the records (required unless --from-scores)")
    c.add_argument("--scores", default=None, help="scores JSONL to write (default: OUT with .scores.jsonl)")
    c.add_argument("--from-scores", default=None, help="select from an existing scores file; no model run")
    c.add_argument("--samples", type=int, default=8, help="sampled answers per record (default 8)")
    c.add_argument("--keep-iou-min", type=float, default=0.05, help="keep mean score >= this (default 0.05)")
    c.add_argument("--keep-iou-max", type=float, default=0.7, help="keep mean score <= this (default 0.7)")
    c.add_argument("--metric", default="tiou", choices=METRICS, help="per-answer score, a reward name (default tiou)")
    c.add_argument(
        "--absent",
        default="keep",
        choices=ABSENT_POLICIES,
        help="records with no true moment: keep all (default), drop all, or apply the window to their "
        "'not present' accuracy",
    )
    c.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    c.add_argument("--max-new-tokens", type=int, default=200, help="answer length cap (default 200)")
    c.add_argument("--limit", type=int, default=None, help="only the first K records")
    c.add_argument("--mode", default="multi", choices=["multi", "single"], help="grounding prompt mode")
    c.add_argument("--think", action="store_true", help="ask for <think> reasoning before the answer")
    c.add_argument(
        "--prompt-style",
        default=None,
        choices=list(PROMPT_STYLES),
        help="grounding prompt style (default: the model's own, vtg_prompt.json)",
    )
    c.add_argument("--seed", type=int, default=0, help="sampling seed (per record: seed + hash of the id)")
    c.add_argument("--batch-size", type=int, default=8, help="records per engine call (default 8)")
    c.set_defaults(func=_curate_cmd)


def _curate_cmd(args: argparse.Namespace) -> int:
    curate(CurateConfig(**{f.name: getattr(args, f.name) for f in fields(CurateConfig)}))
    return 0
