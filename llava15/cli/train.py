"""`llava15 train`: one stage of the LLaVA-1.5 recipe (`--stage=pretrain` or `--stage=finetune`).

Every field of `llava15.train.config.TrainConfig` is a flag: `--stage=finetune_lora`,
`--stage.lr=2e-4`, `--data.path=...`, `--micro_batch_size=4`; the official spellings
`--vision-tower`, `--pretrain-mm-mlp-adapter`, `--image-folder`, `--data-path` are aliases, and
so is LLaVA-NeXT's `--image_aspect_ratio anyres` (with `--image_grid_pinpoints "[(672,336),...]"`
and `--mm_patch_merge_type spatial_unpad`, fields of their own).
Booleans take true/false (`--packing` alone means true). `--config run.json` is applied first.
Run under `torchrun --nproc-per-node N -m llava15 train ...` for several processes.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llava15.train.config import TrainConfig

ALIASES = {"vision_tower": ["--vision-tower"], "pretrain_mm_mlp_adapter": ["--pretrain-mm-mlp-adapter"],
           "data.image_folder": ["--image-folder"], "data.path": ["--data-path"],
           "micro_batch_size": ["--micro-batch-size"], "data.model_max_length": ["--model-max-length"],
           # AnyRes / HD as LLaVA-NeXT's train.py spells them
           "stage.image_aspect_ratio": ["--image_aspect_ratio", "--image-aspect-ratio"],
           "image_grid_pinpoints": ["--image-grid-pinpoints"], "mm_patch_merge_type": ["--mm-patch-merge-type"]}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from llava15.train.overrides import PRESETS, field_types
    from llava15.train.config import TrainConfig

    p.allow_abbrev = False  # a misspelt key must fail, not match a longer one
    p.add_argument("--config", dest="config_file", default=None, help="a train_config.json applied first")
    for name, presets in PRESETS.items():
        p.add_argument(f"--{name}", dest=name, default=argparse.SUPPRESS, help=f"preset: {', '.join(presets)}")
    for key, kind in field_types(TrainConfig).items():
        is_bool = kind is bool
        p.add_argument(f"--{key}", *ALIASES.get(key, []), dest=key, default=argparse.SUPPRESS,
                       nargs="?" if is_bool else None, const="true" if is_bool else None,
                       metavar="true|false" if is_bool else str(getattr(kind, "__name__", "VALUE")).upper())
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def config_from(args: argparse.Namespace, own: tuple[str, ...] = ()) -> TrainConfig:
    """The run config of a command line: `--config` first, then every flag but `own` (a calling
    command's flags that are not config keys, as `check-data` adds)."""
    from llava15.train.config import TrainConfig, load_json
    from llava15.train.overrides import apply_overrides

    skip = {"command", "_module", "config_file", "threads", *own}
    overrides = {k: v for k, v in vars(args).items() if k not in skip}
    config = load_json(args.config_file) if args.config_file else TrainConfig()
    return apply_overrides(config, overrides)


def run(args: argparse.Namespace) -> int:
    import logging

    import torch

    from llava15.data.dataset import DataFileError
    from llava15.train.distributed import init_runtime, shutdown
    from llava15.train.loop import train

    config = config_from(args)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    if torch.cuda.is_available():  # the official --tf32 True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    runtime = init_runtime(rank, world, int(os.environ.get("LOCAL_RANK", 0)), config.device)
    try:
        train(config, runtime)
    except DataFileError as e:
        print(f"llava15 train: error: {e}", file=sys.stderr)
        return 2
    finally:
        shutdown(runtime)
    return 0
