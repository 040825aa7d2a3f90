"""`config.json` <-> `LlavaConfig` for official LLaVA (`LlavaLlamaForCausalLM`), llava-hf
(`LlavaForConditionalGeneration`, and `LlavaNextForConditionalGeneration` through `llava_next`),
plain `LlamaForCausalLM` and CLIP directories.

Missing keys take the defaults of the class that wrote the file (`LlamaConfig`, `CLIPVisionConfig`,
transformers' `LlavaConfig`, the official `getattr` defaults), because Hugging Face configs store
only what differs from those. Keys our model cannot honour raise an error naming the file and key.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llava15.checkpoint.llava_next import LLAVA_NEXT, llava_next_fields
from llava15.config import LlavaConfig, TextConfig, VisionConfig

# transformers' LlamaConfig defaults (what a missing key means in a llama config.json)
LLAMA_DEFAULTS = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, max_position_embeddings=2048, rms_norm_eps=1e-6,
                      rope_theta=10000.0, attention_bias=False, tie_word_embeddings=False,
                      hidden_act="silu", bos_token_id=1, eos_token_id=2, pad_token_id=None)
# CLIPVisionConfig defaults, and transformers' LlavaConfig default tower (ViT-L/14 at 336 px)
CLIP_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     image_size=224, patch_size=32, num_channels=3, layer_norm_eps=1e-5,
                     hidden_act="quick_gelu")
HF_LLAVA_VISION = dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096,
                       num_hidden_layers=24, num_attention_heads=16, image_size=336, patch_size=14,
                       projection_dim=768)
HF_SELECT = {"default": "patch", "full": "cls_patch"}  # vision_feature_select_strategy
HF_LLAVA = "LlavaForConditionalGeneration"
HF_ARCHITECTURES = {"llava": HF_LLAVA, "llava_next": LLAVA_NEXT}  # model_type -> class


@dataclass(frozen=True)
class ConfigInfo:
    """Where a config came from: `format` is "official" or "llava-hf"; `vision_tower_dir` is the
    CLIP directory an official config points to; `architecture` the transformers class a llava-hf
    config names; `notes` are things worth telling the user."""

    format: str
    path: Path
    vision_tower_dir: Path | None = None
    notes: tuple[str, ...] = ()
    architecture: str | None = None


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def is_llava_hf(config: dict[str, Any]) -> bool:
    return "text_config" in config or "vision_config" in config or \
        bool(set(config.get("architectures") or []) & set(HF_ARCHITECTURES.values()))


def text_config_from(d: dict[str, Any], source: str) -> TextConfig:
    """A llama `config.json` dict -> TextConfig (missing keys: LlamaConfig defaults)."""
    if d.get("model_type", "llama") != "llama":
        raise ValueError(f"{source}: language model type {d['model_type']!r} is not supported (llama only)")
    for key in ("rope_scaling", "mlp_bias"):
        if d.get(key):
            raise ValueError(f"{source}: key {key!r}={d[key]!r} is not supported by our decoder")
    v = {**LLAMA_DEFAULTS, **{k: d[k] for k in LLAMA_DEFAULTS if k in d}}
    heads = v["num_attention_heads"]
    head_dim = d.get("head_dim")
    eos = v["eos_token_id"]
    return TextConfig(
        vocab_size=v["vocab_size"], hidden_size=v["hidden_size"], intermediate_size=v["intermediate_size"],
        num_hidden_layers=v["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=d.get("num_key_value_heads") or heads,
        head_dim_override=head_dim if head_dim and head_dim != v["hidden_size"] // heads else None,
        max_position_embeddings=v["max_position_embeddings"], rms_norm_eps=v["rms_norm_eps"],
        rope_theta=float(v["rope_theta"]), attention_bias=bool(v["attention_bias"]),
        tie_word_embeddings=bool(v["tie_word_embeddings"]), hidden_act=v["hidden_act"],
        bos_token_id=v["bos_token_id"], eos_token_id=eos[0] if isinstance(eos, list) else eos,
        pad_token_id=v["pad_token_id"])


def vision_config_from(d: dict[str, Any], source: str) -> VisionConfig:
    """A CLIPVisionConfig dict (or a CLIPModel config with `vision_config`) -> VisionConfig."""
    if d.get("model_type") == "clip":
        d = d.get("vision_config") or {}
    if d.get("model_type", "clip_vision_model") != "clip_vision_model":
        raise ValueError(f"{source}: vision model type {d['model_type']!r} is not supported (CLIP only)")
    v = {**CLIP_DEFAULTS, **{k: d[k] for k in CLIP_DEFAULTS if k in d}}
    return VisionConfig(**v)


def vision_config_to_dict(vision: VisionConfig) -> dict[str, Any]:
    if not vision.use_cls_token:
        raise ValueError("only CLIP towers (with a class token) can be written as a llava-hf vision_config")
    return {"model_type": "clip_vision_model", "hidden_size": vision.hidden_size,
            "intermediate_size": vision.intermediate_size, "num_hidden_layers": vision.num_hidden_layers,
            "num_attention_heads": vision.num_attention_heads, "image_size": vision.image_size,
            "patch_size": vision.patch_size, "num_channels": vision.num_channels,
            "layer_norm_eps": vision.layer_norm_eps, "hidden_act": vision.hidden_act,
            "projection_dim": 768}


def text_config_to_dict(text: TextConfig, vocab_size: int, pad_token_id: int | None) -> dict[str, Any]:
    if text.qkv_bias:
        raise ValueError("a q/k/v-only bias (Qwen2 style) has no llama config.json spelling")
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": vocab_size,
            "hidden_size": text.hidden_size, "intermediate_size": text.intermediate_size,
            "num_hidden_layers": text.num_hidden_layers, "num_attention_heads": text.num_attention_heads,
            "num_key_value_heads": text.num_key_value_heads, "head_dim": text.head_dim,
            "max_position_embeddings": text.max_position_embeddings, "rms_norm_eps": text.rms_norm_eps,
            "rope_theta": text.rope_theta, "rope_scaling": None, "attention_bias": text.attention_bias,
            "mlp_bias": False, "tie_word_embeddings": text.tie_word_embeddings, "hidden_act": text.hidden_act,
            "bos_token_id": text.bos_token_id, "eos_token_id": text.eos_token_id,
            "pad_token_id": pad_token_id, "torch_dtype": "float32"}


def resolve_vision_tower(name: str, checkpoint_dir: Path, source: str) -> Path:
    """A local CLIP directory for `mm_vision_tower`: as given (absolute, or relative to the current
    directory as the official code resolves it), else relative to the checkpoint directory.
    Nothing is downloaded: a hub id is an error that says how to pass a local directory."""
    candidates = [Path(name)] if os.path.isabs(name) else [Path(name), checkpoint_dir / name]
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"{source}: vision tower {name!r} is not a local CLIP directory (tried "
        f"{', '.join(str(c) for c in candidates)}). Nothing is downloaded: pass a local copy with "
        f"vision_tower=DIR (command line: --vision-tower DIR)")


def official_mm_fields(d: dict[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """The `mm_*` keys of an official config -> LlavaConfig fields, with the official defaults."""
    notes = []
    if d.get("mm_use_im_start_end"):
        raise ValueError(f"{source}: mm_use_im_start_end=true (<im_start>/<im_end> around images) is "
                         "not supported; LLaVA-1.5 never uses it")
    if d.get("mm_use_im_patch_token", True):  # the official builder's default is True
        notes.append(f"{source}: mm_use_im_patch_token is true or missing: the official builder then adds "
                     "an untrained <im_patch> row that no LLaVA-1.5 prompt uses; it is not added here")
    if "mm_vision_select_layer" not in d:
        raise ValueError(f"{source}: key 'mm_vision_select_layer' is missing (the official code requires it)")
    pinpoints = d.get("image_grid_pinpoints") or ()
    if isinstance(pinpoints, str):
        raise ValueError(f"{source}: image_grid_pinpoints as a string ({pinpoints!r}) is not supported")
    fields = dict(
        mm_projector_type=d.get("mm_projector_type", "linear"),  # build_vision_projector's default
        mm_vision_select_layer=int(d["mm_vision_select_layer"]),
        mm_vision_select_feature=d.get("mm_vision_select_feature", "patch"),
        # no key: process_images calls the CLIP processor directly, i.e. resize + center crop
        image_aspect_ratio=d.get("image_aspect_ratio") or "square",
        image_grid_pinpoints=tuple(tuple(p) for p in pinpoints),
        mm_patch_merge_type=d.get("mm_patch_merge_type", "flat"),
        max_sequence_length=d.get("max_sequence_length", 2048),  # the builder's context_len
    )
    if d.get("tokenizer_padding_side", "right") != "right":
        notes.append(f"{source}: tokenizer_padding_side={d['tokenizer_padding_side']!r} (training-time only)")
    return fields, notes


def read_llava_config(directory: str | Path, vision_tower: str | Path | None = None,
                      model_base: str | Path | None = None) -> tuple[LlavaConfig, ConfigInfo]:
    """`directory/config.json` -> (LlavaConfig, ConfigInfo), for official and llava-hf configs.

    Official configs take the vision config from the local CLIP directory named by
    `mm_vision_tower` (or the `vision_tower` override; a `CLIPVisionModel` or a full `CLIPModel`
    directory). With `model_base` (projector-only and LoRA checkpoints), language-model keys the
    directory's config lacks come from `model_base/config.json`; keys present in both must agree.
    Raises FileNotFoundError / ValueError naming the file and key.
    """
    directory = Path(directory)
    path = directory / "config.json"
    d = read_json(path)
    if is_llava_hf(d):
        return _read_hf(d, path, directory)
    if model_base is not None:
        d = _with_base_text_keys(d, path, Path(model_base) / "config.json")
    if d.get("model_type") not in ("llava", "llava_llama"):
        raise ValueError(f"{path}: model_type {d.get('model_type')!r} is not an official LLaVA config "
                         "('llava' or 'llava_llama') nor a llava-hf one (with text_config)")
    tower_name = str(vision_tower) if vision_tower is not None else d.get("mm_vision_tower", d.get("vision_tower"))
    if not tower_name:
        raise ValueError(f"{path}: no 'mm_vision_tower' key: pass the CLIP directory with vision_tower=DIR "
                         "(command line: --vision-tower DIR)")
    tower_dir = resolve_vision_tower(tower_name, directory, str(path))
    vision = vision_config_from(read_json(tower_dir / "config.json"), str(tower_dir / "config.json"))
    mm_hidden = d.get("mm_hidden_size", vision.hidden_size)
    if mm_hidden != vision.hidden_size:
        raise ValueError(f"{path}: mm_hidden_size {mm_hidden} does not match the hidden size "
                         f"{vision.hidden_size} of the vision tower {tower_dir}")
    mm, notes = official_mm_fields(d, str(path))
    config = LlavaConfig(vision=vision, text=text_config_from({**d, "model_type": "llama"}, str(path)), **mm)
    return config, ConfigInfo("official", path, tower_dir, tuple(notes))


_TEXT_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "attention_bias", "tie_word_embeddings")


def _with_base_text_keys(d: dict[str, Any], path: Path, base_path: Path) -> dict[str, Any]:
    base = read_json(base_path)
    for key in _TEXT_KEYS:
        if key in d and key in base and d[key] != base[key]:
            raise ValueError(f"{path}: {key}={d[key]!r} but the base model {base_path} has {base[key]!r}")
    merged = {k: v for k, v in base.items() if k not in ("model_type", "architectures")}
    merged.update(d)
    merged.setdefault("model_type", "llava_llama")  # our own projector exports name no model type
    return merged


def _read_hf(d: dict[str, Any], path: Path, directory: Path) -> tuple[LlavaConfig, ConfigInfo]:
    arch = d.get("architectures") or [HF_ARCHITECTURES.get(d.get("model_type"), HF_LLAVA)]
    if len(arch) != 1 or arch[0] not in HF_ARCHITECTURES.values():
        raise ValueError(f"{path}: key 'architectures' is {arch}: not supported "
                         f"({' or '.join(HF_ARCHITECTURES.values())} only)")
    if d.get("projector_hidden_act", "gelu") != "gelu":
        raise ValueError(f"{path}: projector_hidden_act {d['projector_hidden_act']!r} is not supported (gelu)")
    if not d.get("multimodal_projector_bias", True):
        raise ValueError(f"{path}: multimodal_projector_bias=false is not supported")
    layer = d.get("vision_feature_layer", -2)
    if not isinstance(layer, int):
        raise ValueError(f"{path}: vision_feature_layer {layer!r} (several layers) is not supported")
    strategy = d.get("vision_feature_select_strategy", "default")
    if strategy not in HF_SELECT:
        raise ValueError(f"{path}: vision_feature_select_strategy {strategy!r} must be 'default' or 'full'")
    vision = vision_config_from(d.get("vision_config") or HF_LLAVA_VISION, f"{path} vision_config")
    text = text_config_from(d.get("text_config") or {}, f"{path} text_config")
    image_token = d.get("image_token_index", d.get("image_token_id", 32000))
    notes = []
    if arch[0] == LLAVA_NEXT:
        images = llava_next_fields(d, str(path), vision.image_size)
    else:  # our own anyres keys, as `llava_hf_config_dict` writes them
        if "image_aspect_ratio" not in d:
            notes.append(f"{path}: no image_aspect_ratio: using 'pad' as LLaVA-1.5 was trained and "
                         "evaluated (transformers' CLIPImageProcessor would center-crop instead)")
        images = dict(image_aspect_ratio=d.get("image_aspect_ratio", "pad"),
                      image_grid_pinpoints=tuple(tuple(p) for p in d.get("image_grid_pinpoints") or ()),
                      mm_patch_merge_type=d.get("mm_patch_merge_type", "flat"),
                      unpad_round_digits=d.get("unpad_round_digits"))
    config = LlavaConfig(
        vision=vision, text=text, mm_projector_type=d.get("mm_projector_type", "mlp2x_gelu"),
        mm_vision_select_layer=layer, mm_vision_select_feature=HF_SELECT[strategy],
        image_token_index=image_token, max_sequence_length=d.get("max_sequence_length", 2048), **images)
    return config, ConfigInfo("llava-hf", path, None, tuple(notes), arch[0])


def llava_hf_config_dict(config: LlavaConfig, vocab_size: int, image_token_index: int,
                         pad_token_id: int | None) -> dict[str, Any]:
    """The llava-hf `config.json` for `config`, which transformers' `LlavaConfig` reads.

    Our extra keys (`image_aspect_ratio`, `mm_projector_type`, `mm_patch_merge_type`,
    `image_grid_pinpoints` as (width, height), `unpad_round_digits`, `max_sequence_length`) are
    kept by transformers as plain attributes and read back by `read_llava_config`.
    """
    strategy = {v: k for k, v in HF_SELECT.items()}[config.mm_vision_select_feature]
    d: dict[str, Any] = {
        "architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
        "vision_config": vision_config_to_dict(config.vision),
        "text_config": text_config_to_dict(config.text, vocab_size, pad_token_id),
        "image_token_index": image_token_index, "pad_token_id": pad_token_id,
        "projector_hidden_act": "gelu", "multimodal_projector_bias": True,
        "vision_feature_layer": config.mm_vision_select_layer, "vision_feature_select_strategy": strategy,
        "image_seq_length": config.num_image_tokens, "tie_word_embeddings": config.text.tie_word_embeddings,
        "torch_dtype": "float32",
        "image_aspect_ratio": config.image_aspect_ratio, "mm_projector_type": config.mm_projector_type,
        "mm_patch_merge_type": config.mm_patch_merge_type, "max_sequence_length": config.max_sequence_length,
    }
    if config.image_grid_pinpoints:
        d["image_grid_pinpoints"] = [list(p) for p in config.image_grid_pinpoints]
    if config.unpad_round_digits is not None:
        d["unpad_round_digits"] = config.unpad_round_digits
    return d
