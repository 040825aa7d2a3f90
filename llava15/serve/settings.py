"""The server's settings: security switches, limits and defaults, all in one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20


@dataclass(frozen=True)
class ServeSettings:
    """Everything `create_app` needs besides the engine.

    Limits are answered with OpenAI-style errors: the request body (413), one image's bytes
    and pixels (413; pixels are read from the header before decoding, against decompression
    bombs), images per request (400), prompt tokens with the images expanded (400) and
    `max_tokens` (422). The default temperature is the official CLI's and web demo's (0.2);
    top_p defaults to 1.0 (off), as in the OpenAI API.
    """

    api_key: str | None = None
    media_dir: Path | None = None  # local image paths are allowed only under this directory
    allow_remote_images: bool = False
    remote_image_timeout_s: float = 10.0
    max_body_bytes: int = 32 * MiB
    max_image_bytes: int = 16 * MiB
    max_image_pixels: int = 4096 * 4096
    max_images: int = 4
    max_prompt_tokens: int | None = None  # None: the model's context length minus one
    max_tokens_limit: int = 1024  # as the official model worker's cap
    default_max_tokens: int = 512
    default_temperature: float = 0.2  # the official CLI and web demo default
    max_batch_size: int = 32
    max_queue: int = 128
    retry_after_s: int = 1
