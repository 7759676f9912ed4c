"""vtg.request, vtg.model_folder, vtg.vllm_engine: chat prompts, transformers inputs with the true time scale, the real
vLLM CPU engine on both tiny families (it must see exactly the prompt transformers sees), the frame sampling stored
next to the weights, and one record giving the same prompt and video through every caller of the request path."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from vtg import model_folder, vllm_engine
from vtg.data.grammar import grounding_prompt
from vtg.data.records import load_records
from vtg.data.synth import encode_mp4
from vtg.data.video import FrameSampling, read_video
from vtg.errors import UserError
from vtg.request import VIDEO_PLACEHOLDER, GroundingPrompt, Requests

FIXTURE = {"qwen2.5-vl": "tiny_qwen25", "qwen3-vl": "tiny_qwen3"}


@pytest.fixture(params=sorted(FIXTURE))
def tiny(request):
    return request.param, request.getfixturevalue(FIXTURE[request.param])


def _processor(path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(path)


def _requests(path, style="full", think=True, **prompt):
    """The model's requests worded in `style` (the tests below check the "full" instruction prompt by default)."""
    return Requests.for_model(path, style=style, think=think, **prompt)


def _first_video(world, model_dir):
    rec = load_records(world / "test.jsonl")[0]
    return rec, _requests(model_dir).video(rec.video_path(world))


# ---- prompts ------------------------------------------------------------------------------------------------------


def test_chat_template_renders_one_video_placeholder(tiny):
    family, path = tiny
    requests = _requests(path)
    prompt = requests.render(GroundingPrompt(think=False).messages("the red square moves", 12.0, "v.mp4"))
    assert prompt.count(VIDEO_PLACEHOLDER) == 1
    assert grounding_prompt("the red square moves", 12.0, think=False) in prompt
    assert prompt.index(VIDEO_PLACEHOLDER) < prompt.index("The video lasts 12.0 seconds")
    assert prompt.endswith("<|im_start|>assistant\n")
    assert ("You are a helpful assistant." in prompt) == (family == "qwen2.5-vl")  # the families' own defaults
    system = [{"role": "system", "content": [{"type": "text", "text": "Ground events."}]}]
    custom = requests.render(system + GroundingPrompt().messages("q", 3.0, "v.mp4"))
    assert custom.startswith("<|im_start|>system\nGround events.<|im_end|>\n") and "helpful" not in custom


def test_hf_inputs_batch_and_bad_calls(tiny_qwen3, synth_world):
    requests = _requests(tiny_qwen3)
    recs = load_records(synth_world / "test.jsonl")[:2]
    batch = requests.hf_inputs([requests.record(r, synth_world) for r in recs])
    video_id = requests.processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    for row, thw in zip(batch["input_ids"], batch["video_grid_thw"]):
        assert int((row == video_id).sum()) == int(thw.prod()) // 4 > 0  # merge 2x2
    video = requests.video(recs[0].video_path(synth_world))
    with pytest.raises(ValueError, match="1 video placeholder.*but 2 video"):
        requests.build(GroundingPrompt().messages("q", 3.0, "v.mp4"), [video, video])
    with pytest.raises(ValueError, match="0 video placeholder.*but 1 video"):
        requests.build([{"role": "user", "content": "no video here"}], [video])


# ---- frame sampling next to the weights ---------------------------------------------------------------------------


