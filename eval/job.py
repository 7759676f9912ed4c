"""`vtg eval run`: records -> prompts -> a model (offline vLLM engine, or an OpenAI-compatible endpoint) -> lines.

- Requests come from `vtg.request` (the same chat messages and frame sampling as training: the model's recipe,
  `vtg_sampling.json`, unless the config overrides keys; against an endpoint, the same messages in OpenAI's form).
- Each question runs its grounding strategy (`strategy:`, vtg.grounding): `direct` is one call, `coarse_to_fine`
  several rounds of window calls. Offline: the calls of `batch_size` questions (fewer for windowed ones) go
  through one `vllm.LLM` per round; the next batch's videos are decoded in a thread pool while the engine runs the
  current one. Endpoint: `endpoint.concurrency` requests in flight; the server runs the strategy.
- Each finished batch is appended to predictions.jsonl and fsynced; a rerun skips ids already there (resume after
  a kill). A video that cannot be read, or a prompt the engine rejects, becomes an `error` line for that id
  (scored IoU 0), not a crash.
- `--shard i/n` takes records i, i+n, … (deterministic), written to its own file; `vtg eval merge` joins them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vtg.data.records import Record, load_records
from vtg.errors import UserError
from vtg.eval.config import EvalConfig
from vtg.eval.predictions import Appender, make_line, read_predictions, repair_tail, shard_file_name, take_shard


def select_records(records: list[Record], shard: tuple[int, int] | None, limit: int | None) -> list[Record]:
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    return take_shard(records, shard)[:limit]


def _extra(rec: Record) -> dict[str, Any]:
    return {"qid": rec.extra["qid"]} if "qid" in rec.extra else {}


def _chunks(items: list, n: int) -> list[list]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def run_job(
    cfg: EvalConfig,
    *,
    out: str | Path,
    model: str | None = None,
    endpoint: str | None = None,
    shard: tuple[int, int] | None = None,
    limit: int | None = None,
    progress: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    if (model is None) == (endpoint is None):
        raise UserError("give exactly one of --model DIR or --endpoint URL")
    if model is not None and not Path(model).is_dir():
        raise UserError(f"--model {model}: not a folder with model weights")
    if endpoint is not None and _prompt(cfg).suffix():
        raise UserError(
            f"profile {cfg.profile!r} with think: false continues the prompt after the generation prompt, which a "
            "chat API cannot send: run it offline (--model) or set think: true"
        )
    if endpoint is not None and cfg.strategy == "streaming":
        raise UserError(
            "strategy streaming replays each video on a virtual clock on an offline engine: run it with --model"
        )
    served = _connect(cfg, endpoint) if endpoint is not None else None
    if cfg.prompt_style is None:  # word the question as the model was trained to read it (run.json records it)
        from vtg.model_folder import read_prompt_style

        cfg = replace(cfg, prompt_style=read_prompt_style(model) if model else served.prompt_style)
    if cfg.profile is None:  # ask and read the checkpoint as its folder says (run.json records it)
        from vtg.model_folder import read_profile

        cfg = replace(cfg, profile=read_profile(model) if model else "vtg")
    records_path = cfg.records_path
    if not records_path.exists():
        raise UserError(
            f"records file not found: {records_path} (set `records:` in the config or pass --records; "
            "produce it with `vtg data convert`)"
        )
    selected = select_records(load_records(records_path), shard, limit)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pred_path = out / shard_file_name(shard)
    _write_meta(out, cfg, records_path, model, endpoint, shard, limit)
    repair_tail(pred_path)
    done = read_predictions(pred_path) if pred_path.exists() else {}
    todo = [r for r in selected if r.id not in done]
    if progress:
        progress(f"[vtg eval] {len(selected)} queries, {len(selected) - len(todo)} already done, {len(todo)} to run")
    t0 = time.perf_counter()
    root = records_path.parent
    timing: dict[str, Any] = {}
    with Appender(pred_path) as app:
        if todo and model is not None:
            timing = _run_offline(cfg, model, todo, root, app, progress, out / _events_name(shard))
        elif todo:
            if cfg.top_k is not None and progress:
                progress(
                    f"[vtg eval] top_k: {cfg.top_k}: a server returns its answer only, so R@K tables score that "
                    "(run offline with --model for the ranked list)"
                )
            _run_endpoint(cfg, served, todo, root, app, progress)
    wall = time.perf_counter() - t0
    summary = {
        "predictions": str(pred_path),
        "queries": len(selected),
        "ran": len(todo),
        "resumed": len(selected) - len(todo),
        "wall_s": round(wall, 3),
        "queries_per_s": round(len(todo) / wall, 3) if todo and wall > 0 else None,
        **timing,
    }
    if selected and selected[0].extra.get("control"):  # a control set: `vtg eval report OWN_RUN THIS_RUN` judges it
        summary["control"] = selected[0].extra["control"]
    if shard is None or shard[1] == 1:
        summary["metrics"] = _score_run(cfg, selected, pred_path, out)
    return summary


def _events_name(shard: tuple[int, int] | None) -> str:
    from vtg.eval.streaming import events_file_name

    return events_file_name(shard)


def _write_meta(out: Path, cfg: EvalConfig, records_path: Path, model, endpoint, shard, limit) -> None:
    meta = {
        "benchmark": cfg.benchmark,
        "records": str(records_path.resolve()),
        "config": cfg.to_dict(),
        "model": str(Path(model).resolve()) if model else None,
        "endpoint": endpoint,
        "shard": list(shard) if shard else None,
        "limit": limit,
    }
    (out / "run.json").write_text(json.dumps(meta, indent=1))


def _score_run(cfg: EvalConfig, selected: list[Record], pred_path: Path, out: Path) -> dict[str, Any]:
    """metrics.json for a whole (unsharded) run. Unlabelled records (QVHighlights test: `has_labels` false) are
    not scored; a QVHighlights run also writes submission.jsonl and, when complete and labelled, the reference
    metrics."""
    from vtg.eval import qvhighlights as qv
    from vtg.eval.metrics import score_predictions
    from vtg.eval.report import by_video_length

    preds = read_predictions(pred_path)
    labelled = [r for r in selected if r.extra.get("has_labels", True) is not False]
    result: dict[str, Any] = {"metrics": {}, "counts": {"unlabelled": len(selected) - len(labelled)}}
    if labelled:
        scores, result = score_predictions(
            labelled,
            {r.id: preds[r.id] for r in labelled if r.id in preds},
            cfg.scoring.conventions(),
            allow_missing=True,
        )
        result["counts"]["unlabelled"] = len(selected) - len(labelled)
        result["by_video_length"] = by_video_length(scores, cfg.scoring.conventions())
        if cfg.strategy == "streaming":  # the events beside the final spans (vtg.eval.streaming)
            from vtg.eval.streaming import score_run_folder

            result["streaming"] = score_run_folder(labelled, out)
        if cfg.scoring.official:  # the benchmark's own table, first; the file it scored beside it
            from vtg.eval.official import score_run

            official, submission = score_run(cfg.scoring.official, labelled, preds)
            (out / f"official_{cfg.scoring.official}_input.json").write_text(json.dumps(submission))
            result = {"official": official, **result}
    if cfg.format == "qvhighlights":
        sub = qv.submission_from_predictions([preds[r.id] for r in selected if r.id in preds])
        (out / "submission.jsonl").write_text("".join(json.dumps(d) + "\n" for d in sub))
        gt = cfg.gt_path
        if len(sub) == len(selected) and labelled and gt is not None and gt.exists():
            gt_lines = qv.load_jsonl(gt)
            if len(gt_lines) == len(sub):  # a --limit run cannot be scored the reference way (qids must match)
                result["qvhighlights"] = qv.eval_submission(sub, gt_lines)["brief"]
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    official = (
        {"official": {result["official"]["label"]: result["official"]["metrics"]}} if "official" in result else {}
    )
    return {
        **official,
        **({"vtg": result["metrics"]} if official else result["metrics"]),
        **({"qvhighlights": result["qvhighlights"]} if "qvhighlights" in result else {}),
        **({"streaming": result["streaming"]["metrics"]} if result.get("streaming") else {}),
    }


# ---- offline vLLM ----------------------------------------------------------------------------------------------


def requests_for(cfg: EvalConfig, model: str):
    """The model's requests, worded and sampled as configured (sampling keys override the model's own)."""
    from vtg.model_folder import ModelFolder
    from vtg.profiles import sampling_for
    from vtg.request import Requests

    folder = ModelFolder.read(model)
    base = sampling_for(folder, cfg.profile)  # the folder's own, or the profile's official sampling
    sampling = base.updated(cfg.sampling, "config sampling")
    return Requests.for_model(
        folder, mode=cfg.mode, think=cfg.think, style=cfg.prompt_style, sampling=sampling, profile=cfg.profile
    )


def _prompt(cfg: EvalConfig):
    """The grounding prompt the config asks with (mode, think, style, profile)."""
    from vtg.request import GroundingPrompt

    return GroundingPrompt(cfg.mode, cfg.think, cfg.prompt_style or "full", cfg.profile or "vtg")


def windows_for(cfg: EvalConfig, model: str):
    """The model's window settings (vtg_sampling.json) with the config's `windows` on top."""
    from vtg.model_folder import read_windows

    return read_windows(model).updated(cfg.windows, "config windows")


def _strategy(rec: Record, root: Path, requests, cfg: EvalConfig, settings):
    """A record's grounding strategy (vtg.grounding), created when the runner first steps it."""
    from vtg.grounding import ground

    return lambda: ground(
        requests,
        rec.video_path(root),
        rec.query,
        rec.duration,
        cfg.strategy,
        settings,
        ranked=cfg.top_k,
        nms_iou=cfg.nms_iou,
    )


