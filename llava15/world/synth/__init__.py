"""`llava15 synth`: the offline world's data, deterministic for a seed.

`synthesize(out_dir)` writes, under `out_dir`:
- `images/pretrain/*.png`, `images/finetune/*.png`: training images (the image folder is `images/`);
- `pretrain.json`: stage-1 captions in the `blip_laion_cc_sbu_558k.json` format;
- `regions.json`: for stage 0, the same images' region descriptions (Visual Genome style:
  `[{"image", "regions": [{"bbox": [x1, y1, x2, y2] normalised, "phrase"}]}]`);
- `finetune.json`: the stage-2 mixture in the `llava_v1_5_mix665k.json` format;
- `train_text.txt`: all training text, one conversation per paragraph (blank-line separated),
  one turn per line, `<image>` replaced by the scene written out in words: for pretraining a
  tokenizer and a tiny LLM;
- `eval/<official dir>/...`: held-out benchmark files in the official formats and layout, each
  with a `types.json` sidecar (str(question_id) -> question type); images never seen in training;
- `manifest.json`: seed, scale, image size, record counts per file, per-type counts.

Only PIL and the standard library are used (no torch, no numpy), so `synth` runs anywhere.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from llava15.world.synth.bench_common import Bench
from llava15.world.synth.benchmarks import BENCHMARKS
from llava15.world.synth.files import SceneSource, Writer, rng_for
from llava15.world.synth.questions import QUESTION_TYPES
from llava15.world.synth.regions import cell_regions
from llava15.world.synth.stage_data import (finetune_record, paragraph, pick_kind, pretrain_record,
                                            text_record)
from llava15.world.synth.vocab import WORDS

FORMAT = "llava15-synth/1"
OUTPUTS = ("images", "eval", "pretrain.json", "regions.json", "finetune.json", "train_text.txt",
           "manifest.json")


@dataclass(frozen=True)
class Scale:
    pretrain: int      # stage-1 images (one caption each)
    finetune: int      # stage-2 image samples
    text_only: int     # stage-2 text-only samples
    eval_unit: int     # held-out size unit (see benchmarks.BENCHMARKS)


SCALES = MappingProxyType({
    "small": Scale(pretrain=160, finetune=160, text_only=16, eval_unit=20),
    "demo": Scale(pretrain=4000, finetune=24000, text_only=1200, eval_unit=150),
})


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a directory that holds files unless `overwrite`; with it, remove only what a
    previous synth run writes (OUTPUTS), never anything else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a directory")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"output directory {out_dir} already holds files; choose an "
                                  "empty directory or pass --overwrite")
        for name in OUTPUTS:
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _write_training(w: Writer, seed: int, scale: Scale, seen: set[str]) -> dict:
    rng = rng_for(seed, "pretrain")
    source = SceneSource(rng, seen, WORDS)
    pretrain, regions, scenes = [], [], {}
    for i in range(scale.pretrain):
        image = f"pretrain/{i:06d}.png"
        scene = source.draw()
        w.image(scene, f"images/{image}")
        pretrain.append(pretrain_record(i, image, scene, rng))
        scenes[image] = scene
        regions.append({"image": image, "regions": cell_regions(scene)})
    w.json("pretrain.json", pretrain, indent=1)
    w.json("regions.json", regions)

    rng = rng_for(seed, "finetune")
    source = SceneSource(rng, seen, WORDS)
    finetune, kinds, types = [], Counter(), Counter()
    while len(finetune) < scale.finetune:
        kind = pick_kind(rng, kinds, scale.finetune - len(finetune))
        scene = source.draw(word=True if kind == "ocr" else None)
        image = f"finetune/{len(finetune):06d}.png"
        record, qtypes = finetune_record(len(finetune), image, kind, scene, rng)
        if record is None:
            continue
        w.image(scene, f"images/{image}")
        scenes[image] = scene
        finetune.append(record)
        kinds[kind] += 1
        types.update(qtypes)
    rng = rng_for(seed, "text")
    for i in range(scale.text_only):
        finetune.append(text_record(i, rng))
    kinds["text"] += scale.text_only
    rng_for(seed, "mix").shuffle(finetune)  # interleave modalities, as the 665K json does
    w.json("finetune.json", finetune, indent=1)

    paragraphs = [paragraph(r, scenes.get(r.get("image"))) for r in pretrain + finetune]
    w.text("train_text.txt", "\n\n".join(paragraphs) + "\n", len(paragraphs))
    return {"pretrain": {"samples": len(pretrain)},
            "finetune": {"samples": len(finetune), "kinds": dict(sorted(kinds.items())),
                         "rounds_per_type": dict(sorted(types.items()))}}


def _image_group(path: str) -> str:
    """Manifest key for an image: its benchmark directory (eval/<dir>) or its training folder."""
    parts = path.split("/")
    return "/".join(parts[:2])


def synthesize(out_dir: str | Path, *, seed: int = 0, scale: str = "demo", image_size: int = 96,
               overwrite: bool = False) -> dict:
    """Write the whole world to `out_dir` and return the manifest (also written as
    manifest.json). Same arguments -> byte-identical files."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    out = Path(out_dir)
    prepare_out_dir(out, overwrite)
    writer = Writer(out, image_size)
    sizes = SCALES[scale]
    seen: set[str] = set()  # every scene drawn so far: held-out images never repeat training ones
    training = _write_training(writer, seed, sizes, seen)
    benchmarks = {}
    for name, (directory, write, count) in BENCHMARKS.items():
        rng = rng_for(seed, "eval", name)
        bench = Bench(writer, SceneSource(rng, seen, WORDS), rng, f"eval/{directory}")
        write(bench, count(sizes.eval_unit))
        benchmarks[name] = bench.finish()
    images = Counter(_image_group(p) for p in writer.counts if p.endswith((".png", ".jpg")))
    files = Counter()
    for path, n in writer.counts.items():
        if path.endswith((".png", ".jpg")):
            continue
        if "/MME_Benchmark_release_version/" in path:  # one entry per category, not per image
            path = path.rsplit("/", 1)[0] + "/*.txt"
        files[path] += n
    manifest = {"format": FORMAT, "seed": seed, "scale": scale, "image_size": image_size,
                "image_folder": "images", "question_types": list(QUESTION_TYPES),
                "training": training, "benchmarks": benchmarks,
                "files": dict(sorted(files.items())), "images": dict(sorted(images.items()))}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    return manifest
