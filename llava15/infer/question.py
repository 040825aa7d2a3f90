"""One question to answer, and the official split of a question list into chunks.

A `Question` is what `predict`, `eval` and the offline world's suite need to ask the model one
question exactly as the official scripts do: the image (a path relative to an image folder, raw
image bytes for MMBench's base64 TSV, or None), the user turn without the image token (including
the response-format suffix the question file or script appends), the official `max_new_tokens`
where the benchmark fixes it, the question file's line (for error messages) and anything
benchmark-specific in `extra`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Question:
    """One question as the official inference script would pose it.

    `text` is the user turn without the image token; a caller sends `"<image>\\n" + text` when
    `image` is not None. `max_new_tokens` is None where the command line decides (`predict`).
    `extra` may hold `prompt` (the answer file's `prompt` field when it differs from `text`, as
    in ScienceQA), MMBench's `round_id`, `options`, `option_char`, a `category`, or the suite's
    `type` and `references`.
    """

    question_id: Any
    image: str | bytes | None
    text: str
    max_new_tokens: int | None = None
    extra: dict = field(default_factory=dict)
    line: int = 0  # 1-based line of the question file (0: not from a file)


def chunk(items: Sequence, num_chunks: int, index: int) -> list:
    """The official `get_chunk` (and torchrun's shard of a benchmark): contiguous chunks of
    ceil(n / k) items; `index` in 0..k-1."""
    if not 0 <= index < num_chunks:
        raise ValueError(f"chunk index {index} is outside 0..{num_chunks - 1}")
    size = math.ceil(len(items) / num_chunks) if items else 0
    return list(items[index * size:(index + 1) * size])
