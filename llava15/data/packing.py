"""Sequence packing: the samples of one micro-batch laid out as fewer, fuller rows.

Samples are placed first-fit-decreasing into rows of `capacity` tokens. Attention is
block-diagonal and causal inside each sample, and positions restart at 0 for each sample, so
every token sees exactly what it sees unpacked. The first label of each sample is masked (the
unpacked loss never predicts a row's first token; packed, it would be predicted from the previous
sample's last token). The micro-batch keeps the same samples, so its loss (sum over the same
target tokens, divided by their count) equals the unpacked loss under either normalisation rule.

Images travel in token order (row by row), since the model consumes them in that order. AnyRes
samples pack too: their per-image views and image sizes travel in the same order (`batch_images`),
and each image's positions stay whole inside its sample's segment.
"""

from __future__ import annotations

import dataclasses

import torch

from llava15.config import IGNORE_INDEX
from llava15.data.dataset import Batch, Sample, batch_images, usable_samples


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: sample positions grouped into rows of total length <= capacity
    (a sample longer than capacity gets a row of its own). Deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    free: list[int] = []
    for i in order:
        for r, room in enumerate(free):
            if lengths[i] <= room:
                rows[r].append(i)
                free[r] -= lengths[i]
                break
        else:
            rows.append([i])
            free.append(capacity - lengths[i])
    return rows


def packed_mask_and_positions(segment_lengths: list[list[int]], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,1,T,T) boolean mask (causal within a segment) and (B,T) positions from each row's
    segment lengths. Padding positions see only themselves, so no attention row is empty."""
    segment_ids = torch.full((len(segment_lengths), length), -1, dtype=torch.long)
    position_ids = torch.zeros((len(segment_lengths), length), dtype=torch.long)
    for row, lengths in enumerate(segment_lengths):
        start = 0
        for k, n in enumerate(lengths):
            segment_ids[row, start:start + n] = k
            position_ids[row, start:start + n] = torch.arange(n)
            start += n
    positions = torch.arange(length)
    causal = positions[None, :] <= positions[:, None]  # (T,T): key j <= query i
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (B,T,T)
    real = (segment_ids >= 0)[:, :, None]
    mask = (same & causal & real) | torch.eye(length, dtype=torch.bool)
    return mask[:, None], position_ids


def collate_packed(samples: list[Sample], capacity: int, pad_token_id: int = 0) -> Batch:
    """Pack a micro-batch's usable samples into rows of at most `capacity` tokens (right-padded
    to the fullest row)."""
    kept, record = usable_samples(samples)
    rows = pack_rows([len(s.input_ids) for s in kept], capacity)
    segments = [[len(kept[i].input_ids) for i in row] for row in rows]
    length = max((sum(seg) for seg in segments), default=1)
    input_ids = torch.full((len(rows), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    indices, in_token_order = [], []
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            s = kept[i]
            n = len(s.input_ids)
            input_ids[r, start:start + n] = s.input_ids
            labels[r, start:start + n] = s.labels
            labels[r, start] = IGNORE_INDEX  # never predicted across a sample boundary
            start += n
            indices.append(s.index)
            in_token_order.append(s)
    mask, position_ids = packed_mask_and_positions(segments, length)
    pixel_values, image_sizes = batch_images(in_token_order)
    return dataclasses.replace(record, input_ids=input_ids, labels=labels, attention_mask=mask,
                               position_ids=position_ids, pixel_values=pixel_values, image_sizes=image_sizes,
                               indices=indices, num_tokens=sum(map(sum, segments)))
