"""Tiny random-init Qwen2.5-VL / Qwen3-VL models, built locally in seconds (no hub anywhere).

A model folder written here loads with `AutoModelForImageTextToText` / `AutoProcessor` and in vLLM CPU: config +
safetensors weights, a byte-level BPE tokenizer trained locally with `tokenizers` on a small corpus that covers the
grounding prompts and answers of `vtg.data.grammar`, the family's special tokens, `<think>`/`</think>` as single
tokens, the family's chat template, `generation_config.json` (eos = `<|im_end|>`) and the image + video processors.

Dimensions: text hidden 128, 2 layers, 2 heads of 64 (vLLM CPU attention needs head_dim >= 32),
1 KV head; vision depth 2, hidden 32 ("tiny") or 64 ("small": the size measured to learn the synthetic world).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from vtg.data.grammar import NOT_PRESENT, format_answer, grounding_prompt
from vtg.errors import UserError
from vtg.model_folder import IMAGE_FACTOR, save_prompt_style, save_sampling

FAMILIES = ("qwen2.5-vl", "qwen3-vl")

# Special tokens in the families' own order, so the ids sit in the same relative order as in the real vocabularies.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
THINK_TOKENS = ["<think>", "</think>"]  # added tokens, not "special": decoding with skip_special_tokens keeps them

# The Qwen2.5-VL chat template as published with Qwen/Qwen2.5-VL-*-Instruct (default system prompt included).
QWEN25_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == "
    "'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

# The Qwen3-VL-Instruct chat template (Qwen/Qwen3-VL-*-Instruct), without its tool-calling branches (the grounding
# stack sends no tools): no default system prompt; system/user/assistant turns; the same vision placeholders.
QWEN3_VL_TEMPLATE = """{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].content is string %}
        {{- messages[0].content }}
    {%- else %}
        {%- for content in messages[0].content %}
            {%- if 'text' in content %}
                {{- content.text }}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
    {{- '<|im_end|>\\n' }}
{%- endif %}
{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- for message in messages %}
    {%- if message.role == "user" %}
        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content.type == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content_item in message.content %}
                {%- if 'text' in content_item %}
                    {{- content_item.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""


@dataclass(frozen=True)
class TinySize:
    """Dimensions that differ between sizes; everything else is fixed (docs/facts.md#the-tiny-model)."""

    vision_hidden: int
    vision_intermediate: int
    text_hidden: int = 128
    text_intermediate: int = 256
    text_layers: int = 2
    text_heads: int = 2  # Qwen2.5-VL's text attention takes head_dim = hidden / heads: keep it 64 (the mrope sections)
    text_kv_heads: int = 1


SIZES: dict[str, TinySize] = {
    "tiny": TinySize(vision_hidden=32, vision_intermediate=64),
    "small": TinySize(vision_hidden=64, vision_intermediate=128),
    # a wider/deeper one (text hidden stays 128: 2 heads of 64), for benchmarks that need more compute per token
    "medium": TinySize(vision_hidden=128, vision_intermediate=256, text_intermediate=512, text_layers=4),
}

_WORDS = (
    "red green blue yellow white black orange purple square circle triangle bar dot shape moves appears disappears "
    "flashes grows shrinks left right top bottom first second then after before while the a an is of in on and or "
    "video query moment event person opens door walks sits"
).split()


def _corpus(seed: int) -> list[str]:
    """Texts the tokenizer learns merges from: prompts, answers (one, several, none), numbers, scene words, the
    synthetic world's queries and the chat template's words.

    The world's queries are there so that "red", "circle", ... are single tokens: with the first vocabulary (384
    entries, no world queries in the corpus) they were split into letters ('Ġ', 'g', 'r', 'e', 'en' for " green"),
    and a 2-layer model had to assemble the name from letters before it could look for the object. (Whole-word
    names did not make it bind the query to its object either: experiments/learning/README.md.)"""
    rng = random.Random(seed)
    texts = [
        " ".join(_WORDS),
        NOT_PRESENT,
        "0123456789 .,;:'\"?!()[]-",
        "<think>",
        "</think>",
        "system\nYou are a helpful assistant.",
        "user\n",
        "assistant\n",
    ] * 20
    from vtg.data.synth import all_query_texts

    world = all_query_texts()
    for i in range(600):
        dur = rng.uniform(4, 120)
        query = " ".join(rng.sample(_WORDS, 4)) if i % 2 else rng.choice(world)
        moments = sorted((round(rng.uniform(0, dur / 2), 1), round(rng.uniform(dur / 2, dur), 1)) for _ in range(i % 3))
        style = "full" if i % 3 else "short"
        texts.append(grounding_prompt(query, dur, mode="single" if i % 2 else "multi", think=bool(i % 3), style=style))
        texts.append(format_answer(moments, think=f"the {query} is seen near {dur / 3:.1f}s" if i % 2 else None))
    return texts + world


def _train_tokenizer(seed: int):
    """Byte-level BPE (every byte string round-trips) with the family's special tokens and <think> tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    fast.add_tokens(THINK_TOKENS, special_tokens=False)
    return fast


def _vocab_size(tokenizer) -> int:
    return ((len(tokenizer) + 63) // 64) * 64  # embedding rows rounded up, as real checkpoints do


def _token_ids(tokenizer) -> dict[str, int]:
    ids = {
        t: tokenizer.convert_tokens_to_ids(t)
        for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|endoftext|>", "<|im_end|>")
    }
    return {
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "pad": ids["<|endoftext|>"],
        "eos": ids["<|im_end|>"],
    }


def _text_kwargs(size: TinySize, vocab: int, ids: dict, mrope_section: list[int], **extra) -> dict:
    return dict(
        vocab_size=vocab,
        hidden_size=size.text_hidden,
        intermediate_size=size.text_intermediate,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        num_key_value_heads=size.text_kv_heads,
        head_dim=64,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        pad_token_id=ids["pad"],
        eos_token_id=ids["eos"],
        bos_token_id=ids["pad"],
        rope_parameters={"rope_type": "default", "mrope_section": mrope_section, **extra},
    )


def _qwen25_config(size: TinySize, vocab: int, ids: dict):
    from transformers import Qwen2_5_VLConfig

    text = _text_kwargs(size, vocab, ids, [8, 12, 12], rope_theta=1000000.0)  # 8+12+12 = head_dim / 2
    vision = dict(
        depth=2,
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_intermediate,
        num_heads=2,
        out_hidden_size=size.text_hidden,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=56,
        fullatt_block_indexes=[1],
        tokens_per_second=2,
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=True,
        **{k: ids[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")},
    )


def _qwen3_config(size: TinySize, vocab: int, ids: dict):
    from transformers import Qwen3VLConfig

    # Qwen3-VL interleaves T/H/W rotary frequencies; the section still sums to head_dim / 2.
    text = _text_kwargs(size, vocab, ids, [12, 10, 10], mrope_interleaved=True, rope_theta=5000000.0)
    text.pop("bos_token_id")
    text.pop("eos_token_id")
    vision = dict(
        depth=2,
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_intermediate,
        num_heads=2,
        out_hidden_size=size.text_hidden,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=576,
        deepstack_visual_indexes=[0],
    )
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=True,
        **{k: ids[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")},
    )


def _processor(family: str, tokenizer):
    """The family's processor. Pixel budgets are small (a tiny model sees tiny frames) but keep the real rules."""
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    if family == "qwen2.5-vl":
        factor = 28
        image = Qwen2VLImageProcessor(
            patch_size=14,
            merge_size=2,
            temporal_patch_size=2,
            size={"shortest_edge": 4 * factor**2, "longest_edge": 256 * factor**2},
        )
        video = Qwen2VLVideoProcessor(
            patch_size=14,
            merge_size=2,
            temporal_patch_size=2,
            size={"shortest_edge": 4 * factor**2, "longest_edge": 64 * factor**2},
        )
        return Qwen2_5_VLProcessor(
            image_processor=image, tokenizer=tokenizer, video_processor=video, chat_template=QWEN25_VL_TEMPLATE
        )
    factor = 32
    # Qwen3-VL releases normalize images and videos with mean = std = 0.5 (transformers' image-processor default is
    # CLIP's); vLLM normalizes videos with the image statistics, so the two must agree.
    image = Qwen2VLImageProcessor(
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        size={"shortest_edge": 4 * factor**2, "longest_edge": 256 * factor**2},
    )
    video = Qwen3VLVideoProcessor(
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        size={"shortest_edge": 4 * factor**2, "longest_edge": 64 * 32 * factor**2},
    )
    return Qwen3VLProcessor(
        image_processor=image, tokenizer=tokenizer, video_processor=video, chat_template=QWEN3_VL_TEMPLATE
    )


def build_tiny_model(family: str, out_dir: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random-init model of `family` with its tokenizer, chat template and processor to `out_dir`."""
    if family not in FAMILIES:
        raise UserError(f"unknown model family {family!r}: expected one of {', '.join(FAMILIES)}")
    if size not in SIZES:
        raise UserError(f"unknown tiny model size {size!r}: expected one of {', '.join(SIZES)}")
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(seed)
    ids = _token_ids(tokenizer)
    dims = SIZES[size]
    torch.manual_seed(seed)
    if family == "qwen2.5-vl":
        model = Qwen2_5_VLForConditionalGeneration(_qwen25_config(dims, _vocab_size(tokenizer), ids))
    else:
        model = Qwen3VLForConditionalGeneration(_qwen3_config(dims, _vocab_size(tokenizer), ids))
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["eos"], ids["pad"]], pad_token_id=ids["pad"], bos_token_id=ids["pad"], do_sample=False
    )
    model.save_pretrained(out, safe_serialization=True)
    _processor(family, tokenizer).save_pretrained(out)
    save_sampling(out, tiny_sampling(family))
    # A model trained from scratch learns to read the video far sooner without the instruction text between the
    # video and the answer (experiments/learning/probe_results.md); training, eval and serving read this choice back.
    save_prompt_style(out, "short")
    (out / "vtg_tiny.json").write_text(
        json.dumps({"family": family, "size": size, "seed": seed, "params": count_params(model)}, indent=1)
    )
    return out


def tiny_sampling(family: str):
    """Frame sampling for tiny models: 2 fps and a small pixel budget (a 56x56 frame stays 2x2 merged patches)
    instead of the full-size default that would upscale it ~30 times. Training overwrites it with its recipe's."""
    from vtg.data.video import FrameSampling

    f = IMAGE_FACTOR[family]
    return FrameSampling(fps=2.0, image_factor=f, min_pixels=4 * f * f, max_pixels=16 * f * f)


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
