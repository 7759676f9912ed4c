"""`vtg eval report`: one JSON, one Markdown table (runs side by side) and PNG plots, all from the same numbers.

Every number is computed once into `report.json`; the Markdown and the plots are drawn from that dict (the
Markdown prints each value with 2 decimals, the test checks they agree).

Breakdowns:
- by video length, every metric (`metrics.aggregate` on the queries of each bin, absent ones included) in fixed
  bins, the same for every run and benchmark: < 1, 1–10, 10–30, 30–60 and ≥ 60 minutes (`VIDEO_LENGTH_BINS_MIN`;
  a bin holds its lower edge: a video of exactly 10 min is in 10–30). Empty bins are listed with n = 0;
- by true-moment length (first true moment, present queries): R@1 at IoU 0.5 and mIoU in the tertiles of the
  first run's queries, shared by all runs.

Controls and baselines (docs/eval.md#controls-and-baselines): a run of a control set (records marked
`extra["control"]` by `vtg.eval.controls`) gets a verdict against the last run listed before it that is not a control,
both scored on the queries they share; with `train` (training records), every other run gets the prior baselines
(`vtg.eval.baselines`) scored on its own queries and the verdict "beats the prior by N points".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vtg.errors import UserError
from vtg.eval.metrics import Conventions, QueryScore, pct

CURVE_THETAS = [round(0.05 * i, 2) for i in range(1, 20)]
HIST_EDGES = [round(0.1 * i, 1) for i in range(11)]
FILES = [
    "report.json",
    "report.md",
    "iou_hist.png",
    "r1_vs_iou.png",
    "by_video_length.png",
    "by_moment_length.png",
    "parse_failures.png",
]


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], list[QueryScore], dict[str, Any]]:
    """(run.json, per-query scores, metrics) for a finished (or merged) run folder; the queries are the ones the
    run selected (shard, limit), and any without a line count as failures (`counts.missing`). run.json gets
    `control`: the control its records were built for (`vtg.eval.controls`), else None."""
    from vtg.data.records import load_records
    from vtg.eval.config import EvalConfig
    from vtg.eval.job import select_records
    from vtg.eval.metrics import score_predictions
    from vtg.eval.predictions import read_predictions
    from vtg.eval.score import score_qvhighlights_file

    d = Path(run_dir)
    meta_path, pred = d / "run.json", d / "predictions.jsonl"
    if not meta_path.exists():
        raise UserError(f"{d}: no run.json; pass folders written by `vtg eval run` (or `vtg eval merge`)")
    if not pred.exists():
        raise UserError(f"{d}: no predictions.jsonl; sharded runs need `vtg eval merge SHARDS --out {d}` first")
    meta = json.loads(meta_path.read_text())
    cfg = EvalConfig.from_dict(meta["config"], str(meta_path))
    shard = tuple(meta["shard"]) if meta.get("shard") else None
    records = select_records(load_records(meta["records"]), shard, meta.get("limit"))
    preds = read_predictions(pred)
    unknown = set(preds) - {r.id for r in records}
    if unknown:
        raise UserError(f"{pred}: {len(unknown)} id(s) not among the run's records, e.g. {sorted(unknown)[:3]}")
    meta = {**meta, "control": records[0].extra.get("control") if records else None}
    records = [r for r in records if r.extra.get("has_labels", True) is not False]  # QVHighlights test: no labels
    if not records:
        raise UserError(f"{d}: no labelled queries to report on (unlabelled test split?)")
    scores, result = score_predictions(
        records, {r.id: preds[r.id] for r in records if r.id in preds}, cfg.scoring.conventions(), allow_missing=True
    )
    if cfg.format == "qvhighlights" and shard is None and meta.get("limit") is None:
        result["qvhighlights"] = score_qvhighlights_file(pred, cfg.gt_path)["brief"]
    if cfg.scoring.official:
        from vtg.eval.official import score_run

        result["official"] = score_run(cfg.scoring.official, records, preds)[0]
    if cfg.strategy == "streaming":  # its events, scored beside the final spans (vtg.eval.streaming)
        from vtg.eval.streaming import score_run_folder

        result["streaming"] = score_run_folder(records, d)
    return meta, scores, result


VIDEO_LENGTH_BINS_MIN = (0.0, 1.0, 10.0, 30.0, 60.0, float("inf"))


def length_bin(duration_s: float) -> str:
    """The fixed video-length bin of a duration in seconds, e.g. "10–30 min"."""
    edges = VIDEO_LENGTH_BINS_MIN
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo * 60 <= duration_s < hi * 60:
            return _length_label(lo, hi)
    return _length_label(edges[-2], edges[-1])


def length_labels() -> list[str]:
    """The fixed video-length bins' labels, shortest first."""
    edges = VIDEO_LENGTH_BINS_MIN
    return [_length_label(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]


def _length_label(lo: float, hi: float) -> str:
    if lo == 0:
        return f"< {hi:g} min"
    return f"≥ {lo:g} min" if hi == float("inf") else f"{lo:g}–{hi:g} min"


def by_video_length(scores: Sequence[QueryScore], conv: Conventions) -> dict[str, dict[str, Any]]:
    """Every metric per fixed video-length bin (`n`: queries in the bin; metrics None when it is empty)."""
    from vtg.eval.metrics import aggregate

    bins: dict[str, list[QueryScore]] = {label: [] for label in length_labels()}
    for s in scores:
        bins[length_bin(s.duration)].append(s)
    return {label: {"n": len(sel), **(aggregate(sel, conv)["metrics"] if sel else {})} for label, sel in bins.items()}


def _tertile_edges(values: Sequence[float]) -> list[float]:
    if not values:
        return [0.0, float("inf")]
    q = np.quantile(np.asarray(values, dtype=float), [1 / 3, 2 / 3]).round(1).tolist()
    return sorted({0.0, *q}) + [float("inf")]


def _bin_label(lo: float, hi: float) -> str:
    return f"{lo:g}–{hi:g}s" if hi != float("inf") else f">{lo:g}s"


def _by_bins(scores: list[QueryScore], key, edges: list[float], conv: Conventions) -> dict[str, dict[str, float]]:
    out = {}
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = [s for s in scores if lo <= key(s) < hi]
        out[_bin_label(lo, hi)] = {
            "n": len(sel),
            "R@1,IoU=0.5": pct(sum(s.hit(1, 0.5, conv) for s in sel), len(sel)),
            "mIoU": pct(sum(s.top1_iou for s in sel), len(sel)),
        }
    return out


def run_summary(
    label: str, run_dir: str, meta: dict, scores: list[QueryScore], result: dict, len_edges: list[float]
) -> dict[str, Any]:
    conv = Conventions(**{k: tuple(v) if isinstance(v, list) else v for k, v in result["conventions"].items()})
    present = [s for s in scores if s.present]
    hist = np.histogram([s.top1_iou for s in present], bins=HIST_EDGES)[0].tolist()
    return {
        "label": label,
        "dir": str(run_dir),
        "control": meta.get("control"),
        "benchmark": meta.get("benchmark"),
        "model": meta.get("model") or meta.get("endpoint"),
        "conventions": result["conventions"],
        "metrics": result["metrics"],
        "counts": result["counts"],
        "official": result.get("official"),
        "qvhighlights": result.get("qvhighlights"),
        "streaming": result.get("streaming"),
        "r1_curve": {f"{t:g}": pct(sum(s.hit(1, t, conv) for s in present), len(present)) for t in CURVE_THETAS},
        "iou_hist": {"edges": HIST_EDGES, "counts": hist},
        "by_video_length": by_video_length(scores, conv),
        "by_moment_length": _by_bins(present, lambda s: s.truth[0][1] - s.truth[0][0], len_edges, conv),
    }


def build_report(
    runs: Sequence[str | Path], labels: Sequence[str] | None = None, train: str | Path | None = None
) -> dict[str, Any]:
    if labels is not None and len(labels) != len(runs):
        raise UserError(f"--labels has {len(labels)} names for {len(runs)} runs")
    if train is not None and not Path(train).is_file():
        raise UserError(f"--train {train}: no such records file (the training split the prior baselines learn from)")
    loaded = [load_run(r) for r in runs]
    first = [s for s in loaded[0][1] if s.present]
    len_edges = _tertile_edges([s.truth[0][1] - s.truth[0][0] for s in first])
    labels = list(labels or [Path(r).name for r in runs])
    out = [run_summary(lab, str(r), *x, len_edges) for lab, r, x in zip(labels, runs, loaded)]
    convs = {json.dumps(r["conventions"], sort_keys=True) for r in out}
    report = {
        "runs": out,
        "same_conventions": len(convs) == 1,
        "bins": {"video_length_min": list(VIDEO_LENGTH_BINS_MIN[:-1]), "moment_length": len_edges[:-1]},
        "controls": control_verdicts(out, [x[1] for x in loaded]),
    }
    if train is not None:
        report["prior"] = prior_verdicts(out, [x[1] for x in loaded], train)
    return report


def _conv(summary: dict[str, Any]) -> Conventions:
    return Conventions(**{k: tuple(v) if isinstance(v, list) else v for k, v in summary["conventions"].items()})


def control_verdicts(runs: list[dict[str, Any]], scores: list[list[QueryScore]]) -> list[dict[str, Any]]:
    """A verdict for each control run: against the last run before it that is not a control, on their shared
    queries (none listed: no verdict, said so)."""
    from vtg.eval.controls import CONTROL_MARK, verdict
    from vtg.eval.metrics import aggregate

    kinds = {mark: control for control, mark in CONTROL_MARK.items()}
    out = []
    for i, run in enumerate(runs):
        if run["control"] not in kinds:
            continue
        control = kinds[run["control"]]
        ref = next((j for j in range(i - 1, -1, -1) if runs[j]["control"] not in kinds), None)
        item: dict[str, Any] = {"control": control, "run": run["label"], "reference": None}
        ids = {s.id for s in scores[i]} & ({s.id for s in scores[ref]} if ref is not None else set())
        if ids:
            conv = _conv(run)
            own = aggregate([s for s in scores[ref] if s.id in ids], conv)["metrics"]["mIoU"]
            swapped = aggregate([s for s in scores[i] if s.id in ids], conv)["metrics"]["mIoU"]
            item |= {"reference": runs[ref]["label"], "queries": len(ids), "own_mIoU": own, "swapped_mIoU": swapped}
            item["verdict"] = verdict(control, own, swapped)
        out.append(item)
    return out


def prior_verdicts(runs: list[dict[str, Any]], scores: list[list[QueryScore]], train: str | Path) -> dict[str, Any]:
    """The prior baselines of the training records, scored on each (non-control) run's own queries, and the run's
    lead over the best of them."""
    from vtg.data.records import load_records
    from vtg.eval import baselines as bl

    fitted = bl.fit(load_records(train))
    per_run = {}
    for run, sc in zip(runs, scores):
        if run["control"] is not None:
            continue
        scored = bl.score(fitted, [(s.id, s.truth, s.duration) for s in sc], _conv(run))
        gap = bl.prior_gap(run["metrics"], scored)
        per_run[run["label"]] = {"baselines": scored, "gap": gap, "verdict": bl.prior_verdict(gap)}
    return {"train": str(train), **fitted.to_dict(), "runs": per_run}


def verdict_lines(report: dict[str, Any]) -> list[str]:
    """One line per control and per run with a prior: what the report's verdicts say."""
    lines = []
    for c in report.get("controls", []):
        if c["reference"] is None:
            lines.append(f"- {c['run']} ({c['control']} control): no verdict, no run before it shares its queries")
            continue
        lines.append(
            f"- {c['reference']} {c['verdict']} ({c['control']} control, {c['queries']} queries: mIoU "
            f"{c['own_mIoU']:.2f} own vs {c['swapped_mIoU']:.2f} in {c['run']})"
        )
    for label, p in report.get("prior", {}).get("runs", {}).items():
        lines.append(f"- {label} {p['verdict']}")
    return lines


def _row(name: str, values: list[Any]) -> str:
    cells = [("–" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)) for v in values]
    return f"| {name} | " + " | ".join(cells) + " |"


