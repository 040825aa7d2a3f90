"""Image loading and CLIP preprocessing, identical to the official LLaVA-1.5 code.

The official pipeline (llava/mm_utils.py `process_images` with transformers 4.37's
`CLIPImageProcessor`) is reproduced with PIL + numpy:

1. Every official loader hands over `Image.open(path).convert('RGB')` (`load_image`).
2. `image_aspect_ratio == 'pad'`: `expand2square` onto the mean colour (122, 116, 104) for CLIP.
3. Resize the shortest edge to `shortest_edge` with PIL bicubic; the long side is
   `int(shortest_edge * long / short)`, i.e. floored (`resize_output_size`).
4. Center crop as `transformers.image_transforms.center_crop` does it, zero-padding (in uint8,
   before normalisation) when the image is smaller than the crop.
5. `x * rescale_factor` (in float64, then cast to float32), then `(x - mean) / std` in float32.

Steps 4-5 act on uint8 values, so step 5 is a 256-entry table per channel: exact to the bit and
one gather instead of several full-image passes.

Known divergence (deliberate): transformers guesses the channel axis from the array shape, so an RGB
image 1 or 3 pixels tall (after padding, only 1x1 or 3x3) is read as channels-first and garbled or
rejected by the official code; here such images are processed like any other.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from llava15.config import CLIP_MEAN, CLIP_STD

ImageSource = str | Path | bytes | bytearray | Image.Image


class ImageError(ValueError):
    """An image that cannot be used; the message names the file (or `<N bytes>`) and the problem."""


@dataclass(frozen=True)
class ImageProcessorConfig:
    """The `CLIPImageProcessor` settings that change pixels (defaults: `openai/clip-vit-large-patch14-336`).

    `crop_size` is (height, width), as transformers' `crop_size` dict; `resample` is a PIL filter id
    (3 = bicubic). `anyres_resample` is the filter of AnyRes tiling's own resizes (the letterboxed
    copy and the global view): None calls PIL's `resize` without one, as the official code does
    (bicubic for RGB); transformers' `LlavaNextImageProcessor` passes its `resample` there.
    """

    shortest_edge: int = 336
    crop_size: tuple[int, int] = (336, 336)
    resample: int = 3
    do_resize: bool = True
    do_center_crop: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD
    do_convert_rgb: bool = True
    anyres_resample: int | None = None

    def __post_init__(self) -> None:
        if self.shortest_edge < 1 or min(self.crop_size) < 1 or len(self.crop_size) != 2:
            raise ValueError(f"image sizes must be positive: shortest_edge={self.shortest_edge}, "
                             f"crop_size={self.crop_size}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or 0 in self.image_std:
            raise ValueError(f"image_mean and image_std need 3 values (std non-zero): "
                             f"{self.image_mean}, {self.image_std}")
        for key, value in (("resample", self.resample), ("anyres_resample", self.anyres_resample)):
            if value is not None and value not in {int(r) for r in Image.Resampling}:
                raise ValueError(f"{key}={value} is not a PIL resampling filter")

    @property
    def background_color(self) -> tuple[int, int, int]:
        """The `pad` colour: `int(x * 255)` of the mean, truncated as officially: (122, 116, 104) for CLIP."""
        return tuple(int(x * 255) for x in self.image_mean)  # type: ignore[return-value]

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> ImageProcessorConfig:
        """Read a `preprocessor_config.json` dict; keys that do not change pixels are ignored.

        `size` may be `{"shortest_edge": N}` or a bare int (older CLIPFeatureExtractor files);
        `crop_size` a `{"height", "width"}` dict or an int. Missing keys keep this class's defaults.
        """
        kw: dict[str, Any] = {}
        if "size" in d:
            kw["shortest_edge"] = _shortest_edge(d["size"], source)
        if "crop_size" in d:
            kw["crop_size"] = _crop_size(d["crop_size"], source)
        for key in ("do_resize", "do_center_crop", "do_rescale", "do_normalize", "do_convert_rgb"):
            if key in d:
                if not isinstance(d[key], bool):
                    raise ValueError(f"{source}: key {key!r} must be true or false, got {d[key]!r}")
                kw[key] = d[key]
        for key, kind in (("resample", int), ("rescale_factor", float), ("anyres_resample", int)):
            if key in d:
                if isinstance(d[key], bool) or not isinstance(d[key], (int, float)):
                    raise ValueError(f"{source}: key {key!r} must be a number, got {d[key]!r}")
                kw[key] = kind(d[key])
        for key in ("image_mean", "image_std"):
            if key in d:
                value = d[key]
                value = [value] * 3 if isinstance(value, (int, float)) else value
                if not isinstance(value, list) or not all(isinstance(x, (int, float)) for x in value):
                    raise ValueError(f"{source}: key {key!r} must be a list of numbers, got {d[key]!r}")
                kw[key] = tuple(float(x) for x in value)
        try:
            return cls(**kw)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from e

    @classmethod
    def from_file(cls, path: str | Path) -> ImageProcessorConfig:
        """Read `preprocessor_config.json`; errors name the file."""
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read image processor config: {e}") from e
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(d).__name__}")
        return cls.from_dict(d, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """A `preprocessor_config.json` dict that `transformers.CLIPImageProcessor` reads back as is."""
        d = asdict(self)
        if d["anyres_resample"] is None:  # the official behaviour needs no key
            del d["anyres_resample"]
        height, width = d.pop("crop_size")
        d["crop_size"] = {"height": height, "width": width}
        d["size"] = {"shortest_edge": d.pop("shortest_edge")}
        d["image_mean"], d["image_std"] = list(self.image_mean), list(self.image_std)
        d["image_processor_type"] = "CLIPImageProcessor"
        return dict(sorted(d.items()))


def _shortest_edge(size: Any, source: str) -> int:
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    if isinstance(size, dict) and isinstance(size.get("shortest_edge"), int):
        return size["shortest_edge"]
    raise ValueError(f"{source}: key 'size' must be an int or {{'shortest_edge': N}} "
                     f"(fixed height/width resizes are not CLIP's), got {size!r}")


def _crop_size(crop: Any, source: str) -> tuple[int, int]:
    if isinstance(crop, int) and not isinstance(crop, bool):
        return (crop, crop)
    if isinstance(crop, dict) and isinstance(crop.get("height"), int) and isinstance(crop.get("width"), int):
        return (crop["height"], crop["width"])
    raise ValueError(f"{source}: key 'crop_size' must be an int or {{'height': H, 'width': W}}, got {crop!r}")


def load_image(source: ImageSource, *, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode an image as RGB, as the official loaders do (`Image.open(p).convert('RGB')`).

    No EXIF rotation is applied (the official code applies none). Raises `ImageError` naming the file
    for a missing or empty file, an unknown format, a truncated or corrupt file (the full decode
    happens here), or more pixels than `PIL.Image.MAX_IMAGE_PIXELS` or the stricter `max_pixels`.
    """
    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels, "<PIL image>")
        return source.convert("RGB")
    if isinstance(source, (bytes, bytearray)):
        name = f"<{len(source)} bytes>"
        if not source:
            raise ImageError(f"{name}: empty image data")
        fp: Any = io.BytesIO(bytes(source))
    elif isinstance(source, (str, Path)):
        name = fp = str(source)
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{name}: image file not found")
        if not path.is_file():
            raise ImageError(f"{name}: not a file")
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: empty image file (0 bytes)")
    else:
        raise TypeError(f"load_image takes a path, bytes or a PIL image, not {type(source).__name__}")
    # Locally, PIL's bomb warning (between 1x and 2x MAX_IMAGE_PIXELS) becomes an error. The filter
    # is process-wide while active, and `catch_warnings` is not thread-safe, so `_check_pixels`
    # enforces the same limit itself before decoding.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(fp) as image:
                _check_pixels(image.size, max_pixels, name)
                image.load()
                return image.convert("RGB")
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"{name}: image too large (decompression bomb guard): {e}") from e
        except UnidentifiedImageError as e:
            raise ImageError(f"{name}: not an image in a format PIL can read") from e
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"{name}: truncated or corrupt image: {e}") from e


