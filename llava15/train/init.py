"""Where the model to train comes from (docs/official-behaviour.md, 'Hyperparameters' and 'What trains in each stage').

* `--llm DIR --vision-tower DIR` (official stage 1, and stage 2 with `--pretrain-mm-mlp-adapter`):
  an ordinary `LlamaForCausalLM` directory (config.json, safetensors or .bin, tokenizer) and a
  CLIP directory (`CLIPVisionModel` or `CLIPModel`, with `preprocessor_config.json`), joined by a
  freshly initialised projector, as the official `build_vision_projector` does.
* `--model DIR`: a LLaVA checkpoint in any layout `llava15.checkpoint.load_llava` reads
  (official `finetune_task.sh` starts from `liuhaotian/llava-v1.5-13b`).
* `--pretrain-mm-mlp-adapter FILE`: a stage-1 projector, the official `mm_projector.bin`
  (keys `model.mm_projector.{0,2}.*`) or our `projector.safetensors` (`multi_modal_projector.*`).

How images are shaped is the run's choice, as officially (`with_image_layout`): the stage's
`image_aspect_ratio` and, for AnyRes / HD, `image_grid_pinpoints` and `mm_patch_merge_type`
replace the model's; an `unpad` merge gets a fresh `image_newline` where the model has none
(the official `initialize_vision_modules` initialisation), and loses it otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from llava15.checkpoint import load_llava
from llava15.checkpoint.configs import read_json, text_config_from, vision_config_from
from llava15.config import IMAGE_TOKEN_INDEX, LlavaConfig
from llava15.data.anyres import parse_pinpoints
from llava15.data.image import ImageProcessorConfig
from llava15.model.llava import Llava
from llava15.train.config import TrainConfig

log = logging.getLogger("llava15.train")

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
    llava_config = with_image_layout(llava_config, config)
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
    layout = with_image_layout(initial.config, config)
    if initial.config.image_aspect_ratio == "anyres" and layout.image_aspect_ratio != "anyres":
        log.warning("the model is AnyRes but stage.image_aspect_ratio=%s trains it on one view per "
                    "image (pass --image_aspect_ratio anyres to keep its grids)", layout.image_aspect_ratio)
    if layout != initial.config:
        match_image_newline(initial.model, layout, config.seed)
        initial.config = initial.model.config = layout
    return initial


def with_image_layout(model_config: LlavaConfig, config: TrainConfig) -> LlavaConfig:
    """`model_config` shaping images as the run says: the stage's `image_aspect_ratio` (official:
    square in pretrain, pad in finetune) and the AnyRes pinpoints and merge type when given.
    Raises ValueError for an AnyRes layout the model cannot merge."""
    changes: dict = {"image_aspect_ratio": config.stage.image_aspect_ratio}
    if config.image_grid_pinpoints is not None:
        try:
            changes["image_grid_pinpoints"] = tuple(parse_pinpoints(config.image_grid_pinpoints))
        except (ValueError, SyntaxError, TypeError) as e:
            raise ValueError(f"image_grid_pinpoints={config.image_grid_pinpoints!r} is not a list of "
                             f"(width, height) pairs such as '[(672,336),(336,672)]': {e}") from None
    if config.mm_patch_merge_type is not None:
        changes["mm_patch_merge_type"] = config.mm_patch_merge_type
    layout = model_config.replace(**changes)
    if layout.image_aspect_ratio == "anyres":
        tile = layout.vision.image_size
        if not layout.image_grid_pinpoints:
            raise ValueError("image_aspect_ratio=anyres needs image_grid_pinpoints, e.g. "
                             f"--image_grid_pinpoints='[({2 * tile},{tile}),({tile},{2 * tile}),({2 * tile},{2 * tile})]'")
        if uneven := [p for p in layout.image_grid_pinpoints if p[0] % tile or p[1] % tile or min(p) <= 0]:
            raise ValueError(f"image_grid_pinpoints {uneven} are not grids of the vision tower's "
                             f"{tile}x{tile} tiles (each width and height a positive multiple of {tile})")
    return layout


def match_image_newline(model: Llava, layout: LlavaConfig, seed: int) -> None:
    """Give `model` the `image_newline` an `unpad` merge needs (randn(D) / sqrt(D), as the
    official `initialize_vision_modules`; seeded), or drop one that another merge never reads."""
    had, needs = "unpad" in model.config.mm_patch_merge_type, "unpad" in layout.mm_patch_merge_type
    if needs and not had:
        hidden = layout.text.hidden_size
        weight = model.language_model.model.embed_tokens.weight
        newline = torch.randn(hidden, generator=torch.Generator().manual_seed(seed)) / hidden ** 0.5
        model.image_newline = torch.nn.Parameter(newline.to(weight.dtype).to(weight.device))
    elif had and not needs:
        del model.image_newline
