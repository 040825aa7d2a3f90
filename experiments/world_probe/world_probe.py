"""What do the offline world's image tokens carry? Linear probes on a trained demo's tokens.

The demo's tower reads a 96 px image as 9 tokens, one per cell of the world's 3 x 3 grid. This
script encodes pretraining images with a trained checkpoint (tower + projector, exactly what the
LLM reads) and fits linear probes, on 70% of the tokens, tested on the rest:

* `column`, `row`: the cell of every token (3-way each);
* `shape`, `colour`, `size`: of the object in an occupied cell (from `regions.json`);
* `word`: which of the ten words is written in a word cell.

Chance (the majority class) is printed beside each probe. A probe far above chance whose question
type the demo still answers at the blind baseline says the LLM, not the tower, is what fails to
read it.

The probes standardise every dimension first, so they find a property however faint. Beside them
is each property's share of the tokens' variance (between-class over total, on the raw tokens),
for the tower's output and for the projected tokens: how loud the property is in what the LLM
attends over. The measurements and what they answer are in `experiments/world_probe/NOTES.md`.

    .venv/bin/python experiments/world_probe/world_probe.py demo-out [--checkpoint demo-out/finetune] [--images N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from PIL import Image

from llava15.data.image import process_images
from llava15.infer.engine import load_engine
from llava15.world.synth.vocab import COLOR_NAMES, SHAPES, SIZES, WORDS

Labels = dict[str, list[tuple[int, int, int]]]  # probe -> (image index, token index, class)


def cell_labels(regions: list[dict]) -> Labels:
    """Per probe, the (image, token, class) triples read off `regions.json` phrases
    ('large red circle with a blue dot at the top left', 'the word cat in red at the top')."""
    labels: Labels = {name: [] for name in ("column", "row", "shape", "colour", "size", "word")}
    for i, record in enumerate(regions):
        if len(record["regions"]) != 9:
            raise ValueError(f"regions.json record {i} ({record['image']}): expected 9 cells, "
                             f"got {len(record['regions'])}")
        for k, region in enumerate(record["regions"]):
            labels["column"].append((i, k, k % 3))
            labels["row"].append((i, k, k // 3))
            words = region["phrase"].split(" at the ")[0].split()
            if words[:2] == ["the", "word"]:
                labels["word"].append((i, k, WORDS.index(words[2])))
            elif words[-1] != "background":
                labels["size"].append((i, k, SIZES.index(words[0])))
                labels["colour"].append((i, k, COLOR_NAMES.index(words[1])))
                labels["shape"].append((i, k, SHAPES.index(words[2])))
    return labels


def encode(checkpoint: str | Path, images: list[Path], batch: int = 100,
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, tokens, hidden) twice: the tower's output at the layer LLaVA selects (its patch tokens)
    and the projected image tokens the LLM reads."""
    engine = load_engine(checkpoint)
    model, config = engine.model, engine.model.config
    towers, projected = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            pixels = process_images([Image.open(p).convert("RGB") for p in images[start:start + batch]],
                                    engine.image_config, config.image_aspect_ratio)
            hidden = model.vision_tower(pixels, config.mm_vision_select_layer)
            hidden = hidden[:, 1:] if config.vision.use_cls_token else hidden  # patch tokens
            towers.append(hidden)
            projected.append(model.multi_modal_projector(hidden))  # what encode_images returns
    return torch.cat(towers), torch.cat(projected)


def variance_share(x: torch.Tensor, y: torch.Tensor) -> float:
    """Between-class share of the total variance of the rows of x (classes y): 0 when the class
    means coincide, 1 when every row sits on its class mean."""
    centred = x - x.mean(0)
    total = centred.pow(2).sum()
    between = sum(centred[y == c].mean(0).pow(2).sum() * (y == c).sum() for c in y.unique())
    return float(between / total) if total > 0 else 0.0


def probe(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int = 300, seed: int = 0) -> float:
    """Test accuracy of a softmax-regression probe trained on the first 70% of rows."""
    torch.manual_seed(seed)
    split = int(len(y) * 0.7)
    mean, std = x[:split].mean(0), x[:split].std(0) + 1e-6
    x = (x - mean) / std
    head = torch.nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(head(x[:split]), y[:split])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (head(x[split:]).argmax(1) == y[split:]).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("demo_dir", type=Path, help="a `llava15 demo --out` directory")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a trained checkpoint (default: DEMO_DIR/finetune)")
    parser.add_argument("--images", type=int, default=None,
                        help="pretraining images to encode (default: all of them)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = args.demo_dir / "data"
    regions_path = data / "regions.json"
    if not regions_path.is_file():
        raise SystemExit(f"{regions_path} not found: run `llava15 demo --out {args.demo_dir}` first")
    regions = json.loads(regions_path.read_text())[:args.images]
    tower, tokens = encode(args.checkpoint or args.demo_dir / "finetune",
                           [data / "images" / r["image"] for r in regions])
    if tokens.shape[1] != 9:
        raise SystemExit(f"the checkpoint gives {tokens.shape[1]} image tokens; the probes need "
                         "one per grid cell (9: a 96 px tower with 32 px patches)")
    print(f"{len(regions)} images, {tokens.shape[1]} tokens of {tokens.shape[2]} dims")
    print(f"{'probe':8s} {'n':>6s} {'accuracy':>9s} {'chance':>7s}  variance share: tower  projected")
    for name, triples in cell_labels(regions).items():
        if not triples:
            print(f"{name:8s} {0:6d} {'-':>9s}")
            continue
        at_tower, x = (torch.stack([t[i, k] for i, k, _ in triples]) for t in (tower, tokens))
        y = torch.tensor([c for _, _, c in triples])
        chance = torch.bincount(y).max().item() / len(y)  # the majority class
        print(f"{name:8s} {len(y):6d} {probe(x, y, int(y.max()) + 1):9.3f} {chance:7.3f}"
              f"  {variance_share(at_tower, y):21.3f} {variance_share(x, y):10.3f}")


if __name__ == "__main__":
    main()
