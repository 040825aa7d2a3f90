"""`llava15 demo`: the paper's recipe end to end in the offline world, on a CPU, in minutes.

synth -> stage 0 (tokenizer, tiny LLM, tiny CLIP) -> pretrain (projector) -> finetune
(projector + LLM) -> held-out suite (per question type, beside a gray-image blind baseline).
Each stage leaves `<out>/<stage>.done.json` (with its time); a re-run skips finished stages,
so an interrupted demo picks up where it stopped. Stages 1 and 2 run `llava15.train` on the
backbone directories stage 0 wrote, exactly as they would on Vicuna and CLIP ViT-L.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llava15.world.stage0 import Stage0Config

log = logging.getLogger("llava15.demo")
TEMPLATES = {"tiny": "vicuna_v1", "smol": "smollm2"}  # recipe -> template of stage 2 and evaluation


@dataclass(frozen=True)
class DemoConfig:
    out: str = "demo-out"
    seed: int = 0
    scale: str = "demo"  # synth scale: "demo" (the README run) or "small" (CI smoke test)
    recipe: str = "tiny"  # "tiny": stage 0 pretrains a tiny LLM; "smol": SmolLM2-135M (world/smol.py)
    device: str = "cpu"  # stages 1-2 and evaluation: "cpu" or "cuda"
    stage0: Stage0Config = field(default_factory=Stage0Config)
    projector_type: str = "mlp2x_gelu"
    pretrain_batch: int = 32
    pretrain_lr: float = 1e-3
    pretrain_epochs: int = 1
    finetune_batch: int = 16
    finetune_lr: float = 1e-3
    finetune_epochs: int = 2  # the paper: 1 epoch of 665K; this world's 25K samples need two
    finetune_fraction: float = 1.0  # the paper's data-efficiency study
    response_format: bool = True  # False: strip the response-format prompts (ablation)
    model_max_length: int = 320
    eval_batch: int = 64
    pretrain_fraction: float = 1.0  # share of the stage-1 captions trained on
    micro_batch: int | None = None  # None: each batch at once; else gradient accumulation
    eval_limit: int | None = None  # None: every held-out question
    # A time budget for the whole run: stage 2 gets as many steps as the time left allows after
    # a measured warm-up (`plan_finetune`), instead of `finetune_epochs`. None: the fixed recipe.
    minutes: float | None = None
    max_finetune_epochs: float = 6.0  # the planned stage 2 never runs longer than this
    # Ablation variants reuse the base run's world and backbones (and its stage-1 projector
    # when the projector type is the same) instead of training them again.
    shared_from: str = ""
    reuse_pretrain: bool = False

    def data_dir(self) -> Path:
        return Path(self.shared_from or self.out) / "data"

    def backbones_dir(self) -> Path:
        return Path(self.shared_from or self.out) / "backbones"

    def pretrain_dir(self) -> Path:
        return Path(self.shared_from if self.reuse_pretrain else self.out) / "pretrain"


def done_marker(out: Path, stage: str) -> Path:
    return out / f"{stage}.done.json"


def run_stage(out: Path, stage: str, fn: Callable[[], dict], timings: dict) -> dict:
    """Run `fn` unless the stage finished before; record its seconds and result."""
    marker = done_marker(out, stage)
    if marker.exists():
        record = json.loads(marker.read_text())
        log.info("%s: already done (%.0f s), skipping", stage, record["seconds"])
    else:
        started = time.perf_counter()
        log.info("%s: starting", stage)
        result = fn() or {}
        record = {"seconds": round(time.perf_counter() - started, 1), "result": result}
        marker.write_text(json.dumps(record, indent=2))
        log.info("%s: done in %.0f s", stage, record["seconds"])
    timings[stage] = record["seconds"]
    return record["result"]


def stage_synth(cfg: DemoConfig, out: Path) -> dict:
    from llava15.world.synth import synthesize

    manifest = synthesize(out / "data", seed=cfg.seed, scale=cfg.scale, overwrite=True,
                          image_size=cfg.stage0.vision.image_size)  # drawn at the tower's size
    return {"finetune_samples": manifest["training"]["finetune"]["samples"]}


RESPONSE_FORMATS = ("\nAnswer the question using a single word or phrase.",
                    "\nAnswer with the option's letter from the given choices directly.")


def finetune_data(cfg: DemoConfig) -> Path:
    """The stage-2 mixture; without response-format prompts (the ablation) the same records
    with the suffixes removed, written once beside the original."""
    path = cfg.data_dir() / "finetune.json"
    if cfg.response_format:
        return path
    stripped = cfg.data_dir() / "finetune_no_response_format.json"
    if not stripped.exists():
        records = json.loads(path.read_text())
        for record in records:
            for turn in record["conversations"]:
                for suffix in RESPONSE_FORMATS:
                    turn["value"] = turn["value"].replace(suffix, "")
        stripped.write_text(json.dumps(records))
    return stripped


def read_regions(path: Path, images: list[str]) -> list[list[tuple[list[float], str]]]:
    """The region descriptions of `images`, in their order, from synth's `regions.json`."""
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    by_image = {}
    for i, record in enumerate(records):
        try:
            by_image[record["image"]] = [(r["bbox"], r["phrase"]) for r in record["regions"]]
        except (KeyError, TypeError) as error:
            raise ValueError(f"{path}: record {i} lacks {error}") from error
    missing = [image for image in images if image not in by_image]
    if missing:
        raise ValueError(f"{path}: no regions for {len(missing)} pretraining images, e.g. {missing[0]}")
    return [by_image[image] for image in images]


