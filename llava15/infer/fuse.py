"""Inference-time fusion of the decoder's projections: q/k/v as one matmul, gate/up as one.

A decode step at a small batch is bound by reading the weights; one matmul over concatenated
weights reads the same bytes in one kernel call, with one pass over the activations, instead of
two or three. Results change only by float summation order. The parameters become views of the
fused weights, so `state_dict()` keeps the Hugging Face names and values and memory does not
grow. The fused weights serve only where no gradient is recorded; training never fuses.
"""

from __future__ import annotations

import torch

from llava15.model.llama import MLP, Attention


def widening_column_major(weight: torch.Tensor) -> torch.Tensor:
    """A weight (out, in) with out > in stored column-major (same shape and values, transposed
    strides): this CPU's BLAS runs x @ W^T faster on a contiguous W^T at decode batch sizes
    (see `llava15.infer.generate.use_fast_weight_layout`). Other weights as they are."""
    if weight.shape[0] > weight.shape[1]:
        return weight.t().contiguous().t()
    return weight


def fuse_projections(model: torch.nn.Module, column_major: bool = False) -> None:
    """Fuse q/k/v and gate/up of every decoder layer in `model`, row-major or, with
    `column_major`, laid out by `widening_column_major`. Idempotent; call it after moving the
    model to its device/dtype."""
    layout = widening_column_major if column_major else torch.Tensor.contiguous
    for module in model.modules():
        if isinstance(module, (Attention, MLP)):
            module.fuse(layout)
