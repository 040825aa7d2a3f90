"""The single training loop: one CPU process, one GPU, or many processes with FSDP2.

Per optimizer step, each process takes its micro-batches of the step (`micro_batches_for_step`),
runs forward and backward on each, and then clips, steps AdamW and the warmup+cosine schedule.

Loss normalisation across micro-batches and processes is a named rule (`loss_normalization`):
* `mean_per_microbatch` (HF Trainer, hence the official runs): each micro-batch's loss is the mean
  over its target tokens, and the step's loss is the mean of the micro-batch means.
* `token_weighted`: the step's loss is the sum over all its target tokens divided by their count,
  so every token weighs the same whatever micro-batch it landed in.
FSDP averages gradients over processes, so each process scales its loss by world_size; the
result is the same objective for any split of the global batch over processes and accumulation.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from llava15.data.check import check_dataset, merge_checks
from llava15.data.dataset import Batch, LazySupervisedDataset, collate, load_records
from llava15.data.packing import collate_packed
from llava15.data.sampler import epoch_order, micro_batches_for_step, steps_per_epoch, subsample_indices
from llava15.data.tokenizer import load_tokenizer
from llava15.train.config import TrainConfig, save_json
from llava15.model.anyres import image_token_count
from llava15.model.llava import Llava
from llava15.train.distributed import Runtime, all_reduce_sum, average_gradients, gather_objects, shard
from llava15.train.export import export_model, export_projector
from llava15.train.init import Initial, build_initial
from llava15.train.lora import apply_lora, merge_lora
from llava15.train.objective import Objective
from llava15.train.report import Progress, data_summary, plot_curves
from llava15.train.schedule import build_scheduler, reapply
from llava15.train.stages import apply_stage, param_groups, summary
from llava15.train.state import TrainerState, latest_checkpoint, load_checkpoint, model_state, save_checkpoint

log = logging.getLogger("llava15.train")
MAX_SKIP_EXAMPLES = 20


@dataclass
class Run:
    config: TrainConfig
    runtime: Runtime
    run_dir: Path
    initial: Initial
    objective: Objective  # the unwrapped module (its .llava is the model)
    wrapped: nn.Module  # what forward/backward go through (FSDP2 when distributed)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    dataset: LazySupervisedDataset
    lengths: list[int]
    accumulation: int
    total_steps: int
    steps_per_epoch: int


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_dataset(config: TrainConfig, initial: Initial) -> LazySupervisedDataset:
    records = load_records(config.data.path)
    keep = subsample_indices(len(records), config.data.subsample, config.seed)
    return LazySupervisedDataset(
        [records[i] for i in keep], tokenizer=load_tokenizer(initial.tokenizer_dir),
        template=config.stage.template, image_folder=config.data.image_folder,
        image_config=initial.image_config, image_aspect_ratio=config.stage.image_aspect_ratio,
        model_max_length=config.data.model_max_length, image_token_index=initial.config.image_token_index,
        num_image_tokens=initial.config.num_image_tokens,
        image_grid_pinpoints=initial.config.image_grid_pinpoints,
        image_token_count=functools.partial(image_token_count, initial.config), strict=config.strict,
        cache_text=config.data.cache_text)


def prepare(config: TrainConfig, runtime: Runtime) -> Run:
    """Model, stage, data, optimizer and schedule for a run (everything but the state)."""
    config.validate()
    run_dir = Path(config.out)
    if not config.resume and latest_checkpoint(run_dir) is not None:
        raise FileExistsError(f"{run_dir} already holds checkpoints: pass --resume=true to continue "
                              "it, or choose another --out")
    initial = build_initial(config)
    model = initial.model
    if config.stage.lora_r:
        apply_lora(model, config.stage)
    apply_stage(model, config.stage)
    model.language_model.gradient_checkpointing = config.gradient_checkpointing
    if runtime.is_main:
        log.info("stage %s: what trains\n%s", config.stage.name, summary(model))
    dataset = build_dataset(config, initial)
    objective = Objective(model).to(runtime.device).train()
    objective.keep_units_busy = runtime.distributed
    if config.shared_prefix and runtime.distributed and config.strategy == "fsdp":
        raise ValueError("shared_prefix with several processes needs --strategy ddp (FSDP units "
                         "would be gathered once per decoder call)")
    objective.shared_prefix = config.shared_prefix
    wrapped = shard(objective, runtime, config.strategy)
    stage = config.stage
    optimizer = torch.optim.AdamW(param_groups(model, stage), lr=stage.lr, betas=(stage.adam_beta1, stage.adam_beta2),
                                  eps=stage.adam_eps, weight_decay=stage.weight_decay)
    total = config.total_steps(len(dataset))
    scheduler = build_scheduler(optimizer, stage.lr_scheduler, total, stage.warmup_ratio)
    return Run(config, runtime, run_dir, initial, objective, wrapped, optimizer, scheduler, dataset,
               dataset.modality_lengths, config.accumulation_steps(runtime.world_size), total,
               steps_per_epoch(len(dataset), stage.global_batch_size))


def make_loader(run: Run, epoch: int, start_step: int) -> DataLoader:
    """This process's micro-batches of `epoch` from optimizer step `start_step` on, in order."""
    config, runtime = run.config, run.runtime
    micro = config.resolved_micro_batch_size
    order = epoch_order(run.lengths, config.seed, epoch, config.stage.group_by_modality_length, micro,
                        runtime.world_size * run.accumulation, config.data.sampler_variant)
    batches = [mb for step in range(start_step, run.steps_per_epoch)
               for mb in micro_batches_for_step(order, step, micro, run.accumulation,
                                                runtime.world_size, runtime.rank)]
    pad_id = run.initial.config.text.pad_token_id or 0
    if config.packing:
        fn = functools.partial(collate_packed, capacity=config.pack_length or config.data.model_max_length,
                               pad_token_id=pad_id)
    else:
        fn = functools.partial(collate, pad_token_id=pad_id)
    # An explicit generator: creating the loader must not draw from the global RNG (exact resume).
    return DataLoader(run.dataset, batch_sampler=batches, collate_fn=fn, num_workers=config.data.num_workers,
                      generator=torch.Generator().manual_seed(config.seed),
                      pin_memory=runtime.device.type == "cuda")


