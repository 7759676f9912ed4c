"""The contract with TRL (and transformers' Trainer) that vtg's trainers rely on: every upstream method vtg overrides,
calls through `super()` or calls as private API, with the signature it was written against. Upgrading TRL or
transformers so that one of them changes fails here, naming it, instead of in a training run (or not at all: an
override whose base gained a parameter is silently skipped)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# "module:qualified name" -> its signature without annotations (TRL 1.16, transformers 5.19)
CONTRACT = {
    # overridden by VideoTrainerMixin (both trainers); vtg passes its keywords to __init__
    "trl:SFTTrainer.__init__": (
        "(self, model, args=None, data_collator=None, train_dataset=None, eval_dataset=None, processing_class=None, "
        "compute_loss_func=None, compute_metrics=None, callbacks=None, optimizers=(None, None), "
        "optimizer_cls_and_kwargs=None, preprocess_logits_for_metrics=None, quantization_config=None, "
        "peft_config=None, formatting_func=None)"
    ),
    "trl:GRPOTrainer.__init__": (
        "(self, model, reward_funcs=None, args=None, train_dataset=None, eval_dataset=None, processing_class=None, "
        "reward_processing_classes=None, callbacks=None, optimizers=(None, None), quantization_config=None, "
        "peft_config=None, tools=None, rollout_func=None, environment_factory=None)"
    ),
    "trl:SFTTrainer.create_optimizer": "(self, model=None)",
    "trl:GRPOTrainer.create_optimizer": "(self, model=None)",
    "trl:SFTTrainer.log": "(self, logs, start_time=None)",
    "trl:GRPOTrainer.log": "(self, logs, start_time=None)",
    # VideoSFTTrainer
    "trl:SFTTrainer.compute_loss": "(self, model, inputs, return_outputs=False, num_items_in_batch=None)",
    # VideoGRPOTrainer: private methods of TRL's GRPOTrainer
    "trl:GRPOTrainer._generate_and_score_completions": "(self, inputs)",
    "trl:GRPOTrainer._compute_loss": "(self, model, inputs)",
    "trl:GRPOTrainer._get_per_token_logps_and_entropies": (
        "(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False, "
        "compute_aux_loss=False, pixel_values=None, image_grid_thw=None, num_images=None, pixel_attention_mask=None, "
        "spatial_shapes=None, num_tiles=None, image_sizes=None, token_type_ids=None, mm_token_type_ids=None, "
        "image_position_ids=None)"
    ),
    # private helpers vtg calls: the reference model under PEFT, and the fused LM head that tempers every log-prob
    # pass (vtg calls the model with `fused_lm_head=True`; docs/training.md#the-video-in-grpo-rollouts-and-log-probs)
    "trl.trainer.utils:use_adapter": "(model, adapter_name)",
    "trl.trainer.utils:add_fused_lm_head": (
        "(model, temperature=1.0, cast_lm_head_to_fp32=False, outputs=('log_probs',))"
    ),
    # callbacks: MergerRate (train/trainer.py), the video check (train/video_check.py)
    "transformers:TrainerCallback.on_optimizer_step": "(self, args, state, control, **kwargs)",
    "transformers:TrainerCallback.on_train_begin": "(self, args, state, control, **kwargs)",
    "transformers:TrainerCallback.on_step_end": "(self, args, state, control, **kwargs)",
    "transformers:TrainerCallback.on_train_end": "(self, args, state, control, **kwargs)",
}
# TRL names train/ imports that are classes it subclasses or configures, not methods
TRL_CLASSES = {"GRPOConfig", "SFTConfig", "GRPOTrainer", "SFTTrainer"}


def _resolve(key: str):
    import importlib

    module, qualname = key.split(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _plain(sig: inspect.Signature) -> str:
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


@pytest.mark.parametrize("key", sorted(CONTRACT))
def test_upstream_signature_is_the_one_vtg_was_written_against(key):
    got = _plain(inspect.signature(_resolve(key)))
    assert got == CONTRACT[key], (
        f"{key} changed its signature: vtg was written against {CONTRACT[key]}, the installed version has {got}. "
        "Check vtg's override or call (train/), then update CONTRACT."
    )


def _vtg_trainers():
    from trl import GRPOTrainer, SFTTrainer

    from vtg.train.grpo import VideoGRPOTrainer
    from vtg.train.sft import VideoSFTTrainer

    return [(VideoSFTTrainer, SFTTrainer, "SFTTrainer"), (VideoGRPOTrainer, GRPOTrainer, "GRPOTrainer")]


@pytest.mark.parametrize("index", [0, 1], ids=["sft", "grpo"])
def test_every_override_is_in_the_contract_and_takes_what_trl_passes(index):
    """Each method vtg's trainer classes define that TRL's trainer also has is listed in CONTRACT, and vtg's
    version accepts every argument TRL's does (by name, or through **kwargs), so TRL calling it keeps working."""
    cls, base, name = _vtg_trainers()[index]
    ours = {n for k in cls.__mro__ if k.__module__.startswith("vtg.") for n, v in vars(k).items() if callable(v)}
    overridden = sorted(n for n in ours if hasattr(base, n))
    assert overridden, "no override found: the class walk is broken"
    for method in overridden:
        assert f"trl:{name}.{method}" in CONTRACT, f"{cls.__name__}.{method} overrides TRL's: add it to CONTRACT"
        if method == "__init__":
            continue  # vtg's constructors take TRL's keywords through **kwargs and add their own
        mine = inspect.signature(getattr(cls, method)).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in mine.values())
        for p in inspect.signature(getattr(base, method)).parameters:
            assert p in mine or takes_any, f"{cls.__name__}.{method} does not accept TRL's argument {p!r}"


def test_every_super_call_and_trl_import_in_train_is_in_the_contract():
    """train/ calls nothing upstream through super() or a TRL import that CONTRACT does not hold, so a new override
    or private call cannot slip past the signature check."""
    covered = {key.rsplit(".", 1)[-1].split(":")[-1] for key in CONTRACT}
    for path in sorted((ROOT / "train").glob("*.py")):
        text = path.read_text()
        for called in re.findall(r"super\(\)\.(\w+)\(", text):
            assert called in covered, f"{path.name}: super().{called}() is not in CONTRACT"
        for names in re.findall(r"^\s*from trl[\w.]* import ([\w, ]+)$", text, re.M):
            for imported in (n.strip() for n in names.split(",")):
                assert imported in TRL_CLASSES | covered, f"{path.name}: TRL's {imported} is not in CONTRACT"
