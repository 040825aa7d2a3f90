"""Training configuration: the paper's recipe as data.

`StageConfig` carries one stage's hyperparameters; `PRETRAIN`, `FINETUNE` and `FINETUNE_LORA` are
the official `scripts/v1_5/{pretrain,finetune,finetune_lora}.sh` values (docs/official-behaviour.md, 'Hyperparameters').
`TrainConfig` adds what a run needs besides the recipe (data, model sources, output, hardware).

Overrides are dotted and typed: `--stage=pretrain` picks a preset, `--stage.lr=2e-4` changes one
field, parsed with the field's annotation. Unknown keys are errors. The resolved config is
written as JSON beside every run and checkpoint (`to_dict` / `from_dict`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

LOSS_NORMALIZATIONS = ("mean_per_microbatch", "token_weighted")
STRATEGIES = ("fsdp", "ddp")
MERGE_TYPES = ("flat", "spatial", "spatial_unpad")


@dataclass(frozen=True)
class StageConfig:
    """One stage of the recipe. `trainable` names components: projector, language_model,
    vision_tower. `lora_r > 0` trains LoRA adapters on the LLM instead of its weights."""

    name: str = "finetune"  # "pretrain" | "finetune"
    trainable: tuple[str, ...] = ("projector", "language_model")
    template: str = "vicuna_v1"  # official --version v1; "plain" in pretrain
    image_aspect_ratio: str = "pad"  # official: "square" (center crop) in pretrain, "pad" in finetune
    group_by_modality_length: bool = True
    lr: float = 2e-5
    projector_lr: float | None = None  # official mm_projector_lr; None: same as lr
    global_batch_size: int = 128
    per_device_batch_size: int = 16  # the official per-GPU batch (8 GPUs); micro-batch default
    epochs: int = 1
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"  # linear warmup, cosine decay to 0 (HF get_cosine_schedule_with_warmup)
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    lora_r: int = 0
    lora_alpha: int = 256
    lora_dropout: float = 0.05


PRETRAIN = StageConfig(name="pretrain", trainable=("projector",), template="plain",
                       image_aspect_ratio="square", group_by_modality_length=False, lr=1e-3,
                       global_batch_size=256, per_device_batch_size=32)
FINETUNE = StageConfig()
FINETUNE_LORA = StageConfig(trainable=("projector", "lora"), lr=2e-4, projector_lr=2e-5,
                            lora_r=128, lora_alpha=256)
STAGES = {"pretrain": PRETRAIN, "finetune": FINETUNE, "finetune_lora": FINETUNE_LORA}


@dataclass(frozen=True)
class DataConfig:
    path: str = ""  # official LLaVA .json (a list) or .jsonl (one record a line)
    image_folder: str = ""  # `image` paths are relative to it
    model_max_length: int = 2048
    subsample: float = 1.0  # fraction of records kept (data-efficiency study), fixed by seed
    num_workers: int = 2  # DataLoader worker processes that load images lazily
    cache_text: bool = False  # keep each record's tokens after the first epoch (num_workers=0)
    sampler_variant: str = "head"  # "head" | "v1.1" (where the mixed last megabatch goes)
    # Summarize the data before the first step (`llava15 check-data`): on the 665K mixture this
    # decodes every image once (shared among the processes), so a resumed or repeated run may
    # turn it off.
    check: bool = True


@dataclass(frozen=True)
class TrainConfig:
    stage: StageConfig = field(default_factory=StageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # Model sources: a LLaVA checkpoint dir, or an LLM dir plus a CLIP dir (a fresh projector).
    model: str = ""
    llm: str = ""
    vision_tower: str = ""
    pretrain_mm_mlp_adapter: str = ""  # stage-1 projector (mm_projector.bin or .safetensors)
    mm_projector_type: str = "mlp2x_gelu"
    mm_vision_select_layer: int = -2
    # AnyRes / HD (LLaVA-NeXT's flags), used with stage.image_aspect_ratio=anyres. None keeps what
    # --model has (for --llm/--vision-tower: no pinpoints, "flat", the official defaults).
    image_grid_pinpoints: str | None = None  # official string form: "[(672,336),(336,672),(672,672)]"
    mm_patch_merge_type: str | None = None  # "flat" | "spatial" (1.5-HD) | "spatial_unpad" (AnyRes)
    out: str = "runs/train"
    seed: int = 42
    micro_batch_size: int | None = None  # None: the stage's per_device_batch_size
    loss_normalization: str = "mean_per_microbatch"  # HF Trainer's rule; or "token_weighted"
    packing: bool = False
    pack_length: int | None = None  # None: data.model_max_length
    # The rows' common prefix (system prompt) once, the rest in calls by length: the same loss
    # with fewer positions (`llava15.train.shared_prefix`). No packing, no gradient
    # checkpointing, and with several processes only the "ddp" strategy.
    shared_prefix: bool = False
    # Several processes: "fsdp" shards the model (FSDP2, for models that fit only in pieces);
    # "ddp" keeps the whole model on every process and averages gradients once a step (for
    # models that fit on each: no gathering of weights in every layer call).
    strategy: str = "fsdp"
    gradient_checkpointing: bool = True
    max_steps: int | None = None  # None: epochs x steps per epoch
    save_steps: int = 500
    save_total_limit: int = 1
    resume: bool = False
    strict: bool = False  # a missing, corrupt or cut image stops the run instead of being skipped
    log_every: int = 1
    device: str = "auto"  # "auto": cuda when available, else cpu

    @property
    def resolved_micro_batch_size(self) -> int:
        return self.micro_batch_size or self.stage.per_device_batch_size

    def accumulation_steps(self, world_size: int) -> int:
        """global batch = micro-batch x accumulation x processes; it must divide exactly."""
        per_step = self.resolved_micro_batch_size * world_size
        if self.stage.global_batch_size % per_step:
            raise ValueError(
                f"stage.global_batch_size={self.stage.global_batch_size} is not a multiple of "
                f"micro_batch_size x processes = {self.resolved_micro_batch_size} x {world_size}")
        return self.stage.global_batch_size // per_step

    def total_steps(self, num_samples: int) -> int:
        steps = math.ceil(num_samples / self.stage.global_batch_size) * self.stage.epochs
        return min(steps, self.max_steps) if self.max_steps else steps

    def validate(self) -> "TrainConfig":
        if self.loss_normalization not in LOSS_NORMALIZATIONS:
            raise ValueError(f"loss_normalization must be one of {LOSS_NORMALIZATIONS}, "
                             f"got {self.loss_normalization!r}")
        if self.stage.name not in ("pretrain", "finetune"):
            raise ValueError(f"stage.name must be 'pretrain' or 'finetune', got {self.stage.name!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        known = {"projector", "language_model", "vision_tower", "lora"}
        if unknown := set(self.stage.trainable) - known:
            raise ValueError(f"stage.trainable has unknown components {sorted(unknown)}; known: {sorted(known)}")
        if ("lora" in self.stage.trainable) != (self.stage.lora_r > 0):
            raise ValueError("'lora' in stage.trainable and stage.lora_r > 0 go together")
        if not 0 < self.data.subsample <= 1:
            raise ValueError(f"data.subsample must be in (0, 1], got {self.data.subsample}")
        if not self.model and not (self.llm and self.vision_tower):
            raise ValueError("give --model DIR (a LLaVA checkpoint) or --llm DIR and --vision-tower DIR")
        if self.shared_prefix and (self.packing or self.gradient_checkpointing):
            raise ValueError("shared_prefix does not combine with packing or gradient_checkpointing "
                             "(it runs the decoder in several calls over right-padded rows)")
        if self.mm_patch_merge_type not in (None, *MERGE_TYPES):
            raise ValueError(f"mm_patch_merge_type must be one of {MERGE_TYPES}, got {self.mm_patch_merge_type!r}")
        return self


# ---- JSON round trip -----------------------------------------------------------------------

def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def from_dict(cls, data: dict, where: str = "config"):
    """Rebuild a (nested) config dataclass from `to_dict` output; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := set(data) - names:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    values = {}
    for name, value in data.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = from_dict(kind, value, f"{where}.{name}")
        elif isinstance(value, list):
            values[name] = tuple(value)
        else:
            values[name] = value
    return cls(**values)


def save_json(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_dict(config), indent=2) + "\n")


def load_json(path: str | Path) -> TrainConfig:
    return from_dict(TrainConfig, json.loads(Path(path).read_text()), str(path))
