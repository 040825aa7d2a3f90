"""Helpers for the server tests (no tests here): a tiny engine and a live server on a free port."""

from __future__ import annotations

import base64
import dataclasses
import io
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

from PIL import Image

from llava15.config import tiny
from random_llava import random_llava

GOLDEN = Path(__file__).resolve().parent / "golden"


def tiny_engine(model_id: str = "tiny-llava", **config_changes):
    """An Engine around a random tiny Llava (vocab 512, context 2048, 28-px images of 16 tokens)
    and the tiny tokenizer; `config_changes` replace LlavaConfig fields (e.g. AnyRes ones)."""
    from llava15.data.image import ImageProcessorConfig
    from llava15.data.tokenizer import load_tokenizer
    from llava15.infer.engine import Engine

    config = tiny()
    config = config.replace(text=dataclasses.replace(config.text, vocab_size=512,
                                                     max_position_embeddings=2048), **config_changes)
    model = random_llava(config)
    return Engine(model, load_tokenizer(GOLDEN / "tokenizer"),
                  ImageProcessorConfig(shortest_edge=28, crop_size=(28, 28)), "vicuna_v1", model_id)


def png_bytes(size: tuple[int, int] = (40, 30), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    image = Image.new("RGB", size, colour)
    image.paste((20, 20, 220), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims width x height pixels, with a few bytes of data: decoding it
    would need 30 GB, reading its header needs nothing."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


class LiveServer:
    """uvicorn serving `app` on 127.0.0.1 and a free port, in a thread (a context manager)."""

    def __init__(self, app) -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.socket.close()