def test_sampling_for_model_round_trip(tiny, tmp_path):
    family, path = tiny
    model = tmp_path / "m"
    model.mkdir()
    shutil.copy(path / "config.json", model / "config.json")
    factor = model_folder.IMAGE_FACTOR[family]
    assert model_folder.family_of(model) == family
    assert model_folder.read_sampling(model) == FrameSampling(image_factor=factor)  # family default
    trained = FrameSampling(fps=1.0, max_frames=16, min_pixels=factor**2 * 4, image_factor=factor, video_start=1.0)
    model_folder.save_sampling(model, trained)
    assert model_folder.read_sampling(model) == trained
    assert model_folder.read_sampling(path).max_pixels == 16 * factor**2  # what build_tiny_model saved
    model_folder.save_sampling(model, FrameSampling(image_factor=60 - factor))
    with pytest.raises(UserError, match="image_factor"):
        model_folder.read_sampling(model)
    (model / model_folder.SAMPLING_FILE).write_text(json.dumps({"fps": 2.0, "frames_per_second": 3}))
    with pytest.raises(UserError, match="frames_per_second"):
        model_folder.read_sampling(model)
    (model / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(UserError, match="llava"):
        model_folder.family_of(model)
    with pytest.raises(UserError, match="config.json"):
        model_folder.read_sampling(tmp_path / "nothing")


@pytest.mark.parametrize("saved", [{"nframes": 16}, {"fps": 1.0}])
def test_train_eval_and_serve_put_overrides_on_the_saved_sampling_alike(saved, tiny_qwen25, tmp_path):
    """Training (`sampling:`), eval (`sampling:`) and serving (`limits.max_frames`) all apply their overrides through
    `FrameSampling.updated`: for one model folder and one cap they sample alike, keeping the saved fps or nframes.
    A model saved with nframes once failed in eval ("give either 'fps' or 'nframes'") and in reading it back."""
    from vtg.eval.config import EvalConfig
    from vtg.eval.job import requests_for
    from vtg.serve.config import load_config
    from vtg.serve.model import ServedModel
    from vtg.train.config import VideoSFTConfig

    model = tmp_path / "m"
    shutil.copytree(tiny_qwen25, model)
    trained = model_folder.read_sampling(model).updated(saved)
    model_folder.save_sampling(model, trained)
    expected = dataclasses.replace(trained, max_frames=32)
    assert (expected.fps, expected.nframes) == (saved.get("fps", 2.0), saved.get("nframes"))
    assert model_folder.read_sampling(model) == trained
    ev = EvalConfig(benchmark="synthetic", records="unused.jsonl", sampling={"max_frames": 32})
    served = ServedModel(load_config(None, {"model": str(model), "limits": {"max_frames": 32}}))
    train = VideoSFTConfig(model=str(model), sampling={"max_frames": 32}, output_dir=str(tmp_path / "run"))
    got = {
        "eval": requests_for(ev, str(model)).sampling,
        "serve": served.requests.sampling,
        "train": train.frame_sampling(),
    }
    assert got == dict.fromkeys(got, expected)


def test_prompt_style_travels_with_the_model(tiny, tmp_path):
    _, path = tiny
    assert model_folder.read_prompt_style(path) == "short"  # what build_tiny_model saved
    assert model_folder.read_prompt_style(tmp_path) == "full"  # a released checkpoint has no vtg_prompt.json
    model_folder.save_prompt_style(tmp_path, "full")
    assert model_folder.read_prompt_style(tmp_path) == "full"
    with pytest.raises(UserError, match="prompt style must be one of"):
        model_folder.save_prompt_style(tmp_path, "terse")
    (tmp_path / model_folder.PROMPT_FILE).write_text(json.dumps({"style": "terse"}))
    with pytest.raises(UserError, match=r"vtg_prompt.json: 'style' must be one of \['full', 'short'\], got 'terse'"):
        model_folder.read_prompt_style(tmp_path)
    (tmp_path / model_folder.PROMPT_FILE).write_text("{style: short")
    with pytest.raises(UserError, match="vtg_prompt.json: not valid JSON"):
        model_folder.read_prompt_style(tmp_path)
    requests = Requests.for_model(path)  # the folder's own style
    text = requests.render(requests.prompt.messages("red square", 12.0, "v.mp4"))
    assert "12.0s. red square<|im_end|>" in text and "Query" not in text


# ---- THE time-scale check through the real tiny processors --------------------------------------------------------


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One 12 s scene (a red square sliding right) encoded at 1, 2 and 4 fps."""
    d = tmp_path_factory.mktemp("engine_clips")
    out = {}
    for fps in (1, 2, 4):
        n = 12 * fps
        frames = np.full((n, 56, 56, 3), 70, np.uint8)
        for i in range(n):
            x = int(i / fps * 3)
            frames[i, 20:36, x : x + 12] = (230, 30, 30)
        encode_mp4(frames, d / f"slide_{fps}.mp4", fps)
        out[fps] = d / f"slide_{fps}.mp4"
    return out


def time_view(family, proc, clip, sample_fps, with_metadata=True):
    """What the model is told about time: Qwen2.5-VL second_per_grid_ts, Qwen3-VL the '<t seconds>' texts."""
    f = model_folder.IMAGE_FACTOR[family]
    video = read_video(clip, FrameSampling(fps=sample_fps, image_factor=f, min_pixels=4 * f * f, max_pixels=16 * f * f))
    requests = Requests(proc, video.sampling).asking(think=True)
    request = requests.grounding("slide.mp4", "red square", 12.0, video=video)
    prompt = request.prompt
    if with_metadata:
        batch = requests.hf_inputs(request)
    else:  # what a stack that drops the metadata computes (the bug this test guards against)
        kwargs = video.hf_processor_kwargs()
        kwargs.pop("video_metadata")
        batch = proc(text=[prompt], return_tensors="pt", **kwargs)
    if family == "qwen2.5-vl":
        return [float(x) for x in batch["second_per_grid_ts"]]
    return re.findall(r"<([\d.]+) seconds>", proc.tokenizer.decode(batch["input_ids"][0]))


@pytest.mark.parametrize("sample_fps,encodings", [(1.0, (1, 2, 4)), (2.0, (2, 4))])
def test_time_scale_does_not_depend_on_encoding_fps(tiny, clips, sample_fps, encodings):
    """A 1 fps encoding has no frames to sample at 2 fps, so 2 fps sampling compares the 2 and 4 fps encodings."""
    family, path = tiny
    proc = _processor(path)
    times = [k / sample_fps for k in range(int(12 * sample_fps))]
    if family == "qwen2.5-vl":
        expected = [2 / sample_fps]  # temporal patch 2 / true sampled fps
    else:  # the mean time of each frame pair, as Qwen3-VL writes it
        expected = [f"{(times[i] + times[i + 1]) / 2:.1f}" for i in range(0, len(times), 2)]
    views = [time_view(family, proc, clips[fps], sample_fps) for fps in encodings]
    for fps, view in zip(encodings, views):
        assert view == pytest.approx(expected) if family == "qwen2.5-vl" else view == expected, fps
    # control: dropping the metadata gives a wrong time scale, and the check above would catch it
    wrong = time_view(family, proc, clips[encodings[-1]], sample_fps, with_metadata=False)
    assert wrong != (pytest.approx(expected) if family == "qwen2.5-vl" else expected)


# ---- the real vLLM CPU engine -------------------------------------------------------------------------------------

STARTUP: dict[str, float] = {}


@pytest.fixture(scope="module", params=sorted(FIXTURE))
def llm(request):
    """One engine per family per session, started and shut down here (its wall time is recorded)."""
    import psutil

    path = request.getfixturevalue(FIXTURE[request.param])
    # A KV share of RAM half the size of what this process already holds: vLLM's CPU worker, left to itself,
    # subtracts the process's RSS from the share and refuses to start; vtg.vllm_engine.pin_cpu_kv_cache must prevent it.
    share = 0.5 * psutil.Process().memory_info().rss / psutil.virtual_memory().total
    t0 = time.perf_counter()
    llm = vllm_engine.make_llm(path, max_model_len=2048, gpu_memory_utilization=share)
    STARTUP[request.param] = time.perf_counter() - t0
    print(f"\nvLLM CPU start-up ({request.param}): {STARTUP[request.param]:.1f} s")
    yield request.param, path, llm
    vllm_engine.close_llm(llm)


def spy_second_per_grid_ts(monkeypatch) -> list:
    """Record what Qwen2.5-VL's real processor computes inside vLLM (the engine core runs in this process)."""
    from transformers import Qwen2_5_VLProcessor

    seen, real = [], Qwen2_5_VLProcessor._process_videos

    def spy(self, *args, **kwargs):
        data, repl = real(self, *args, **kwargs)
        seen.extend(float(x) for x in data["second_per_grid_ts"])
        return data, repl

    monkeypatch.setattr(Qwen2_5_VLProcessor, "_process_videos", spy)
    return seen


@pytest.mark.integration
def test_vllm_generates_and_sees_the_prompt_transformers_sees(llm, synth_world, monkeypatch):
    from vllm import SamplingParams

    family, path, model = llm
    vllm_spg = spy_second_per_grid_ts(monkeypatch)
    proc = _processor(path)
    rec, video = _first_video(synth_world, path)
    requests = _requests(path)
    request = requests.record(rec, synth_world, video=video)
    n, max_tokens = 8, 24
    t0 = time.perf_counter()
    outs = model.generate(
        [request.vllm_input()] * n, SamplingParams(max_tokens=max_tokens, temperature=1.0, ignore_eos=True, seed=0)
    )
    dt = time.perf_counter() - t0
    in_vllm = list(vllm_spg)  # before hf_inputs below runs the same (spied) processor
    print(
        f"\nvLLM CPU {family}: {n} x {max_tokens} tokens in {dt:.2f} s = {n * max_tokens / dt:.0f} tok/s "
        f"(prompt {len(outs[0].prompt_token_ids)} tokens)"
    )
    assert [len(o.outputs[0].token_ids) for o in outs] == [max_tokens] * n
    hf = requests.hf_inputs(request)
    hf_ids = hf["input_ids"][0].tolist()
    video_id = proc.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert outs[0].prompt_token_ids.count(video_id) == hf_ids.count(video_id) > 0
    # the whole prompt, timestamps of Qwen3-VL included, is token-for-token what training sees
    assert list(outs[0].prompt_token_ids) == hf_ids
    if family == "qwen2.5-vl":  # its time scale lives in the rotary positions: vLLM must get the same seconds
        hf_spg = float(hf["second_per_grid_ts"][0])
        assert in_vllm and hf_spg == pytest.approx(2 / 2.0)  # temporal patch 2 / sampled 2 fps
        assert all(x == pytest.approx(hf_spg) for x in in_vllm), in_vllm


def spy_vllm_positions(monkeypatch, family: str) -> list:
    """Record the rotary position ids vLLM's model forward receives (the engine core runs in this process)."""
    if family == "qwen2.5-vl":
        from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration as cls
    else:
        from vllm.model_executor.models.qwen3_vl import Qwen3VLForConditionalGeneration as cls
    seen, real = [], cls.forward

    def spy(self, input_ids, positions, *args, **kwargs):
        seen.append(positions.detach().clone())
        return real(self, input_ids, positions, *args, **kwargs)

    monkeypatch.setattr(cls, "forward", spy)
    return seen


@pytest.mark.integration
def test_vllm_and_transformers_give_text_after_the_video_the_same_positions(llm, synth_world, monkeypatch):
    """Training and scoring run through transformers, rollouts/eval/serving through vLLM: with a video in the prompt
    both must compute the same 3D rotary positions and so the same log-probs. transformers 5.19 starts the text after
    a Qwen2.5-VL video inside the video's time range (vtg.hf_fixes corrects it); this test fails without the fix."""
    import torch
    from transformers import AutoModelForImageTextToText
    from vllm import SamplingParams

    from vtg.data.grammar import format_answer

    family, path, model = llm
    proc = _processor(path)
    rec, video = _first_video(synth_world, path)
    requests = _requests(path, think=False)
    request = requests.record(rec, synth_world, video=video)
    request.prompt += format_answer(rec.moments)  # the answer scored as a prompt, token by token
    seen = spy_vllm_positions(monkeypatch, family)
    out = model.generate([request.vllm_input()], SamplingParams(max_tokens=1, prompt_logprobs=0))[0]
    inputs = requests.hf_inputs(request)
    hf = AutoModelForImageTextToText.from_pretrained(path).eval()
    kw = {k: inputs[k] for k in ("video_grid_thw", "second_per_grid_ts", "attention_mask") if k in inputs}
    hf_pos, _ = hf.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"], **kw)
    ids = inputs["input_ids"][0]
    assert seen, "vLLM's model forward was not reached"
    vllm_pos = seen[0][..., : ids.numel()]
    video_id = proc.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    last_video = int((ids == video_id).nonzero().max())
    after = hf_pos[:, 0, last_video + 1]
    assert int(after.min()) == int(hf_pos[:, 0, : last_video + 1].max()) + 1, "text must start after the video"
    assert torch.equal(hf_pos[:, 0], vllm_pos), (
        hf_pos[:, 0, last_video - 2 : last_video + 3],
        vllm_pos[:, last_video - 2 : last_video + 3],
    )
    with torch.no_grad():
        logp = hf(**inputs).logits[0].float().log_softmax(-1)
    hf_lp = [float(logp[i - 1, ids[i]]) for i in range(last_video + 1, ids.numel())]
    vl_lp = [out.prompt_logprobs[i][int(ids[i])].logprob for i in range(last_video + 1, ids.numel())]
    assert np.allclose(hf_lp, vl_lp, atol=1e-3), max(abs(a - b) for a, b in zip(hf_lp, vl_lp))


def test_video_normalization_overrides_when_image_and_video_statistics_differ(tiny_qwen3, tmp_path):
    """vLLM normalizes videos with the image processor's statistics; a folder whose two processors disagree must get
    the device-side normalization turned off (the tiny models agree, as the Qwen releases do)."""
    assert vllm_engine.video_normalization_overrides(tiny_qwen3) == {}
    folder = tmp_path / "clip-image-stats"
    shutil.copytree(tiny_qwen3, folder)
    cfg = json.loads((folder / "processor_config.json").read_text())
    cfg["image_processor"].update(
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711]
    )
    (folder / "processor_config.json").write_text(json.dumps(cfg))
    assert vllm_engine.video_normalization_overrides(folder) == {"mm_device_do_normalize": False}


