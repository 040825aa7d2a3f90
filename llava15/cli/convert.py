"""`llava15 convert`: any supported checkpoint -> the llava-hf layout (safetensors).

    llava15 convert --model DIR [--model-base DIR] [--vision-tower DIR] --out DIR

Official full, projector-only (`--model-base`) and LoRA (`--model-base`, merged) checkpoints and
llava-hf ones (old or new nesting) are read by `llava15.checkpoint.load_llava`; the result loads in
`transformers.LlavaForConditionalGeneration` (mlp2x_gelu projectors) and in `llava15` itself.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--model-path", dest="model", required=True,
                   help="checkpoint directory (official, LoRA, projector-only or llava-hf)")
    p.add_argument("--model-base", default=None, help="base LLM directory for LoRA / projector-only")
    p.add_argument("--vision-tower", default=None,
                   help="local CLIP directory (overrides the checkpoint's mm_vision_tower)")
    p.add_argument("--out", required=True, help="output directory (llava-hf layout)")
    p.add_argument("--max-shard-gb", type=float, default=5.0, help="largest safetensors shard, in GiB")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                   help="dtype of the written weights")


def run(args: argparse.Namespace) -> int:
    import torch

    from llava15.checkpoint import load_llava, save_llava_hf

    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    loaded = load_llava(args.model, model_base=args.model_base, vision_tower=args.vision_tower, dtype=dtype)
    for note in loaded.notes:
        log.warning(note)
    log.info("read %s as layout %s", args.model, loaded.layout)
    save_llava_hf(loaded.model, loaded.config, loaded.tokenizer_dir, loaded.image_processor, args.out,
                  max_shard_bytes=int(args.max_shard_gb * 2**30))
    log.info("wrote %s", args.out)
    return 0
