"""llava-hf LLaVA-NeXT checkpoints (`LlavaNextForConditionalGeneration`): their AnyRes settings.

Such a checkpoint is read so that our model behaves as transformers runs it. transformers'
LLaVA-NeXT differs from the official LLaVA-NeXT code (`llava/mm_utils.py`, `llava_arch.py`,
whose behaviour `tests/golden/anyres` pins and which stays our default) in three places:

1. Orientation of `image_grid_pinpoints`: transformers reads each pair as (height, width) (its
   `select_best_resolution`, `get_anyres_image_grid_shape` and image processor all do), the
   official code as (width, height). Here the pairs are read as transformers reads them and
   stored transposed, in our (width, height) order; grid choices then equal transformers'. A
   list written for the official code therefore means the transposed grids; the usual 336-px
   lists contain each grid's transpose, so only ties break differently (a small square image
   gets 2 tiles across under transformers where the official code puts 2 down).
2. Unpadding: transformers' `unpad_image` computes the kept side as `int(round(x, 7))`, the
   official one as `int(x)`; for a few image sizes (88x55 with the 336-px list, 188x47 with the
   tiny test list) float error makes them differ by a row or column on each side. Read as
   `unpad_round_digits=7`.
3. Image processing: `LlavaNextImageProcessor` resizes the letterboxed copy and the global view
   with the filter its `preprocessor_config.json` names (`resample`); the official code calls
   PIL's `resize` without a filter (bicubic for RGB), so the pixels agree for the usual bicubic
   files only. Read as `ImageProcessorConfig.anyres_resample`.
Everything else is the same: the best-resolution arithmetic, the aspect-preserving resize (ceil,
capped) and black centred letterbox, row-major tiles at `crop_size`, the global view squashed to
`size.shortest_edge`, CLIP processing of every view, and a newline vector after every row.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from llava15.config import LlavaConfig
from llava15.data.image import ImageProcessorConfig

LLAVA_NEXT = "LlavaNextForConditionalGeneration"
# LlavaNextImageProcessor's defaults (what a missing key means in its preprocessor_config.json)
PROCESSOR_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
PROCESSOR_RESAMPLE = 3  # bicubic


def llava_next_fields(d: dict[str, Any], source: str, tile: int) -> dict[str, Any]:
    """The `LlavaConfig` fields a LlavaNext `config.json` dict implies (module docstring).

    `tile` is the vision tower's image size; every pinpoint must be a multiple of it.
    Raises ValueError naming `source` and the key.
    """
    if "image_grid_pinpoints" not in d:
        raise ValueError(f"{source}: key 'image_grid_pinpoints' is missing (a {LLAVA_NEXT} config "
                         "needs the list of AnyRes grid resolutions)")
    strategy = d.get("vision_feature_select_strategy", "default")
    if strategy != "default":
        # transformers' LlavaNext views the kept features as a square map per tile, which a
        # class token breaks; the official AnyRes code drops it too
        raise ValueError(f"{source}: key 'vision_feature_select_strategy' is {strategy!r}; a "
                         f"{LLAVA_NEXT} checkpoint works with 'default' only")
    return dict(image_aspect_ratio="anyres", mm_patch_merge_type="spatial_unpad", unpad_round_digits=7,
                image_grid_pinpoints=hf_pinpoints(d["image_grid_pinpoints"], source, tile))


def hf_pinpoints(value: Any, source: str, tile: int) -> tuple[tuple[int, int], ...]:
    """transformers' [[height, width], ...] -> ours ((width, height), ...), checked."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{source}: key 'image_grid_pinpoints' must be a non-empty list of "
                         f"[height, width] pairs, got {value!r}")
    pairs = []
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in pair)):
            raise ValueError(f"{source}: key 'image_grid_pinpoints' holds {pair!r}, not a "
                             "[height, width] pair of positive integers")
        if pair[0] % tile or pair[1] % tile:
            raise ValueError(f"{source}: key 'image_grid_pinpoints' holds {pair}, not a multiple of "
                             f"the vision tower's image size {tile}")
        height, width = pair
        pairs.append((width, height))
    return tuple(pairs)


def llava_next_image_processor(path: Path, config: LlavaConfig) -> tuple[ImageProcessorConfig, tuple[str, ...]]:
    """A LlavaNext checkpoint's `preprocessor_config.json` -> our settings, with notes.

    Its `image_grid_pinpoints` must be the model's (transformers tiles with the processor's list
    and merges with the model's; they cannot differ). A missing file gives LlavaNextImageProcessor's
    defaults at the tower's resolution, with a note.
    """
    size = config.vision.image_size
    if not path.is_file():
        note = f"{path}: not found; using LlavaNextImageProcessor's defaults at {size} px"
        return ImageProcessorConfig(shortest_edge=size, crop_size=(size, size), image_mean=config.image_mean,
                                    image_std=config.image_std, anyres_resample=PROCESSOR_RESAMPLE), (note,)
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read image processor config: {e}") from e
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(d).__name__}")
    pinpoints = hf_pinpoints(d.get("image_grid_pinpoints", PROCESSOR_PINPOINTS), str(path), size)
    if pinpoints != config.image_grid_pinpoints:
        as_hf = [[h, w] for w, h in config.image_grid_pinpoints]
        raise ValueError(f"{path}: key 'image_grid_pinpoints' is {[[h, w] for w, h in pinpoints]} but the "
                         f"model's config.json has {as_hf}; images would be tiled for other grids than "
                         "the model merges")
    processor = ImageProcessorConfig.from_dict({"resample": PROCESSOR_RESAMPLE, **d}, str(path))
    return dataclasses.replace(processor, anyres_resample=processor.resample), ()
