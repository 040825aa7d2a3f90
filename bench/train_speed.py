"""Training speed: our loop against `transformers`' `LlavaForConditionalGeneration` in a plain loop.

Identical random weights (CLIP 2 layers x 256 at 112 px = 64 image tokens, LLaMA 4 layers x 512
with a 32000 vocabulary), the finetune stage on both sides (projector and LLM train, the tower is
frozen), AdamW, gradient clipping, float32, no gradient checkpointing. One micro-batch of samples
whose lengths mix like the 665K data: short VQA answers next to long conversations and text-only
chats. Each side runs the same samples; we report real (non-padding) tokens per second:

* `hf`: right-padded batch, `LlavaForConditionalGeneration(..., labels=...)`, `loss.backward()`.
* `ours`: the same right-padded batch through `llava15.train.objective.Objective` (lm_head only at
  target positions, causal attention without a padding mask).
* `ours+packing`: the same samples packed into rows of `--pack-length` (`collate_packed`).
* `ours+shared-prefix`: the padded batch through `TrainConfig.shared_prefix`'s pass (the rows'
  common prefix once, the rest in calls cut by length). `--system-prompt N` starts every sample
  with the same N tokens, as the conversation template's system prompt does (vicuna_v1: 35).

The first-step losses of the three must agree (same samples, same weights). MFU is useful model
FLOPs per second (6 x parameters x real tokens for the decoder, the lm_head at target positions,
causal attention, the frozen tower's forward) over the measured float32 matmul rate.

    .venv/bin/python bench/train_speed.py [--batch 8] [--steps 3] [--threads 2] [--system-prompt 35]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_parity_hf import hf_to_ours  # noqa: E402  (the key table the parity tests use)

from llava15.config import IGNORE_INDEX, LlavaConfig, TextConfig, VisionConfig  # noqa: E402
from llava15.data.dataset import Sample, collate  # noqa: E402
from llava15.data.packing import collate_packed  # noqa: E402
from llava15.model.llava import Llava  # noqa: E402
from llava15.train.objective import Objective  # noqa: E402

IMAGE_TOKEN = 31999
VISION = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=4,
              image_size=112, patch_size=14)
TEXT = dict(vocab_size=32000, hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
            num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=1024, rms_norm_eps=1e-5)


def build_models(seed: int = 0):
    import transformers

    hf_config = transformers.LlavaConfig(vision_config=transformers.CLIPVisionConfig(**VISION),
                                         text_config=transformers.LlamaConfig(**TEXT),
                                         image_token_index=IMAGE_TOKEN, vision_feature_layer=-2)
    hf_config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    hf = transformers.LlavaForConditionalGeneration(hf_config)
    ours = Llava(LlavaConfig(vision=VisionConfig(**VISION), text=TextConfig(**TEXT), image_token_index=IMAGE_TOKEN))
    ours.load_state_dict(hf_to_ours(hf.state_dict()))
    for model, tower in ((hf, hf.model.vision_tower), (ours, ours.vision_tower)):
        model.train()
        tower.requires_grad_(False)  # frozen in both official stages
    return hf, ours


def length_mix(batch: int, seed: int = 0) -> list[tuple[int, bool]]:
    """(text tokens, has image) like the 665K mixture: mostly short VQA turns, some long
    conversations, some long text-only chats (ShareGPT)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(batch):
        kind = i % 8
        if kind in (0, 1, 2, 3, 4):
            out.append((int(torch.randint(20, 60, (1,), generator=g)), True))  # short VQA answers
        elif kind in (5, 6):
            out.append((int(torch.randint(150, 300, (1,), generator=g)), True))  # detailed conversations
        else:
            out.append((int(torch.randint(300, 440, (1,), generator=g)), False))  # text-only chats
    return out


def make_samples(batch: int, n_image_tokens: int, seed: int = 0, system_prompt: int = 0) -> list[Sample]:
    g = torch.Generator().manual_seed(seed + 1)
    system = torch.randint(3, 30000, (system_prompt,), generator=torch.Generator().manual_seed(seed + 2))
    samples = []
    for i, (n_text, image) in enumerate(length_mix(batch, seed)):
        text = torch.randint(3, 30000, (n_text,), generator=g)
        prompt = n_text // 3  # the question part carries no loss
        ids = torch.cat([torch.tensor([1]), system, torch.full((n_image_tokens,), IMAGE_TOKEN) if image else
                         torch.zeros(0, dtype=torch.long), text])
        labels = ids.clone()
        labels[: 1 + system_prompt + (n_image_tokens if image else 0) + prompt] = IGNORE_INDEX
        pixels = torch.randn(3, VISION["image_size"], VISION["image_size"], generator=g) if image else None
        samples.append(Sample(i, ids, labels, pixels))
    return samples


