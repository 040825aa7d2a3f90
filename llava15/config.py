"""Model configuration: frozen dataclasses, presets and the constants of the official code.

Layer 0: imports the standard library only. Field names follow the Hugging Face configs
(`CLIPVisionConfig`, `LlamaConfig`) and the official LLaVA `mm_*` keys, so reading and writing
`config.json` files is a matter of small key tables (see `checkpoint`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

IGNORE_INDEX = -100
IMAGE_TOKEN_INDEX = -200  # the official sentinel id; never embedded
DEFAULT_IMAGE_TOKEN = "<image>"
IMAGE_PLACEHOLDER = "<image-placeholder>"

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VisionConfig:
    """A CLIP ViT vision tower (defaults: ViT-L/14 at 336 px).

    `use_cls_token=False` gives a SigLIP-style tower: no class embedding, no pre-layernorm,
    and every position is a patch.
    """

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    image_size: int = 336
    patch_size: int = 14
    num_channels: int = 3
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    use_cls_token: bool = True

    @property
    def num_patches_per_side(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.num_patches_per_side**2

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass(frozen=True)
class TextConfig:
    """A LLaMA-family decoder (defaults: Vicuna-7B v1.5)."""

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    head_dim_override: int | None = None
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    attention_bias: bool = False  # LLaMA's switch: bias on q, k, v and o projections
    qkv_bias: bool = False  # Qwen2-style: bias on q, k, v only
    tie_word_embeddings: bool = False
    hidden_act: str = "silu"
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int | None = 0

    @property
    def head_dim(self) -> int:
        return self.head_dim_override or self.hidden_size // self.num_attention_heads


@dataclass(frozen=True)
class LlavaConfig:
    """LLaVA = vision tower + projector + language model, plus the official `mm_*` switches.

    `image_token_index` is the id that marks image-feature positions in `input_ids`: the
    official sentinel -200 for official checkpoints, the `<image>` token id (32000) for
    llava-hf checkpoints. The tokenizer side expands each image to `num_image_tokens` copies.
    """

    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    mm_projector_type: str = "mlp2x_gelu"
    mm_vision_select_layer: int = -2
    mm_vision_select_feature: str = "patch"  # "patch" drops CLS, "cls_patch" keeps it
    image_aspect_ratio: str = "pad"  # "pad" | "square" | "crop" (== square) | "anyres"
    image_grid_pinpoints: tuple[tuple[int, int], ...] = ()  # anyres grids as (width, height)
    mm_patch_merge_type: str = "flat"  # "flat" | "spatial" (1.5-HD) | "spatial_unpad" (AnyRes)
    # None: `spatial_unpad` truncates as the official `unpad_image`; 7: transformers' LlavaNext
    # `int(round(x, 7))` (llava-hf LLaVA-NeXT checkpoints; see checkpoint/llava_next.py)
    unpad_round_digits: int | None = None
    image_token_index: int = IMAGE_TOKEN_INDEX
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    conv_mode: str = "vicuna_v1"
    max_sequence_length: int = 2048  # the official builder's context_len default

    @property
    def num_image_tokens(self) -> int:
        """Tokens of one image view (576 for v1.5); AnyRes images have more (`anyres`)."""
        keep_cls = self.mm_vision_select_feature == "cls_patch" and self.vision.use_cls_token
        return self.vision.num_patches + int(keep_cls)

    def replace(self, **changes) -> "LlavaConfig":
        return dataclasses.replace(self, **changes)


def select_best_resolution(original_size: tuple[int, int],
                           pinpoints: "list[tuple[int, int]] | tuple[tuple[int, int], ...]") -> tuple[int, int]:
    """The AnyRes grid resolution (width, height) for an image of `original_size` (width, height):
    the pinpoint that keeps the most original pixels after a fit-inside downscale; ties go to the
    one wasting the least area, then to the earliest (official `select_best_resolution`).
    Pure arithmetic, here so that both the image side and the model side can use it."""
    width, height = original_size
    best, best_effective, best_waste = None, -1, float("inf")
    for w, h in pinpoints:
        scale = min(w / width, h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        waste = w * h - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_effective, best_waste = (w, h), effective, waste
    if best is None:
        raise ValueError("image_grid_pinpoints is empty")
    return best


def anyres_grid_shape(image_size: tuple[int, int], pinpoints, tile: int) -> tuple[int, int]:
    """(tiles across, tiles down) of the grid an image is cut into."""
    width, height = select_best_resolution(image_size, pinpoints)
    return width // tile, height // tile


def llava_v15_7b() -> LlavaConfig:
    return LlavaConfig()


def llava_v15_13b() -> LlavaConfig:
    text = TextConfig(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                      num_attention_heads=40, num_key_value_heads=40)
    return LlavaConfig(text=text)


def tiny() -> LlavaConfig:
    """A model small enough for unit tests on a CPU (about 0.3M parameters)."""
    vision = VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                          num_attention_heads=4, image_size=28, patch_size=7)
    text = TextConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlavaConfig(vision=vision, text=text)


PRESETS = {"llava-v1.5-7b": llava_v15_7b, "llava-v1.5-13b": llava_v15_13b, "tiny": tiny}
