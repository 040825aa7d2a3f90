"""Deterministic source images for the image-preprocessing goldens (`tests/golden/image/`).

Shared by `make_image_golden.py` (run in the official venv) and `tests/test_image.py` (run in the
project venv), so both sides see the very same pixels. Everything is built from scikit-image's bundled
photographs (no download) with plain numpy arithmetic; nothing is random.

`build_cases()` returns name -> PIL image. Photo cases cover aspect ratios (square, wide, tall,
tiny, one pixel wide, odd sizes, a short side equal to the target); mode cases cover every PIL mode
the official loaders meet (docs/official-behaviour.md, 'Image preprocessing'): RGBA, LA, P (no transparency, index transparency, per-entry transparency), L, 1,
CMYK, I;16, I and F.
"""

from __future__ import annotations

import numpy as np
import skimage.data
from PIL import Image


def _photo(name: str) -> Image.Image:
    """A scikit-image sample photograph as a PIL image (2-D arrays become mode L, RGBA stays RGBA)."""
    return Image.fromarray(getattr(skimage.data, name)())


def photo_cases() -> dict[str, Image.Image]:
    """Real photographs at several aspect ratios."""
    astronaut = _photo("astronaut")  # 512x512
    return {
        "astronaut_512x512": astronaut,
        "coffee_600x400": _photo("coffee"),
        "chelsea_451x300": _photo("chelsea"),
        "rocket_tall_427x640": _photo("rocket").transpose(Image.Transpose.ROTATE_90),
        "camera_L_512x512": _photo("camera"),
        "logo_RGBA_500x500": _photo("logo"),
        "astronaut_tall_150x512": astronaut.crop((180, 0, 330, 512)),
        "astronaut_odd_113x97": astronaut.crop((200, 60, 313, 157)),
        "astronaut_wide_300x20": astronaut.crop((100, 200, 400, 220)),
        "astronaut_exact_112x150": astronaut.crop((150, 100, 262, 250)),
        "astronaut_tiny_20x7": astronaut.crop((220, 180, 240, 187)),
        "astronaut_column_1x50": astronaut.crop((250, 100, 251, 150)),
        "astronaut_row_50x2": astronaut.crop((200, 100, 250, 102)),
        "astronaut_2x2": astronaut.crop((250, 100, 252, 102)),
    }


def channel_axis_cases() -> dict[str, Image.Image]:
    """RGB images 1 or 3 pixels tall, which transformers' channel-axis guess reads as channels-first."""
    astronaut = _photo("astronaut")
    return {
        "astronaut_row_20x3": astronaut.crop((220, 180, 240, 183)),
        "astronaut_row_50x1": astronaut.crop((200, 100, 250, 101)),
        "astronaut_1x1": astronaut.crop((250, 100, 251, 101)),
        "astronaut_3x3": astronaut.crop((250, 100, 253, 103)),
    }


def _ramp(width: int, height: int) -> np.ndarray:
    """(height, width) float64 ramp in [0, 1) over x + y; a smooth, deterministic alpha / value map."""
    y, x = np.mgrid[0:height, 0:width]
    return (x + y) / (width + height - 1)


