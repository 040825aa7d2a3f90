"""Render a scene to a PIL image, and write images deterministically (no timestamps).

Drawing is aliased (no anti-aliasing) except for the word, so a pixel inside a shape has exactly
the shape's colour; tests read colours back from the image.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from llava15.world.synth.scene import DOT_RADIUS, WORD_HEIGHT, Obj, Scene
from llava15.world.synth.vocab import BACKGROUNDS, COLORS

CROSS_ARM = 0.35  # half-thickness of a cross's arms, relative to its half-extent


def _draw_shape(draw: ImageDraw.ImageDraw, obj: Obj, size: int) -> None:
    cx, cy, r = obj.cx * size, obj.cy * size, obj.r * size
    fill = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    elif obj.shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif obj.shape == "cross":
        a = CROSS_ARM * r
        draw.rectangle((cx - r, cy - a, cx + r, cy + a), fill=fill)
        draw.rectangle((cx - a, cy - r, cx + a, cy + r), fill=fill)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")
    if obj.dot is not None:
        dx, dy = obj.dot_center
        d = max(DOT_RADIUS * size, 0.75)
        draw.ellipse((dx * size - d, dy * size - d, dx * size + d, dy * size + d),
                     fill=COLORS[obj.dot])


def render(scene: Scene, size: int = 64) -> Image.Image:
    """The scene as an RGB image of `size` x `size` pixels."""
    if size < 16:
        raise ValueError(f"image size {size} is too small (minimum 16)")
    image = Image.new("RGB", (size, size), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw_shape(draw, obj, size)
    if scene.word is not None:
        font = ImageFont.load_default(size=max(8, round(WORD_HEIGHT * size)))
        w = scene.word
        draw.text((w.cx * size, w.cy * size), w.text, fill=COLORS[w.color], font=font, anchor="mm")
    return image


def encode(image: Image.Image, fmt: str) -> bytes:
    """PNG (lossless) or JPEG (quality 95, no chroma subsampling: colours of small shapes
    survive). Neither carries a timestamp, so equal images give equal bytes."""
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG", optimize=False)
    elif fmt == "jpeg":
        image.save(buf, format="JPEG", quality=95, subsampling=0)
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return buf.getvalue()


def save(image: Image.Image, path: Path) -> None:
    """Write by extension: .png -> PNG, .jpg/.jpeg -> JPEG."""
    suffix = path.suffix.lower()
    fmt = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}.get(suffix)
    if fmt is None:
        raise ValueError(f"{path}: unsupported image extension {suffix!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(image, fmt))