def optimizer_for(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.0)


def hf_step(hf, batch, optimizer) -> float:
    out = hf(input_ids=batch.input_ids.masked_fill(~batch.attention_mask, 0), pixel_values=batch.pixel_values,
             attention_mask=batch.attention_mask.long(), labels=batch.labels)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in hf.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(out.loss.detach())


def our_step(objective, batch, optimizer) -> float:
    loss = objective(batch.input_ids, batch.labels, batch.attention_mask, batch.position_ids,
                     batch.pixel_values) / batch.num_targets
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in objective.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def timed(step, model, batch, steps: int) -> tuple[float, float]:
    """(first-step loss, seconds per step over `steps` after it). Each side steps its own copy."""
    optimizer = optimizer_for(model)
    first = step(model, batch, optimizer)  # warm-up; the loss is before any update
    start = time.perf_counter()
    for _ in range(steps):
        step(model, batch, optimizer)
    return first, (time.perf_counter() - start) / steps


def matmul_rate(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def model_flops(samples: list[Sample], n_image_tokens: int) -> float:
    """Useful FLOPs of one training step on these samples (see the module docstring)."""
    d, layers, inter, vocab = TEXT["hidden_size"], TEXT["num_hidden_layers"], TEXT["intermediate_size"], TEXT["vocab_size"]
    decoder = layers * (4 * d * d + 3 * d * inter)
    tokens = sum(len(s.input_ids) for s in samples)
    targets = sum(s.num_targets for s in samples)
    attention = sum(6 * layers * 2 * d * len(s.input_ids) ** 2 / 2 for s in samples)  # QK and AV, causal half
    vd, vl, vi = VISION["hidden_size"], VISION["num_hidden_layers"], VISION["intermediate_size"]
    images = sum(s.pixel_values is not None for s in samples)
    tower = 2 * (vl - 1) * (4 * vd * vd + 2 * vd * vi) * (n_image_tokens + 1) * images  # layer -2
    projector = 6 * (vd * d + d * d) * n_image_tokens * images
    return 6 * decoder * tokens + 6 * d * vocab * targets + attention + tower + projector


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--pack-length", type=int, default=512)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--system-prompt", type=int, default=0, help="tokens every sample starts with")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_image_tokens = (VISION["image_size"] // VISION["patch_size"]) ** 2
    samples = make_samples(args.batch, n_image_tokens, system_prompt=args.system_prompt)
    padded, packed = collate(samples), collate_packed(samples, capacity=args.pack_length)
    rate = matmul_rate()
    flops = model_flops(samples, n_image_tokens)
    real = padded.num_tokens
    results = {"threads": torch.get_num_threads(), "matmul_gflops": rate / 1e9, "real_tokens": real,
               "padded_positions": padded.input_ids.numel(), "packed_positions": packed.input_ids.numel(),
               "packed_rows": packed.input_ids.shape[0], "model_gflop_per_step": flops / 1e9}
    hf, ours = build_models()
    runs = {"hf": (hf_step, hf, padded), "ours": (our_step, Objective(ours), padded)}
    _, ours_packed = build_models()
    runs["ours+packing"] = (our_step, Objective(ours_packed), packed)
    _, ours_shared = build_models()
    shared = Objective(ours_shared)
    shared.shared_prefix = True
    runs["ours+shared-prefix"] = (our_step, shared, padded)
    for name, (step, model, batch) in runs.items():
        loss, seconds = timed(step, model, batch, args.steps)
        results[name] = {"first_loss": loss, "s_per_step": seconds, "tokens_per_s": real / seconds,
                         "mfu": flops / seconds / rate}
    for name in ("ours", "ours+packing", "ours+shared-prefix"):
        results[name]["speedup_vs_hf"] = results[name]["tokens_per_s"] / results["hf"]["tokens_per_s"]
    print(f"matmul float32: {rate / 1e9:.1f} GFLOP/s on {results['threads']} threads; batch of {args.batch}: "
          f"{real} real tokens, {padded.input_ids.numel()} padded positions, "
          f"{packed.input_ids.numel()} packed ({packed.input_ids.shape[0]} rows)")
    for name in runs:
        r = results[name]
        print(f"{name:>18}: loss {r['first_loss']:.5f}  {r['s_per_step']:.2f} s/step  "
              f"{r['tokens_per_s']:.0f} tok/s  MFU {100 * r['mfu']:.1f}%"
              + (f"  {r['speedup_vs_hf']:.2f}x hf" if "speedup_vs_hf" in r else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
