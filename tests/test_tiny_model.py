"""Tiny local models: both families build offline, load with the Auto classes, tokenize the grammar exactly, and a
forward pass on a real decoded video puts the vision tower (merger included) in the gradient."""

from __future__ import annotations

import json

import pytest
import torch

from vtg import model_folder
from vtg.data.grammar import format_answer, parse_answer
from vtg.data.records import load_records
from vtg.errors import UserError
from vtg.request import Requests

from support.probes import vision_grad_norms

ANSWERS = [
    format_answer([(12.5, 17.0)], think="the red square appears after the blue circle"),
    format_answer([(3.0, 7.5), (40.0, 44.0)], think="two flashes"),
    format_answer([], think="no purple triangle is seen"),
    format_answer([(0.0, 123.4)]),
]


@pytest.fixture(params=["qwen2.5-vl", "qwen3-vl"])
def tiny(request):
    fixture = {"qwen2.5-vl": "tiny_qwen25", "qwen3-vl": "tiny_qwen3"}[request.param]
    return request.param, request.getfixturevalue(fixture)


def test_loads_offline_with_auto_classes(tiny):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    family, path = tiny
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    assert model_folder.family_of(path) == family
    assert (
        type(model).__name__
        == {"qwen2.5-vl": "Qwen2_5_VLForConditionalGeneration", "qwen3-vl": "Qwen3VLForConditionalGeneration"}[family]
    )
    assert 300_000 < sum(p.numel() for p in model.parameters()) < 1_000_000
    assert model.config.text_config.head_dim == 64  # vLLM CPU attention needs >= 32
    tok = processor.tokenizer
    for t in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|image_pad|>"):
        assert tok.convert_tokens_to_ids(t) != tok.unk_token_id and len(tok.encode(t)) == 1, t
    assert model.config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert model.config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    eos = json.loads((path / "generation_config.json").read_text())["eos_token_id"]
    assert tok.convert_tokens_to_ids("<|im_end|>") in eos
    assert len(tok) <= model.config.text_config.vocab_size


def test_tokenizer_think_tokens_and_grammar_round_trip(tiny):
    from transformers import AutoTokenizer

    _, path = tiny
    tok = AutoTokenizer.from_pretrained(path)
    for t in ("<think>", "</think>"):
        assert len(tok.encode(t, add_special_tokens=False)) == 1, t
    for text in ANSWERS:
        ids = tok.encode(text, add_special_tokens=False)
        decoded = tok.decode(ids, skip_special_tokens=True)  # what a server shows: think tags must survive
        assert decoded == text
        assert parse_answer(decoded).moments == parse_answer(text).moments and parse_answer(decoded).strict


def test_video_forward_puts_vision_tower_in_gradient(tiny, synth_world):
    """A training step's building block: real MP4 -> frames + metadata -> processor -> loss -> vision grads."""
    from transformers import AutoModelForImageTextToText

    _, path = tiny
    rec = load_records(synth_world / "train.jsonl")[0]
    requests = Requests.for_model(path, think=True)
    # the answer follows the prompt as the assistant's turn, closed by its stop token (as the SFT collator does)
    batch = requests.hf_inputs(requests.record(rec, synth_world), format_answer(rec.moments, "x") + "<|im_end|>\n")
    assert "pixel_values_videos" in batch and batch["video_grid_thw"].shape == (1, 3)

    model = AutoModelForImageTextToText.from_pretrained(path)
    model.train()
    labels = batch["input_ids"].clone()
    labels[labels == model.config.video_token_id] = -100
    out = model(**batch, labels=labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    norms = vision_grad_norms(model)
    for part in ("patch_embed", "blocks", "merger"):
        assert norms.get(part, 0.0) > 0.0, (part, norms)


def test_vision_grad_check_catches_a_text_only_pass(tiny_qwen25):
    """Control: without the video the vision tower gets no gradient, and the check says so."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_qwen25)
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen25)
    batch = processor(text=["starts at 1.0s, ends at 2.0s"], return_tensors="pt")
    model(**batch, labels=batch["input_ids"]).loss.backward()
    assert all(v == 0.0 for v in vision_grad_norms(model).values())


def test_cli_builds_a_model(tmp_path, capsys):
    from vtg.cli import main

    assert (
        main(
            ["model", "tiny", "--family", "qwen2.5-vl", "--out", str(tmp_path / "m"), "--size", "small", "--seed", "3"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    info = json.loads((tmp_path / "m" / "vtg_tiny.json").read_text())
    assert info["size"] == "small" and info["seed"] == 3 and f"{info['params']:,} parameters" in printed
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["vision_config"]["hidden_size"] == 64
    assert model_folder.read_sampling(tmp_path / "m").image_factor == 28
    with pytest.raises(SystemExit) as e:
        main(["model", "tiny", "--family", "llava", "--out", str(tmp_path / "x")])
    assert e.value.code == 2


def test_bad_family_or_size_is_a_user_error(tmp_path):
    from vtg.train.tiny_model import build_tiny_model

    with pytest.raises(UserError, match="qwen2.5-vl"):
        build_tiny_model("llava", tmp_path)
    with pytest.raises(UserError, match="tiny, small"):
        build_tiny_model("qwen3-vl", tmp_path, size="huge")


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_every_size_builds_with_its_text_attention_shape(tmp_path, family):
    """Each size's heads / KV heads / layers reach the config and a forward pass runs (Qwen2.5-VL derives head_dim
    from hidden / heads, so a size that breaks head_dim 64 fails here, not 20 minutes into a benchmark)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vtg.train.tiny_model import SIZES, build_tiny_model

    for name, size in SIZES.items():
        path = build_tiny_model(family, tmp_path / name, size=name)
        text = json.loads((path / "config.json").read_text())["text_config"]
        assert (text["num_attention_heads"], text["num_key_value_heads"], text["num_hidden_layers"]) == (
            size.text_heads,
            size.text_kv_heads,
            size.text_layers,
        ), name
        model = AutoModelForImageTextToText.from_pretrained(path)
        batch = AutoProcessor.from_pretrained(path)(text=["starts at 1.0s, ends at 2.0s"], return_tensors="pt")
        assert torch.isfinite(model(**batch, labels=batch["input_ids"]).loss), name


def test_world_names_are_single_tokens(tiny):
    """The synthetic world's colour and shape names are whole tokens (they were split into letters once, so the tiny
    model had to assemble "green" from 'g', 'r', 'e', 'en' before it could look for the object)."""
    from transformers import AutoTokenizer

    from vtg.data.synth import COLOURS, SHAPES

    tok = AutoTokenizer.from_pretrained(tiny[1])
    split = {w: tok.tokenize(" " + w) for w in [*COLOURS, *SHAPES] if len(tok.tokenize(" " + w)) != 1}
    assert not split, split
