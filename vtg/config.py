"""The one config loader: YAML file + `--key value` overrides → a typed dataclass (training recipes, eval, serve).

- Unknown keys are rejected with the close matches (`learnig_rate (did you mean learning_rate?)`), in nested
  sections too (`--lora.rr` names `lora.r`).
- Overrides are `--key value` pairs (`--key=value`; a bare `--flag` means true); dotted keys reach sections and
  mapping fields (`--lora.r 8`, `--sampling.fps 1`, `--rewards.format 0.5`). Values are read as YAML scalars.
- Values are checked against the field's type hint (numbers written as strings, `1e-5`, become numbers); a field
  whose type is a dataclass is built from its mapping, so its own `__post_init__` checks run too.
- `ConfigError` (a `UserError`) names the key and how to fix it; the CLI prints it without a traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from vtg.errors import UserError


class ConfigError(UserError, ValueError):
    """A config that cannot run; the message names the key and how to fix it."""


def parse_overrides(args: Sequence[str]) -> dict[str, Any]:
    """`["--lr", "1e-5", "--lora.r", "8", "--think"]` → a nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        key = args[i]
        if not key.startswith("--") or len(key) < 3:
            raise ConfigError(f"override {key!r}: expected --key value (e.g. --max_steps 10 or --lora.r 8)")
        key = key[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            raw = args[i + 1]
            i += 2
        else:  # a bare flag means true
            raw = "true"
            i += 1
        node = out
        parts = key.replace("-", "_").split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = scalar(raw)
    return out


def scalar(raw: str) -> Any:
    """A command-line value: numbers first (YAML 1.1 reads `1e-4` as a string), then YAML (true, [a, b], {r: 8})."""
    for conv in (int, float):
        try:
            return conv(raw)
        except ValueError:
            pass
    return yaml.safe_load(raw)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, mappings merged key by key."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | os.PathLike, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise error(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise error(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise error(f"{p}: expected a mapping of keys at the top level")
    return data


def load(
    cls: type,
    path: str | os.PathLike | None = None,
    overrides: Sequence[str] | dict | None = None,
    *,
    section: str | None = None,
    error: type[ConfigError] = ConfigError,
):
    """Build `cls` from a YAML file (optional; its `section` mapping when the file nests one) and overrides."""
    data = read_yaml(path, error) if path is not None else {}
    if section is not None and isinstance(data.get(section), dict):
        data = data[section]
    extra = parse_overrides(overrides) if isinstance(overrides, (list, tuple)) else dict(overrides or {})
    try:
        return build(cls, merge(data, extra), error=error)
    except ConfigError as e:
        raise type(e)(f"{path}: {e}" if path is not None else str(e)) from None


def build(cls: type, data: dict[str, Any], prefix: str = "", *, error: type[ConfigError] = ConfigError):
    """`cls(**data)` after checking every key and value against `cls`'s fields; nested dataclasses from mappings."""
    if not isinstance(data, dict):
        raise error(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    check_keys(data, fields, prefix, error)
    missing = [
        name
        for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise error(f"missing key(s) {[prefix + m for m in missing]}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        hint = hints[key]
        section = _dataclass_in(hint)
        if section is not None and isinstance(value, dict):
            values[key] = build(section, value, f"{prefix}{key}.", error=error)
        else:
            values[key] = coerce(f"{prefix}{key}", value, hint, error)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        if isinstance(e, UserError):
            raise error(str(e)) from None
        raise error(f"{prefix.rstrip('.') or cls.__name__}: {e}") from None


def check_keys(data: dict[str, Any], names, prefix: str = "", error: type[ConfigError] = ConfigError) -> None:
    """The unknown-key check: every unknown key with its close matches."""
    unknown = [k for k in data if k not in names]
    if not unknown:
        return
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(k, list(names), n=3)
        hints.append(f"{prefix}{k}" + (f" (did you mean {', '.join(prefix + c for c in close)}?)" if close else ""))
    shown = sorted(names) if len(names) <= 60 else "see `--help` or the docs"
    raise error(f"unknown key(s): {'; '.join(hints)}. Known keys: {shown}")


def _dataclass_in(hint: Any) -> type | None:
    for t in (hint, *typing.get_args(hint)):
        if isinstance(t, type) and dataclasses.is_dataclass(t):
            return t
    return None


def coerce(key: str, value: Any, hint: Any, error: type[ConfigError] = ConfigError) -> Any:
    """Numbers written as strings (`1e-5`) become numbers, a number for a text field becomes text; a value of the
    wrong kind is an error naming the key."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    allowed = set(typing.get_args(hint)) if union else {hint}
    if value is None and type(None) in allowed:
        return value
    for t in (int, float):
        if t in allowed and not isinstance(value, bool):
            if isinstance(value, int) and t is float:
                return float(value)
            if isinstance(value, str):
                try:
                    return t(value)
                except ValueError:
                    continue
            if isinstance(value, t):
                return value
            raise error(f"{key}: expected a number, got {value!r}")
    if allowed & {int, float} and not isinstance(value, (int, float)) and str not in allowed:
        raise error(f"{key}: expected a number, got {value!r}")
    if bool in allowed and not isinstance(value, bool):
        if str not in allowed:
            raise error(f"{key}: expected true or false, got {value!r}")
    if (
        str in allowed
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not allowed & {int, float, bool}
    ):
        return str(value)  # e.g. `--run_name 7`
    return value
