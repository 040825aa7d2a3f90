"""Does stage 2, run by `llava15.train` on a finished demo's backbones, teach look-ups? How many samples?

`experiments/binding_toy/binding_toy.py` shows the demo's 2-layer LLM learns to answer a question
about one object among the image tokens (a two-step look-up) only with one-step look-ups beside
it. This script asks the same of the real thing: the demo's tower, stage-0 LLM, stage-1
projector, tokenizer, vicuna_v1 prompt and the stage-2 recipe (`FINETUNE`: cosine schedule, 3%
warm-up, clipping), on a one-purpose data set of new scenes:

* **one-step** (the inventory): `List the objects by shape, each shape followed by its color.`
  -> `circle red, square blue` (the shapes that occur once, in random order): each colour comes
  right after the word naming its object;
* **two-step**: `What color is the circle?` + the short-answer prompt -> `red`;
* with `--two-kinds`, half of the inventories go the other way (`color -> shape`).

After training it reads, teacher-forced on 200 new scenes, the colour after each shape word of
an inventory and the first answer token of a colour question. The measurements and what they
answer are in `experiments/lookup_stage2/NOTES.md`.

    .venv/bin/python experiments/lookup_stage2/lookup_stage2.py --demo demo-out --out /tmp/lookup [--one-hop-share 0.3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
from collections import Counter
from pathlib import Path

import torch

from llava15.world.synth import prompts as P
from llava15.world.synth.draw import render
from llava15.world.synth.language import inventory
from llava15.world.synth.scene import Obj, Scene, random_scene
from llava15.world.synth.vocab import WORDS

# the demo's own inventory instructions (stage_data's `inventory` kind)
BY_SHAPE = P.INVENTORY["shape", "color"]
BY_COLOR = P.INVENTORY["color", "shape"]


def unique(scene: Scene, attribute: str) -> list[Obj]:
    """The objects whose `attribute` ('shape' or 'color') no other object of the scene shares."""
    counts = Counter(getattr(o, attribute) for o in scene.objects)
    return [o for o in scene.objects if counts[getattr(o, attribute)] == 1]


def question(target: Obj) -> str:
    """The two-step question about `target`, with the short-answer prompt."""
    return P.with_suffix(f"What color is the {target.shape}?", P.SHORT_ANSWER)


def make_record(index: int, image: str, scene: Scene, rng: random.Random, one_hop_share: float,
                two_kinds: bool) -> dict | None:
    """One stage-2 record in the official format, or None if the scene has no shape that occurs
    once (or, for a colour-keyed inventory, no colour that does)."""
    objects = unique(scene, "shape")
    if not objects:
        return None
    if rng.random() < one_hop_share:
        key, value = ("color", "shape") if two_kinds and rng.random() < 0.5 else ("shape", "color")
        human, gpt = P.INVENTORY[key, value], inventory(scene, key, value, rng)
        if not gpt:
            return None
    else:
        target = rng.choice(objects)
        human, gpt = question(target), target.color
    return {"id": f"{index:06d}", "image": image,
            "conversations": [{"from": "human", "value": f"{P.IMAGE}\n{human}"},
                              {"from": "gpt", "value": gpt}]}


def make_dataset(out: Path, samples: int, one_hop_share: float, two_kinds: bool = False,
                 image_size: int = 96, seed: int = 11) -> int:
    """Draw `samples` scenes into `out/images` and write `out/finetune.json` from those that
    support a record. Returns the number of records."""
    rng = random.Random(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(samples):
        scene = random_scene(rng, words=WORDS)
        name = f"{i:06d}.png"
        record = make_record(i, name, scene, rng, one_hop_share, two_kinds)
        if record is not None:
            render(scene, image_size).save(out / "images" / name)
            records.append(record)
    (out / "finetune.json").write_text(json.dumps(records))
    return len(records)


def train_stage2(demo: Path, data: Path, out: Path, epochs: int = 1, lr: float = 1e-3,
                 batch_size: int = 16) -> None:
    """Stage 2 exactly as the demo configures it (`world.demo.train_config`) from `demo`'s
    backbones and stage-1 projector, on `data` instead of the demo's mixture."""
    from llava15.train.distributed import init_runtime, shutdown
    from llava15.train.loop import train
    from llava15.world.demo import DemoConfig, train_config

    demo_config = DemoConfig(out=str(out), shared_from=str(demo), reuse_pretrain=True,
                             finetune_lr=lr, finetune_batch=batch_size, finetune_epochs=epochs)
    config = train_config(demo_config, out, "finetune")
    config = dataclasses.replace(config, out=str(out), data=dataclasses.replace(
        config.data, path=str(data / "finetune.json"), image_folder=str(data / "images"))).validate()
    runtime = init_runtime(0, 1, 0, config.device)
    try:
        train(config, runtime)
    finally:
        shutdown(runtime)