def markdown(report: dict[str, Any]) -> str:
    runs = report["runs"]
    head = "| metric | " + " | ".join(r["label"] for r in runs) + " |\n|---|" + "---|" * len(runs)
    lines = ["# Evaluation report", ""]
    officials = [r["official"] for r in runs if r.get("official")]
    if officials:  # the benchmark's own table first, titled with its evaluator; vtg's conventions do not apply
        lines += [f"## {officials[0]['label']}", "", f"`{officials[0]['source']}`; values in %.", "", head]
        for k in officials[0]["metrics"]:
            lines.append(_row(k, [(r.get("official") or {}).get("metrics", {}).get(k) for r in runs]))
        for k in officials[0]["counts"]:
            lines.append(_row(k, [(r.get("official") or {}).get("counts", {}).get(k) for r in runs]))
        lines += ["", "## vtg metrics", ""]
    if not report["same_conventions"]:
        lines += ["**Warning: the runs were scored with different conventions; numbers are not comparable.**", ""]
    c = runs[0]["conventions"]
    lines += [
        f"Conventions: IoU {c['threshold_op']} θ, clamp {'on' if c['clamp'] else 'off'}, reversed pairs "
        f"{c['reversed']}; parse failures score IoU 0 and stay in the denominator. Values in %.",
        "",
    ]
    lines += ([] if officials else ["## Metrics", ""]) + [head]
    for k in runs[0]["metrics"]:
        lines.append(_row(k, [r["metrics"].get(k) for r in runs]))
    for k in runs[0]["counts"]:
        lines.append(_row(k, [r["counts"].get(k) for r in runs]))
    if any(r["qvhighlights"] for r in runs):
        lines += ["", "## QVHighlights (Moment-DETR definitions)", "", head]
        keys = next(r["qvhighlights"] for r in runs if r["qvhighlights"])
        for k in keys:
            lines.append(_row(k, [(r["qvhighlights"] or {}).get(k) for r in runs]))
    streams = [r.get("streaming") for r in runs]
    if any(streams):  # streaming runs: their events (docs/streaming.md#metrics); – for runs of other strategies
        first = next(x for x in streams if x)
        lines += [
            "",
            "## Streaming",
            "",
            f"Events of each record's causal replay. event_*: a moment.started emitted within ±{first['tau_s']:g} s "
            f"of a true start (StreamingBench's rule); span_*: the final spans at IoU >= {first['span_iou']:g}; "
            "delays (OnVTG's SD / ED, seconds): emitted time - true start / end, on the span-matched moments; false "
            "alarms: moment.started per hour of streams without the event. P/R/F1 in %.",
            "",
            head,
        ]
        for k in first["metrics"]:
            lines.append(_row(k, [(x or {}).get("metrics", {}).get(k) for x in streams]))
        for k in first["counts"]:
            lines.append(_row(k, [(x or {}).get("counts", {}).get(k) for x in streams]))
        for b in first["by_video_length"]:
            if not any((x or {}).get("by_video_length", {}).get(b, {}).get("n") for x in streams):
                continue
            for m in ("n", f"event_F1@{first['tau_s']:g}s", f"span_F1@IoU{first['span_iou']:g}",
                      "start_delay_median_s", "end_delay_median_s", "false_alarms_per_hour"):  # fmt: skip
                lines.append(
                    _row(f"{b} {m}", [(x or {}).get("by_video_length", {}).get(b, {}).get(m) for x in streams])
                )
    verdicts = verdict_lines(report)
    if verdicts:
        lines += ["", "## Controls and baselines", "", *verdicts]
    if report.get("prior"):  # each baseline scored on each run's own queries (– for control runs)
        p = report["prior"]
        lines += ["", f"Prior baselines from {p['train_queries']} training queries (`{p['train']}`):", "", head]
        for name in p["moments"]:
            for m in ("R@1,IoU=0.5", "mIoU"):
                cells = [p["runs"].get(r["label"], {}).get("baselines", {}).get(name, {}).get(m) for r in runs]
                lines.append(_row(f"prior {name} {m}", cells))
    lines += ["", "## R@1 vs IoU threshold", "", head]
    for t in runs[0]["r1_curve"]:
        lines.append(_row(f"R@1,IoU={t}", [r["r1_curve"][t] for r in runs]))
    lines += ["", "## By video length (every query; fixed bins)", "", head]
    for b in runs[0]["by_video_length"]:
        if not any(r["by_video_length"][b]["n"] for r in runs):
            continue
        keys = next(r["by_video_length"][b] for r in runs if r["by_video_length"][b]["n"])
        for m in keys:
            lines.append(_row(f"{b} {m}", [r["by_video_length"][b].get(m) for r in runs]))
    lines += ["", "## By true-moment length (present queries)", "", head]
    for b in runs[0]["by_moment_length"]:
        for m in ("n", "R@1,IoU=0.5", "mIoU"):
            lines.append(_row(f"{b} {m}", [r["by_moment_length"][b][m] for r in runs]))
    return "\n".join(lines) + "\n"


