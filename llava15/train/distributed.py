"""Processes and sharding: the only module that knows about torch.distributed.

One process: the model runs as is. Several processes (torchrun), strategy "ddp": every process
holds the whole model and the gradients are averaged once a step (`average_gradients`, one
all-reduce per bucket, the DistributedDataParallel algorithm without its module wrapper, so that
every forward path, the shared-prefix pass included, is covered). Strategy "fsdp": FSDP2
(`fully_shard`), one unit per decoder layer, one for the projector, the rest in the root unit. A frozen vision tower is left
out of sharding (`ignored_params`): every process keeps a full copy, as LLaVA's trick of hiding it
in a list does. gloo on CPU, nccl on CUDA; bf16 parameters with fp32 gradient reduction on GPU.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from llava15.train.objective import Objective


@dataclass(frozen=True)
class Runtime:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def use_bf16(self) -> bool:
        """bf16 on GPU (the official --bf16), float32 on CPU (bf16 matmuls are slow there)."""
        return self.device.type == "cuda"


def init_runtime(rank: int, world_size: int, local_rank: int, device: str = "auto") -> Runtime:
    """Start the process group when there is more than one process (torchrun's env:// rendezvous)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(f"cuda:{local_rank}" if device == "cuda" else device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return Runtime(rank, world_size, local_rank, dev)


def shutdown(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shard(objective: Objective, runtime: Runtime, strategy: str = "fsdp") -> nn.Module:
    """Wrap for the runtime: nothing on one process or with "ddp", FSDP2 on several."""
    if not runtime.distributed or strategy == "ddp":
        return objective
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if runtime.use_bf16 else None,
                                  reduce_dtype=torch.float32)
    llava = objective.llava
    tower = llava.vision_tower
    tower_trains = any(p.requires_grad for p in tower.parameters())
    if tower_trains:
        for layer in tower.vision_model.encoder.layers:
            fully_shard(layer, mp_policy=policy)
    for layer in llava.language_model.model.layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(llava.multi_modal_projector, mp_policy=policy)
    ignored = set() if tower_trains else set(tower.parameters())
    fully_shard(objective, mp_policy=policy, ignored_params=ignored)
    return objective


BUCKET_BYTES = 25 << 20  # DistributedDataParallel's default bucket size


def average_gradients(params: list[nn.Parameter], runtime: Runtime) -> None:
    """Replace each gradient by its mean over processes, in flat buckets of about
    `BUCKET_BYTES`. A parameter one process did not reach counts as a zero gradient there; one
    that no process reached keeps no gradient, as in one process (the optimizer skips it)."""
    if not runtime.distributed:
        return
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    reached = torch.tensor([float(p.grad is not None) for p in params], device=runtime.device)
    dist.all_reduce(reached)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    bucket: list[torch.Tensor] = []
    size = 0
    for i, p in enumerate(params):
        bucket.append(p.grad)
        size += p.grad.numel() * p.grad.element_size()
        if size >= BUCKET_BYTES or i == len(params) - 1:
            flat = _flatten_dense_tensors(bucket)
            dist.all_reduce(flat)
            flat /= runtime.world_size
            for grad, mean in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
                grad.copy_(mean)
            bucket, size = [], 0
    for p, count in zip(params, reached.tolist()):
        if count == 0:
            p.grad = None


def all_reduce_sum(values: list[float], runtime: Runtime) -> list[float]:
    """Element-wise sum over processes (identity on one process)."""
    if not runtime.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def gather_objects(obj, runtime: Runtime) -> list:
    """Every process's `obj`, in rank order (`[obj]` on one process)."""
    if not runtime.distributed:
        return [obj]
    box = [None] * runtime.world_size
    dist.all_gather_object(box, obj)
    return box


def broadcast_object(obj, runtime: Runtime):
    if not runtime.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
