"""Batching order: questions about the same image side by side.

Evaluation files ask about an image several times, often far apart (POPE asks about every image
in each of its three splits; VQAv2 and GQA several questions an image; MMBench once per circular
rotation). Batched together, an image is loaded, preprocessed and encoded once, and its prompt
positions run once for all its questions (`llava15.infer.prefix`). Answers do not depend on the
batching, so callers answer in this order and write in file order.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")


def by_image(items: Sequence[T], image: Callable[[T], Hashable]) -> list[int]:
    """Indices of `items` grouped by `image(item)` (a path, the bytes of an embedded image, or
    None for text-only), groups in the order of each image's first item, file order within a
    group."""
    groups: dict[Hashable, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(image(item), []).append(i)
    return [i for group in groups.values() for i in group]
