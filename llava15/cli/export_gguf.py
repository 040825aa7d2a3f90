"""`llava15 export-gguf`: a checkpoint as the two GGUF files llama.cpp and ollama run."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--model-path", dest="model", required=True,
                   help="checkpoint directory (official, LoRA, projector-only, llava-hf, or a "
                        "llava15 training output)")
    p.add_argument("--model-base", default=None, help="base LLM directory for LoRA / projector-only")
    p.add_argument("--out", required=True, help="folder for <name>.gguf and mmproj-<name>.gguf")
    p.add_argument("--outtype", default="f16", choices=("f16", "q8_0"),
                   help="weight type of the 2-D tensors (norms and biases stay float32)")
    p.add_argument("--name", default=None, help="file and model name (default: the folder's name)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from llava15.checkpoint.gguf_export import GGUFExportError, export_gguf

    try:
        pair = export_gguf(args.model, args.out, model_base=args.model_base, outtype=args.outtype,
                           name=args.name, progress=lambda total: tqdm(total=total, unit="tensor"))
    except GGUFExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"language model: {pair.llm}\nmmproj:         {pair.mmproj}")
    print(f"llama.cpp: llama-mtmd-cli -m {pair.llm} --mmproj {pair.mmproj} --image IMAGE -p PROMPT")
    return 0