def loss_scales(batches: list[Batch], rule: str, runtime: Runtime) -> tuple[list[float], int]:
    """Per micro-batch factor turning its summed loss into its share of the step's objective."""
    targets = [b.num_targets for b in batches]
    if rule == "token_weighted":
        total = int(all_reduce_sum([float(sum(targets))], runtime)[0])
        return [runtime.world_size / total if total else 0.0 for _ in targets], total
    nonempty = int(all_reduce_sum([float(sum(t > 0 for t in targets))], runtime)[0])
    total = int(all_reduce_sum([float(sum(targets))], runtime)[0])
    return [runtime.world_size / (nonempty * t) if t else 0.0 for t in targets], total


def placeholder_batch(pad_id: int) -> Batch:
    """One padding token without targets: a process with no samples left in a short last step
    still runs forward and backward, so collective operations stay in step (adds nothing)."""
    from llava15.config import IGNORE_INDEX

    return Batch(torch.tensor([[pad_id]]), torch.tensor([[IGNORE_INDEX]]), torch.ones(1, 1, dtype=torch.bool))


def forward_backward(run: Run, batch: Batch, scale: float, last: bool) -> torch.Tensor:
    fsdp = run.runtime.distributed and run.config.strategy == "fsdp"
    if fsdp:
        run.wrapped.set_requires_gradient_sync(last)  # reduce once per optimizer step
    batch = batch.to(run.runtime.device)
    autocast = run.runtime.use_bf16 and not fsdp  # FSDP2 casts by its own policy
    with torch.autocast(run.runtime.device.type, dtype=torch.bfloat16, enabled=autocast):
        loss_sum = run.wrapped(batch.input_ids, batch.labels, batch.attention_mask, batch.position_ids,
                               batch.pixel_values, batch.image_sizes)
    loss = loss_sum * scale
    if loss.requires_grad:  # False when nothing trainable was reached (e.g. pretrain, no image)
        loss.backward()
    return loss.detach()


