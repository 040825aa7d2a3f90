"""Can the demo's 2-layer LLM learn to look an object up among image tokens? A controlled toy.

The offline demo's LLM answers colour, shape and position questions from the image tokens "taken
together" (no attention head picks the token of the object a question names). This script asks
why, with everything else removed: the demo's LLM shape (LLaMA, 2 layers, 128 wide, 4 heads),
9 image tokens built from known attributes (a random vector per colour, shape, row and column,
summed, plus noise) through a trainable 2-layer GELU projector, and one question per sample:

* **two-hop**: `[prefix] [9 image tokens] what color is the SHAPE ? [suffix] ASSIST -> colour`,
  the form of every real question: the word naming the object is several tokens before the
  position that predicts the answer, so the model must first carry the name there, then look
  it up (two attention steps, learned together);
* **one-hop**: the same words, ending at SHAPE, which itself predicts the colour: one look-up.

It prints the accuracy of both kinds on fresh samples as training goes; the measurements and
what they answer are in `experiments/binding_toy/NOTES.md`.

    .venv/bin/python experiments/binding_toy/binding_toy.py [--one-hop-share 0.3] [--steps 1000] [--gap 0]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llava15.config import TextConfig
from llava15.model.llama import LanguageModel

COLORS, SHAPES = 6, 5
# token ids: colours 0..5, shapes 6..10, then the question words; fillers above
WHAT, COLOR, IS, THE, QMARK, ASSIST, FILLER = 11, 12, 13, 14, 15, 16, 20
VOCAB = 64


@dataclass(frozen=True)
class Sample:
    image: torch.Tensor   # (9, D) attribute sums
    words: list[int]      # the text after the image tokens
    answer: int           # colour id
    one_hop: bool


def draw_sample(rng: random.Random, attributes: torch.Tensor, one_hop: bool, gap: int,
                suffix: list[int]) -> Sample:
    """2-5 objects of distinct shapes in distinct cells; the question names one by its shape."""
    n = rng.randint(2, 5)
    cells, shapes = rng.sample(range(9), n), rng.sample(range(SHAPES), n)
    colors = [rng.randrange(COLORS) for _ in range(n)]
    image = attributes[-1].expand(9, -1).clone()  # the "empty cell" vector
    for cell, shape, color in zip(cells, shapes, colors):
        image[cell] = (attributes[color] + attributes[COLORS + shape]
                       + attributes[COLORS + SHAPES + cell // 3] + attributes[COLORS + SHAPES + 3 + cell % 3])
    target = rng.randrange(n)
    question = [WHAT, COLOR, IS, THE, COLORS + shapes[target]]
    full = question + [QMARK] + suffix + [ASSIST]
    # one-hop: the question cut after the shape (+ `gap` tokens), left-padded to the same length
    words = [THE] * (len(full) - len(question) - gap) + full[:len(question) + gap] if one_hop else full
    return Sample(image + 0.1 * torch.randn_like(image), words, colors[target], one_hop)


def run(steps: int = 1000, one_hop_share: float = 0.3, gap: int = 0, prefix: int = 30,
        suffix: int = 12, batch_size: int = 16, lr: float = 1e-3, seed: int = 0,
        every: int = 250, log: Callable[[str], None] = print) -> list[dict]:
    """Train from scratch; every `every` steps, the accuracy on 400 fresh two-hop and 400 fresh
    one-hop questions. Returns those rows."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    width = 128
    model = LanguageModel(TextConfig(vocab_size=VOCAB, hidden_size=width, intermediate_size=3 * width,
                                     num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=4, max_position_embeddings=512))
    projector = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
    attributes = torch.randn(COLORS + SHAPES + 3 + 3 + 1, width)
    prefix_ids = torch.randint(FILLER, VOCAB, (prefix,))
    suffix_ids = torch.randint(FILLER, VOCAB, (suffix,)).tolist()
    optimizer = torch.optim.AdamW([*model.parameters(), *projector.parameters()], lr=lr, weight_decay=0.0)

    def forward(samples: list[Sample]) -> torch.Tensor:
        embed = model.model.embed_tokens
        images = projector(torch.stack([s.image for s in samples]))
        words = embed(torch.tensor([s.words for s in samples]))
        inputs = torch.cat([embed(prefix_ids).expand(len(samples), -1, -1), images, words], 1)
        return model(inputs)[:, -1]

    def accuracy(one_hop: bool) -> float:
        samples = [draw_sample(rng, attributes, one_hop, gap, suffix_ids) for _ in range(400)]
        with torch.no_grad():
            predicted = forward(samples).argmax(-1)
        return (predicted == torch.tensor([s.answer for s in samples])).float().mean().item()

    rows, started = [], time.perf_counter()
    for step in range(1, steps + 1):
        samples = [draw_sample(rng, attributes, rng.random() < one_hop_share, gap, suffix_ids)
                   for _ in range(batch_size)]
        loss = F.cross_entropy(forward(samples), torch.tensor([s.answer for s in samples]))
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, step / 20)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % every == 0:
            row = {"step": step, "loss": loss.item(), "two_hop": accuracy(False),
                   "one_hop": accuracy(True), "seconds": time.perf_counter() - started}
            rows.append(row)
            log(f"step {step:5d}  loss {row['loss']:.3f}  two-hop {row['two_hop']:.3f}  "
                f"one-hop {row['one_hop']:.3f}  ({row['seconds']:.0f} s)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--one-hop-share", type=float, default=0.3)
    parser.add_argument("--gap", type=int, default=0, help="tokens between the name and the answer in one-hop samples")
    parser.add_argument("--prefix", type=int, default=30)
    parser.add_argument("--suffix", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    run(args.steps, args.one_hop_share, args.gap, args.prefix, args.suffix, lr=args.lr, seed=args.seed)


if __name__ == "__main__":
    main()
