"""`llava15 check-data`: a dry run over training data with the model's tokenizer and template.

It takes every flag of `llava15 train` (paste a train command line: `--stage`, `--model` or
`--llm` with `--vision-tower`, `--data-path`, `--image-folder`, `--stage.template`,
`--model-max-length`, `--image_aspect_ratio`, `--data.num_workers`, ...) and builds the run's
dataset as `train` does, reading the model's configs, tokenizer and image preprocessing but no
weights. Flags only training uses (`--out`, learning rates, ...) are accepted and do nothing.
Every record goes through the training dataset (`llava15.data.check`), images decoded and
preprocessed as in training (spread over `--data.num_workers` processes); the summary goes
to stdout, and with `--plot PATH` a histogram of token lengths to PATH (nothing is written
otherwise). Exit status: 0 when the problem samples (images missing, unreadable or cut,
rejected, tokenization mismatches, fully masked) are at most `--max-bad-fraction` of all
(default 0: any problem fails), 1 above it, 2 for unusable input (a missing or malformed data
file, named with its line or record, or model files that cannot be read).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llava15.train.config import TrainConfig
    from llava15.train.init import Initial

OWN = ("max_bad_fraction", "plot", "examples")  # this command's flags; the rest are train's


def add_arguments(p: argparse.ArgumentParser) -> None:
    from llava15.cli import train

    train.add_arguments(p)
    p.add_argument("--max-bad-fraction", dest="max_bad_fraction", type=float, default=0.0, metavar="F",
                   help="exit 1 when more than this fraction of samples train on nothing (default 0)")
    p.add_argument("--plot", default=None, metavar="PNG", help="write a histogram of token lengths here")
    p.add_argument("--examples", type=int, default=5, metavar="N", help="records shown per kind (default 5)")


def model_side(config: TrainConfig) -> Initial:
    """What `build_initial` hands the dataset, without weights (`model` is None): the model config
    with the run's image layout, the tokenizer directory and the image preprocessing, read from
    the files `build_initial` reads. Raises FileNotFoundError / ValueError naming the file."""
    from pathlib import Path

    from llava15.checkpoint import read_llava_config
    from llava15.checkpoint.configs import read_json, text_config_from, vision_config_from
    from llava15.checkpoint.llava_next import LLAVA_NEXT, llava_next_image_processor
    from llava15.checkpoint.load import _image_processor
    from llava15.config import IMAGE_TOKEN_INDEX, LlavaConfig
    from llava15.data.image import ImageProcessorConfig
    from llava15.train.init import Initial, with_image_layout

    if config.model:  # as `load_llava` picks the tokenizer and preprocessing of a checkpoint
        directory = Path(config.model)
        llava, info = read_llava_config(directory)
        if info.architecture == LLAVA_NEXT:
            image_config, _ = llava_next_image_processor(directory / "preprocessor_config.json", llava)
        else:
            image_config, _ = _image_processor(info.vision_tower_dir if info.format == "official"
                                               else directory, llava)
        tokenizer_dir = directory
    else:  # the config `build_from_backbones` makes (a test holds the two equal)
        llm, clip = Path(config.llm), Path(config.vision_tower)
        image_config, tokenizer_dir = ImageProcessorConfig.from_file(clip / "preprocessor_config.json"), llm
        llava = LlavaConfig(vision=vision_config_from(read_json(clip / "config.json"), str(clip)),
                            text=text_config_from(read_json(llm / "config.json"), str(llm)),
                            mm_projector_type=config.mm_projector_type,
                            mm_vision_select_layer=config.mm_vision_select_layer,
                            image_aspect_ratio=config.stage.image_aspect_ratio, image_token_index=IMAGE_TOKEN_INDEX,
                            image_mean=tuple(image_config.image_mean), image_std=tuple(image_config.image_std),
                            max_sequence_length=config.data.model_max_length)
    # no model: `build_dataset` reads the config, tokenizer directory and preprocessing only
    return Initial(None, with_image_layout(llava, config), tokenizer_dir, image_config)


def run(args: argparse.Namespace) -> int:
    import importlib.util
    import json

    import torch

    from llava15.cli.train import config_from
    from llava15.data.check import check_dataset, plot_lengths
    from llava15.train.loop import build_dataset

    def fail(message: str) -> int:
        print(f"llava15 check-data: error: {message}", file=sys.stderr)
        return 2

    if args.plot and importlib.util.find_spec("matplotlib") is None:  # before the pass, not after it
        return fail("--plot needs matplotlib (pip install llava15[plot])")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = config_from(args, OWN).validate()
    except json.JSONDecodeError as e:
        return fail(f"{args.config_file}: not valid JSON: {e}")
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e))
    if not config.data.path:
        return fail("give the training data file with --data-path FILE")
    try:
        dataset = build_dataset(config, model_side(config))
    except json.JSONDecodeError as e:  # only a .json list fails here unnamed; .jsonl lines are named
        return fail(f"{config.data.path}: not valid JSON: {e}")
    except (FileNotFoundError, ValueError, KeyError) as e:
        return fail(str(e.args[0]) if isinstance(e, KeyError) else str(e))
    check = check_dataset(dataset, num_workers=config.data.num_workers, examples=args.examples)
    print(f"data check of {config.data.path}\n{check.format()}")
    if args.plot:
        print(f"token length histogram: {plot_lengths(check, args.plot)}")
    if check.bad_fraction > args.max_bad_fraction:
        print(f"FAIL: {check.bad} of {check.samples} samples train on nothing "
              f"({check.bad_fraction:.4f} > --max-bad-fraction {args.max_bad_fraction})")
        return 1
    return 0