def encode_continuation(engine, prompt: str, pieces: list[str]) -> tuple[list[int], list[int]]:
    """Ids of `prompt` followed by the pieces, and the boundaries: the number of ids of the prompt
    plus the first k pieces, for k = 0..len(pieces).

    Raises ValueError if the tokenizer merges across a boundary (a boundary would then not be a
    token position), rather than scoring the wrong tokens."""
    ids, bounds = engine.encode(prompt + "".join(pieces)), []
    for k in range(len(pieces) + 1):
        head = engine.encode(prompt + "".join(pieces[:k]))
        if ids[:len(head)] != head:
            raise ValueError(f"the tokenizer merges across the end of {prompt + ''.join(pieces[:k])!r}")
        bounds.append(len(head))
    return ids, bounds


def probe(model_dir: Path, scenes: int = 200, seed: int = 5) -> dict[str, float]:
    """Teacher-forced accuracy on new scenes: the colour after each shape of a shape-keyed
    inventory ('one_step') and the first answer token of a colour question ('two_step')."""
    from llava15.data.image import process_images
    from llava15.infer.engine import load_engine

    engine = load_engine(model_dir)
    model = engine.model
    rng = random.Random(seed)
    hits, totals = Counter(), Counter()

    def score(kind: str, prompt: str, pieces: list[str], pixels: torch.Tensor, answer_start: bool) -> None:
        """Count whether the model predicts the last token of each piece (an inventory's colours)
        or, with `answer_start`, the first token after the prompt (a short answer)."""
        ids, bounds = encode_continuation(engine, prompt, pieces)
        guesses = model.language_model(model.embed_inputs(torch.tensor([ids]), pixels))[0].argmax(-1)
        for target in [bounds[0]] if answer_start else [end - 1 for end in bounds[1:]]:
            hits[kind] += int(guesses[target - 1].item() == ids[target])  # position t-1 predicts t
            totals[kind] += 1

    size = engine.image_config.crop_size[0]
    inventory_prompt = engine.build_prompt([("user", f"{P.IMAGE}\n{BY_SHAPE}")])
    with torch.no_grad():
        for _ in range(scenes):
            scene = random_scene(rng, words=WORDS)
            objects = unique(scene, "shape")
            if not objects:
                continue
            pixels = process_images([render(scene, size)], engine.image_config, "pad")
            rng.shuffle(objects)
            items = [f"{',' if k else ''} {o.shape} {o.color}" for k, o in enumerate(objects)]
            score("one_step", inventory_prompt, items, pixels, answer_start=False)
            target = rng.choice(objects)
            prompt = engine.build_prompt([("user", f"{P.IMAGE}\n{question(target)}")])
            score("two_step", prompt, [f" {target.color}"], pixels, answer_start=True)
    return {kind: hits[kind] / totals[kind] for kind in totals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", required=True, help="a finished `llava15 demo` directory")
    parser.add_argument("--out", required=True, help="where the data set and the run go")
    parser.add_argument("--samples", type=int, default=20000, help="scenes drawn (about 70%% make a record)")
    parser.add_argument("--one-hop-share", type=float, default=0.3)
    parser.add_argument("--two-kinds", action="store_true", help="half the inventories colour -> shape")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(2)
    demo, out = Path(args.demo), Path(args.out)
    for needed in ("backbones/llm", "backbones/clip", "pretrain/mm_projector.bin"):
        if not (demo / needed).exists():
            raise SystemExit(f"{demo / needed} is missing: --demo must be a finished demo directory")
    records = make_dataset(out / "data", args.samples, args.one_hop_share, args.two_kinds)
    print(f"{records} records from {args.samples} scenes")
    train_stage2(demo, out / "data", out / "run", args.epochs, args.lr, args.batch_size)
    print(json.dumps(probe(out / "run")))


if __name__ == "__main__":
    main()
