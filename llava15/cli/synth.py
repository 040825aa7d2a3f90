"""`llava15 synth`: write the offline world's synthetic data (training files and held-out
benchmarks; see `llava15.world.synth`)."""

from __future__ import annotations

import argparse
import json
import logging
import time

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory (must be empty or new)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--scale", choices=("small", "demo"), default="demo",
                        help="small: a few hundred samples (tests); demo: a few thousand")
    parser.add_argument("--image-size", type=int, default=96,
                        help="image side in pixels (default 96, the demo tower's input: one "
                             "32-pixel patch per grid cell)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a previous synth output in --out")


def run(args: argparse.Namespace) -> int:
    from llava15.world.synth import synthesize

    started = time.perf_counter()
    try:
        manifest = synthesize(args.out, seed=args.seed, scale=args.scale,
                              image_size=args.image_size, overwrite=args.overwrite)
    except (FileExistsError, NotADirectoryError, ValueError) as e:
        log.error("%s", e)
        return 2
    summary = {"out": args.out, "seconds": round(time.perf_counter() - started, 1),
               "pretrain": manifest["training"]["pretrain"]["samples"],
               "finetune": manifest["training"]["finetune"]["samples"],
               "benchmarks": {k: v["questions"] for k, v in manifest["benchmarks"].items()}}
    print(json.dumps(summary, indent=2))
    return 0
