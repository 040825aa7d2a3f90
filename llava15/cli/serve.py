"""`llava15 serve`: the OpenAI-compatible server with batching and a chat page at `/`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from llava15.cli.predict import add_model_arguments, load_engine_for, print_image_cost, setup_torch


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("LLAVA15_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on /v1/* (default: $LLAVA15_API_KEY)")
    p.add_argument("--media-dir", type=Path, default=None,
                   help="allow image_url values that are local paths under this directory")
    p.add_argument("--allow-remote-images", action="store_true",
                   help="allow http(s) image URLs (fetched with a size and time limit)")
    p.add_argument("--max-batch-size", type=int, default=32, help="requests decoded together")
    p.add_argument("--max-queue", type=int, default=128, help="waiting requests before 503")
    p.add_argument("--max-tokens-limit", type=int, default=1024, help="largest max_tokens accepted")
    p.add_argument("--max-images", type=int, default=4, help="images per request")
    p.add_argument("--max-image-pixels", type=int, default=4096 * 4096)
    p.add_argument("--max-body-mb", type=float, default=32.0, help="request body limit in MiB")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from llava15.serve.app import create_app
    from llava15.serve.settings import MiB, ServeSettings

    setup_torch(args.threads)
    # As predict and chat: the official CLI and web demo pick llava_v1 for v1.5 models.
    engine = load_engine_for(args, "llava_v1")
    print_image_cost(engine)  # each answer's usage also reports its images' tokens and encode time
    settings = ServeSettings(
        api_key=args.api_key or None, media_dir=args.media_dir,
        allow_remote_images=args.allow_remote_images, max_body_bytes=int(args.max_body_mb * MiB),
        max_image_pixels=args.max_image_pixels, max_images=args.max_images,
        max_tokens_limit=args.max_tokens_limit, max_batch_size=args.max_batch_size,
        max_queue=args.max_queue)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        print(f"warning: serving on {args.host} without --api-key", flush=True)
    uvicorn.run(create_app(engine, settings), host=args.host, port=args.port, log_level="info")
    return 0
