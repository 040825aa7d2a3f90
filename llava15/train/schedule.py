"""Learning-rate schedule: linear warmup over ceil(warmup_ratio x steps), then cosine to 0.

The same curve as HF `get_cosine_schedule_with_warmup` (the official `--lr_scheduler_type
cosine`); the scheduler steps after each optimizer step, so step 0 runs at lr x 0 when there is
warmup, as in the official runs.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    return math.ceil(total_steps * warmup_ratio)


def cosine_with_warmup(step: int, total_steps: int, warmup: int) -> float:
    """The lr multiplier of optimizer step `step` (0-based)."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total_steps - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def constant_with_warmup(step: int, total_steps: int, warmup: int) -> float:
    return step / max(1, warmup) if step < warmup else 1.0


SCHEDULES = {"cosine": cosine_with_warmup, "constant": constant_with_warmup}


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, total_steps: int,
                    warmup_ratio: float) -> LambdaLR:
    if name not in SCHEDULES:
        raise ValueError(f"unknown lr_scheduler {name!r}; choose from {sorted(SCHEDULES)}")
    rule, warmup = SCHEDULES[name], warmup_steps(total_steps, warmup_ratio)
    return LambdaLR(optimizer, lambda step: rule(step, total_steps, warmup))


def reapply(scheduler: LambdaLR) -> None:
    """Set each group's lr from the schedule at the scheduler's current step. After a resume this
    makes the restored optimizer follow the schedule of the current run (which may have a
    different length, e.g. a changed max_steps); with an unchanged run it changes nothing."""
    for group, base, rule in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * rule(scheduler.last_epoch)
