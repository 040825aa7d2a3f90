"""Checkpoints of a training run, written atomically, and exact resume.

A checkpoint directory `checkpoint-N` holds the trainable weights (`trainable.safetensors`, the
frozen ones come back from the run's model sources), the optimizer and scheduler states, the
trainer state (step, epoch, position in the epoch's order, counters), every process's RNG states
and the resolved run config. It is written as `.tmp-checkpoint-N` and renamed only when complete,
so a crash while saving leaves the previous checkpoint untouched; `latest_checkpoint` ignores
temporary directories.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from llava15.train.config import TrainConfig, save_json
from llava15.train.distributed import Runtime, barrier

PREFIX = "checkpoint-"


@dataclass
class TrainerState:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    step_in_epoch: int = 0  # optimizer steps done within `epoch` (the sampler position)
    samples: int = 0  # samples trained on
    tokens: int = 0  # real tokens seen
    skipped: int = 0  # images missing, corrupt or cut by model_max_length
    fully_masked: int = 0  # samples without a target token (dropped)
    mismatched: int = 0  # of which: the official tokenization-mismatch rule
    skipped_examples: list = field(default_factory=list)  # the first few (index, reason)


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
             "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def model_state(model: nn.Module, runtime: Runtime, names: set[str]) -> dict[str, torch.Tensor]:
    """Full (unsharded) tensors of `names`, on CPU, as copies (never views of live parameters);
    complete on the main process."""
    if runtime.distributed:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        full = model.state_dict()
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in full.items() if k in names}


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, runtime: Runtime) -> dict:
    if runtime.distributed:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
        return get_optimizer_state_dict(model, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict()


def save_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                    state: TrainerState, config: TrainConfig, runtime: Runtime,
                    export: Callable[[Path, dict], None] | None = None) -> Path:
    """Write `run_dir/checkpoint-{step}` atomically; keep the newest `save_total_limit`.
    Every process calls this (the gathers are collective); `export(dir, trainable weights)`
    adds a stage's own files."""
    final = run_dir / f"{PREFIX}{state.step}"
    tmp = run_dir / f".tmp-{PREFIX}{state.step}"
    weights = model_state(model, runtime, trainable_names(model))
    optim = optimizer_state(model, optimizer, runtime)
    if runtime.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(runtime)
    torch.save(rng_state(), tmp / f"rng_state_{runtime.rank}.pt")
    if runtime.is_main:
        save_file(weights, str(tmp / "trainable.safetensors"), metadata={"format": "pt"})
        torch.save(optim, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(dataclasses.asdict(state), indent=2))
        save_json(config, tmp / "train_config.json")
        if export is not None:
            export(tmp, weights)
    barrier(runtime)
    if runtime.is_main:
        sync_tree(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)  # atomic: the checkpoint exists whole or not at all
        sync_tree(run_dir, files=False)
        prune(run_dir, config.save_total_limit)
    barrier(runtime)
    return final


def sync_tree(path: Path, files: bool = True) -> None:
    """fsync the files of a directory and the directory itself, so a rename publishes data on disk."""
    if files:
        for f in path.iterdir():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    found = [p for p in run_dir.glob(f"{PREFIX}*") if p.is_dir() and p.name[len(PREFIX):].isdigit()
             and (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def prune(run_dir: Path, keep: int) -> None:
    if keep > 0:
        for old in checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old)


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                    runtime: Runtime) -> TrainerState:
    """Restore weights, optimizer, scheduler and RNG states saved by `save_checkpoint`."""
    weights = load_file(str(path / "trainable.safetensors"))
    names = trainable_names(model)
    if set(weights) != names:
        raise ValueError(f"{path}: trainable weights do not match this run's trainable parameters "
                         f"(missing {sorted(names - set(weights))[:5]}, extra {sorted(set(weights) - names)[:5]})")
    optim = torch.load(path / "optimizer.pt", weights_only=True)
    if runtime.distributed:
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                             set_optimizer_state_dict)
        options = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(model, weights, options=options)
        set_optimizer_state_dict(model, optimizer, optim, options=options)
    else:
        model.load_state_dict(weights, strict=False)
        optimizer.load_state_dict(optim)
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng_file = path / f"rng_state_{runtime.rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=True))
    return TrainerState(**json.loads((path / "trainer_state.json").read_text()))