def stage0(cfg: DemoConfig, out: Path, progress) -> dict:
    from llava15.data.image import ImageProcessorConfig
    from llava15.data.tokenizer import load_tokenizer
    from llava15.world.backbones import save_clip_dir, save_llm_dir
    from llava15.world.stage0 import pretrain_clip, pretrain_llm, train_tokenizer

    data, backbones = out / "data", out / "backbones"
    tok_dir = train_tokenizer(data / "train_text.txt", backbones / "tokenizer", cfg.stage0.vocab_size)
    tokenizer = load_tokenizer(tok_dir)
    if cfg.recipe == "smol":  # a real pretrained LLM instead of a tiny one
        from llava15.world.backbones import convert_smol_llm
        llm_parameters = convert_smol_llm(backbones / "llm")
    else:
        paragraphs = [p for p in (data / "train_text.txt").read_text().split("\n\n") if p.strip()]
        llm = pretrain_llm(paragraphs, tokenizer, cfg.stage0, progress("stage 0 LLM", cfg.stage0.llm_steps))
        save_llm_dir(llm, tok_dir, backbones / "llm")
        llm_parameters = sum(p.numel() for p in llm.parameters())
    size = cfg.stage0.vision.image_size
    image_config = ImageProcessorConfig(shortest_edge=size, crop_size=(size, size))
    records = json.loads((data / "pretrain.json").read_text())
    tower = pretrain_clip([data / "images" / r["image"] for r in records],
                          [r["conversations"][1]["value"] for r in records], tokenizer,
                          image_config, cfg.stage0, progress("stage 0 CLIP", cfg.stage0.clip_steps),
                          regions=read_regions(data / "regions.json", [r["image"] for r in records]))
    save_clip_dir(tower, image_config, backbones / "clip")
    return {"llm_parameters": llm_parameters,
            "vision_parameters": sum(p.numel() for p in tower.parameters())}


def train_config(cfg: DemoConfig, out: Path, stage: str):
    from llava15.train.config import FINETUNE, PRETRAIN, DataConfig, TrainConfig

    data = cfg.data_dir()
    if stage == "pretrain":
        recipe = dataclasses.replace(PRETRAIN, lr=cfg.pretrain_lr, global_batch_size=cfg.pretrain_batch,
                                     per_device_batch_size=cfg.pretrain_batch, epochs=cfg.pretrain_epochs)
        path, adapter = data / "pretrain.json", ""
    else:
        recipe = dataclasses.replace(FINETUNE, lr=cfg.finetune_lr, global_batch_size=cfg.finetune_batch,
                                     per_device_batch_size=cfg.finetune_batch, epochs=cfg.finetune_epochs,
                                     template=TEMPLATES[cfg.recipe])
        path, adapter = finetune_data(cfg), str(cfg.pretrain_dir() / "mm_projector.bin")
    return TrainConfig(
        stage=recipe, out=str(out / stage), seed=cfg.seed, llm=str(cfg.backbones_dir() / "llm"),
        vision_tower=str(cfg.backbones_dir() / "clip"), pretrain_mm_mlp_adapter=adapter,
        mm_projector_type=cfg.projector_type, gradient_checkpointing=False, save_steps=10_000,
        micro_batch_size=cfg.micro_batch, device=cfg.device, shared_prefix=True,
        # the world's data comes from synth (its records are tested there); a data check here
        # would decode every image once more inside the time budget
        data=DataConfig(path=str(path), image_folder=str(data / "images"), num_workers=0, cache_text=True,
                        model_max_length=cfg.model_max_length, check=False,
                        subsample=cfg.finetune_fraction if stage == "finetune" else cfg.pretrain_fraction),
    ).validate()


