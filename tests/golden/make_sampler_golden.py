"""Golden orders from the official modality-grouped length sampler (llava/train/llava_trainer.py).

Run with the official-code venv (llava-torch 1.2.2.post1 = haotian-liu/LLaVA HEAD):
    /work/official/venv/bin/python tests/golden/make_sampler_golden.py
Writes tests/golden/sampler/orders.json: for each case, the lengths, batch size, world size,
seed and the index list returned after `torch.manual_seed(seed)` (the official code draws from
the global torch RNG).
"""

import json
import random
from pathlib import Path

import torch
from llava.train.llava_trainer import get_length_grouped_indices, get_modality_length_grouped_indices


def lengths_for(n: int, text_fraction: float, rng: random.Random) -> list[int]:
    out = []
    for _ in range(n):
        length = rng.choice([rng.randint(5, 40), rng.randint(60, 400)])  # short VQA next to long chats
        out.append(-length if rng.random() < text_fraction else length)
    return out


def main() -> None:
    rng = random.Random(0)
    cases = []
    for n, text_fraction, batch, world, seed in [
        (100, 0.3, 4, 2, 42), (257, 0.2, 8, 4, 0), (64, 0.0, 4, 4, 7), (50, 1.0, 3, 2, 1),
        (333, 0.5, 5, 3, 123), (97, 0.1, 16, 1, 42), (40, 0.5, 16, 8, 3)]:
        lengths = lengths_for(n, text_fraction, rng)
        torch.manual_seed(seed)
        modality = get_modality_length_grouped_indices(lengths, batch, world)
        torch.manual_seed(seed)
        plain = get_length_grouped_indices([abs(x) for x in lengths], batch, world)
        cases.append({"lengths": lengths, "batch_size": batch, "world_size": world, "seed": seed,
                      "modality_grouped": modality, "length_grouped": plain})
    out = Path(__file__).parent / "sampler" / "orders.json"
    out.write_text(json.dumps({"source": "llava-torch 1.2.2.post1 llava.train.llava_trainer",
                               "cases": cases}))
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
