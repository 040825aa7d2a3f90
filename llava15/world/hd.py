"""`llava15 demo --hd`: LLaVA-1.5-HD against the base model on details a one-tile view loses.

Both variants start from the demo's stage-2 model and train on the same HD conversations
(`synth/hd.py`) with the same steps, batch and learning rate; they differ only in how an image
becomes tokens:
- base: the official `pad` preprocessing, one view at the tower's resolution (9 tokens);
- HD: `anyres` with the single grid 2x2 (`image_grid_pinpoints [(192, 192)]` for the 96-pixel
  tower) and the `spatial` merge of LLaVA-1.5-HD: four full-resolution tiles plus the
  downsampled global view (5 x 9 = 45 tokens), no unpadding and no newline embedding.
Then both answer the held-out HD questions (words, shapes and counts in one quadrant, the colours
of the background's one-pixel checks); the table gives accuracy per question type and the image
tokens each variant spends. Stages leave done-markers, so a re-run resumes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from llava15.world.demo import done_marker, run_stage, run_training

VARIANTS = {  # name -> (image_aspect_ratio, 2x2 grid pinpoints?, mm_patch_merge_type)
    "base": ("pad", False, None),
    "hd": ("anyres", True, "spatial"),
}


@dataclass(frozen=True)
class HDConfig:
    demo_out: str = "demo-out"  # a finished `llava15 demo` run: its backbones and stage-2 model
    seed: int = 0
    train_images: int = 600
    eval_images: int = 100
    epochs: int = 6
    batch: int = 16
    lr: float = 5e-4

    def out(self) -> Path:
        return Path(self.demo_out) / "hd"

    def tile(self) -> int:
        """The demo tower's input size: one HD quadrant, drawn at full resolution."""
        config = Path(self.demo_out) / "backbones" / "clip" / "config.json"
        return int(json.loads(config.read_text())["image_size"])


def train_variant(cfg: HDConfig, name: str) -> dict:
    from llava15.train.config import FINETUNE, DataConfig, TrainConfig

    aspect, grid, merge = VARIANTS[name]
    size = 2 * cfg.tile()
    pinpoints = f"[({size}, {size})]" if grid else None
    data = cfg.out() / "data"
    stage = dataclasses.replace(FINETUNE, lr=cfg.lr, global_batch_size=cfg.batch,
                                per_device_batch_size=cfg.batch, epochs=cfg.epochs,
                                image_aspect_ratio=aspect)
    config = TrainConfig(
        stage=stage, out=str(cfg.out() / name), seed=cfg.seed, model=str(Path(cfg.demo_out) / "finetune"),
        image_grid_pinpoints=pinpoints, mm_patch_merge_type=merge, gradient_checkpointing=False,
        save_steps=10_000, resume=True,  # a variant killed after its last save continues from it
        data=DataConfig(path=str(data / "hd_finetune.json"), image_folder=str(data / "images"),
                        num_workers=0, model_max_length=512, check=False),
        device="cpu",
    ).validate()
    return {"steps": run_training(config).state.step}  # the demo's one training call


def evaluate_variant(cfg: HDConfig, name: str) -> dict:
    from tqdm import tqdm

    from llava15.infer.engine import load_engine
    from llava15.infer.question import Question
    from llava15.world.suite import answer_items, summarize, write_records

    data = cfg.out() / "data"
    rows = [json.loads(line) for line in (data / "hd_eval.jsonl").read_text().splitlines()]
    items = [Question(r["question_id"], r["image"], r["text"],
                      extra={"type": r["type"], "references": [r["answer"]] * 10})
             for r in rows]
    engine = load_engine(cfg.out() / name, conv_mode="vicuna_v1")
    records = answer_items(engine, items, data / "images", batch_size=32,
                           progress=lambda total: tqdm(total=total, desc=f"hd suite ({name})", unit="q"))
    write_records(records, cfg.out() / f"suite_{name}.jsonl")
    size = 2 * cfg.tile()
    return {**summarize(records), "image_tokens": engine.image_token_counts([(size, size)])[0]}


def hd_table(results: dict) -> str:
    types = sorted({t for r in results.values() for t in r["per_type"]})
    lines = [f"{'question type':<16}" + "".join(f"{name:>10}" for name in results) + "      gain"]
    for t in [*types, "overall"]:
        values = [r["overall"] if t == "overall" else r["per_type"].get(t, 0.0) for r in results.values()]
        lines.append(f"{t:<16}" + "".join(f"{v:>10.3f}" for v in values) + f"{values[-1] - values[0]:>+10.3f}")
    lines.append(f"{'image tokens':<16}" + "".join(f"{r['image_tokens']:>10}" for r in results.values()))
    return "\n".join(lines)


def run_hd(cfg: HDConfig) -> dict:
    """Synthesize the HD set, train both variants on it, evaluate both; writes
    `<demo_out>/hd/hd_results.json` and prints the comparison."""
    from llava15.world.synth.hd import synthesize_hd

    if not done_marker(Path(cfg.demo_out), "finetune").exists():
        raise FileNotFoundError(f"{cfg.demo_out}: no finished demo (finetune.done.json); "
                                f"run `llava15 demo --out {cfg.demo_out}` first")
    out = cfg.out()
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    run_stage(out, "hd_synth", lambda: synthesize_hd(out / "data", seed=cfg.seed,
                                                    train_images=cfg.train_images,
                                                    eval_images=cfg.eval_images, tile=cfg.tile()),
              timings)
    results = {}
    for name in VARIANTS:
        run_stage(out, f"hd_train_{name}", lambda n=name: train_variant(cfg, n), timings)
        results[name] = run_stage(out, f"hd_evaluate_{name}", lambda n=name: evaluate_variant(cfg, n),
                                  timings)
    report = {"accuracy": results, "seconds_per_stage": timings, "config": dataclasses.asdict(cfg)}
    (out / "hd_results.json").write_text(json.dumps(report, indent=2))
    print(hd_table(results))
    return report
