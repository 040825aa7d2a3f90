"""What a stage leaves behind (docs/official-behaviour.md, 'Checkpoint saving').

`pretrain`: the projector alone, as `projector.safetensors` (our names) and the official
`mm_projector.bin` (keys `model.mm_projector.{0,2}.{weight,bias}`), with a `config.json` that
names how it was trained (`tune_mm_mlp_adapter`, `image_aspect_ratio: square`, and for AnyRes the
pinpoints and merge type). An `unpad` model's trained `image_newline` goes with it (`model.
image_newline`, its name in official full checkpoints), so the directory loads as a
projector-only checkpoint; a stage-2 `--pretrain-mm-mlp-adapter` reads the projector keys only
(the official `get_w(..., 'mm_projector')`), so stage 2 starts a fresh newline, as officially.
`finetune`: the full model in the llava-hf layout (`llava15.checkpoint.save_llava_hf`), loadable
by `llava15 predict` and by `transformers`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from llava15.checkpoint import save_llava_hf
from llava15.checkpoint.layouts import official_projector_name
from llava15.config import LlavaConfig
from llava15.data.image import ImageProcessorConfig
from llava15.model.llava import Llava

PROJECTOR = "multi_modal_projector."
NEWLINE = "image_newline"


def export_projector(out_dir: Path, state: dict[str, torch.Tensor], config: LlavaConfig) -> None:
    projector = {k: v.detach().cpu().contiguous() for k, v in state.items() if k.startswith(PROJECTOR)}
    if not projector:
        raise ValueError("no projector weights to export")
    official = {official_projector_name(k, config.mm_projector_type): v for k, v in projector.items()}
    if NEWLINE in state:
        projector[NEWLINE] = official[f"model.{NEWLINE}"] = state[NEWLINE].detach().cpu().contiguous()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(projector, str(out_dir / "projector.safetensors"), metadata={"format": "pt"})
    torch.save(official, out_dir / "mm_projector.bin")
    keys = {
        "mm_projector_type": config.mm_projector_type, "mm_hidden_size": config.vision.hidden_size,
        "hidden_size": config.text.hidden_size, "mm_vision_select_layer": config.mm_vision_select_layer,
        "mm_vision_select_feature": config.mm_vision_select_feature,
        "image_aspect_ratio": config.image_aspect_ratio, "mm_patch_merge_type": config.mm_patch_merge_type,
        "tune_mm_mlp_adapter": True, "mm_use_im_start_end": False, "mm_use_im_patch_token": False}
    if config.image_grid_pinpoints:
        keys["image_grid_pinpoints"] = [list(p) for p in config.image_grid_pinpoints]
    (out_dir / "config.json").write_text(json.dumps(keys, indent=2) + "\n")


def export_model(out_dir: Path, model: Llava, config: LlavaConfig, tokenizer_dir: Path,
                 image_config: ImageProcessorConfig) -> None:
    save_llava_hf(model, config, tokenizer_dir, image_config, out_dir)
