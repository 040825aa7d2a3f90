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
* `...,full-last-layer`: the same two with the decoder's last layer at every position instead of
  the labelled ones only (`Objective.last_layer_at_targets = False`): what that saves.

`--tiny` swaps in the offline world's shapes (`llava15 demo`: CLIP 3 x 128 at 96 px in 32 px
patches = 9 image tokens, LLaMA 2 x 128 with a 1024 vocabulary, `--layers` to change) and a
length mix like its stage 2 (rows of 50-150 tokens, short answers).

The first-step losses of all rows must agree (same samples, same weights). MFU is useful model
FLOPs per second (6 x parameters x real tokens for the decoder, the lm_head at target positions,
causal attention, the frozen tower's forward) over the measured float32 matmul rate.

    .venv/bin/python bench/train_speed.py [--batch 8] [--steps 3] [--threads 2] [--system-prompt 35]
    .venv/bin/python bench/train_speed.py --tiny --batch 16 --steps 30 --system-prompt 35
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_parity_hf import hf_to_ours  # noqa: E402  (the key table the parity tests use)

from llava15.config import IGNORE_INDEX, LlavaConfig, TextConfig, VisionConfig  # noqa: E402
from llava15.data.dataset import Sample, collate  # noqa: E402
from llava15.data.packing import collate_packed  # noqa: E402
from llava15.model.llava import Llava  # noqa: E402
from llava15.train.objective import Objective  # noqa: E402

@dataclass(frozen=True)
class Shape:
    """The models' shapes and the samples' length mix."""
    vision: dict
    text: dict
    tiny: bool = False  # the offline world's stage-2 length mix

    @property
    def image_token(self) -> int:
        return self.text["vocab_size"] - 1


VISION = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=4,
              image_size=112, patch_size=14)
TEXT = dict(vocab_size=32000, hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
            num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=1024, rms_norm_eps=1e-5)
# the offline world's backbones (llava15.world.stage0.Stage0Config)
TINY_VISION = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=3, num_attention_heads=4,
                   image_size=96, patch_size=32)
TINY_TEXT = dict(vocab_size=1024, hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512, rms_norm_eps=1e-5)


def build_models(shape: Shape, seed: int = 0):
    import transformers

    hf_config = transformers.LlavaConfig(vision_config=transformers.CLIPVisionConfig(**shape.vision),
                                         text_config=transformers.LlamaConfig(**shape.text),
                                         image_token_index=shape.image_token, vision_feature_layer=-2)
    hf_config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    hf = transformers.LlavaForConditionalGeneration(hf_config)
    ours = Llava(LlavaConfig(vision=VisionConfig(**shape.vision), text=TextConfig(**shape.text),
                             image_token_index=shape.image_token))
    ours.load_state_dict(hf_to_ours(hf.state_dict()))
    for model, tower in ((hf, hf.model.vision_tower), (ours, ours.vision_tower)):
        model.train()
        tower.requires_grad_(False)  # frozen in both official stages
    return hf, ours


def length_mix(shape: Shape, batch: int, seed: int = 0) -> list[tuple[int, bool]]:
    """(text tokens, has image) like the 665K mixture: mostly short VQA turns, some long
    conversations, some long text-only chats (ShareGPT); with --tiny, like the offline world's."""
    g = torch.Generator().manual_seed(seed)
    out = []
    if shape.tiny:
        return [(int(torch.randint(50, 150, (1,), generator=g)), True) for _ in range(batch)]
    for i in range(batch):
        kind = i % 8
        if kind in (0, 1, 2, 3, 4):
            out.append((int(torch.randint(20, 60, (1,), generator=g)), True))  # short VQA answers
        elif kind in (5, 6):
            out.append((int(torch.randint(150, 300, (1,), generator=g)), True))  # detailed conversations
        else:
            out.append((int(torch.randint(300, 440, (1,), generator=g)), False))  # text-only chats
    return out


