"""`image_url` values -> PIL images, within the operator's rules and limits.

- `data:image/...;base64,...` URLs are always accepted.
- Local paths (`/abs/path`, `rel/path` or `file://...`) only under `settings.media_dir`, after
  resolving symlinks and `..`, so a client cannot read arbitrary files.
- `http(s)://` URLs only with `settings.allow_remote_images`, with a time limit and a byte
  limit (the body is read in chunks and abandoned past the limit).

Every image's pixel count is read from its header before decoding (decompression bombs).
Errors are `APIError`s: 413 for a too-large image, 400 for everything else.
"""

from __future__ import annotations

import base64
import binascii
import io
import urllib.parse
import urllib.request
from pathlib import Path

from PIL import Image

from llava15.data.image import ImageError, load_image
from llava15.serve.schemas import APIError
from llava15.serve.settings import ServeSettings

CHUNK = 1 << 16


def fetch_image(url: str, settings: ServeSettings) -> Image.Image:
    """Resolve one `image_url.url` to an RGB PIL image (blocking: run it off the event loop)."""
    return decode_image(fetch_bytes(url, settings), settings)


def fetch_bytes(url: str, settings: ServeSettings) -> bytes:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "data":
        return decode_data_url(url, settings.max_image_bytes)
    if scheme in ("http", "https"):
        if not settings.allow_remote_images:
            raise APIError(400, "remote image URLs are disabled on this server (start it with "
                                "--allow-remote-images); send the image as a base64 data: URL",
                           param="image_url")
        return download(url, settings)
    if scheme in ("", "file"):
        return read_local(url, settings)
    raise APIError(400, f"unsupported image URL scheme {scheme!r}", param="image_url")


def decode_data_url(url: str, max_bytes: int) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise APIError(400, "an image data: URL must be base64-encoded (data:image/png;base64,...)",
                       param="image_url")
    if len(payload) > (max_bytes + 2) // 3 * 4 + 4:  # check before decoding anything
        raise APIError(413, f"image larger than {max_bytes} bytes", param="image_url")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise APIError(400, f"invalid base64 in image data: URL ({e})", param="image_url") from e


def read_local(url: str, settings: ServeSettings) -> bytes:
    if settings.media_dir is None:
        raise APIError(400, "local image paths are disabled on this server (start it with "
                            "--media-dir DIR); send the image as a base64 data: URL", param="image_url")
    raw = urllib.parse.unquote(urllib.parse.urlsplit(url).path) if url.startswith("file:") else url
    root = Path(settings.media_dir).resolve()
    path = (root / raw).resolve()  # an absolute `raw` replaces root; checked below either way
    if not path.is_relative_to(root) or not path.is_file():
        raise APIError(400, f"image path {raw!r} is not a file under the media directory",
                       param="image_url")
    if path.stat().st_size > settings.max_image_bytes:
        raise APIError(413, f"image larger than {settings.max_image_bytes} bytes", param="image_url")
    return path.read_bytes()


def download(url: str, settings: ServeSettings) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "llava15-server"})
    try:
        with urllib.request.urlopen(request, timeout=settings.remote_image_timeout_s) as response:
            data = bytearray()
            while chunk := response.read(CHUNK):
                data += chunk
                if len(data) > settings.max_image_bytes:
                    raise APIError(413, f"image larger than {settings.max_image_bytes} bytes",
                                   param="image_url")
            return bytes(data)
    except (OSError, ValueError) as e:  # URLError, HTTPError and timeouts are OSErrors
        raise APIError(400, f"could not fetch image URL: {e}", param="image_url") from e


def decode_image(data: bytes, settings: ServeSettings) -> Image.Image:
    if len(data) > settings.max_image_bytes:
        raise APIError(413, f"image larger than {settings.max_image_bytes} bytes", param="image_url")
    try:
        with Image.open(io.BytesIO(data)) as probe:  # reads the header only
            width, height = probe.size
    except Image.DecompressionBombError as e:  # PIL's own, far larger limit, checked on open
        raise APIError(413, f"image larger than the limit of {settings.max_image_pixels} pixels "
                            f"({e})", param="image_url") from e
    except (OSError, ValueError) as e:
        raise APIError(400, f"not a readable image ({type(e).__name__})", param="image_url") from e
    if width * height > settings.max_image_pixels:
        raise APIError(413, f"image of {width}x{height} pixels is larger than the limit of "
                            f"{settings.max_image_pixels} pixels", param="image_url")
    try:
        return load_image(data, max_pixels=settings.max_image_pixels).convert("RGB")
    except ImageError as e:
        raise APIError(400, f"not a readable image: {e}", param="image_url") from e