def mode_cases() -> dict[str, Image.Image]:
    """One image per PIL mode, 61x45 (odd and wide, so padding and cropping both matter)."""
    width, height = 61, 45
    rgb = np.asarray(_photo("astronaut").crop((200, 80, 200 + width, 80 + height)))
    gray = np.asarray(_photo("camera").crop((230, 100, 230 + width, 100 + height)))
    alpha = (_ramp(width, height) * 255).astype(np.uint8)
    index = ((np.arange(height)[:, None] // 4 + np.arange(width)[None, :] // 5) % 16).astype(np.uint8)
    palette = [(37 * i) % 256 for i in range(16 * 3)]

    def paletted(transparency: int | bytes | None) -> Image.Image:
        image = Image.frombytes("P", (width, height), index.tobytes())
        image.putpalette(palette)
        if transparency is not None:
            image.info["transparency"] = transparency
        return image

    # I;16: the left half spans the full 16-bit range, the right half stays below 256.
    wide16 = gray.astype(np.uint16) * 257
    i16 = np.where(np.arange(width)[None, :] < width // 2, wide16, gray.astype(np.uint16))
    i32 = gray.astype(np.int32) * 300 - 5000           # negative and > 255
    f32 = (gray.astype(np.float32) / 3.7 - 20.0) * np.float32(1.0 + _ramp(width, height) * 4)
    cmyk = np.stack([rgb[..., 0], rgb[..., 1], rgb[..., 2], alpha], axis=-1)
    return {
        "mode_RGBA": Image.fromarray(np.dstack([rgb, alpha])),
        "mode_LA": Image.frombytes("LA", (width, height), np.dstack([gray, alpha]).tobytes()),
        "mode_P": paletted(None),
        "mode_P_transparent_index": paletted(3),
        "mode_P_transparent_bytes": paletted(bytes((17 * i) % 256 for i in range(16))),
        "mode_L": Image.fromarray(gray),
        "mode_1": Image.fromarray(gray > 110),
        "mode_CMYK": Image.frombytes("CMYK", (width, height), cmyk.tobytes()),
        "mode_I;16": Image.frombytes("I;16", (width, height), i16.astype("<u2").tobytes()),
        "mode_I": Image.frombytes("I", (width, height), i32.astype(np.int32).tobytes()),
        "mode_F": Image.frombytes("F", (width, height), f32.astype(np.float32).tobytes()),
    }


def build_cases() -> dict[str, Image.Image]:
    """All golden source images by name."""
    return {**photo_cases(), **mode_cases()}


# Processor settings the goldens use (CLIPImageProcessor keyword arguments); CLIP ViT-L/14-336's
# mean/std and bicubic resampling throughout.
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def processor_kwargs(shortest_edge: int, crop: tuple[int, int], **overrides: object) -> dict:
    """`transformers.CLIPImageProcessor(**kwargs)` for `openai/clip-vit-large-patch14-336`-like settings."""
    kwargs = dict(do_resize=True, size={"shortest_edge": shortest_edge}, resample=3, do_center_crop=True,
                  crop_size={"height": crop[0], "width": crop[1]}, do_rescale=True, rescale_factor=1 / 255,
                  do_normalize=True, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True)
    kwargs.update(overrides)
    return kwargs


PROCESSORS: dict[str, dict] = {
    "clip112": processor_kwargs(112, (112, 112)),
    "clip112_crop96x128": processor_kwargs(112, (96, 128)),
    "clip112_crop97x113": processor_kwargs(112, (97, 113)),  # odd shortfall: transformers drops a column
    "clip112_nocrop": processor_kwargs(112, (112, 112), do_center_crop=False),
    "clip112_nonorm": processor_kwargs(112, (112, 112), do_normalize=False),
    "clip112_norescale": processor_kwargs(112, (112, 112), do_rescale=False),
    "clip336": processor_kwargs(336, (336, 336)),
}

# Which (case, processor, aspect ratios) get goldens: every case at clip112 with both aspect ratios
# (`ALL_CASES_AT`), plus these.
ASPECT_RATIOS = ("pad", "square")
ALL_CASES_AT = "clip112"
EXTRA: list[tuple[str, str, tuple[str, ...]]] = [
    ("astronaut_512x512", "clip336", ("pad",)),
    ("coffee_600x400", "clip336", ("square",)),
    ("rocket_tall_427x640", "clip112_crop96x128", ASPECT_RATIOS),
    ("coffee_600x400", "clip112_crop96x128", ASPECT_RATIOS),
    ("astronaut_tiny_20x7", "clip112_crop96x128", ASPECT_RATIOS),
    ("astronaut_column_1x50", "clip112_crop96x128", ASPECT_RATIOS),
    ("astronaut_odd_113x97", "clip112_crop97x113", ASPECT_RATIOS),
    ("rocket_tall_427x640", "clip112_crop97x113", ("square",)),
    ("chelsea_451x300", "clip112_nocrop", ASPECT_RATIOS),
    ("astronaut_wide_300x20", "clip112_nonorm", ASPECT_RATIOS),
    ("astronaut_wide_300x20", "clip112_norescale", ASPECT_RATIOS),
]


def golden_runs() -> list[tuple[str, str, str]]:
    """Every (case, processor, aspect_ratio) the goldens hold, in a fixed order."""
    runs = [(name, ALL_CASES_AT, ar) for name in build_cases() for ar in ASPECT_RATIOS]
    runs += [(name, proc, ar) for name, proc, ars in EXTRA for ar in ars]
    return runs

# (width, height, shortest_edge) triples whose resize output size the goldens record.
RESIZE_SIZES: list[tuple[int, int, int]] = [
    (w, h, s)
    for s in (112, 224, 336)
    for w, h in [(451, 300), (300, 451), (640, 427), (20, 7), (7, 20), (1, 50), (50, 1), (113, 97),
                 (1000, 3), (3, 1000), (999, 337), (337, 999), (12345, 6789), (500, 333), (333, 500),
                 (1, 1), (2, 3), (7, 3), (701, 700), (336, 337), (335, 1000)]
]
