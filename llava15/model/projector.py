"""The vision-language projector: `linear`, `mlp{N}x_gelu` (v1.5 uses mlp2x_gelu) or `identity`.

Parameters are named `linear_1 ... linear_N` as in llava-hf (`multi_modal_projector.linear_1`);
the official `model.mm_projector.{0,2,...}` names map to them in `checkpoint`.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from llava15.model.linear import apply_linear

_MLP = re.compile(r"^mlp(\d+)x_gelu$")


def projector_depth(projector_type: str) -> int:
    """Number of Linear layers of a projector type (0 for identity); unknown types raise."""
    if projector_type == "identity":
        return 0
    if projector_type == "linear":
        return 1
    match = _MLP.match(projector_type)
    if match is None:
        raise ValueError(f"unknown mm_projector_type {projector_type!r}: expected 'linear', "
                         "'identity' or 'mlp{N}x_gelu'")
    return int(match.group(1))


class Projector(nn.Module):
    """Maps image features (N, T, mm_hidden) to image embeddings (N, T, hidden), token by token.

    Between consecutive Linear layers sits the exact (erf) GELU, as `nn.GELU()` in the official code.
    """

    def __init__(self, projector_type: str, mm_hidden_size: int, hidden_size: int) -> None:
        super().__init__()
        self.depth = projector_depth(projector_type)
        if self.depth == 0 and mm_hidden_size != hidden_size:
            raise ValueError(f"identity projector needs equal widths, got {mm_hidden_size} -> {hidden_size}")
        for k in range(1, self.depth + 1):
            in_features = mm_hidden_size if k == 1 else hidden_size
            self.add_module(f"linear_{k}", nn.Linear(in_features, hidden_size))

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        x = image_features
        for k in range(1, self.depth + 1):
            if k > 1:
                x = F.gelu(x)
            x = apply_linear(getattr(self, f"linear_{k}"), x)
        return x