# ---- one record, one request: every caller of the request path ----------------------------------------------------


def _frames(vllm_input) -> tuple[np.ndarray, dict]:
    ((frames, metadata),) = vllm_input["multi_modal_data"]["video"]
    return frames, metadata


def test_one_record_gives_one_request_through_every_caller(tiny_qwen25, synth_world, tmp_path):
    """The same record through the SFT collator, a GRPO rollout, curation, eval (offline, and the chat messages it
    sends an endpoint, through the server's chat path) and the server's grounding path: token-identical prompts and
    identical video tensors. Each caller builds its requests its own way (trainer, config, model folder): if one
    worded, sampled or rendered the question differently, this test names it."""
    import asyncio

    import torch

    from vtg.data.curate import CurateConfig
    from vtg.data.curate import requests_for as curate_requests
    from vtg.eval.config import EvalConfig
    from vtg.eval.job import endpoint_messages, first_request
    from vtg.eval.job import requests_for as eval_requests
    from vtg.serve.config import load_config
    from vtg.serve.metrics import Metrics
    from vtg.serve.model import ServedModel
    from vtg.serve.protocol import ChatCompletionRequest, GroundingRequest
    from vtg.serve.serving import Serving
    from vtg.train.config import VideoGRPOConfig, VideoSFTConfig
    from vtg.train.grpo import build_grpo_trainer
    from vtg.train.rollout import build_groups
    from vtg.train.sft import build_sft_trainer

    records = synth_world / "test.jsonl"
    rec = next(r for r in load_records(records) if r.moments)
    common = dict(
        model=str(tiny_qwen25),
        train_file=str(records),
        output_dir=str(tmp_path / "run"),
        max_length=2048,
        sampling={"max_frames": 32},
    )  # a cap the clips stay under: the same frames as the model's own
    # training: the SFT collator's prompt (its labels mark the answer) and a GRPO rollout's prompt
    sft = build_sft_trainer(VideoSFTConfig(**common))
    row = next(r for r in sft.train_dataset if r["id"] == rec.id)
    fed = sft.data_collator.encode(row)
    answer = int((fed["labels"][0] != -100).sum())
    sft_ids = fed["input_ids"][0, :-answer].tolist()
    grpo = build_grpo_trainer(
        VideoGRPOConfig(**common, rollout_engine="transformers", num_generations=2, per_device_train_batch_size=2)
    )
    prompt = next(r["prompt"] for r in grpo.train_dataset if r["id"] == rec.id)
    (group,) = build_groups([prompt, prompt], grpo.requests)
    assert sft_ids == group.prompt_ids, "SFT and GRPO rollouts tokenize the question differently"
    assert torch.equal(fed["pixel_values_videos"], group.video_inputs["pixel_values_videos"])
    assert torch.equal(fed["video_grid_thw"], group.video_inputs["video_grid_thw"])
    # curation and eval (offline): vLLM inputs from their own configs
    inputs = {"grpo rollout": group.request.vllm_input()}
    cur = CurateConfig(records=str(records), out=str(tmp_path / "kept.jsonl"), model=str(tiny_qwen25))
    inputs["curate"] = curate_requests(cur).record(rec, synth_world).vllm_input()
    ev = EvalConfig(benchmark="synthetic", records=str(records), mode="multi", think=False, prompt_style="short")
    inputs["eval"] = first_request(ev, rec, synth_world, eval_requests(ev, str(tiny_qwen25))).vllm_input()
    # serving: the grounding endpoint, and the chat endpoint given what `vtg eval --endpoint` sends
    cfg = load_config(None, {"model": str(tiny_qwen25), "allowed_local_media_path": [str(synth_world)]})
    serving = Serving(cfg, ServedModel(cfg), Metrics())  # the engine is not started: nothing is generated here
    url = Path(rec.video_path(synth_world)).resolve().as_uri()

    async def served():
        grounding = GroundingRequest(video=url, query=rec.query, mode="multi", think=False)
        chat = ChatCompletionRequest(model=cfg.model_name, messages=endpoint_messages(rec, synth_world, ev))
        return (
            serving.grounding_request(grounding, await serving.load_video(url, "video")),
            await serving._chat_request(chat),
        )

    grounding, chat = asyncio.run(served())
    inputs["serve /v1/grounding"] = grounding.vllm_input()
    inputs["serve chat (eval --endpoint)"] = chat.vllm_input()
    frames, metadata = _frames(inputs["grpo rollout"])
    for caller, got in inputs.items():
        assert got["prompt"] == group.request.prompt, caller
        assert got["mm_processor_kwargs"] == inputs["grpo rollout"]["mm_processor_kwargs"], caller
        their_frames, their_metadata = _frames(got)
        assert np.array_equal(their_frames, frames) and their_metadata == metadata, caller
    # the frames vLLM gets are the frames the loss pass gets
    assert np.array_equal(frames, group.request.videos[0].frames.permute(0, 2, 3, 1).numpy())
    assert len(inputs) == 5  # and the SFT collator, compared by token ids above
