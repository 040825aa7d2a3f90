"""Generation speed: our engine's decode loop against `transformers`' `LlavaForConditionalGeneration.generate`.

Identical random weights (a mid-size CPU configuration: CLIP 4 layers x 256 at 112 px, LLaMA
8 layers x 512), identical left-padded prompts with one image each, greedy, a fixed number of new
tokens (EOS disabled on both sides so both do the same work). Prints tokens/s of both and the
ratio, for batch 1 and batch 8, and checks that both produced the same tokens.

    .venv/bin/python bench/generate_speed.py [--new-tokens 64] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_parity_hf import hf_to_ours  # noqa: E402  (the key table the parity tests use)

from llava15.config import LlavaConfig, TextConfig, VisionConfig  # noqa: E402
from llava15.infer.generate import SamplingParams, generate, optimize_for_cpu  # noqa: E402
from llava15.model.llava import Llava  # noqa: E402

IMAGE_TOKEN = 31999


def build(seed: int = 0):
    import transformers

    vision = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                  image_size=112, patch_size=14)
    text = dict(vocab_size=32000, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=1024,
                rms_norm_eps=1e-5)
    hf_config = transformers.LlavaConfig(vision_config=transformers.CLIPVisionConfig(**vision),
                                         text_config=transformers.LlamaConfig(**text),
                                         image_token_index=IMAGE_TOKEN, vision_feature_layer=-2)
    torch.manual_seed(seed)
    hf = transformers.LlavaForConditionalGeneration(hf_config).eval()
    with torch.no_grad():  # wider than HF's 0.02 init, so greedy choices are not near-ties
        for name, p in hf.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.05)
    config = LlavaConfig(vision=VisionConfig(**vision), text=TextConfig(**text),
                         image_token_index=IMAGE_TOKEN)
    ours = Llava(config).eval()
    ours.load_state_dict(hf_to_ours(hf.state_dict()))
    optimize_for_cpu(ours)  # as load_engine does
    return hf, ours


def prompts_for(batch: int, n_image: int, seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(batch):
        prefix = torch.randint(3, 30000, (30,), generator=g).tolist()
        suffix = torch.randint(3, 30000, (5 + 7 * i,), generator=g).tolist()
        out.append(prefix + [IMAGE_TOKEN] * n_image + suffix)
    return out


def time_hf(hf, prompts, pixel_values, new_tokens: int) -> tuple[float, list[list[int]]]:
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = torch.tensor(p)
        mask[r, width - len(p):] = 1
    start = time.perf_counter()
    with torch.inference_mode():
        out = hf.generate(input_ids=ids, attention_mask=mask, pixel_values=pixel_values,
                          max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                          eos_token_id=None, pad_token_id=0)
    return time.perf_counter() - start, out[:, width:].tolist()


def time_ours(model, prompts, pixel_values, new_tokens: int) -> tuple[float, list[list[int]]]:
    start = time.perf_counter()
    out = generate(model, prompts, pixel_values, SamplingParams(max_new_tokens=new_tokens), [])
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf, ours = build()
    n_image = ours.config.num_image_tokens
    print(f"threads={args.threads} new_tokens={args.new_tokens} image_tokens={n_image}")
    print(f"{'batch':>5} {'transformers tok/s':>19} {'llava15 tok/s':>14} {'ratio':>6} same")
    for batch in (1, 8):
        prompts = prompts_for(batch, n_image)
        pixel_values = torch.randn(batch, 3, 112, 112, generator=torch.Generator().manual_seed(2))
        time_hf(hf, prompts, pixel_values, 4)  # warm-up
        time_ours(ours, prompts, pixel_values, 4)
        hf_best, ours_best = float("inf"), float("inf")
        for _ in range(args.repeats):  # interleaved, best of N: robust to a busy machine
            t_hf, hf_tokens = time_hf(hf, prompts, pixel_values, args.new_tokens)
            t_ours, our_tokens = time_ours(ours, prompts, pixel_values, args.new_tokens)
            hf_best, ours_best = min(hf_best, t_hf), min(ours_best, t_ours)
        total = batch * args.new_tokens
        ratio = hf_best / ours_best
        print(f"{batch:>5} {total / hf_best:>19.1f} {total / ours_best:>14.1f} {ratio:>5.2f}x "
              f"{hf_tokens == our_tokens}")


if __name__ == "__main__":
    main()
