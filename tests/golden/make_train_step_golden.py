"""Golden optimizer steps of the official trainer (`llava.train.train.train()` + `LLaVATrainer`).

Run from the repository root with the official venv (llava-torch 1.2.2.post1, transformers 4.37.2,
accelerate 0.21.0):

    /work/official/venv/bin/python tests/golden/make_train_step_golden.py

Writes `tests/golden/train_step/`:
- `images/*.png` and `{pretrain,finetune}.json`: twelve training records per stage, in the official
  format. Stage 1 (`plain`): one image and one caption each, captions of different lengths so that
  micro-batches hold different numbers of target tokens. Stage 2 (`v1`): nine records with an
  image (some multi-turn) and three text-only ones, so the modality-grouped sampler makes
  image-only micro-batches and, from the leftovers of both modalities, mixed ones.
- `results.json`: per stage the command-line arguments given to the official `train()`, the order in
  which the sampler visited the records, and per optimizer step the learning rate the optimizer
  used, the micro-batch losses (unrounded), the step loss (their mean, what HF logs rounded to 4
  digits), the gradient norm before clipping (what `clip_grad_norm_` returns) and after it, and,
  for every trained tensor, the sum and L2 norm of its change from the start to after the last step.
- `weights.npz`: the trained tensors after the last step under their official names (float32): the
  projector in both stages, the small LLM tensors (norms) in stage 2.

The run is the official one on the tiny checkpoints of `tests/golden/checkpoints/` (`base_llm`,
`clip`, and the stage-1 projector `llava-tiny-projector/mm_projector.bin` as
`--pretrain_mm_mlp_adapter`, so no fresh projector initialisation is involved), per-device batch 2,
gradient accumulation 2 (three optimizer steps of four records), cosine schedule with
warmup_ratio 0.03 (one warmup step: step 0 runs at lr 0 and only fills AdamW's moments),
max_grad_norm 1.0, gradient checkpointing, one process on the CPU in float32. What differs from
the official scripts, and why:
- learning rate 1e-3 in both stages (the scripts: 1e-3, 2e-5): a stage-2 update of 2e-5 would
  be hardly larger than float32 rounding of the weights it changes;
- `group_by_modality_length` in stage 1 too (the scripts: only in stage 2), and the global torch
  RNG seeded with `--seed` right before the sampler draws its order from it. The order is then
  `get_modality_length_grouped_indices` after `torch.manual_seed(seed)`, which our sampler
  reproduces. Left alone, the official trainer (one process) draws the DataLoader's base seed
  from that RNG first, one int64 after HF's `set_seed`; `results.json` keeps that order too
  (`trainer_order`). HF's default `RandomSampler` (no grouping) would draw its own seed from the
  RNG state as well;
- `dataloader_num_workers 0` and no bf16 / tf32 (a CPU run);
- the vision tower in float32: `train()` casts it to float16 when bf16 is off, which on a GPU
  run would be bf16; here `float16` reads as float32 in `train.py`, as for the other goldens.
Nothing else of the official code is changed: a `LLaVATrainer` subclass only records (the loss of
each micro-batch, the norm `clip_grad_norm_` returns and the norm after it, the sampler's order)
and a callback records the learning rate and the weights.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

from make_checkpoint_golden import install_deepspeed_stub

HERE = Path(__file__).resolve().parent
OUT = HERE / "train_step"
CHECKPOINTS = HERE / "checkpoints"
SEED = 42
LEARNING_RATE = 1e-3
MICRO_BATCH = 2
ACCUMULATION = 2
MAX_LENGTH = 128

CAPTIONS = [
    "a red box", "two green lines on a grey field near the top", "blue", "a small yellow square in the "
    "middle of a dark picture with a thin border", "white and black stripes", "an orange dot",
    "three purple circles next to each other on a light background", "a cyan corner",
    "the letter T drawn in brown", "pink", "a dark blue frame around an empty white space in the centre",
    "a grey gradient from left to right"]


def write_images() -> list[str]:
    """Twelve small images of different sizes and aspect ratios (for `square` crop and `pad`)."""
    (OUT / "images").mkdir(parents=True, exist_ok=True)
    gen = np.random.default_rng(SEED)
    names = []
    for i in range(12):
        width, height = (int(x) for x in gen.integers(14, 48, size=2))
        base = gen.integers(0, 256, size=3)
        pixels = np.clip(base + gen.normal(0, 40, size=(height, width, 3)), 0, 255).astype(np.uint8)
        name = f"{i:02d}.png"
        Image.fromarray(pixels, "RGB").save(OUT / "images" / name)
        names.append(name)
    return names


def pretrain_records(images: list[str]) -> list[dict]:
    return [{"id": f"p{i}", "image": image, "conversations": [
        {"from": "human", "value": "<image>\n"}, {"from": "gpt", "value": caption}]}
        for i, (image, caption) in enumerate(zip(images, CAPTIONS))]


def finetune_records(images: list[str]) -> list[dict]:
    records = []
    for i, (image, caption) in enumerate(zip(images[:9], CAPTIONS[:9])):
        turns = [{"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": caption.capitalize() + "."}]
        if i % 3 == 1:
            turns += [{"from": "human", "value": "Is it large?"}, {"from": "gpt", "value": "No, it is small."}]
        records.append({"id": f"f{i}", "image": image, "conversations": turns})
    chats = [("What is 12 plus 30?", "12 plus 30 is 42."), ("Name a colour.", "Red."),
             ("Say hello.", "Hello there, how can I help you today?")]
    for i, (question, answer) in enumerate(chats):
        records.append({"id": f"t{i}", "conversations": [{"from": "human", "value": question},
                                                         {"from": "gpt", "value": answer}]})
    return records


def stage_arguments(stage: str, data_path: Path, output_dir: Path) -> list[str]:
    common = {
        "model_name_or_path": CHECKPOINTS / "base_llm", "vision_tower": CHECKPOINTS / "clip",
        "pretrain_mm_mlp_adapter": CHECKPOINTS / "llava-tiny-projector" / "mm_projector.bin",
        "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2, "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False, "data_path": data_path, "image_folder": OUT / "images",
        "group_by_modality_length": True, "output_dir": output_dir, "num_train_epochs": 1,
        "per_device_train_batch_size": MICRO_BATCH, "gradient_accumulation_steps": ACCUMULATION,
        "evaluation_strategy": "no", "save_strategy": "no", "learning_rate": LEARNING_RATE,
        "weight_decay": 0.0, "warmup_ratio": 0.03, "lr_scheduler_type": "cosine", "max_grad_norm": 1.0,
        "logging_steps": 1, "model_max_length": MAX_LENGTH, "gradient_checkpointing": True,
        "dataloader_num_workers": 0, "lazy_preprocess": True, "report_to": "none", "seed": SEED,
    }
    if stage == "pretrain":
        common.update(version="plain", tune_mm_mlp_adapter=True, image_aspect_ratio="square")
    else:
        common.update(version="v1", image_aspect_ratio="pad")
    return [item for key, value in common.items() for item in (f"--{key}", str(value))]


def float32_torch():
    """`torch` for `train.py`, whose `float16` (the vision tower's hard-coded non-bf16 dtype) reads
    as float32: the CPU run keeps every module in float32."""
    class Float32Torch:
        def __getattr__(self, attr):
            return torch.float32 if attr == "float16" else getattr(torch, attr)

    return Float32Torch()


class RecordingSampler(torch.utils.data.Sampler):
    """The official sampler, drawing from the global RNG seeded with `seed` (see the module
    docstring); the order the trainer would have drawn without that is kept too."""

    def __init__(self, inner, seed: int, log: dict) -> None:
        self.inner, self.seed, self.log = inner, seed, log

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self):
        self.log["trainer_orders"].append([int(i) for i in self.inner])
        torch.manual_seed(self.seed)
        order = [int(i) for i in self.inner]
        self.log["orders"].append(order)
        return iter(order)


class Recorder(transformers.TrainerCallback):
    """Learning rate at each step's start (what the optimizer uses), and the weights at the start
    and the end."""

    def __init__(self, log: dict) -> None:
        self.log = log

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.log["before"] = trained_tensors(model)

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.log["lr"].append([group["lr"] for group in optimizer.param_groups])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in logs:  # per-step logs; the closing summary carries wall times
            self.log["hf_logs"].append(dict(logs))

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.log["after"] = trained_tensors(model)


def trained_tensors(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad}


def recording_trainer(base: type, log: dict) -> type:
    class RecordingTrainer(base):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.add_callback(Recorder(log))
            clip = self.accelerator.clip_grad_norm_

            def clip_and_record(parameters, max_norm, norm_type=2):
                parameters = list(parameters)
                norm = clip(parameters, max_norm, norm_type=norm_type)
                grads = [p.grad.detach().double().flatten() for p in parameters if p.grad is not None]
                log["grad_norm"].append(float(norm))
                log["grad_norm_clipped"].append(float(torch.cat(grads).norm()))
                return norm

            self.accelerator.clip_grad_norm_ = clip_and_record

        def _get_train_sampler(self):
            return RecordingSampler(super()._get_train_sampler(), self.args.seed, log)

        def compute_loss(self, model, inputs, return_outputs=False):
            out = super().compute_loss(model, inputs, return_outputs)
            log["micro_losses"].append(float((out[0] if return_outputs else out).detach()))
            return out

    return RecordingTrainer


def run_official(stage: str, records: list[dict]) -> tuple[dict, dict[str, np.ndarray]]:
    from llava.train import train as official

    install_deepspeed_stub()  # the stage-1 projector save goes through `maybe_zero_3`
    data_path = OUT / f"{stage}.json"
    data_path.write_text(json.dumps(records, indent=1) + "\n")
    log = {"lr": [], "micro_losses": [], "grad_norm": [], "grad_norm_clipped": [], "orders": [], "trainer_orders": [],
           "hf_logs": []}
    saved = {name: getattr(official, name) for name in ("torch", "LLaVATrainer")}
    saved_argv = sys.argv
    with tempfile.TemporaryDirectory() as output_dir:
        argv = stage_arguments(stage, data_path, Path(output_dir))
        official.torch, official.LLaVATrainer = float32_torch(), recording_trainer(official.LLaVATrainer, log)
        sys.argv = ["train.py", *argv]  # `train()` reads its arguments from the command line
        try:
            official.train()
        finally:
            sys.argv = saved_argv
            for name, value in saved.items():
                setattr(official, name, value)
    steps = len(log["lr"])
    assert len(log["micro_losses"]) == steps * ACCUMULATION and len(log["grad_norm"]) == steps, log
    (order,) = log["orders"]
    micro = [log["micro_losses"][k * ACCUMULATION:(k + 1) * ACCUMULATION] for k in range(steps)]
    result = {
        "arguments": [a.replace(output_dir, "<tmp>").replace(str(HERE.parent.parent) + "/", "") for a in argv],
        "order": order,
        "trainer_order": log["trainer_orders"][0],
        "micro_batches": [order[i:i + MICRO_BATCH] for i in range(0, len(order), MICRO_BATCH)],
        "steps": [{"step": k, "lr": log["lr"][k][0], "micro_losses": micro[k], "loss": sum(micro[k]) / len(micro[k]),
                   "grad_norm": log["grad_norm"][k], "grad_norm_clipped": log["grad_norm_clipped"][k]}
                  for k in range(steps)],
        "hf_logs": log["hf_logs"],
        "change": {name: {"sum": float((after - log["before"][name]).double().sum()),
                          "norm": float((after - log["before"][name]).double().norm())}
                   for name, after in log["after"].items()},
    }
    for row in log["lr"]:
        assert len(set(row)) == 1, row  # one learning rate for every group
    weights = {f"{stage}/{name}": t.numpy() for name, t in log["after"].items()
               if "mm_projector" in name or "norm" in name}
    return result, weights


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    images = write_images()
    results = {"versions": {"llava-torch": "1.2.2.post1", "transformers": transformers.__version__,
                            "torch": torch.__version__.split("+")[0]},
               "micro_batch": MICRO_BATCH, "accumulation": ACCUMULATION, "seed": SEED}
    weights = {}
    for stage, records in (("pretrain", pretrain_records(images)), ("finetune", finetune_records(images))):
        results[stage], stage_weights = run_official(stage, records)
        weights.update(stage_weights)
    import accelerate

    results["versions"]["accelerate"] = accelerate.__version__
    (OUT / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    np.savez_compressed(OUT / "weights.npz", **weights)
    for stage in ("pretrain", "finetune"):
        for row in results[stage]["steps"]:
            print(stage, {k: v for k, v in row.items() if k != "micro_losses"})
    assert all(math.isfinite(r["loss"]) for s in ("pretrain", "finetune") for r in results[s]["steps"])


if __name__ == "__main__":
    main()
