"""Dotted, typed overrides of a frozen config: `stage=pretrain`, `stage.lr=2e-4`, `seed=1`.

A key naming a nested config with a preset table (`stage`) picks a preset; every other key sets
one field, parsed with the field's annotation. Unknown keys and unparsable values are errors
that name the key. Presets are applied before dotted keys, so `--stage.lr` refines the preset
chosen by `--stage` whatever their order on the command line.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from llava15.train.config import STAGES, TrainConfig

PRESETS = {"stage": STAGES}


def field_types(cls, prefix: str = "") -> dict[str, object]:
    """Every settable dotted key of a config class -> its annotation (nested configs included)."""
    out: dict[str, object] = {}
    for name, kind in typing.get_type_hints(cls).items():
        key = prefix + name
        if dataclasses.is_dataclass(kind):
            out.update(field_types(kind, key + "."))
        else:
            out[key] = kind
    return out


def parse_value(key: str, text: str, kind) -> object:
    """Parse `text` as the annotation `kind` (int, float, str, bool, tuple[str, ...], X | None)."""
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if text.lower() in ("none", "null"):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return parse_value(key, text, inner)
    if typing.get_origin(kind) is tuple:
        return tuple(parse_value(key, part, args[0]) for part in text.split(",") if part)
    if kind is bool:
        if text not in ("true", "false"):
            raise ValueError(f"--{key}: booleans are 'true' or 'false', got {text!r}")
        return text == "true"
    if kind in (int, float, str):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"--{key}: expected {kind.__name__}, got {text!r}") from None
    raise TypeError(f"--{key}: unsupported field type {kind!r}")


def _set(config, path: list[str], value):
    if len(path) == 1:
        return dataclasses.replace(config, **{path[0]: value})
    child = getattr(config, path[0])
    return dataclasses.replace(config, **{path[0]: _set(child, path[1:], value)})


def apply_overrides(config: TrainConfig, overrides: dict[str, str]) -> TrainConfig:
    """Return `config` with `overrides` ({dotted key: text}) applied: presets first."""
    known = field_types(type(config))
    for key, text in overrides.items():
        if key in PRESETS:
            if text not in PRESETS[key]:
                raise ValueError(f"--{key}: unknown preset {text!r}; choose from {sorted(PRESETS[key])}")
            config = dataclasses.replace(config, **{key: PRESETS[key][text]})
        elif key not in known:
            raise ValueError(f"unknown config key --{key}")
    for key, text in overrides.items():
        if key not in PRESETS:
            config = _set(config, key.split("."), parse_value(key, text, known[key]))
    return config