def first_request(cfg: EvalConfig, rec: Record, root: Path, requests, settings=None):
    """The first model request eval makes for a record: its strategy's first call (tests compare it with every
    other caller's)."""
    from vtg.grounding import WindowSettings

    strategy = _strategy(rec, root, requests, cfg, settings or WindowSettings())()
    try:
        return next(strategy).calls[0].request
    finally:
        strategy.close()


def _batches(cfg: EvalConfig, todo: list[Record], settings) -> list[list[Record]]:
    """`batch_size` questions per round for `direct`; windowed ones ask `batch_windows` windows each, so fewer of
    them run together (memory holds every running question's windows). Streams ask one window a round each:
    `batch_size` of them are replayed together."""
    from vtg.grounding import choose

    if cfg.strategy == "streaming":
        return _chunks(todo, cfg.batch_size)
    plain, windowed = [], []
    for r in todo:
        (plain if choose(cfg.strategy, r.duration, settings) == "direct" else windowed).append(r)
    return _chunks(plain, cfg.batch_size) + _chunks(windowed, max(1, cfg.batch_size // settings.batch_windows))


def _line(rec: Record, outcome, parser: str = "vtg") -> dict[str, Any]:
    g = outcome.grounding
    extra = {**_extra(rec), "completion_tokens": g.completion_tokens if g else 0}
    if g is not None and g.strategy != "direct":
        extra.update(strategy=g.strategy, calls=g.calls, windows=g.windows, scores=g.scores)
    if g is not None and g.ranked is not None:  # the list R@K tables score; the text keeps the answer
        extra.update(ranked=[list(m) for m in g.ranked], ranked_scores=g.ranked_scores)
    return make_line(
        rec.id,
        g.text if g else None,
        error=outcome.error,
        extra=extra,
        parser=parser,
        latency_s=outcome.engine_s,
        decode_s=outcome.decode_s,
    )


def _stream_settings(cfg: EvalConfig, model: str):
    """The model's stream settings (its window length) with the config's `stream` on top."""
    from vtg.model_folder import ModelFolder
    from vtg.stream import StreamSettings

    return StreamSettings.for_model(ModelFolder.read(model), cfg.stream)


def _run_offline(
    cfg: EvalConfig, model: str, todo: list[Record], root: Path, app: Appender, progress, events_path: Path
) -> dict:
    t_start = time.perf_counter()  # setup = imports + processor + engine start, reported apart from the loop
    from vllm import SamplingParams

    from vtg.grounding import StrategyRunner
    from vtg.profiles import get_profile
    from vtg.request import request_seed
    from vtg.vllm_engine import make_llm

    requests = requests_for(cfg, model)
    parser = get_profile(cfg.profile).parser
    settings = windows_for(cfg, model)
    streaming = cfg.strategy == "streaming"
    if streaming:  # settings checked before the engine starts
        from vtg.eval.streaming import StreamLog, stream_strategy

        stream, logs = _stream_settings(cfg, model), {r.id: StreamLog() for r in todo}
    llm = make_llm(model, **cfg.vllm)
    timing = {"engine_start_s": round(time.perf_counter() - t_start, 3)}

    def params(rid: str) -> SamplingParams:
        return SamplingParams(
            temperature=cfg.temperature, max_tokens=cfg.max_new_tokens, seed=request_seed(cfg.seed, rid)
        )

    batches = _batches(cfg, todo, settings)
    t_loop = time.perf_counter()
    with ThreadPoolExecutor(cfg.decode_workers) as pool, Appender(events_path) if streaming else nullcontext() as ev:
        runner = StrategyRunner(llm, params, pool)

        def make(r: Record):
            if not streaming:
                return _strategy(r, root, requests, cfg, settings)
            return lambda: stream_strategy(requests, r.video_path(root), r.query, stream, cfg.mode, logs[r.id])

        def start(batch: list[Record]):
            return runner.start({r.id: make(r) for r in batch})

        pending = start(batches[0])
        for k, batch in enumerate(batches):
            current = pending
            if k + 1 < len(batches):
                pending = start(batches[k + 1])  # decode the next batch while the engine runs this one
            outcomes = runner.finish(current)
            lines = [_line(r, outcomes[r.id], parser) for r in batch]
            if streaming:  # events first: a record with a prediction line always has its events line
                ev.write([logs.pop(r.id).line(r.id, outcomes[r.id].error) for r in batch])
            app.write(lines)
            if progress:
                progress(
                    f"[vtg eval] batch {k + 1}/{len(batches)}: {len(lines)} lines, "
                    f"{sum(1 for x in lines if x['error'])} errors"
                )
    timing["loop_s"] = round(time.perf_counter() - t_loop, 3)
    return timing


# ---- OpenAI-compatible endpoint --------------------------------------------------------------------------------


def endpoint_messages(rec: Record, root: Path, cfg: EvalConfig) -> list[dict[str, Any]]:
    """A record's question in OpenAI's chat form, its video as a file:// URL (or the record's own URL)."""
    url = rec.video if "://" in rec.video else Path(rec.video_path(root)).resolve().as_uri()
    return _prompt(cfg).openai_messages(rec.query, rec.duration, url)


def grounding_extension(rec: Record, cfg: EvalConfig) -> dict[str, Any]:
    """`vtg serve`'s chat extension that has the server run the config's strategy on the record's question (the
    server words it as its model was trained; the messages' text is not used then)."""
    ext = {"strategy": cfg.strategy, "query": rec.query, "mode": cfg.mode, "think": cfg.think}
    return {**ext, "windows": cfg.windows} if cfg.windows else ext


def _ask(client, model_name: str, rec: Record, root: Path, cfg: EvalConfig) -> dict[str, Any]:
    import openai

    from vtg.data.grammar import join_reasoning
    from vtg.profiles import get_profile
    from vtg.request import request_seed

    messages = endpoint_messages(rec, root, cfg)
    t0 = time.perf_counter()
    try:
        resp = client.chat.completions.create(
            model=model_name,
            messages=messages,
            max_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            seed=request_seed(cfg.seed, rec.id),
            **({"extra_body": {"grounding": grounding_extension(rec, cfg)}} if cfg.strategy != "direct" else {}),
        )
        msg = resp.choices[0].message
        # a server that splits the reasoning off (vtg serve does, by the grammar's rule): read back the whole text
        text, err = join_reasoning(getattr(msg, "reasoning_content", None) or None, msg.content or ""), None
    except openai.APIStatusError as e:  # the server refused this request (e.g. 404 video): a failure line
        text, err = None, f"HTTP {e.status_code}: {e.message}"
    parser = get_profile(cfg.profile).parser
    return make_line(rec.id, text, error=err, extra=_extra(rec), parser=parser, latency_s=time.perf_counter() - t0)


@dataclass
class Served:
    """The endpoint's client, the model name requests use, and the prompt style its card announces."""

    client: Any
    model: str
    prompt_style: str


def _connect(cfg: EvalConfig, url: str) -> Served:
    """One /v1/models call: a clear error when the server is not up, or does not serve `endpoint.model`."""
    import openai

    ec = cfg.endpoint
    client = openai.OpenAI(
        base_url=url, api_key=os.environ.get(ec.api_key_env, "EMPTY"), timeout=ec.timeout_s, max_retries=2
    )
    try:
        cards = client.models.list().data
    except openai.APIConnectionError as e:
        raise UserError(f"--endpoint {url}: cannot connect ({e}); is the server up?") from None
    if not cards:
        raise UserError(f"--endpoint {url}: the server lists no models at /v1/models")
    name = ec.model or cards[0].id
    card = next((c for c in cards if c.id == name), None)
    if card is None:
        raise UserError(
            f"endpoint.model: {name!r} is not served at {url}; it serves {', '.join(repr(c.id) for c in cards)}"
        )
    # a vtg server samples frames (and reads answers) by the profile it serves: asking it in another profile's words
    # would mix two checkpoints' conventions in one number
    served_profile = getattr(card, "profile", None)
    if served_profile is not None and served_profile != (cfg.profile or "vtg"):
        raise UserError(
            f"--endpoint {url}: {name!r} is served with profile {served_profile!r} but this eval asks with profile "
            f"{cfg.profile or 'vtg'!r}; set profile: {served_profile} or serve it with --profile {cfg.profile or 'vtg'}"
        )
    # "full" for servers that do not announce a style (any OpenAI-compatible server other than `vtg serve`)
    return Served(client, name, getattr(card, "prompt_style", None) or "full")


def _run_endpoint(cfg: EvalConfig, served: Served, todo: list[Record], root: Path, app: Appender, progress) -> None:
    ec = cfg.endpoint
    # Bounded concurrency: `concurrency` requests in flight; lines are written per chunk so a kill loses little.
    with ThreadPoolExecutor(ec.concurrency) as pool:
        for k, chunk in enumerate(_chunks(todo, max(cfg.batch_size, ec.concurrency))):
            lines = list(pool.map(lambda r: _ask(served.client, served.model, r, root, cfg), chunk))
            app.write(lines)
            if progress:
                progress(f"[vtg eval] chunk {k + 1}: {len(lines)} lines, {sum(1 for x in lines if x['error'])} errors")