def plots(report: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    n = len(runs)
    width = 0.8 / n

    def bars(key: str, fname: str, title: str) -> None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        cats = list(runs[0][key])
        for i, r in enumerate(runs):
            values = [r[key][c].get("R@1,IoU=0.5") or 0.0 for c in cats]
            ax.bar(np.arange(len(cats)) + i * width, values, width, label=r["label"])
        ax.set_xticks(np.arange(len(cats)) + width * (n - 1) / 2, cats)
        ax.set(ylabel="R@1, IoU=0.5 (%)", title=title, ylim=(0, 100))
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / fname, dpi=100)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    centers = np.array(HIST_EDGES[:-1]) + 0.05
    for i, r in enumerate(runs):
        ax.bar(centers - 0.04 + i * 0.08 / n, r["iou_hist"]["counts"], 0.08 / n, label=r["label"])
    ax.set(xlabel="top-1 IoU", ylabel="queries", title="IoU histogram (present queries)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "iou_hist.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in runs:
        ax.plot([float(t) for t in r["r1_curve"]], list(r["r1_curve"].values()), marker="o", label=r["label"])
    ax.set(xlabel="IoU threshold θ", ylabel="R@1 (%)", title="R@1 vs IoU threshold", ylim=(0, 100))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "r1_vs_iou.png", dpi=100)
    plt.close(fig)

    bars("by_video_length", "by_video_length.png", "Accuracy by video length")
    bars("by_moment_length", "by_moment_length.png", "Accuracy by true-moment length")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([r["label"] for r in runs], [r["metrics"]["parse_failure_rate"] for r in runs])
    ax.set(ylabel="% of queries", title="Parse failures + recorded errors")
    fig.tight_layout()
    fig.savefig(out / "parse_failures.png", dpi=100)
    plt.close(fig)


def write_report(
    runs: Sequence[str | Path], out: str | Path, labels: Sequence[str] | None = None, train: str | Path | None = None
) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(runs, labels, train)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    plots(report, out)
    return [out / f for f in FILES]
