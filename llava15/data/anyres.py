"""AnyRes / LLaVA-1.5-HD image tiling, as the official `llava/mm_utils.py` does it.

An image is letterboxed (black, centred) into the best grid resolution from
`image_grid_pinpoints`, cut into tiles at the tower's resolution (row-major), and preceded by a
global view: the original image squashed to the tower's resolution. Every view then goes through
the ordinary CLIP preprocessing (a no-op resize/crop at that size). LLaVA-1.5-HD is the special
case of one pinpoint (for example 2x2 tiles: `[[2*S, 2*S]]`) with `spatial` merging.
Sizes are (width, height), as PIL's `.size` and the official pinpoints are.
"""

from __future__ import annotations

import ast
import math

import torch
from PIL import Image

from llava15.config import select_best_resolution
from llava15.data.image import ImageProcessorConfig, preprocess

Size = tuple[int, int]  # (width, height)


def parse_pinpoints(pinpoints: str | list) -> list[Size]:
    """`[[336, 672], ...]` or its string form (as configs store it) -> [(w, h), ...]."""
    value = ast.literal_eval(pinpoints) if isinstance(pinpoints, str) else pinpoints
    sizes = [(int(w), int(h)) for w, h in value]
    if not sizes:
        raise ValueError("image_grid_pinpoints is empty")
    return sizes


def resize_and_pad_image(image: Image.Image, target: Size, resample: int | None = None) -> Image.Image:
    """Fit inside `target` keeping the aspect ratio (ceil, capped), paste centred on black.
    `resample` None is PIL's default filter, as officially (bicubic for RGB)."""
    width, height = image.size
    target_w, target_h = target
    if target_w / width < target_h / height:
        new_w, new_h = target_w, min(math.ceil(height * target_w / width), target_h)
    else:
        new_h, new_w = target_h, min(math.ceil(width * target_h / height), target_w)
    resized = image.resize((new_w, new_h), resample=resample)
    canvas = Image.new("RGB", (target_w, target_h), (0, 0, 0))
    canvas.paste(resized, ((target_w - new_w) // 2, (target_h - new_h) // 2))
    return canvas


def divide_to_patches(image: Image.Image, patch_size: int) -> list[Image.Image]:
    """Row-major tiles of `patch_size` x `patch_size` (top to bottom, left to right)."""
    width, height = image.size
    return [image.crop((x, y, x + patch_size, y + patch_size))
            for y in range(0, height, patch_size) for x in range(0, width, patch_size)]


def process_anyres_image(image: Image.Image, config: ImageProcessorConfig,
                         pinpoints: list[Size]) -> torch.Tensor:
    """One image -> (1 + tiles, 3, S, S): the global view first, then the tiles
    (`config.anyres_resample` picks the filter of the two resizes here; see ImageProcessorConfig)."""
    tile = config.crop_size[0]
    resample = config.anyres_resample
    padded = resize_and_pad_image(image, select_best_resolution(image.size, pinpoints), resample)
    views = [image.resize((config.shortest_edge, config.shortest_edge), resample=resample)]
    views += divide_to_patches(padded, tile)
    return torch.stack([preprocess(view, config) for view in views])
