"""Inference-time fusion of the decoder's projections: q/k/v as one matmul, gate/up as one.

A decode step at a small batch is bound by reading the weights; one matmul over concatenated
weights reads the same bytes in one kernel call, with one pass over the activations, instead of
two or three. Results change only by float summation order. The parameters become views of the
fused weights, so `state_dict()` keeps the Hugging Face names and values and memory does not
grow. The fused weights serve only where no gradient is recorded; training never fuses.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from llava15.model.llama import MLP, Attention


def widening_column_major(weight: torch.Tensor) -> torch.Tensor:
    """A weight (out, in) with out > in stored column-major (same shape and values, transposed
    strides): this CPU's BLAS runs x @ W^T faster on a contiguous W^T at decode batch sizes
    (see `llava15.infer.generate.optimize_for_cpu`). Other weights as they are."""
    if weight.shape[0] > weight.shape[1]:
        return weight.t().contiguous().t()
    return weight


def decode_layout() -> Callable[[torch.Tensor], torch.Tensor]:
    """The weight layout fastest for decoding on the current thread count: row-major with
    several threads (`llava15.model.linear` needs it), `widening_column_major` on one, where
    that form loses and `F.linear` is fastest on a contiguous W^T."""
    return widening_column_major if torch.get_num_threads() == 1 else torch.Tensor.contiguous


def fuse_projections(model: torch.nn.Module,
                     layout: Callable[[torch.Tensor], torch.Tensor] = torch.Tensor.contiguous) -> None:
    """Fuse q/k/v and gate/up of every decoder layer in `model`, the fused weights laid out by
    `layout`. Idempotent; call it after moving the model to its device/dtype. Layers whose
    projections are not plain `nn.Linear` (quantized, or wrapped by LoRA) keep their own."""
    for module in model.modules():
        if isinstance(module, (Attention, MLP)) and all(
                type(child) is torch.nn.Linear for child in module.children()):
            module.fuse(layout)