def clip_gradients(run: Run) -> float:
    params = [p for p in run.objective.parameters() if p.requires_grad]
    norm = torch.nn.utils.clip_grad_norm_(params, run.config.stage.max_grad_norm)
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2
        norm = norm.full_tensor()
    return float(norm)


def train_step(run: Run, batches: list[Batch], state: TrainerState) -> dict:
    """Forward/backward over this process's micro-batches of one step, then clip and step."""
    pad_id = run.initial.config.text.pad_token_id or 0
    scales, targets = loss_scales(batches, run.config.loss_normalization, run.runtime)
    lr = run.optimizer.param_groups[0]["lr"]
    total = torch.zeros((), dtype=torch.float64)
    for k, (batch, scale) in enumerate(zip(batches, scales)):
        usable = batch if batch.input_ids.shape[0] else placeholder_batch(pad_id)
        total += forward_backward(run, usable, scale, k == len(batches) - 1).double().cpu()
    if run.config.strategy == "ddp":  # FSDP2 reduced during the last backward
        average_gradients([p for p in run.objective.parameters() if p.requires_grad], run.runtime)
    grad_norm = clip_gradients(run)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    local = [float(total), sum(b.num_tokens for b in batches), sum(len(b.indices) for b in batches),
             sum(len(b.skipped) for b in batches), sum(len(b.fully_masked) for b in batches),
             sum(b.mismatched for b in batches)]
    loss, tokens, samples, skipped, masked, mismatched = all_reduce_sum(local, run.runtime)
    state.step += 1
    state.step_in_epoch += 1
    state.samples += int(samples)
    state.tokens += int(tokens)
    state.skipped += int(skipped)
    state.fully_masked += int(masked)
    state.mismatched += int(mismatched)
    for b in batches:
        room = MAX_SKIP_EXAMPLES - len(state.skipped_examples)
        state.skipped_examples += [list(x) for x in b.skipped[:max(0, room)]]
    return {"step": state.step, "epoch": state.epoch, "loss": loss / run.runtime.world_size, "lr": lr,
            "grad_norm": grad_norm, "target_tokens": targets, "tokens": int(tokens), "samples": state.samples}