def _check_pixels(size: tuple[int, int], max_pixels: int | None, name: str) -> None:
    """Refuse more pixels than PIL's limit or `max_pixels`, before anything is decoded."""
    limits = [x for x in (Image.MAX_IMAGE_PIXELS, max_pixels) if x is not None]
    if limits and size[0] * size[1] > min(limits):
        raise ImageError(f"{name}: image too large: {size[0]}x{size[1]} = {size[0] * size[1]} pixels, "
                         f"limit {min(limits)}")


def expand2square(image: Image.Image, background_color: tuple[int, ...] | int) -> Image.Image:
    """Pad to a square, centred (offset floored), as the official `expand2square`; squares pass through.

    The canvas has the image's mode, so the colour must fit that mode (convert to RGB first).
    """
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    try:
        result = Image.new(image.mode, (side, side), background_color)
    except (TypeError, ValueError) as e:
        raise ValueError(f"expand2square: colour {background_color!r} does not fit image mode "
                         f"{image.mode!r}; convert the image to RGB first ({e})") from e
    result.paste(image, ((side - width) // 2, (side - height) // 2))
    return result


def resize_output_size(size: tuple[int, int], shortest_edge: int) -> tuple[int, int]:
    """(width, height) after the shortest-edge resize: the long side is `int(se * long / short)`.

    `se * long` is an exact integer and float division is correctly rounded, so the float `int()`
    that transformers uses equals integer floor division.
    """
    width, height = size
    if width <= height:
        return shortest_edge, shortest_edge * height // width
    return shortest_edge * width // height, shortest_edge


def center_crop(pixels: np.ndarray, crop_size: tuple[int, int]) -> np.ndarray:
    """Crop (H, W, C) to `crop_size` (height, width) as transformers' `center_crop` does.

    An image smaller than the crop is zero-padded, centred; like transformers, an odd shortfall
    yields one row/column fewer than asked (top/left offsets floor on both sides).
    """
    height, width = pixels.shape[:2]
    crop_h, crop_w = crop_size
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    if top >= 0 and left >= 0:
        return pixels[top:top + crop_h, left:left + crop_w]
    new_h, new_w = max(crop_h, height), max(crop_w, width)
    pad_top, pad_left = (new_h - height) // 2, (new_w - width) // 2
    canvas = np.zeros((new_h, new_w) + pixels.shape[2:], dtype=pixels.dtype)
    canvas[pad_top:pad_top + height, pad_left:pad_left + width] = pixels
    top, left = top + pad_top, left + pad_left
    return canvas[max(0, top):min(new_h, top + crop_h), max(0, left):min(new_w, left + crop_w)]


def value_table(config: ImageProcessorConfig) -> np.ndarray:
    """(3, 256) float32: the rescaled, normalised value of each uint8 level, computed as transformers does.

    transformers multiplies the uint8 array by a Python float (float64), casts to float32, then
    computes `(x - mean) / std` in float32 with float32 mean/std.
    """
    levels = np.arange(256, dtype=np.uint8)
    x = levels * config.rescale_factor if config.do_rescale else levels  # float64, as in transformers
    x = x.astype(np.float32)
    x = np.broadcast_to(x, (3, 256))
    if config.do_normalize:
        mean = np.asarray(config.image_mean, dtype=np.float32)[:, None]
        std = np.asarray(config.image_std, dtype=np.float32)[:, None]
        x = (x - mean) / std
    return np.ascontiguousarray(x, dtype=np.float32)


def preprocess(image: Image.Image, config: ImageProcessorConfig) -> torch.Tensor:
    """CLIP preprocessing of one image -> (3, H, W) float32 (H, W = `crop_size` when cropping).

    Non-RGB images are converted with `.convert('RGB')` when `do_convert_rgb` (as transformers 4.37
    does: alpha is dropped, not composited). With neither rescale nor normalise the values are the
    uint8 levels, as float32.
    """
    if config.do_convert_rgb and image.mode != "RGB":
        image = image.convert("RGB")
    if image.mode != "RGB":
        raise ValueError(f"preprocess needs an RGB image when do_convert_rgb is false, "
                         f"got mode {image.mode!r}")
    if config.do_resize:
        image = image.resize(resize_output_size(image.size, config.shortest_edge), resample=config.resample)
    pixels = np.asarray(image)  # (H, W, 3) uint8
    if config.do_center_crop:
        pixels = center_crop(pixels, config.crop_size)
    table = value_table(config)
    out = np.empty((3,) + pixels.shape[:2], dtype=np.float32)  # (3, H, W)
    for c in range(3):
        np.take(table[c], pixels[:, :, c], out=out[c])
    return torch.from_numpy(out)


def process_images(images: list[Image.Image], config: ImageProcessorConfig,
                   image_aspect_ratio: str | None) -> torch.Tensor:
    """The official `llava.mm_utils.process_images` -> (N, 3, H, W) float32.

    `'pad'`: `expand2square` with `config.background_color`, then `preprocess`. Any other value
    (`'square'`, `'crop'`, None) is plain CLIP preprocessing (resize + center crop). `'anyres'` lives in
    `llava15.data.anyres`. Images not in RGB are first converted with `.convert('RGB')`, as every
    official loader does before calling `process_images`.
    """
    if image_aspect_ratio == "anyres":
        raise NotImplementedError("image_aspect_ratio='anyres': use llava15.data.anyres.process_anyres_image")
    if not images:
        raise ValueError("process_images: no images given")
    tensors = []
    for image in images:
        image = image if image.mode == "RGB" else image.convert("RGB")
        if image_aspect_ratio == "pad":
            image = expand2square(image, config.background_color)
        tensors.append(preprocess(image, config))
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"process_images: images came out in different shapes {sorted(shapes)} "
                         "(do_center_crop is false); they cannot be stacked")
    return torch.stack(tensors)
