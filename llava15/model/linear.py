"""`F.linear` for few rows on the CPU, computed as `W @ x^T` over row blocks of the weight.

A decode step multiplies a handful of rows (the batch) by every weight. For that shape this
CPU's BLAS (MKL in torch 2.13) is up to 3x faster when the row-major weight is the big left
operand, split into a few row blocks that one batched call spreads over the threads. Measured
on 2 threads: the 32000 x 512 lm_head at 8 rows takes 5.2 ms this way against 14 ms through
`F.linear` (10.5 ms on a column-major copy); a 4096 x 4096 layer at 4 rows 3.1 ms against
9.4 ms. On one thread the form loses (the lm_head at 1 row: 4.8 ms against 2.3 ms on a
column-major copy; the 512-wide layers up to 1.7x), so there `F.linear` serves, and
`llava15.infer.generate.optimize_for_cpu` stores wide weights column-major instead.
`bench/generate_speed.py` shows the end-to-end effect. Results differ from `F.linear` only by
float summation order.

It serves only where no gradient is recorded (inference), on float32 CPU tensors, up to
`FEW_ROWS` rows, for weights of at least `MIN_WEIGHT` elements (the product is then bound by
reading the weight from memory); everything else goes through `F.linear` unchanged.

Half-precision weights on the CPU (a 7B model kept in bfloat16 to fit in memory) are the other
case. Few rows (decoding) multiply fastest in half precision, since reading the weight is the
cost and it is half the bytes. Many rows (prefill, the vision tower) are bound by arithmetic:
CPUs with bfloat16 instructions (AVX512-BF16, AMX) run them natively, faster than float32, but
on an AVX2 CPU oneDNN's bfloat16 product is several times slower than float32's (measured on
11008 x 4096 at 640 rows: 3.8 s against 1.1 s with the weight widened first; the two meet near
64 rows). There, and for float16 weights (no CPU here multiplies them natively), products of
more than `HALF_UPCAST_ROWS` rows widen the weight to float32 (a transient of one layer) and
cast the result back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEW_ROWS = 256  # measured: the gain shrinks to nothing near 1000 rows (a long prefill)
MIN_WEIGHT = 1 << 18  # elements (1 MiB of float32): below, the weight sits in cache and the
# extra call costs more than it saves (a 1088 x 128 lm_head: 35 us against 20 us at 1 row);
# bench/generate_speed.py measured 1 << 18 ahead of 1 << 20 (the 512-wide layers gain too)
ROW_BLOCKS = 4  # weight row blocks of one batched call; 2-8 measure alike, 1 loses at 1 row
HALF_UPCAST_ROWS = 64  # above, a half weight without native support is multiplied in float32
HALF = (torch.bfloat16, torch.float16)


def native_bf16() -> bool:
    """Whether oneDNN multiplies bfloat16 natively on this CPU (AVX512-BF16 or AMX; it honours
    ONEDNN_MAX_CPU_ISA), so that bfloat16 products beat float32 ones at every row count."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def widens(weight: torch.Tensor, rows: int) -> bool:
    """Whether a product of `rows` rows with this CPU half-precision `weight` runs in float32."""
    return (rows > HALF_UPCAST_ROWS and weight.dtype in HALF and weight.device.type == "cpu"
            and not (weight.dtype == torch.bfloat16 and native_bf16()))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., in) -> (..., out), what `F.linear(x, weight, bias)` computes."""
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if widens(weight, rows) and x.device.type == "cpu" and not torch.is_grad_enabled():
        return F.linear(x.float(), weight.float(), None if bias is None else bias.float()).to(x.dtype)
    if (torch.is_grad_enabled() or not 0 < rows <= FEW_ROWS or x.device.type != "cpu"
            or x.dtype != torch.float32 or weight.dtype != torch.float32
            or weight.numel() < MIN_WEIGHT or not weight.is_contiguous()
            or torch.get_num_threads() == 1):
        return F.linear(x, weight, bias)
    out_features, in_features = weight.shape
    blocks = next(b for b in (ROW_BLOCKS, 2, 1) if out_features % b == 0)
    flat = x.reshape(rows, in_features)
    y = torch.bmm(weight.view(blocks, out_features // blocks, in_features),
                  flat.t().expand(blocks, in_features, rows))  # (blocks, out/blocks, rows)
    # contiguous like F.linear's output: callers .view() it (one block would leave a strided view)
    y = y.permute(2, 0, 1).reshape(*x.shape[:-1], out_features).contiguous()
    return y if bias is None else y.add_(bias)


def apply_linear(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`module(x)`, through `linear` when the module is a plain `nn.Linear`. A subclass or a
    wrapper (a peft LoRA layer, a quantized layer) runs its own forward: it may add to it."""
    if type(module) is nn.Linear:
        return linear(x, module.weight, module.bias)
    return module(x)