def steps_of(loader: DataLoader, accumulation: int):
    """Group the loader's micro-batches into optimizer steps."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == accumulation:
            yield group
            group = []


@dataclass
class Trained:
    state: TrainerState
    model: Llava  # this process's trained model (sharded parameters under FSDP)
    steps_per_epoch: int = 0  # optimizer steps in one pass over the (subsampled) data


def train(config: TrainConfig, runtime: Runtime) -> Trained:
    """Run (or resume) a stage; returns the final trainer state and the model."""
    run = prepare(config, runtime)
    state = TrainerState()
    seed_everything(config.seed)
    resume_from = latest_checkpoint(run.run_dir) if config.resume else None
    if resume_from is not None:
        state = load_checkpoint(resume_from, run.wrapped, run.optimizer, run.scheduler, runtime)
        reapply(run.scheduler)
        if runtime.is_main:
            log.info("resumed from %s at step %d", resume_from, state.step)
    if runtime.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        save_json(config, run.run_dir / "train_config.json")
        log.info("%d samples, %d steps (%d per epoch), micro-batch %d x accumulation %d x %d processes = %d",
                 len(run.dataset), run.total_steps, run.steps_per_epoch, config.resolved_micro_batch_size,
                 run.accumulation, runtime.world_size, config.stage.global_batch_size)
    # The data summary of `llava15 check-data`: each process checks every world_size-th record
    # and the counts are gathered, so the check takes 1/world_size of the time on every process.
    if config.data.check:
        share = range(runtime.rank, len(run.dataset), runtime.world_size)
        check = merge_checks(gather_objects(
            check_dataset(run.dataset, num_workers=config.data.num_workers,
                          progress=None if runtime.is_main else False, indices=share), runtime))
        if runtime.is_main:
            log.info("data check of %s\n%s", config.data.path, check.format(compact=True))
    progress = Progress(run.run_dir, run.total_steps, state.step, runtime.is_main)
    while state.step < run.total_steps:
        last = time.perf_counter()
        for batches in steps_of(make_loader(run, state.epoch, state.step_in_epoch), run.accumulation):
            metrics = train_step(run, batches, state)
            now = time.perf_counter()  # wall time per step, data loading included
            metrics.update(seconds=now - last, tokens_per_s=metrics["tokens"] / (now - last))
            last = now
            progress.update(metrics)
            if state.step % config.save_steps == 0 or state.step == run.total_steps:
                save(run, state)
                last = time.perf_counter()  # saving is not counted as a step's time
            if state.step >= run.total_steps:
                break
        if state.step_in_epoch >= run.steps_per_epoch:
            state.epoch, state.step_in_epoch = state.epoch + 1, 0
    progress.close()
    finish(run, state)
    return Trained(state, run.objective.llava, run.steps_per_epoch)


def llava_weights(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Objective state names (`llava.*`) -> Llava state names."""
    return {k.removeprefix("llava."): v for k, v in weights.items()}


def save(run: Run, state: TrainerState) -> None:
    """A periodic checkpoint; in pretrain it also holds the official `mm_projector.bin`."""
    export = None
    if run.config.stage.name == "pretrain":
        config = run.initial.config
        export = lambda out, weights: export_projector(out, llava_weights(weights), config)  # noqa: E731
    save_checkpoint(run.run_dir, run.wrapped, run.optimizer, run.scheduler, state, run.config,
                    run.runtime, export)


def full_model_on_cpu(run: Run) -> Llava:
    """The trained model as a plain CPU `Llava` (LoRA merged), on the main process; None elsewhere."""
    names = {n for n, _ in run.wrapped.named_parameters()} | {n for n, _ in run.wrapped.named_buffers()}
    weights = llava_weights(model_state(run.wrapped, run.runtime, names))
    if not run.runtime.is_main:
        return None
    with torch.device("meta"):
        model = Llava(run.initial.config)
        if run.config.stage.lora_r:
            apply_lora(model, run.config.stage)
    model.load_state_dict(weights, assign=True, strict=True)
    if run.config.stage.lora_r:
        merge_lora(model)
    return model.float().eval()


def finish(run: Run, state: TrainerState) -> None:
    """Final outputs in the run directory, curves and the data summary; in a distributed run
    every process returns only once they are written."""
    if run.config.stage.name == "pretrain":
        names = {n for n, p in run.wrapped.named_parameters() if p.requires_grad}
        weights = llava_weights(model_state(run.wrapped, run.runtime, names))
        if run.runtime.is_main:
            export_projector(run.run_dir, weights, run.initial.config)
    else:
        model = full_model_on_cpu(run)
        if run.runtime.is_main:
            export_model(run.run_dir, model, run.initial.config, run.initial.tokenizer_dir,
                         run.initial.image_config)
    if run.runtime.is_main:
        save_json(run.config, run.run_dir / "train_config.json")
        (run.run_dir / "data_summary.json").write_text(json.dumps(dataclasses.asdict(state), indent=2))
        plot_curves(run.run_dir)
        log.info("done\n%s", data_summary(state))
    if run.runtime.distributed:
        # Return together: a process that tears its group down while the main one still writes
        # the outputs has been seen to abort at exit on gloo ("terminate called without an
        # active exception", SIGABRT, after training had finished).
        torch.distributed.barrier()