def run_training(config) -> "object":
    from llava15.train.distributed import init_runtime, shutdown
    from llava15.train.loop import train

    runtime = init_runtime(0, 1, 0, config.device)
    try:
        return train(config, runtime)
    finally:
        shutdown(runtime)


def stage_train(cfg: DemoConfig, out: Path, stage: str, plan: dict | None = None) -> dict:
    # A stage killed after it saved a checkpoint (the last one is saved before the stage's
    # outputs and done-marker are written) continues from it; without one it starts over.
    config = dataclasses.replace(train_config(cfg, out, stage), resume=True)
    if plan is not None:  # exactly the planned steps, the learning-rate schedule over them
        stage_config = dataclasses.replace(config.stage, epochs=max(1, math.ceil(plan["epochs"])))
        config = dataclasses.replace(config, stage=stage_config, max_steps=plan["steps"])
    trained = run_training(config)
    return {"steps": trained.state.step}


WARMUP_STEPS = 8  # stage-2 steps timed to plan the rest; the first two are left out (warm caches)
RESERVE_S = 30.0  # evaluation and the report after stage 2


def planned_steps(left_s: float, step_s: float, per_epoch: int, max_epochs: float) -> int:
    """The stage-2 steps that fit in `left_s` at `step_s` each, at least a quarter epoch (below
    that the mixture is not even seen once per kind) and at most `max_epochs`."""
    fits = int(max(0.0, left_s) // step_s)
    return max(math.ceil(per_epoch / 4), min(fits, int(per_epoch * max_epochs)))


def plan_finetune(cfg: DemoConfig, out: Path, elapsed_s: float) -> dict:
    """How many stage-2 steps fit in what is left of `cfg.minutes`: time a short warm-up run
    of stage 2 (thrown away), then take the steps that fit after the reserve for evaluation and
    a 3% margin, at least a quarter epoch and at most `max_finetune_epochs`."""
    import shutil
    import statistics

    warmup_dir = out / "finetune-warmup"
    shutil.rmtree(warmup_dir, ignore_errors=True)
    config = dataclasses.replace(train_config(cfg, out, "finetune"), out=str(warmup_dir),
                                 max_steps=WARMUP_STEPS)
    started = time.perf_counter()
    trained = run_training(config)
    warmup_s = time.perf_counter() - started
    rows = [json.loads(line) for line in (warmup_dir / "metrics.jsonl").read_text().splitlines()]
    step_s = statistics.median(r["seconds"] for r in rows[2:] or rows)
    overhead_s = max(0.0, warmup_s - sum(r["seconds"] for r in rows))
    shutil.rmtree(warmup_dir, ignore_errors=True)
    budget_s = 60.0 * cfg.minutes
    left_s = budget_s - elapsed_s - warmup_s - overhead_s - RESERVE_S - 0.03 * budget_s
    per_epoch = trained.steps_per_epoch
    steps = planned_steps(left_s, step_s, per_epoch, cfg.max_finetune_epochs)
    plan = {"budget_s": budget_s, "elapsed_before_s": round(elapsed_s, 1),
            "warmup_s": round(warmup_s, 1), "step_s": round(step_s, 4), "steps": steps,
            "steps_per_epoch": per_epoch, "epochs": round(steps / per_epoch, 3)}
    if steps * step_s > max(0.0, left_s):
        log.warning("the budget leaves no time for stage 2: training the minimum, %d steps", steps)
    log.info("plan: stage 2 at %.0f ms a step -> %d steps (%.2f epochs) in %.0f of %.0f s",
             1000 * step_s, steps, plan["epochs"], steps * step_s, budget_s)
    return plan


def stage_evaluate(cfg: DemoConfig, out: Path) -> dict:
    from tqdm import tqdm

    from llava15.infer.engine import load_engine
    from llava15.world.suite import answer_suite, summarize, write_records

    engine = load_engine(out / "finetune", conv_mode=TEMPLATES[cfg.recipe])
    engine.model.to(cfg.device)
    results = {}
    for name, blind in (("model", False), ("blind", True)):
        records = answer_suite(engine, cfg.data_dir() / "eval", blind=blind, batch_size=cfg.eval_batch,
                               limit=cfg.eval_limit,
                               progress=lambda total, n=name: tqdm(total=total, desc=f"suite ({n})",
                                                                   unit="q"))
        write_records(records, out / f"suite_{name}.jsonl")
        results[name] = summarize(records)
    return results


def step_progress(desc: str, total: int, enabled: bool = True) -> Callable[[int, dict], None]:
    """A `(step, metrics)` callback drawing a tqdm bar (rate and ETA) for stage 0's loops."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", disable=not enabled)

    def update(step: int, metrics: dict) -> None:
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in metrics.items()}, refresh=False)
        if step + 1 >= total:
            bar.close()
    return update


def smoke_config(out: str, seed: int = 0) -> DemoConfig:
    """About a minute on 2 cores: the small world (160 images a stage), a short stage 0, and
    the few images seen many times: 15 epochs of stage 2, because with 10 the mixture stays at
    the blind model's accuracy, and the smoke test needs the model to beat it."""
    stage0 = Stage0Config(llm_steps=60, clip_steps=150, clip_batch_size=32)
    return DemoConfig(out=out, seed=seed, scale="small", stage0=stage0, pretrain_batch=16,
                      pretrain_epochs=2, finetune_batch=8, finetune_epochs=15)


def run_demo(cfg: DemoConfig, show_progress: bool = True) -> dict:
    """Run (or resume) every stage; writes `results.json`, curves and a chart into `cfg.out`."""
    from llava15.world.report import write_report

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    progress = lambda desc, total: step_progress(desc, total, show_progress)  # noqa: E731
    timings: dict[str, float] = {}
    if not cfg.shared_from:
        run_stage(out, "synth", lambda: stage_synth(cfg, out), timings)
        run_stage(out, "stage0", lambda: stage0(cfg, out, progress), timings)
    if not cfg.reuse_pretrain:
        run_stage(out, "pretrain", lambda: stage_train(cfg, out, "pretrain"), timings)
    plan = None
    if cfg.minutes is not None:  # a resumed run keeps the plan it made (its done-marker)
        plan = run_stage(out, "plan", lambda: plan_finetune(cfg, out, sum(timings.values())), timings)
    run_stage(out, "finetune", lambda: stage_train(cfg, out, "finetune", plan), timings)
    suite = run_stage(out, "evaluate", lambda: stage_evaluate(cfg, out), timings)
    return write_report(out, suite, timings, cfg.data_dir(), plan)


ABLATIONS = {  # the paper's comparisons (its Table 4 rows), name -> changes to the base recipe
    "linear projector": {"projector_type": "linear"},
    "no response-format prompts": {"response_format": False, "reuse_pretrain": True},
    "50% stage-2 data": {"finetune_fraction": 0.5, "reuse_pretrain": True},
}


def run_ablation(base: DemoConfig, show_progress: bool = True) -> dict:
    """The base demo, then each variant on the same world and backbones, side by side."""
    from llava15.world.report import ablation_table

    results = {"base (MLP, response formats, 100%)": run_demo(base, show_progress)}
    for name, changes in ABLATIONS.items():
        slug = name.replace(" ", "_").replace("%", "pct")
        variant = dataclasses.replace(base, out=str(Path(base.out) / "ablate" / slug),
                                      shared_from=base.out, **changes)
        results[name] = run_demo(variant, show_progress)
    summary = {name: {"overall": r["accuracy"]["model"]["overall"],
                      "per_type": r["accuracy"]["model"]["per_type"],
                      "answer_words_mean": r["accuracy"]["model"]["answer_words_mean"],
                      "single_word_share": r["accuracy"]["model"]["single_word_share"],
                      "seconds": r["seconds_total"]} for name, r in results.items()}
    (Path(base.out) / "ablation.json").write_text(json.dumps(summary, indent=2))
    print(ablation_table(summary))
    return summary
