"""The running batch of the server: prefill, merge, drop rows, one decode step.

The prefill is the one `infer.generate` uses for every generation (shared prefixes and repeated
images computed once); this module adds what continuous batching needs on top of it. Every row
of a `Batch` is padded to the same cache length; `attention_mask` marks the real
positions, and the language model takes positions from the mask (real tokens counted), so a
row's keys and values do not depend on how much padding sits to its left. That is what lets
newcomers join a running batch between decoding steps: they are prefilled on their own into a
fresh cache, and the two caches are merged by left-padding the shorter one along the sequence
axis. A row therefore decodes the same tokens as it would alone (up to float summation order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from llava15.infer.generate import prefill as infer_prefill
from llava15.model.llama import KVCache
from llava15.model.llava import Llava


@dataclass
class Batch:
    """Rows decoding together. `logits` (B,V) predict each row's next token; `attention_mask`
    (B, cache.length) marks real positions (a prefill that shared a prefix leaves masked gaps
    inside rows, which positions skip as they skip left padding); `budgets[i]` is the most new
    tokens row i may still produce (its next token included), so the cache needs
    `max(budgets) - 1` more columns; after a prefill, `rows[i]` is the index of the prompt that
    row i holds (the prefill may reorder them)."""

    cache: KVCache
    attention_mask: torch.Tensor
    logits: torch.Tensor
    budgets: list[int]
    rows: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return self.logits.shape[0]


def prefill(model: Llava, prompts: Sequence[Sequence[int]],
            pixel_values: torch.Tensor | list[torch.Tensor] | None, budgets: Sequence[int],
            pad_token_id: int, image_sizes: Sequence[tuple[int, int]] | None = None,
            ) -> tuple[Batch, float]:
    """Run the prompts through `llava15.infer.generate.prefill`, the prefill every generation
    path shares (a prefix the prompts share, and each distinct image, computed once), into a new
    batch with room for the largest budget.

    `pixel_values` hold every prompt's images in order: (N,3,H,W), or for AnyRes a list of
    per-image views with `image_sizes` (width, height). Returns the batch, whose rows may come in
    another order than the prompts (`Batch.rows` says which prompt each row holds), and the
    seconds spent encoding the images (0.0 without images).
    """
    device = next(model.parameters()).device
    if isinstance(pixel_values, list):
        pixel_values = [views.to(device) for views in pixel_values]
    elif pixel_values is not None:
        pixel_values = pixel_values.to(device)
    with torch.inference_mode():
        start = infer_prefill(model, prompts, pixel_values, list(image_sizes or []), pad_token_id,
                              max(budgets))
    return Batch(start.cache, start.attention_mask, start.logits,
                 [budgets[row] for row in start.rows], start.rows), start.encode_s


def merge(a: Batch, b: Batch) -> Batch:
    """Rows of `a` then rows of `b` in one batch whose cache is left-padded to the longer one.

    Padding columns are zeros, not uninitialized memory: a masked key gets zero attention
    weight, but 0 * NaN would still poison the output.
    """
    length = max(a.cache.length, b.cache.length)
    capacity = length + max(a.budgets + b.budgets)
    rows = len(a) + len(b)

    def join(a_layers: list[torch.Tensor], b_layers: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for a_t, b_t in zip(a_layers, b_layers):
            _, heads, _, head_dim = a_t.shape  # (B, H_kv, capacity, Dh)
            merged = a_t.new_zeros((rows, heads, capacity, head_dim))
            merged[:len(a), :, length - a.cache.length:length] = a_t[:, :, :a.cache.length]
            merged[len(a):, :, length - b.cache.length:length] = b_t[:, :, :b.cache.length]
            out.append(merged)
        return out

    keys = join(a.cache.keys, b.cache.keys)
    values = join(a.cache.values, b.cache.values)
    mask = a.attention_mask.new_zeros((rows, length))
    mask[:len(a), length - a.cache.length:] = a.attention_mask
    mask[len(a):, length - b.cache.length:] = b.attention_mask
    return Batch(KVCache(keys, values, length), mask, torch.cat([a.logits, b.logits]),
                 a.budgets + b.budgets)


def keep_rows(batch: Batch, rows: Sequence[int]) -> Batch:
    """Only the given rows, with the leading columns that are padding in every kept row cut off
    (as views: no copy), so the batch does not drag the padding of rows that have left."""
    if len(rows) == len(batch):
        selected = batch
    else:
        index = torch.tensor(list(rows), device=batch.logits.device)
        selected = Batch(batch.cache.select(index), batch.attention_mask[index],
                         batch.logits[index], [batch.budgets[i] for i in rows])
    real = selected.attention_mask.any(0).nonzero()
    cut = int(real[0]) if len(real) else 0
    if cut == 0:
        return selected
    cache = selected.cache
    trimmed = KVCache([k[:, :, cut:] for k in cache.keys], [v[:, :, cut:] for v in cache.values],
                      cache.length - cut)
    return Batch(trimmed, selected.attention_mask[:, cut:], selected.logits, selected.budgets)


def decode_step(model: Llava, batch: Batch, next_tokens: torch.Tensor) -> Batch:
    """Feed one token per row (B,); every budget shrinks by one."""
    mask = torch.cat([batch.attention_mask, batch.attention_mask.new_ones((len(batch), 1))], dim=1)
    with torch.inference_mode():
        logits = model.decode(next_tokens[:, None].to(mask.device), mask, batch.cache)
    batch.cache.length += 1
    return Batch(batch.cache, mask, logits[:, -1], [b - 1 for b in batch.budgets])
