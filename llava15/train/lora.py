"""LoRA fine-tuning through `peft` (the official finetune_lora.sh: r 128, alpha 256, dropout 0.05).

Adapters go on every `nn.Linear` of the language model except `lm_head` (the official
`find_all_linear_names`: q/k/v/o and gate/up/down projections). They are injected into the
language model only, which is the official result of applying PEFT before the vision modules
exist: the CLIP tower's q/k/v projections get none. `merge_lora` folds W + (alpha/r) B A back
into plain Linear layers, so the merged model saves in the ordinary layout.
"""

from __future__ import annotations

from torch import nn

from llava15.model.llava import Llava
from llava15.train.config import StageConfig


def lora_target_names(model: Llava) -> list[str]:
    names = {name.rsplit(".", 1)[-1] for name, module in model.language_model.named_modules()
             if isinstance(module, nn.Linear)}
    names.discard("lm_head")
    return sorted(names)


def apply_lora(model: Llava, stage: StageConfig) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=stage.lora_r, lora_alpha=stage.lora_alpha, lora_dropout=stage.lora_dropout,
                        target_modules=lora_target_names(model), bias="none")
    inject_adapter_in_model(config, model.language_model)


def merge_lora(model: Llava) -> int:
    """Merge every adapter into its base Linear and put the plain Linear back; returns the count."""
    from peft.tuners.lora import LoraLayer

    merged = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, module.get_base_layer())
            merged += 1
    return merged
