"""Recipe loading: unknown keys with close matches, overrides, impossible arithmetic caught at start, and every
TRL/transformers training argument reaching the trainer."""

import re
from pathlib import Path

import pytest

from vtg.config import parse_overrides
from vtg.train.config import RecipeError, load_recipe
from vtg.train.config import VideoGRPOConfig as GRPORecipe
from vtg.train.config import VideoSFTConfig as SFTRecipe

ROOT = Path(__file__).resolve().parents[1]
TINY = {"min_pixels": 3136, "max_pixels": 3136, "max_frames": 48}


def test_overrides_parse_types_and_sections():
    got = parse_overrides(["--max_steps", "10", "--lora.r", "8", "--think", "--learning-rate=1e-4", "--model", "x"])
    assert got == {"max_steps": 10, "lora": {"r": 8}, "think": True, "learning_rate": 1e-4, "model": "x"}


def test_yaml_then_overrides(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(
        "model: m\nlearning_rate: 1.0e-3\nlora: {r: 4, alpha: 8}\nsampling: {max_pixels: 3136, "
        "min_pixels: 3136, max_frames: 48}\n"
    )
    r = load_recipe(SFTRecipe, p, ["--lora.r", "2", "--max_steps", "3"])
    assert (r.model, r.learning_rate, r.lora.r, r.lora.alpha, r.max_steps) == ("m", 1e-3, 2, 8, 3)
    assert r.frame_sampling().max_frames == 48


def test_unknown_key_names_close_match(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("learnig_rate: 1e-5\n")
    with pytest.raises(RecipeError, match=r"learnig_rate.*did you mean learning_rate"):
        load_recipe(SFTRecipe, p)
    with pytest.raises(RecipeError, match=r"lora\.rr.*lora\.r"):
        load_recipe(SFTRecipe, None, {"lora": {"rr": 3}, "sampling": TINY})
    with pytest.raises(RecipeError, match="sampling.*fsp"):
        load_recipe(SFTRecipe, None, {"sampling": {"fsp": 2}})


def test_unknown_reward_and_bad_values():
    with pytest.raises(RecipeError, match=r"tiou_2.*did you mean"):
        GRPORecipe(rewards={"tiou_2": 1.0}, sampling=TINY, num_generations=2)
    with pytest.raises(RecipeError, match="tuning"):
        SFTRecipe(tuning="qlora", sampling=TINY)


GRPO_OK = {"num_generations": 2, "per_device_train_batch_size": 2}


@pytest.mark.parametrize(
    ("cls", "key", "value", "fix"),
    [
        (SFTRecipe, "use_liger_kernel", True, "Set use_liger_kernel: false"),
        (GRPORecipe, "use_liger_kernel", True, "Set use_liger_kernel: false"),
        (SFTRecipe, "model_init_kwargs", {"dtype": "bfloat16"}, "precision"),
        (GRPORecipe, "model_init_kwargs", {"dtype": "bfloat16"}, "precision"),
        (SFTRecipe, "pad_to_multiple_of", 8, "pads to the batch's longest record"),
        (GRPORecipe, "top_k", 50, "temperature, top_p and max_completion_length only. Drop top_k"),
        (GRPORecipe, "min_p", 0.1, "Drop min_p"),
        (GRPORecipe, "repetition_penalty", 1.1, "Drop repetition_penalty"),
        (GRPORecipe, "generation_kwargs", {"top_k": 5}, "Drop generation_kwargs"),
        (GRPORecipe, "cache_implementation", "static", "Drop cache_implementation"),
        (GRPORecipe, "use_transformers_paged", True, "rollout_engine"),
        (GRPORecipe, "use_transformers_continuous_batching", True, "rollout_engine"),
        (GRPORecipe, "chat_template_kwargs", {"enable_thinking": True}, "vtg.request"),
        (GRPORecipe, "vllm_mode", "server", "colocated"),
        (GRPORecipe, "vllm_tensor_parallel_size", 2, "its process's own device"),
        (GRPORecipe, "vllm_enable_sleep_mode", True, "does not sleep"),
        (GRPORecipe, "vllm_model_impl", "transformers", "vLLM's own model"),
        (GRPORecipe, "vllm_structured_outputs_regex", "starts.*", "do not constrain decoding"),
        (GRPORecipe, "vllm_importance_sampling_correction", True, "no sampling log-probs"),
        (GRPORecipe, "ds3_gather_for_generation", False, "always gather"),
    ],
)
def test_trl_options_the_video_trainers_cannot_honour_are_refused_by_name(cls, key, value, fix):
    """TRL options that vtg's video trainers would silently ignore (its own rollouts, collator and model loading
    replace TRL's) or that break its video path are refused when the recipe loads, naming the key and the fix."""
    extra = GRPO_OK if cls is GRPORecipe else {}
    cls(sampling=TINY, **extra)  # vtg's defaults pass (vllm_importance_sampling_correction is false by default)
    with pytest.raises(RecipeError, match=rf"^{key}: {re.escape(repr(value))} is not supported on video: .*"):
        cls(sampling=TINY, **extra, **{key: value})
    with pytest.raises(RecipeError, match=re.escape(fix)):
        load_recipe(cls, None, {"sampling": TINY, **extra, key: value})


def test_generation_batch_must_hold_whole_groups(monkeypatch):
    from vtg.train.config import check_generation_batch

    check_generation_batch(1, 2, 2, num_generations=4)  # 4 rows on 2 processes: one group
    with pytest.raises(
        RecipeError,
        match=r"1 × gradient_accumulation_steps 3 × world size 2 = 6.*num_generations 4.*"
        r"one of \[2, 3, 6\]",
    ):
        check_generation_batch(1, 3, 2, num_generations=4)
    # under a launch, the check runs as the recipe loads (before TRL sets up the processes), with WORLD_SIZE
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RecipeError, match=r"1 × gradient_accumulation_steps 3 × world size 2 = 6.*num_generations 4"):
        GRPORecipe(per_device_train_batch_size=1, gradient_accumulation_steps=3, num_generations=4, sampling=TINY)


def test_frames_times_tokens_vs_max_length():
    # 768 frames / 2 × 768 tokens: far beyond 4096
    with pytest.raises(RecipeError, match=r"max_length 4096 is too small.*Raise max_length"):
        SFTRecipe(sampling={"max_frames": 768})
    # Time-R1: total_pixels 3584·28² caps the video at 3584 tokens; + 200 completion + prompt fits 4096
    GRPORecipe(
        sampling={"fps": 2, "total_pixels": 3584 * 28 * 28},
        max_length=4096,
        num_generations=8,
        gradient_accumulation_steps=8,
        max_completion_length=200,
    )
    with pytest.raises(RecipeError, match="max_completion_length|max_length"):
        GRPORecipe(
            sampling={"fps": 2, "total_pixels": 3584 * 28 * 28},
            max_length=3700,
            num_generations=8,
            gradient_accumulation_steps=8,
            max_completion_length=200,
        )


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*/*/config_*.yaml")))
def test_shipped_recipes_load_and_start_with_their_command(path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    text = path.read_text()
    assert text.startswith("# ") and "vtg train" in text.splitlines()[0] or "accelerate launch" in text.splitlines()[0]
    cls = GRPORecipe if "/grpo/" in str(path) else SFTRecipe
    recipe = load_recipe(cls, path)
    if cls is GRPORecipe and "tiny" not in str(path):  # the big recipes are written for one 8-GPU node
        from vtg.train.config import check_generation_batch

        check_generation_batch(
            recipe.per_device_train_batch_size, recipe.gradient_accumulation_steps, 8, recipe.num_generations
        )


def test_yaml_number_strings_and_wrong_types():
    r = load_recipe(SFTRecipe, None, {"learning_rate": "1e-5", "max_steps": "5", "sampling": TINY})
    assert r.learning_rate == 1e-5 and r.max_steps == 5
    with pytest.raises(RecipeError, match="max_steps: expected a number"):
        load_recipe(SFTRecipe, None, {"max_steps": "lots", "sampling": TINY})
    with pytest.raises(RecipeError, match="think: expected true or false"):
        load_recipe(SFTRecipe, None, {"think": "maybe", "sampling": TINY})


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
@pytest.mark.parametrize("method", ["sft", "grpo"])
def test_tiny_recipes_see_four_merged_tokens_per_frame_pair_in_either_family(family, method, synth_world, request):
    """The tiny recipes run both families on 56-px synthetic worlds. A fixed pixel budget of 56x56 once made
    Qwen3-VL (32-px merged tokens) see 32x32 frames, one token per frame pair, with no error anywhere."""
    from vtg.data.records import load_records
    from vtg.data.video import read_video

    model = request.getfixturevalue({"qwen2.5-vl": "tiny_qwen25", "qwen3-vl": "tiny_qwen3"}[family])
    cls = SFTRecipe if method == "sft" else GRPORecipe
    recipe = load_recipe(cls, ROOT / "recipes" / "tiny" / method / "config_default.yaml", {"model": str(model)})
    sampling = recipe.frame_sampling()
    record = load_records(synth_world / "train.jsonl")[0]
    video = read_video(record.video_path(synth_world), sampling)
    height, width = video.frames.shape[-2:]
    factor = {"qwen2.5-vl": 28, "qwen3-vl": 32}[family]
    assert (height // factor, width // factor) == (2, 2) and height % factor == width % factor == 0


def test_trl_and_transformers_fields_reach_the_trainer(tiny_qwen25, synth_world, tmp_path):
    """Fields vtg's code never names are recipe keys and command-line overrides that reach the trainer as TRL and
    transformers define them (the recipe is TRL's own config class), and vtg's precision owns bf16/fp16."""
    import torch

    from vtg.train.grpo import build_grpo_trainer
    from vtg.train.sft import build_sft_trainer

    base = {
        "model": str(tiny_qwen25),
        "train_file": str(synth_world / "train.jsonl"),
        "max_length": 1024,
        "sampling": {"max_frames": 32},
        "train_merger": True,
    }
    cli = [
        "--model",
        base["model"],
        "--train_file",
        base["train_file"],
        "--max_length",
        "1024",
        "--train_merger",
        "--sampling.max_frames",
        "32",
        "--output_dir",
        str(tmp_path / "s"),
        "--optim",
        "adamw_torch",
        "--adam_beta2",
        "0.95",
        "--run_name",
        "7",
    ]  # as `vtg train sft` gets them
    sft = build_sft_trainer(load_recipe(SFTRecipe, None, cli))
    assert (sft.args.optim, sft.args.adam_beta2, sft.args.run_name) == ("adamw_torch", 0.95, "7")
    sft.create_optimizer()
    assert type(sft.optimizer) is torch.optim.AdamW and sft.optimizer.defaults["betas"] == (0.9, 0.95)
    grpo = build_grpo_trainer(
        load_recipe(
            GRPORecipe,
            None,
            {
                **base,
                "output_dir": str(tmp_path / "g"),
                "rollout_engine": "transformers",
                "num_generations": 2,
                "per_device_train_batch_size": 2,
                "epsilon_high": 0.28,
                "mask_truncated_completions": True,
                "importance_sampling_level": "sequence",
            },
        )
    )
    assert (grpo.epsilon_high, grpo.mask_truncated_completions, grpo.importance_sampling_level) == (
        0.28,
        True,
        "sequence",
    )
    with pytest.raises(RecipeError, match="precision"):
        load_recipe(SFTRecipe, None, {"bf16": True, "sampling": TINY})
    with pytest.raises(RecipeError, match="use_vllm: true is TRL's own vLLM path.*rollout_engine"):
        load_recipe(GRPORecipe, None, {"use_vllm": True, "sampling": TINY, "num_generations": 2})


def test_records_flagged_zero_length_are_not_trained_on(synth_world, tmp_path):
    """Ego4D-NLQ conversion keeps zero-length windows (flagged) for the official scorer; training skips them."""
    import json

    from vtg.train.dataset import load_training_records

    lines = (synth_world / "train.jsonl").read_text().splitlines()[:3]
    flagged = json.loads(lines[0])
    s = flagged["moments"][0][0]
    flagged.update(id="zero", moments=[[s, s]], zero_length_window=True)
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join([*lines, json.dumps(flagged)]) + "\n")
    for video in (synth_world / "videos").iterdir():
        (tmp_path / "videos").mkdir(exist_ok=True)
        (tmp_path / "videos" / video.name).symlink_to(video)
    ids = [r["id"] for r in load_training_records(str(path))]
    assert len(ids) == 3 and "zero" not in ids
