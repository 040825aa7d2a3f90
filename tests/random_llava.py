"""A `Llava` with random test weights: every parameter but the norms drawn from N(0, scale^2),
wider than the default init so that greedy choices are not near-ties."""

from __future__ import annotations

import torch

from llava15.config import LlavaConfig
from llava15.model.llava import Llava


def random_llava(config: LlavaConfig, scale: float = 0.1, seed: int = 0) -> Llava:
    torch.manual_seed(seed)
    model = Llava(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(scale * torch.randn_like(p))
    return model
