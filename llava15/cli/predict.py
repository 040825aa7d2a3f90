"""`llava15 predict`: a drop-in for the official `llava/eval/model_vqa_loader.py`."""

from __future__ import annotations

import argparse
import sys


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Checkpoint flags shared by predict, chat and serve (official names kept as aliases)."""
    p.add_argument("--model", "--model-path", dest="model", required=True,
                   help="checkpoint directory (official, LoRA, projector-only or llava-hf), or a "
                        "GGUF language model (llama.cpp / ollama) with its mmproj file beside it")
    p.add_argument("--mmproj", default=None,
                   help="the GGUF vision file (tower + projector) of a GGUF --model, as llama.cpp's flag")
    p.add_argument("--model-base", default=None, help="base LLM directory for LoRA / projector-only")
    p.add_argument("--vision-tower", default=None,
                   help="local CLIP directory (overrides the checkpoint's mm_vision_tower)")
    p.add_argument("--conv-mode", default=None, help="conversation template (default: the model's)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N or auto (default: a GPU when one is visible, else the CPU)")
    p.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                   help="language model dtype (default: float16 on CUDA; on the CPU float32 when "
                        "it fits in memory, else bfloat16)")
    quant = p.add_mutually_exclusive_group()
    quant.add_argument("--load-8bit", action="store_true",
                       help="int8 LLM linears (CUDA: bitsandbytes LLM.int8; CPU: per-row int8)")
    quant.add_argument("--load-4bit", action="store_true",
                       help="nf4 LLM linears with bitsandbytes (CUDA only)")


def load_engine_for(args: argparse.Namespace, conv_mode: str):
    """The Engine the flags of `add_model_arguments` name (`conv_mode` when --conv-mode is not
    given); a device, dtype or quantization that cannot run here exits with its one-line reason."""
    from llava15.checkpoint.placement import PlacementError
    from llava15.infer.engine import load_engine

    try:
        return load_engine(args.model, model_base=args.model_base, vision_tower=args.vision_tower,
                           conv_mode=args.conv_mode or conv_mode, device=args.device, dtype=args.dtype,
                           load_8bit=args.load_8bit, load_4bit=args.load_4bit, mmproj=args.mmproj)
    except PlacementError as e:
        raise SystemExit(f"error: {e}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--question-file", required=True)
    p.add_argument("--image-folder", default="")
    p.add_argument("--answers-file", required=True)
    p.add_argument("--num-chunks", type=int, default=1)
    p.add_argument("--chunk-idx", type=int, default=0)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--top_p", "--top-p", dest="top_p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--num_beams", "--num-beams", dest="num_beams", type=int, default=1)
    p.add_argument("--max_new_tokens", "--max-new-tokens", dest="max_new_tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=1,
                   help="questions decoded together (answers equal batch size 1)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--skip-bad-images", action="store_true",
                   help="count and report questions whose image is missing or corrupt instead of stopping")


def print_image_cost(engine) -> None:
    """Start-up line: image tokens and encode time per image (they grow with AnyRes grids)."""
    import sys

    cost = engine.image_cost()
    print(f"{engine.model_id}: an image of {cost['image_size'][0]}x{cost['image_size'][1]} takes "
          f"{cost['image_tokens']} tokens ({cost['views']} view(s)), encoded in {cost['encode_ms']} ms",
          file=sys.stderr)


def setup_torch(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from llava15.data.image import ImageError
    from llava15.infer.generate import ContextLengthError, SamplingParams
    from llava15.infer.predict import QuestionFileError, predict, read_questions
    from llava15.infer.question import chunk

    if args.num_beams != 1:
        print("error: beam search is not supported (the official evaluation uses num_beams=1)",
              file=sys.stderr)
        return 2
    setup_torch(args.threads)
    try:
        questions = chunk(read_questions(args.question_file), args.num_chunks, args.chunk_idx)
    except (OSError, QuestionFileError, ValueError) as e:  # ValueError: a --chunk-idx out of range
        print(f"error: {e}", file=sys.stderr)
        return 2
    engine = load_engine_for(args, "llava_v1")
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_p=args.top_p or 1.0, top_k=args.top_k, seed=args.seed)
    print_image_cost(engine)
    try:
        summary = predict(engine, questions, args.image_folder, args.answers_file, params,
                          batch_size=args.batch_size, skip_bad_images=args.skip_bad_images,
                          progress=lambda total: tqdm(total=total, desc="predict", unit="q"))
    except (ImageError, ContextLengthError) as e:
        # The message names the question and its line; the answers before it are in the file.
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    print(f"answered {summary.answered} of {len(questions)} questions -> {args.answers_file}")
    if summary.skipped:
        print(f"skipped {len(summary.skipped)} question(s) with bad images:", file=sys.stderr)
        for item in summary.skipped:
            print(f"  line {item['line']} question {item['question_id']!r}: {item['error']}", file=sys.stderr)
    return 0