def make_samples(shape: Shape, batch: int, n_image_tokens: int, seed: int = 0,
                 system_prompt: int = 0) -> list[Sample]:
    g = torch.Generator().manual_seed(seed + 1)
    top = shape.image_token - 1
    system = torch.randint(3, top, (system_prompt,), generator=torch.Generator().manual_seed(seed + 2))
    samples = []
    for i, (n_text, image) in enumerate(length_mix(shape, batch, seed)):
        text = torch.randint(3, top, (n_text,), generator=g)
        # the question part carries no loss; the offline world's answers are short
        prompt = n_text - max(3, n_text // 8) if shape.tiny else n_text // 3
        ids = torch.cat([torch.tensor([1]), system, torch.full((n_image_tokens,), shape.image_token) if image else
                         torch.zeros(0, dtype=torch.long), text])
        labels = ids.clone()
        labels[: 1 + system_prompt + (n_image_tokens if image else 0) + prompt] = IGNORE_INDEX
        size = shape.vision["image_size"]
        pixels = torch.randn(3, size, size, generator=g) if image else None
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


def model_flops(shape: Shape, samples: list[Sample], n_image_tokens: int) -> float:
    """Useful FLOPs of one training step on these samples (see the module docstring)."""
    text, vision = shape.text, shape.vision
    d, layers, inter, vocab = text["hidden_size"], text["num_hidden_layers"], text["intermediate_size"], text["vocab_size"]
    decoder = layers * (4 * d * d + 3 * d * inter)
    tokens = sum(len(s.input_ids) for s in samples)
    targets = sum(s.num_targets for s in samples)
    attention = sum(6 * layers * 2 * d * len(s.input_ids) ** 2 / 2 for s in samples)  # QK and AV, causal half
    vd, vl, vi = vision["hidden_size"], vision["num_hidden_layers"], vision["intermediate_size"]
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
    p.add_argument("--tiny", action="store_true", help="the offline world's model shapes")
    p.add_argument("--layers", type=int, default=None, help="LLM layers (default: the shape's)")
    args = p.parse_args()
    vision, text = (TINY_VISION, TINY_TEXT) if args.tiny else (VISION, TEXT)
    shape = Shape(vision, {**text, "num_hidden_layers": args.layers or text["num_hidden_layers"]},
                  args.tiny)
    if args.threads:
        torch.set_num_threads(args.threads)
    n_image_tokens = (vision["image_size"] // vision["patch_size"]) ** 2
    samples = make_samples(shape, args.batch, n_image_tokens, system_prompt=args.system_prompt)
    padded, packed = collate(samples), collate_packed(samples, capacity=args.pack_length)
    rate = matmul_rate()
    flops = model_flops(shape, samples, n_image_tokens)
    real = padded.num_tokens
    results = {"threads": torch.get_num_threads(), "matmul_gflops": rate / 1e9, "real_tokens": real,
               "padded_positions": padded.input_ids.numel(), "packed_positions": packed.input_ids.numel(),
               "packed_rows": packed.input_ids.shape[0], "model_gflop_per_step": flops / 1e9}
    hf, ours = build_models(shape)
    runs = {"hf": (hf_step, hf, padded), "ours": (our_step, Objective(ours), padded)}
    _, ours_packed = build_models(shape)
    runs["ours+packing"] = (our_step, Objective(ours_packed), packed)
    for name, shared_prefix, at_targets in (("ours,full-last-layer", False, False),
                                            ("ours+shared-prefix", True, True),
                                            ("ours+shared-prefix,full-last-layer", True, False)):
        objective = Objective(build_models(shape)[1])
        objective.shared_prefix, objective.last_layer_at_targets = shared_prefix, at_targets
        runs[name] = (our_step, objective, padded)
    for name, (step, model, batch) in runs.items():
        loss, seconds = timed(step, model, batch, args.steps)
        results[name] = {"first_loss": loss, "s_per_step": seconds, "tokens_per_s": real / seconds,
                         "mfu": flops / seconds / rate}
    for name in runs:
        if name != "hf":
            results[name]["speedup_vs_hf"] = results[name]["tokens_per_s"] / results["hf"]["tokens_per_s"]
    for name in ("ours", "ours+shared-prefix"):  # what the last layer at targets only saves
        results[name]["speedup_vs_full_last_layer"] = (results[name]["tokens_per_s"]
                                                      / results[f"{name},full-last-layer"]["tokens_per_s"])
    print(f"matmul float32: {rate / 1e9:.1f} GFLOP/s on {results['threads']} threads; batch of {args.batch}: "
          f"{real} real tokens, {padded.input_ids.numel()} padded positions, "
          f"{packed.input_ids.numel()} packed ({packed.input_ids.shape[0]} rows)")
    for name in runs:
        r = results[name]
        print(f"{name:>34}: loss {r['first_loss']:.5f}  {r['s_per_step']:.3f} s/step  "
              f"{r['tokens_per_s']:.0f} tok/s  MFU {100 * r['mfu']:.1f}%"
              + (f"  {r['speedup_vs_hf']:.2f}x hf" if "speedup_vs_hf" in r else "")
              + (f"  {r['speedup_vs_full_last_layer']:.2f}x full last layer"
                 if "speedup_vs_full_last_layer" in r else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
