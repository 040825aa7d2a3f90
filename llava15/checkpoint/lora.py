"""Official LoRA checkpoints, merged on load without peft (docs/official-behaviour.md, 'Checkpoint
saving' and 'How the official loader picks a layout').

Files: `adapter_config.json` (peft LoraConfig), `adapter_model.safetensors` or `adapter_model.bin`
(keys `base_model.model.<module>.lora_A.weight` / `lora_B.weight`, peft having dropped the adapter
name), and `non_lora_trainables.bin` (the projector, keys `base_model.model.model.mm_projector.*`).
The merge is peft's `merge_and_unload` for a Linear: W += scaling * B @ A with scaling = alpha / r
(alpha / sqrt(r) with `use_rslora`), computed in float32.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from llava15.checkpoint.files import WeightFile, open_weight_file
from llava15.checkpoint.layouts import OFFICIAL, rename

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_LORA_KEY = re.compile(r"^base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight$")


@dataclass(frozen=True)
class LoraFactor:
    """One adapted Linear: our weight name, where its A (r, in) and B (out, r) live, the scaling."""

    target: str
    a_key: str
    b_key: str
    scaling: float


def is_lora_dir(directory: Path) -> bool:
    return (directory / "adapter_config.json").is_file()


def read_adapter_config(directory: Path) -> dict:
    """`adapter_config.json`, checked for what a plain W += s * B @ A merge can honour."""
    path = directory / "adapter_config.json"
    config = json.loads(path.read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{path}: peft_type {config['peft_type']!r} is not LORA")
    if config.get("fan_in_fan_out") or config.get("use_dora"):
        raise ValueError(f"{path}: fan_in_fan_out / use_dora adapters are not supported")
    if config.get("bias", "none") != "none":
        raise ValueError(f"{path}: bias={config['bias']!r} is not supported (only 'none', as officially)")
    for key in ("modules_to_save", "alpha_pattern", "rank_pattern", "layers_to_transform"):
        if config.get(key):
            raise ValueError(f"{path}: {key}={config[key]!r} is not supported")
    for key in ("r", "lora_alpha"):
        if not isinstance(config.get(key), (int, float)) or config[key] <= 0:
            raise ValueError(f"{path}: key {key!r} must be a positive number, got {config.get(key)!r}")
    return config


def open_adapter(directory: Path) -> WeightFile:
    for name in ADAPTER_FILES:
        if (directory / name).is_file():
            return open_weight_file(directory / name)
    raise FileNotFoundError(f"{directory}: LoRA adapter weights not found (looked for {', '.join(ADAPTER_FILES)})")


def lora_factors(adapter: WeightFile, config: dict) -> list[LoraFactor]:
    """Pair every lora_A with its lora_B and name the weight they adapt (in our names).

    Raises ValueError naming the file and key for a key that is not a LoRA factor, a factor
    without its partner, or a rank that differs from the config's `r`.
    """
    pairs: dict[str, dict[str, str]] = {}
    for key in adapter.infos:
        match = _LORA_KEY.match(key)
        if match is None:
            raise ValueError(f"{adapter.path}: key {key!r} is not a LoRA factor of a Linear "
                             "(expected base_model.model.<module>.lora_A/lora_B.weight)")
        pairs.setdefault(match.group(1), {})[match.group(2)] = key
    r = int(config["r"])
    scaling = config["lora_alpha"] / (math.sqrt(r) if config.get("use_rslora") else r)
    factors = []
    for module, keys in sorted(pairs.items()):
        if set(keys) != {"A", "B"}:
            raise ValueError(f"{adapter.path}: {module} has lora_{''.join(keys)} but not its partner")
        a, b = adapter.infos[keys["A"]].shape, adapter.infos[keys["B"]].shape
        if len(a) != 2 or len(b) != 2 or a[0] != r or b[1] != r:
            raise ValueError(f"{adapter.path}: {module}: lora_A {list(a)} / lora_B {list(b)} do not have rank r={r}")
        try:
            target = rename(module + ".weight", OFFICIAL)
        except KeyError:
            target = None
        if target is None:
            raise ValueError(f"{adapter.path}: {module} is not a weight of the model")
        factors.append(LoraFactor(target, keys["A"], keys["B"], scaling))
    return factors


def merge_lora(params: dict[str, torch.Tensor], adapter: WeightFile, factors: list[LoraFactor]) -> None:
    """W += scaling * B @ A in place, in float32, for every factor (shapes checked, errors name the key)."""
    for factor in factors:
        if factor.target not in params:
            raise ValueError(f"{adapter.path}: {factor.a_key} adapts {factor.target}, which the model lacks")
        weight = params[factor.target]
        a, b = adapter.read(factor.a_key).float(), adapter.read(factor.b_key).float()
        if (b.shape[0], a.shape[1]) != tuple(weight.shape):
            raise ValueError(f"{adapter.path}: {factor.a_key}: B @ A is {[b.shape[0], a.shape[1]]} but "
                             f"{factor.target} is {list(weight.shape)}")
        merged = weight.float() + factor.scaling * (b @ a)
        weight.copy_(merged)


def non_lora_names(keys: list[str]) -> dict[str, str]:
    """The official builder's prefix stripping for `non_lora_trainables.bin`: drop `base_model.`,
    then one `model.` if keys then start with `model.model.`; this leaves official
    `LlavaLlamaForCausalLM` names. Returns {stored key: official name}."""
    stripped = {k: k[len("base_model."):] if k.startswith("base_model.") else k for k in keys}
    if any(v.startswith("model.model.") for v in stripped.values()):
        stripped = {k: v[len("model."):] if v.startswith("model.") else v for k, v in stripped.items()}
    return stripped
