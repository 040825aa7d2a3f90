"""What trains in each stage (docs/official-behaviour.md, 'What trains in each stage'), as one explicit, logged decision.

`pretrain`: the projector only (the official `tune_mm_mlp_adapter`). `finetune`: the projector and
every LLM parameter (embeddings, decoder, norm, lm_head). LoRA: the projector and the adapters;
the base LLM is frozen. The vision tower is frozen unless `vision_tower` is listed.
"""

from __future__ import annotations

import torch
from torch import nn

from llava15.model.llava import Llava
from llava15.train.config import StageConfig

# component name in StageConfig.trainable -> attribute prefixes of Llava's parameters
COMPONENTS: dict[str, tuple[str, ...]] = {
    "vision_tower": ("vision_tower.",),
    "projector": ("multi_modal_projector.", "image_newline"),
    "language_model": ("language_model.",),
}


def component_of(name: str) -> str:
    if "lora_" in name:
        return "lora"
    for component, prefixes in COMPONENTS.items():
        if name.startswith(prefixes):
            return component
    raise ValueError(f"parameter {name!r} belongs to no component")


def apply_stage(model: Llava, stage: StageConfig) -> None:
    """Set requires_grad for every parameter from `stage.trainable`."""
    for name, param in model.named_parameters():
        param.requires_grad_(component_of(name) in stage.trainable)


def is_no_decay(name: str, module_of: dict[str, nn.Module]) -> bool:
    """Biases and norm weights (LayerNorm, RMSNorm) get no weight decay (LLaVATrainer.create_optimizer)."""
    owner = module_of.get(name.rsplit(".", 1)[0]) if "." in name else None
    return name.endswith("bias") or "norm" in type(owner).__name__.lower()


def param_groups(model: Llava, stage: StageConfig) -> list[dict]:
    """AdamW groups: decay / no-decay, and the projector at `projector_lr` when it is set."""
    module_of = dict(model.named_modules())
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        own_lr = stage.projector_lr is not None and component_of(name) == "projector"
        groups.setdefault((own_lr, is_no_decay(name, module_of)), []).append(param)
    out = []
    for (own_lr, no_decay), params in sorted(groups.items()):
        out.append({"params": params, "weight_decay": 0.0 if no_decay else stage.weight_decay,
                    "lr": stage.projector_lr if own_lr else stage.lr})
    return out


def summary(model: Llava) -> str:
    """A table of parameter counts per component, and whether each trains."""
    counts: dict[str, list[int]] = {}
    for name, param in model.named_parameters():
        total_trainable = counts.setdefault(component_of(name), [0, 0])
        total_trainable[0] += param.numel()
        total_trainable[1] += param.numel() if param.requires_grad else 0
    lines = [f"{'component':<16}{'parameters':>14}{'trainable':>14}  state"]
    for component, (total, trainable) in counts.items():
        state = "trains" if trainable == total else "frozen" if trainable == 0 else "partly trains"
        lines.append(f"{component:<16}{total:>14,}{trainable:>14,}  {state}")
    total = sum(c[0] for c in counts.values())
    trainable = sum(c[1] for c in counts.values())
    lines.append(f"{'total':<16}{total:>14,}{trainable:>14,}")
    return "\n".join(lines)
