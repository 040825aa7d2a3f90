"""llama.cpp against llava15 on the same exported model and prompts: CPU, batch 1, greedy.

The model is exported once with `llava15 export-gguf` (f16 or q8_0); llama.cpp runs the pair
through `llama-cpp-python` (its multimodal library, the official prompt), and ours runs the
source checkpoint (float32, or `--dtype`). For each side: time to first token (image encoding and
prefill included) and decode speed (tokens after the first over the time after the first), the
median over `--prompts` image questions, and ours / llama.cpp as a ratio.

    .venv/bin/python bench/gguf_speed.py                      # a random LLaVA of a small shape
    .venv/bin/python bench/gguf_speed.py --model DIR --outtype q8_0 --dtype bfloat16

Without `--model`, a random LLaVA (a 4-layer CLIP at 112 px, an 8 x 1024 LLaMA) is written first
(random weights: the answers are noise, the speed is not).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def small_model(out: Path) -> Path:
    """A random LLaVA (CLIP 4 x 256 at 112 px, LLaMA 8 x 1024: about 110M parameters) in the
    llava-hf layout, over the repository's 512-piece test tokenizer."""
    from random_llava import random_llava

    from llava15.checkpoint.save import save_llava_hf
    from llava15.config import LlavaConfig, TextConfig, VisionConfig
    from llava15.data.image import ImageProcessorConfig

    config = LlavaConfig(
        vision=VisionConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                            num_attention_heads=4, image_size=112, patch_size=14),
        text=TextConfig(vocab_size=512, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                        num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=1024))
    processor = ImageProcessorConfig(shortest_edge=112, crop_size=(112, 112),
                                     image_mean=config.image_mean, image_std=config.image_std)
    save_llava_hf(random_llava(config, scale=0.05), config, ROOT / "tests" / "golden" / "tokenizer",
                  processor, out)
    return out


def images(n: int, size: int):
    from PIL import Image

    colors = [(200, 30, 30), (30, 160, 60), (40, 60, 200), (220, 200, 40), (120, 40, 160)]
    return [Image.new("RGB", (size, size), colors[i % len(colors)]) for i in range(n)]


def summarize(answers) -> dict:
    ttft = statistics.median(a.first_token_s for a in answers)
    rates = [(a.tokens - 1) / (a.total_s - a.first_token_s) for a in answers
             if a.tokens > 1 and a.total_s > a.first_token_s]
    return {"ttft_s": round(ttft, 4), "decode_tok_s": round(statistics.median(rates), 2) if rates else None,
            "tokens": [a.tokens for a in answers]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory (default: a random small LLaVA)")
    parser.add_argument("--outtype", default="f16", choices=("f16", "q8_0"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    import torch

    from llamacpp_check import ask_llamacpp, ask_ours, open_llamacpp
    from llava15.checkpoint.gguf_export import export_gguf
    from llava15.infer.engine import load_engine

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="gguf-speed-"))
    model = Path(args.model) if args.model else small_model(work / "small-hf")
    pair = export_gguf(model, work / "gguf", outtype=args.outtype)
    engine = load_engine(model, device="cpu", dtype=args.dtype)
    size = engine.image_config.crop_size[0]
    question = "Describe the image in detail."
    llama = open_llamacpp(pair.llm, pair.mmproj, engine.template.system, n_ctx=2048, threads=args.threads)
    pictures = images(args.prompts + 1, size)
    # one warm-up each (first calls allocate and page in the weights)
    ask_ours(engine, pictures[-1], question, 4)
    ask_llamacpp(llama, pictures[-1], question, 4)
    ours = [ask_ours(engine, p, question, args.max_tokens) for p in pictures[:-1]]
    theirs = [ask_llamacpp(llama, p, question, args.max_tokens) for p in pictures[:-1]]
    rows = {"ours": summarize(ours), "llama.cpp": summarize(theirs)}
    print(f"model {model.name} | GGUF {args.outtype} for llama.cpp, {args.dtype} for ours | "
          f"{args.threads} threads | {args.prompts} prompts, up to {args.max_tokens} tokens")
    print(f"{'side':<10}{'TTFT s':>10}{'decode tok/s':>15}")
    for side, r in rows.items():
        print(f"{side:<10}{r['ttft_s']:>10.3f}{r['decode_tok_s'] or float('nan'):>15.2f}")
    ratio_ttft = rows["llama.cpp"]["ttft_s"] / rows["ours"]["ttft_s"]
    if rows["ours"]["decode_tok_s"] and rows["llama.cpp"]["decode_tok_s"]:
        ratio_decode = rows["ours"]["decode_tok_s"] / rows["llama.cpp"]["decode_tok_s"]
        print(f"ours / llama.cpp: TTFT speed {ratio_ttft:.2f}x, decode speed {ratio_decode:.2f}x")
        rows["ratio"] = {"ttft_speed": round(ratio_ttft, 3), "decode_speed": round(ratio_decode, 3)}
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(model), "outtype": args.outtype,
                                               "dtype": args.dtype, "threads": args.threads, **rows},
                                              indent=2))


if __name__ == "__main__":
    main()
