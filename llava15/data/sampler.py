"""The order in which training samples are visited, and how it is cut into micro-batches.

`get_length_grouped_indices` and `get_modality_length_grouped_indices` reproduce
`llava/train/llava_trainer.py` rule for rule (docs/official-behaviour.md, 'Modality-grouped length
sampler'). The official code draws from the global torch RNG; here one explicit `torch.Generator`
is passed through every draw in the same order, so seeding it with s gives the official list after
`torch.manual_seed(s)` (golden test).

Sharding follows HF Trainer + accelerate: the index list is cut into micro-batches of B, and
consecutive micro-batches are dealt round-robin to the processes (`micro_batches_for_step`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def split_to_even_chunks(indices: list[int], lengths: Sequence[int], num_chunks: int) -> list[list[int]]:
    """Split `indices` (sorted by descending length) into `num_chunks` chunks of balanced total length."""
    if len(indices) % num_chunks != 0:
        return [indices[i::num_chunks] for i in range(num_chunks)]
    per_chunk = len(indices) // num_chunks
    chunks: list[list[int]] = [[] for _ in range(num_chunks)]
    totals = [0.0] * num_chunks
    for index in indices:
        shortest = totals.index(min(totals))  # ties go to the lowest chunk, as list.index does
        chunks[shortest].append(index)
        totals[shortest] += lengths[index]
        if len(chunks[shortest]) == per_chunk:
            totals[shortest] = float("inf")  # full: receives nothing more
    return chunks


def get_length_grouped_indices(lengths: Sequence[int], batch_size: int, world_size: int,
                               generator: torch.Generator) -> list[int]:
    """Shuffle, cut into megabatches of world_size x batch_size, sort each by length (descending),
    balance each into world_size chunks."""
    indices = torch.randperm(len(lengths), generator=generator)
    size = world_size * batch_size
    megabatches = [indices[i:i + size].tolist() for i in range(0, len(lengths), size)]
    megabatches = [sorted(m, key=lambda i: lengths[i], reverse=True) for m in megabatches]
    return [i for m in megabatches for chunk in split_to_even_chunks(m, lengths, world_size) for i in chunk]


def get_modality_length_grouped_indices(lengths: Sequence[int], batch_size: int, world_size: int,
                                        generator: torch.Generator, variant: str = "head") -> list[int]:
    """`lengths` are positive for samples with an image and negative for text-only ones.

    Every megabatch holds one modality, except the leftovers of both, which form one mixed
    megabatch: appended sorted by dataset index (`head`, the official code at HEAD), or, in
    `v1.1` (the code of the released checkpoints), its first megabatch put in front.
    """
    if any(length == 0 for length in lengths):
        raise ValueError("sample lengths must be non-zero (sign marks the modality)")
    if all(length > 0 for length in lengths) or all(length < 0 for length in lengths):
        return get_length_grouped_indices(lengths, batch_size, world_size, generator)
    mm = [(i, n) for i, n in enumerate(lengths) if n > 0]
    lang = [(i, -n) for i, n in enumerate(lengths) if n < 0]
    mm_order = [mm[i][0] for i in get_length_grouped_indices([n for _, n in mm], batch_size, world_size, generator)]
    lang_order = [lang[i][0] for i in get_length_grouped_indices([n for _, n in lang], batch_size, world_size, generator)]
    size = world_size * batch_size
    mm_mega = [mm_order[i:i + size] for i in range(0, len(mm_order), size)]
    lang_mega = [lang_order[i:i + size] for i in range(0, len(lang_order), size)]
    additional = mm_mega[-1] + lang_mega[-1]
    megabatches = mm_mega[:-1] + lang_mega[:-1]
    megabatches = [megabatches[i] for i in torch.randperm(len(megabatches), generator=generator)]
    if variant == "head":
        if additional:
            megabatches.append(sorted(additional))
    elif variant == "v1.1":
        if len(additional) >= size:
            megabatches = [additional[:size]] + megabatches
            additional = additional[size:]
        if additional:
            megabatches.append(additional)
    else:
        raise ValueError(f"unknown sampler variant {variant!r}: expected 'head' or 'v1.1'")
    return [i for m in megabatches for i in m]


def epoch_order(lengths: Sequence[int], seed: int, epoch: int, group_by_modality_length: bool,
                batch_size: int, world_size: int, variant: str = "head") -> list[int]:
    """The full visiting order of one epoch, identical on every process (seeded by seed + epoch).

    `world_size` is the official `world_size x gradient_accumulation_steps` (HEAD), so a change in
    process count at a fixed global batch keeps the order."""
    generator = torch.Generator().manual_seed(seed + epoch)
    if group_by_modality_length:
        return get_modality_length_grouped_indices(lengths, batch_size, world_size, generator, variant)
    return torch.randperm(len(lengths), generator=generator).tolist()


def micro_batches_for_step(order: Sequence[int], step: int, micro_batch_size: int,
                           accumulation_steps: int, world_size: int, rank: int) -> list[list[int]]:
    """This process's micro-batches of optimizer step `step` (0-based within the epoch).

    Micro-batch c of the epoch is order[c*B:(c+1)*B]; it goes to process c % world_size, and each
    process accumulates its consecutive ones (accelerate's round-robin dealing). A short last
    step may leave a process with empty micro-batches (the caller keeps collectives in step)."""
    per_step = world_size * accumulation_steps
    out = []
    for a in range(accumulation_steps):
        c = step * per_step + a * world_size + rank
        out.append(list(order[c * micro_batch_size:(c + 1) * micro_batch_size]))
    return out


def steps_per_epoch(num_samples: int, global_batch_size: int) -> int:
    return math.ceil(num_samples / global_batch_size)


def subsample_indices(num_records: int, fraction: float, seed: int) -> list[int]:
    """A fixed random subset (sorted) keeping round(fraction x num_records) records."""
    if fraction >= 1.0:
        return list(range(num_records))
    keep = max(1, round(fraction * num_records))
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(num_records, generator=generator)[:keep].tolist())
