"""vtg.profiles: each released checkpoint family asked and read as its official code does.

The fixtures in tests/fixtures/profiles/ quote each official prompt template, system prompt and sampling with its
repo, path and commit, and hold the official parser's result for each answer text (filled by running that code:
their `command`). The `vtg` profile must leave vtg's own prompts and lines unchanged (tests/test_request.py too).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vtg import model_folder
from vtg.data.grammar import PARSERS, grounding_prompt, parse_answer, parse_with
from vtg.data.records import load_records
from vtg.errors import UserError
from vtg.eval.config import EvalConfig
from vtg.eval.metrics import prediction_from_line
from vtg.eval.predictions import make_line
from vtg.profiles import PROFILES, get_profile
from vtg.request import GroundingPrompt, Requests

FIXTURES = Path(__file__).parent / "fixtures" / "profiles"
OFFICIAL = ("time-r1", "timelens", "qwen2.5-vl", "qwen3-vl")
TINY = {"qwen2.5-vl": "tiny_qwen25", "qwen3-vl": "tiny_qwen3"}


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _official_text(fx: dict, case: dict) -> str:
    """The question as the official code formats it: its template, filled positionally with its query."""
    return fx["template"].format(case.get("official_query", case["query"]))


def _official_messages(fx: dict, text: str, video: str) -> list[dict]:
    video_part, text_part = {"type": "video", "video": video}, {"type": "text", "text": text}
    parts = [text_part, video_part] if fx["layout"] == "text, then video" else [video_part, text_part]
    system = [{"role": "system", "content": fx["system"]}] if fx["system"] is not None else []
    return [*system, {"role": "user", "content": parts}]


# ---- (a) the question, byte for byte ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", OFFICIAL)
def test_question_text_is_the_official_template(name):
    fx = _fixture(name)
    assert fx["profile"] == name and len(fx["prompt_cases"]) >= 2
    for case in fx["prompt_cases"]:
        ours = GroundingPrompt(profile=name).text(case["query"], case["duration"])
        assert ours == _official_text(fx, case)
        # mode, think and style do not reword another profile's question
        assert GroundingPrompt("single", True, "short", name).text(case["query"], case["duration"]) == ours


@pytest.mark.parametrize("name", OFFICIAL)
def test_rendered_prompt_is_the_official_one(name, request, synth_world):
    """The whole prompt through vtg's request path (chat template, system turn, order, Time-R1's no-think block)
    equals the official messages rendered by the same processor."""
    fx = _fixture(name)
    rec = load_records(synth_world / "test.jsonl")[0]
    for family in get_profile(name).families:
        path = request.getfixturevalue(TINY[family])
        for think in (True, False):
            requests = Requests.for_model(path, think=think, profile=name)
            video = requests.video(rec.video_path(synth_world))
            for case in fx["prompt_cases"]:
                ours = requests.grounding("v.mp4", case["query"], case["duration"], video=video).prompt
                official = requests.render(_official_messages(fx, _official_text(fx, case), "v.mp4"))
                suffix = fx.get("no_think_suffix", "") if not think else ""
                assert ours == official + suffix, (family, think)


def test_time_r1_thinks_unless_told_not_to(tiny_qwen25):
    on = Requests.for_model(tiny_qwen25, think=True, profile="time-r1")
    off = on.asking(think=False)
    assert on.prompt.suffix() == "" and off.prompt.suffix() == "<think>\n</think>\n"
    assert on.prompt.text("q", 3.0) == off.prompt.text("q", 3.0)  # the r1 prompt asks to think either way


@pytest.mark.parametrize("name", OFFICIAL)
def test_frame_sampling_is_the_official_one(name, request):
    fx = _fixture(name)
    for family in get_profile(name).families:
        expected = fx["sampling"].get(family, fx["sampling"])
        sampling = Requests.for_model(request.getfixturevalue(TINY[family]), profile=name).sampling
        for key, value in expected.items():
            assert getattr(sampling, key) == value, (family, key)
        assert sampling.nframes is None


def test_profile_refuses_a_family_it_was_not_written_for(tiny_qwen3):
    with pytest.raises(UserError, match=r"profile 'time-r1' is for qwen2.5-vl checkpoints, not qwen3-vl.*timelens"):
        Requests.for_model(tiny_qwen3, profile="time-r1")


# ---- (b) answers, read as the official parser reads them -------------------------------------------------------


def _expected(fx: dict, case: dict) -> list[tuple[float, float]]:
    """The official result as moments ([] for "no answer")."""
    out = case["official"]
    if fx["parser"] == "time-r1":  # [start, end], or [None, None]
        return [] if None in out else [tuple(out)]
    if fx["parser"] == "timelens":  # no answer is written as a span 10-20 s after the video's end
        d = case["duration"]
        return [] if out == [[d + 10, d + 20]] else [tuple(p) for p in out]
    return [tuple(p) for p in out]


@pytest.mark.parametrize("name", OFFICIAL)
def test_parser_reads_answers_as_the_official_code(name):
    fx = _fixture(name)
    assert get_profile(name).parser == fx["parser"]
    failures = 0
    for case in fx["parser_cases"]:
        parsed = parse_with(fx["parser"], case["text"])
        expected = _expected(fx, case)
        assert parsed.moments == expected, case["text"]
        assert parsed.ok == bool(expected) and not parsed.strict and not parsed.not_present
        assert parsed.reversed_pairs == sum(1 for s, e in expected if s > e)
        failures += not expected
    assert failures >= 1  # every fixture holds malformed answers the official code cannot read


def test_parsers_split_reasoning_for_people_and_never_raise():
    parsed = parse_with("time-r1", "<think>at 1.00 to 2.00</think> <answer>3.00 to 4.00</answer>")
    assert parsed.think == "at 1.00 to 2.00" and parsed.answer == "<answer>3.00 to 4.00</answer>"
    for parser in PARSERS:
        for text in (None, "", "<think>", "1:2:3:4 - - to and"):
            assert parse_with(parser, text).ok in (True, False)
    with pytest.raises(UserError, match="unknown answer parser 'nope'; known: vtg, time-r1"):
        parse_with("nope", "1 to 2")


def test_eval_lines_name_the_parser_and_scoring_uses_it():
    text = "<answer>12.54 to 17.83</answer>"
    line = make_line("q1", text, parser="time-r1")
    assert line["parser"] == "time-r1" and line["moments"] == [[12.54, 17.83]] and line["parse"] == "lenient"
    assert prediction_from_line(line)[0].moments == [(12.54, 17.83)]
    lens = make_line("q2", "The event happens in 2.5 - 3.5 seconds.", parser="timelens")
    assert prediction_from_line(lens)[0].moments == [(2.0, 4.0)]
    assert prediction_from_line({**lens, "parser": "vtg"})[0].moments == [(2.5, 3.5)]  # what the line's name changes


# ---- (c) the vtg profile: today's prompts, requests and lines ---------------------------------------------------


def test_vtg_profile_is_todays_prompt():
    for mode in ("single", "multi"):
        for think in (True, False):
            for style in ("full", "short"):
                prompt = GroundingPrompt(mode, think, style)
                assert prompt.profile == "vtg" and prompt.suffix() == ""
                assert GroundingPrompt(mode, think, style, None) == prompt
                text = grounding_prompt("a cat", 9.5, mode=mode, think=think, style=style)
                assert prompt.messages("a cat", 9.5, "v.mp4") == [
                    {"role": "user", "content": [{"type": "video", "video": "v.mp4"}, {"type": "text", "text": text}]}
                ]
    assert GroundingPrompt().parse("starts at 1.0s, ends at 2.0s") == parse_answer("starts at 1.0s, ends at 2.0s")
    line = make_line("q", "starts at 1.0s, ends at 2.0s")
    assert "parser" not in line and line["parse"] == "strict"


def test_vtg_profile_keeps_the_folders_sampling(tiny_qwen25):
    assert Requests.for_model(tiny_qwen25).sampling == model_folder.ModelFolder.read(tiny_qwen25).sampling


# ---- settings: names checked, the folder's profile recorded and read back ---------------------------------------


def test_unknown_profile_is_refused_naming_the_known_ones(tmp_path):
    known = "known profiles: vtg, time-r1, timelens, qwen2.5-vl, qwen3-vl"
    with pytest.raises(UserError, match=known):
        GroundingPrompt(profile="time-r2")
    with pytest.raises(UserError, match=known):
        EvalConfig(benchmark="b", records="r.jsonl", profile="time-r2")
    from vtg.serve.config import ServeConfig, ServeConfigError

    with pytest.raises(ServeConfigError, match=known):
        ServeConfig(profile="time-r2")
    with pytest.raises(ServeConfigError, match="--grounding-strategy direct"):
        ServeConfig(profile="timelens")
    with pytest.raises(UserError, match="set strategy: direct"):
        EvalConfig(benchmark="b", records="r.jsonl", profile="timelens", strategy="auto")
    assert set(PROFILES) >= {"vtg", *OFFICIAL}


def test_folder_records_its_profile(tiny_qwen25, tmp_path):
    import shutil

    folder = tmp_path / "released"
    shutil.copytree(tiny_qwen25, folder)
    (folder / model_folder.PROMPT_FILE).unlink(missing_ok=True)
    assert model_folder.ModelFolder.read(folder).profile == "vtg"
    model_folder.save_profile(folder, "time-r1")
    read = model_folder.ModelFolder.read(folder)
    assert (read.profile, read.prompt_style) == ("time-r1", "full")
    model_folder.save_prompt_style(folder, "short")  # a training export words it vtg's way again
    assert model_folder.ModelFolder.read(folder).profile == "vtg"
    model_folder.save_profile(folder, "timelens")
    assert json.loads((folder / model_folder.PROMPT_FILE).read_text()) == {"style": "short", "profile": "timelens"}
    (folder / model_folder.PROMPT_FILE).write_text('{"profile": "time-r2"}')
    with pytest.raises(UserError, match=r"vtg_prompt.json: 'profile'.*unknown profile 'time-r2'"):
        model_folder.ModelFolder.read(folder)
    with pytest.raises(UserError, match="unknown profile"):
        model_folder.save_profile(folder, "time-r2")


def test_eval_and_serve_take_the_folders_profile(tiny_qwen25, tmp_path):
    import shutil

    from vtg.eval.job import requests_for
    from vtg.serve.config import ServeConfig, ServeConfigError

    folder = tmp_path / "released"
    shutil.copytree(tiny_qwen25, folder)
    model_folder.save_profile(folder, "time-r1")
    cfg = EvalConfig(benchmark="b", records="r.jsonl", profile="time-r1", sampling={"fps": 1.0})
    requests = requests_for(cfg, str(folder))
    assert requests.prompt.profile == "time-r1"
    assert (requests.sampling.fps, requests.sampling.total_pixels) == (1.0, 3584 * 28 * 28)  # config keys on top
    from vtg.serve.model import ServedModel

    with pytest.raises(ServeConfigError, match="profile 'time-r1'.*--grounding-strategy direct"):
        ServedModel(ServeConfig(model=str(folder)))  # the folder's profile, the default strategy (auto)
    served = ServedModel(ServeConfig(model=str(folder), grounding_strategy="direct"))  # the engine is not started
    assert served.requests.prompt.profile == "time-r1" and served.requests.sampling.min_pixels == 16 * 28 * 28
    assert served.requests.sampling.max_frames == 256  # the server's frame cap still applies
    timelens = ServeConfig(model=str(folder), profile="timelens", grounding_strategy="direct")
    assert ServedModel(timelens).requests.prompt.profile == "timelens"


def test_server_reads_answers_with_the_served_profiles_parser(tiny_qwen25):
    """A released checkpoint served with its profile: chat `moments` and `not_present` come from that profile's
    parser (TimeLens' official parser reads "3.2 - 7.8 seconds" as whole seconds, 3-8; vtg's grammar as 3.2-7.8)."""
    from vtg.serve.config import ServeConfig
    from vtg.serve.metrics import Metrics
    from vtg.serve.model import ServedModel
    from vtg.serve.serving import Serving, _choice_moments

    fx = json.loads((FIXTURES / "timelens.json").read_text())
    case = fx["parser_cases"][0]  # "The event happens in 3.2 - 7.8 seconds." -> [[3.0, 8.0]] by the official code
    cfg = ServeConfig(model=str(tiny_qwen25), profile="timelens", grounding_strategy="direct")
    serving = Serving(cfg, ServedModel(cfg), Metrics())  # the engine is not started: nothing is generated here
    (moments,) = _choice_moments([case["text"]], case["duration"], serving._parse)
    assert [[m.start, m.end] for m in moments] == case["official"]
    assert not serving._parse(case["text"]).not_present
    (before,) = _choice_moments([case["text"]], case["duration"])  # vtg's own parser, which the server used before
    assert [[m.start, m.end] for m in before] == [[3.2, 7.8]] != case["official"]


def test_endpoint_refuses_what_a_chat_api_cannot_send():
    from vtg.eval.job import run_job

    cfg = EvalConfig(benchmark="b", records="r.jsonl", profile="time-r1", think=False)
    with pytest.raises(UserError, match="chat API cannot send.*set think: true"):
        run_job(cfg, out="unused", endpoint="http://127.0.0.1:9/v1")


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_eval_run_asks_and_scores_with_the_folders_profile(synth_world, tiny_qwen25, tmp_path):
    """`vtg eval run` on a folder whose vtg_prompt.json names time-r1, through the vLLM CPU engine: run.json records
    the profile, every line names its parser, and the metrics are those of the lines read by that parser."""
    import shutil
    import subprocess
    import sys

    from vtg.data.records import write_jsonl
    from vtg.eval.job import first_request, requests_for
    from vtg.eval.metrics import Conventions
    from vtg.eval.score import score_records_file

    folder = tmp_path / "released"
    shutil.copytree(tiny_qwen25, folder)
    model_folder.save_profile(folder, "time-r1")
    recs = load_records(synth_world / "test.jsonl")[:3]
    write_jsonl(
        [dict(r.to_dict(), video=str(Path(r.video_path(synth_world)).resolve())) for r in recs], tmp_path / "r.jsonl"
    )
    (tmp_path / "eval.yaml").write_text(
        f"benchmark: synthetic\nrecords: {tmp_path / 'r.jsonl'}\nmode: single\nmax_new_tokens: 12\n"
        "temperature: 1.0\nseed: 3\nbatch_size: 2\n"
    )
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "vtg", "eval", "run", "--config", str(tmp_path / "eval.yaml"), "--model", str(folder)]
    subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True, timeout=800)
    assert json.loads((out / "run.json").read_text())["config"]["profile"] == "time-r1"
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(x["parser"] == "time-r1" and x["text"] is not None for x in lines)
    cfg = EvalConfig(benchmark="synthetic", records=str(tmp_path / "r.jsonl"), profile="time-r1")
    prompt = first_request(cfg, recs[0], synth_world, requests_for(cfg, str(folder))).prompt
    assert prompt.endswith("<|im_start|>assistant\n<think>\n</think>\n") and "You are a helpful assistant." in prompt
    for x in lines:
        assert x["moments"] == [list(m) for m in parse_with("time-r1", x["text"]).moments]
    metrics = json.loads((out / "metrics.json").read_text())
    _, rescored = score_records_file(out / "predictions.jsonl", tmp_path / "r.jsonl", Conventions())
    assert metrics["metrics"] == rescored["metrics"]
