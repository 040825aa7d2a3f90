"""Where the model to train comes from (spec §5.1-5.2).

* `--llm DIR --vision-tower DIR` (official stage 1, and stage 2 with `--pretrain-mm-mlp-adapter`):
  an ordinary `LlamaForCausalLM` directory (config.json, safetensors or .bin, tokenizer) and a
  CLIP directory (`CLIPVisionModel` or `CLIPModel`, with `preprocessor_config.json`), joined by a
  freshly initialised projector, as the official `build_vision_projector` does.
* `--model DIR`: a LLaVA checkpoint in any layout `llava15.checkpoint.load_llava` reads
  (official `finetune_task.sh` starts from `liuhaotian/llava-v1.5-13b`).
* `--pretrain-mm-mlp-adapter FILE`: a stage-1 projector, the official `mm_projector.bin`
  (keys `model.mm_projector.{0,2}.*`) or our `projector.safetensors` (`multi_modal_projector.*`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from llava15.checkpoint import load_llava
from llava15.checkpoint.configs import read_json, text_config_from, vision_config_from
from llava15.config import IMAGE_TOKEN_INDEX, LlavaConfig
from llava15.data.image import ImageProcessorConfig
from llava15.model.llava import Llava
from llava15.train.config import TrainConfig

# CLIPModel keys that a vision-only LLaVA tower does not have
_CLIP_EXTRA = ("text_model.", "visual_projection.", "text_projection.", "logit_scale")


@dataclass
class Initial:
    model: Llava
    config: LlavaConfig
    tokenizer_dir: Path
    image_config: ImageProcessorConfig


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a HF model directory: (sharded) safetensors, else (sharded) .bin."""
    files = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(f"{directory}: no *.safetensors or pytorch_model*.bin weights")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(str(f)) if f.suffix == ".safetensors" else torch.load(f, weights_only=True))
    return out


def load_into(model: Llava, prefix: str, weights: dict[str, torch.Tensor], where: Path,
              ignore: tuple[str, ...] = ()) -> None:
    """Copy `weights` into the parameters under `prefix`; every one must be present, nothing unknown."""
    own = {k[len(prefix):]: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    weights = {k: v for k, v in weights.items() if not k.startswith(ignore) and not k.endswith("position_ids")}
    missing, unknown = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    if missing or unknown:
        raise ValueError(f"{where}: weights do not fit ({len(missing)} missing, e.g. {missing[:3]}; "
                         f"{len(unknown)} unknown, e.g. {unknown[:3]})")
    with torch.no_grad():
        for k, target in own.items():
            if weights[k].shape != target.shape:
                raise ValueError(f"{where}: {k} has shape {tuple(weights[k].shape)}, expected {tuple(target.shape)}")
            target.copy_(weights[k])


def build_from_backbones(config: TrainConfig) -> Initial:
    llm_dir, clip_dir = Path(config.llm), Path(config.vision_tower)
    text = text_config_from(read_json(llm_dir / "config.json"), str(llm_dir))
    vision = vision_config_from(read_json(clip_dir / "config.json"), str(clip_dir))
    image_config = ImageProcessorConfig.from_file(clip_dir / "preprocessor_config.json")
    llava_config = LlavaConfig(vision=vision, text=text, mm_projector_type=config.mm_projector_type,
                               mm_vision_select_layer=config.mm_vision_select_layer,
                               image_aspect_ratio=config.stage.image_aspect_ratio,
                               image_token_index=IMAGE_TOKEN_INDEX,
                               image_mean=tuple(image_config.image_mean), image_std=tuple(image_config.image_std),
                               max_sequence_length=config.data.model_max_length)
    torch.manual_seed(config.seed)  # the fresh projector's initialisation is part of the recipe
    model = Llava(llava_config)
    tied = ("lm_head.",) if text.tie_word_embeddings else ()
    load_into(model, "language_model.", read_weights(llm_dir), llm_dir, ignore=tied)
    load_into(model, "vision_tower.", read_weights(clip_dir), clip_dir, ignore=_CLIP_EXTRA)
    return Initial(model, llava_config, llm_dir, image_config)


def load_projector_file(model: Llava, path: Path) -> None:
    """A stage-1 projector: official `mm_projector.bin` keys are cut after `mm_projector.` (the
    official `get_w`) and Sequential index 2k maps to `linear_{k+1}`."""
    raw = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, weights_only=True)
    weights = {}
    for key, value in raw.items():
        if "mm_projector." in key:
            rest = key.split("mm_projector.", 1)[1]
            if "." not in rest:  # the `linear` type is a bare nn.Linear: mm_projector.weight
                weights[f"linear_1.{rest}"] = value
                continue
            index, leaf = rest.split(".", 1)
            weights[f"linear_{int(index) // 2 + 1}.{leaf}"] = value
        elif key.startswith("multi_modal_projector."):
            weights[key.removeprefix("multi_modal_projector.")] = value
    load_into(model, "multi_modal_projector.", weights, path)


def build_initial(config: TrainConfig) -> Initial:
    if config.model:
        loaded = load_llava(config.model)
        initial = Initial(loaded.model, loaded.config, Path(loaded.tokenizer_dir), loaded.image_processor)
    else:
        initial = build_from_backbones(config)
    if config.pretrain_mm_mlp_adapter:
        load_projector_file(initial.model, Path(config.pretrain_mm_mlp_adapter))
    if initial.config.image_aspect_ratio != config.stage.image_aspect_ratio:
        # the stage decides how images are shaped (official: square in pretrain, pad in finetune)
        initial.config = initial.config.replace(image_aspect_ratio=config.stage.image_aspect_ratio)
        initial.model.config = initial.config
    return initial
