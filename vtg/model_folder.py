"""A model folder and the sidecar files vtg keeps next to the weights, read once.

`vtg train` writes `vtg_sampling.json` (the frame sampling the model was trained with, and under `windows` how to
window videos longer than its clips: vtg.grounding.WindowSettings) and `vtg_prompt.json` (the grounding prompt's
style) into every model folder it exports, so that eval, serving and curation sample frames and word the question
exactly as training did. A folder without them (a released checkpoint) gets its family's default sampling and the
`full` prompt; its `vtg_prompt.json` may name a profile (vtg.profiles: how eval and serving ask and read that
checkpoint family). See docs/architecture.md#model-folders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vtg.errors import UserError

if TYPE_CHECKING:
    from vtg.data.video import FrameSampling
    from vtg.grounding import WindowSettings

SAMPLING_FILE = "vtg_sampling.json"
PROMPT_FILE = "vtg_prompt.json"  # {"style": "short"}, and/or {"profile": "time-r1"} (vtg.profiles)
FAMILY_OF_MODEL_TYPE = {"qwen2_5_vl": "qwen2.5-vl", "qwen3_vl": "qwen3-vl", "qwen3_vl_moe": "qwen3-vl"}
IMAGE_FACTOR = {"qwen2.5-vl": 28, "qwen3-vl": 32}  # patch 14 x merge 2, patch 16 x merge 2


def model_path(model_dir: str | Path) -> Path:
    """`model_dir` as a Path; a folder without config.json is a `UserError`."""
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise UserError(
            f"{path}: not a model folder (no config.json); give a folder written by save_pretrained or `vtg model tiny`"
        )
    return path


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def family_of(model_dir: str | Path) -> str:
    """'qwen2.5-vl' or 'qwen3-vl' from config.json's model_type."""
    path = model_path(model_dir) / "config.json"
    try:
        model_type = json.loads(path.read_text()).get("model_type")
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: unreadable config ({e})") from None
    if model_type not in FAMILY_OF_MODEL_TYPE:
        raise UserError(
            f"{path}: model_type {model_type!r} is not a supported family; expected one of "
            f"{sorted(FAMILY_OF_MODEL_TYPE)}"
        )
    return FAMILY_OF_MODEL_TYPE[model_type]


def default_sampling(family: str) -> FrameSampling:
    from vtg.data.video import FrameSampling

    return FrameSampling(image_factor=IMAGE_FACTOR[family])


def read_sampling(model_dir: str | Path) -> FrameSampling:
    """The FrameSampling a model was trained with (vtg_sampling.json), or its family's default.

    Rejects a saved image_factor that does not match the family: frames would not split into the model's patches.
    """
    from vtg.data.video import FrameSampling

    family = family_of(model_dir)
    path = Path(model_dir) / SAMPLING_FILE
    if not path.is_file():
        return default_sampling(family)
    data = _read_json(path)
    data = {k: v for k, v in data.items() if k != "windows"} if isinstance(data, dict) else data
    sampling = FrameSampling.from_dict(data, where=str(path))
    if sampling.image_factor != IMAGE_FACTOR[family]:
        raise UserError(
            f"{path}: image_factor {sampling.image_factor} does not fit a {family} model "
            f"(expected {IMAGE_FACTOR[family]}); fix the recipe's sampling and re-save"
        )
    return sampling


def read_windows(model_dir: str | Path) -> WindowSettings:
    """How `coarse_to_fine` windows a long video for this model: the `windows` mapping of vtg_sampling.json over
    vtg.grounding's defaults."""
    from vtg.grounding import WindowSettings

    path = Path(model_dir) / SAMPLING_FILE
    data = _read_json(path) if path.is_file() else {}
    windows = data.get("windows") if isinstance(data, dict) else None
    if windows is not None and not isinstance(windows, dict):
        raise UserError(f"{path}: 'windows' must be a mapping of window settings, got {type(windows).__name__}")
    try:
        return WindowSettings.from_dict(windows or {})
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def _read_prompt_file(model_dir: str | Path) -> tuple[Path, dict]:
    path = Path(model_dir) / PROMPT_FILE
    data = _read_json(path) if path.is_file() else {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object with 'style' and/or 'profile', got {type(data).__name__}")
    return path, data


def read_prompt_style(model_dir: str | Path) -> str:
    """The grounding prompt style a model was trained with (vtg_prompt.json), "full" when it has none (a file that
    only names a profile counts as none)."""
    from vtg.data.grammar import PROMPT_STYLES

    path, data = _read_prompt_file(model_dir)
    if not data or ("style" not in data and "profile" in data):
        return "full"
    style = data.get("style")
    if style not in PROMPT_STYLES:
        raise UserError(f"{path}: 'style' must be one of {list(PROMPT_STYLES)}, got {style!r}")
    return style


def read_profile(model_dir: str | Path) -> str:
    """The profile a model is asked and read with (vtg_prompt.json's `profile`, vtg.profiles), "vtg" when none."""
    from vtg.profiles import DEFAULT_PROFILE, get_profile

    path, data = _read_prompt_file(model_dir)
    return get_profile(data.get("profile", DEFAULT_PROFILE), f"{path}: 'profile'").name


def save_sampling(model_dir: str | Path, sampling: FrameSampling, windows: dict | None = None) -> Path:
    """Write the FrameSampling used in training next to the weights, and the window settings for long videos
    (`windows`, WindowSettings keys) when given."""
    path = Path(model_dir) / SAMPLING_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = sampling.to_dict()
    if windows:
        from vtg.grounding import WindowSettings

        WindowSettings.from_dict(windows)  # refuse what could not be read back
        data["windows"] = dict(windows)  # only what was chosen: the rest stays vtg's defaults
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def save_profile(model_dir: str | Path, profile: str) -> Path:
    """Record the profile a released checkpoint is asked and read with (kept beside the prompt style, if any)."""
    from vtg.profiles import get_profile

    get_profile(profile)
    path, data = _read_prompt_file(model_dir)
    path.write_text(json.dumps({**data, "profile": profile}) + "\n")
    return path


def save_prompt_style(model_dir: str | Path, style: str) -> Path:
    """Record the grounding prompt style a model is trained with."""
    from vtg.data.grammar import PROMPT_STYLES

    if style not in PROMPT_STYLES:
        raise UserError(f"prompt style must be one of {list(PROMPT_STYLES)}, got {style!r}")
    path = Path(model_dir) / PROMPT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"style": style}) + "\n")
    return path


@dataclass(frozen=True)
class ModelFolder:
    """A model folder with its family, frame sampling, prompt style and profile, each read once."""

    path: Path
    family: str
    sampling: FrameSampling
    prompt_style: str
    windows: WindowSettings
    profile: str = "vtg"  # vtg.profiles: how a released checkpoint is asked and read (vtg_prompt.json)

    @classmethod
    def read(cls, model_dir: str | Path) -> ModelFolder:
        path = model_path(model_dir)
        return cls(
            path=path,
            family=family_of(path),
            sampling=read_sampling(path),
            prompt_style=read_prompt_style(path),
            windows=read_windows(path),
            profile=read_profile(path),
        )

    def processor(self):
        """The folder's transformers processor (chat template, tokenizer, video processor)."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(str(self.path))
