"""Weight-only int8 linear layers for the CPU (`--load-8bit` without a GPU).

Each output row of the weight is stored as int8 with one float32 scale (symmetric, per output
channel: `W ~= q * scale[:, None]`, |q| <= 127), so a layer takes a quarter of its float32
bytes: a 13B LLM fits in about 13 GB. Activations stay in the model's dtype.

Decoding multiplies few rows by every weight and is bound by reading the weight, so the fewer
bytes are the point: torch's `_weight_int8pack_mm` widens the int8 weight inside the product and
scales the output rows (11008 x 4096 at one row: 2.1 ms against 4.7 ms for the bfloat16 weight on
an AVX512-BF16 CPU, 2.4 ms against 2.9 ms on AVX2). Its cost grows with the rows, while
dequantizing the layer first costs a fixed pass over the weight, so above a few rows (prefill:
hundreds) `forward` dequantizes this one layer's weight (a transient of one layer, never the
model) to bfloat16 where the CPU multiplies bfloat16 natively and to float32 elsewhere
(`llava15.model.linear.native_bf16`). Figures: `experiments/cpu_kernels/NOTES.md`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llava15.model.linear import native_bf16

# Rows up to which the int8 product beats dequantizing the layer first (measured on 4096-wide
# layers): 8 where bfloat16 products are native (AVX512-BF16), 128 on AVX2.
FEW_ROWS_NATIVE_BF16, FEW_ROWS = 8, 128
BLOCK_BYTES = 1 << 18  # float32 block of `quantize_rows` (its working memory is a few of these)


def quantize_rows(weight: torch.Tensor, q: torch.Tensor | None = None,
                  scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """weight (out, in), any float dtype -> int8 q (out, in) and float32 scale (out,), with
    q * scale the closest per-row symmetric int8 approximation (round to nearest). A row of
    zeros gets scale 1 (its q is 0), so nothing divides by zero. Works through blocks of rows
    of at most `BLOCK_BYTES` in float32, written into `q` and `scale` when given, so quantizing
    a layer while loading needs little memory beyond its int8 result."""
    rows, cols = weight.shape
    q = torch.empty(rows, cols, dtype=torch.int8, device=weight.device) if q is None else q
    scale = torch.empty(rows, dtype=torch.float32, device=weight.device) if scale is None else scale
    step = max(1, BLOCK_BYTES // (4 * max(cols, 1)))
    for first in range(0, rows, step):
        w = weight[first:first + step].to(torch.float32, copy=True)  # divided in place below
        block_scale = w.abs().amax(dim=1) / 127.0
        block_scale = torch.where(block_scale > 0, block_scale, torch.ones_like(block_scale))
        q[first:first + step] = torch.round(w.div_(block_scale[:, None])).clamp_(-127, 127)
        scale[first:first + step] = block_scale
    return q, scale


def int8_matmul(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (..., in) @ (q * scale)^T for few rows, in x's dtype: torch's `_weight_int8pack_mm`
    widens the int8 weight block by block inside the product and scales the output rows. It is
    fast only with bfloat16 activations (float32 takes a slow path: 7 ms against 0.8 ms for a
    4096 x 4096 layer at one row), so they are cast to bfloat16 for it, and it needs `in` to be
    a multiple of 16 (other widths give wrong results); elsewhere the weight is widened first."""
    flat = x.reshape(-1, x.shape[-1])
    if q.shape[1] % 16 == 0 and hasattr(torch, "_weight_int8pack_mm"):
        y = torch._weight_int8pack_mm(flat.to(torch.bfloat16).contiguous(), q,
                                      scale.to(torch.bfloat16)).to(x.dtype)
    else:
        y = F.linear(flat, q.to(x.dtype)) * scale.to(x.dtype)
    return y.reshape(*x.shape[:-1], q.shape[0])


class Int8Linear(nn.Module):
    """`nn.Linear` with an int8 weight and per-output-row scales (buffers, saved in the state
    dict as `weight` and `weight_scale`); inference only. `bias` stays in the model's dtype."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False,
                 dtype: torch.dtype = torch.bfloat16, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8,
                                                   device=device))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32,
                                                         device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device),
                                 requires_grad=False) if bias else None

    @classmethod
    def like(cls, linear: nn.Linear) -> "Int8Linear":
        """An empty Int8Linear of `linear`'s shape, on its device (meta while loading), its bias
        dtype the linear's."""
        return cls(linear.in_features, linear.out_features, linear.bias is not None,
                   linear.weight.dtype, linear.weight.device)

    @torch.no_grad()
    def quantize_from(self, weight: torch.Tensor) -> None:
        """Fill the int8 weight and scales from a float weight (out, in) of this layer's shape."""
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(f"weight of shape {list(weight.shape)} for an Int8Linear of "
                             f"{self.out_features} x {self.in_features}")
        quantize_rows(weight.to(self.weight.device), self.weight, self.weight_scale)

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight as `dtype` (out, in): q * scale, scaled in place (one transient of the
        layer's size, not two)."""
        return self.weight.to(dtype).mul_(self.weight_scale.to(dtype)[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // max(x.shape[-1], 1)
        native = native_bf16()
        if rows <= (FEW_ROWS_NATIVE_BF16 if native else FEW_ROWS):
            y = int8_matmul(x, self.weight, self.weight_scale)
        elif native:
            y = F.linear(x.to(torch.bfloat16), self.dequantized(torch.bfloat16)).to(x.dtype)
        else:
            y = F.linear(x.float(), self.dequantized(torch.float32)).to(x.dtype)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-row scales"
