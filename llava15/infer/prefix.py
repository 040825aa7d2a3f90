"""Shared-prefix prefill: what the prompts of a batch have in common is computed once.

Evaluation batches repeat themselves: every prompt opens with the template's system text, and
consecutive questions often ask about the same image, so with vicuna_v1 the system text and the
image's positions are the same in several rows. The prompts form a prefix tree (a radix tree:
a span of positions is shared by a group of rows when its token ids, and its images' pixel
values, are equal in all of them); `plan_spans` cuts it into spans, and `prefill_spans` runs
each span once and copies its keys and values into every row that holds it. A span's keys and
values depend only on the positions before it, which the rows of its group share, so every row
gets the keys, values and last logits it would get alone, up to float summation order (as any
batching gives).

Layout. Spans run in rounds, round d holding the spans at depth d of the tree (the system text;
then one span per image group or per row; then the rows' own questions). A round is one or a
few forward calls (`sub_batches`: spans of very different lengths go to different calls), one
span per batch row, right-padded to the call's longest span. Round d writes the cache's column
band [C_d, C_d+1), so a row's positions sit in order along its cache row, with masked gaps where
its spans are shorter than their bands; positions are taken from the attention mask (real
columns counted), as in any padded batch, and masked keys weigh exactly zero. A call made only
of rows' own spans (no sharing left) runs in place in the batch cache; the others run in a
cache of their own and their keys and values are copied to every row holding their spans.

With no shared span at all this is plain batched prefill (equal lengths: one call, as before).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llava15.model.calls import CALL_COST, cut_by_length
from llava15.model.llama import KVCache
from llava15.model.llava import Llava



@dataclass(frozen=True)
class Span:
    """Positions [start, end) of the prompts of `rows` (equal in all of them), at tree `depth`."""

    rows: tuple[int, ...]
    start: int
    end: int
    depth: int


def position_keys(input_ids: torch.Tensor, lengths: Sequence[int], image_token_index: int,
                  tokens_per_image: int, image_numbers: Sequence[int] | None) -> list[tuple[int, ...]]:
    """Per prompt (left-padded rows of `input_ids`, real `lengths`), one key per position:
    equal keys, equal input embeddings. Text positions keep their token id (>= 0); image
    positions get -1 - (image number x tokens_per_image + patch), where `image_numbers` (in
    prompt order) give equal images equal numbers; with None (AnyRes) every image position
    gets a key of its own."""
    keys = input_ids.clone()
    image = keys == image_token_index
    seen = torch.arange(int(image.sum()), device=keys.device)  # image positions in prompt order
    if image_numbers is None:
        keys[image] = -1 - seen
    else:
        numbers = torch.tensor(image_numbers, device=keys.device)
        image_of, patch = seen // tokens_per_image, seen % tokens_per_image
        keys[image] = -1 - (numbers[image_of] * tokens_per_image + patch)
    width = keys.shape[1]
    return [tuple(row[width - n:]) for row, n in zip(keys.tolist(), lengths)]


def common_length(keys: Sequence[tuple[int, ...]], rows: Sequence[int], start: int, stop: int) -> int:
    """How many positions from `start` (before `stop`) hold equal keys in all `rows`."""
    parts = [keys[r][start:stop] for r in rows]
    low, high = min(parts), max(parts)  # their common prefix is everyone's
    return next((i for i, (a, b) in enumerate(zip(low, high)) if a != b), len(low))


def plan_spans(keys: Sequence[tuple[int, ...]], min_saved: int = CALL_COST) -> list[Span]:
    """Cut prompts (`position_keys`) into the spans of their prefix tree.

    A span shared by n rows is kept only when it saves at least `min_saved` positions
    ((n - 1) x its length): it may cost a forward call more, which tiny shared spans do not
    repay. Every row ends with a span of its own of at least one position (its last logits).
    """
    spans: list[Span] = []

    def split(rows: list[int], start: int, depth: int) -> None:
        if len(rows) == 1:
            spans.append(Span((rows[0],), start, len(keys[rows[0]]), depth))
            return
        stop = min(len(keys[r]) for r in rows) - 1  # each row keeps its last position
        end = start + common_length(keys, rows, start, stop)
        if (len(rows) - 1) * (end - start) >= min_saved and end > start:
            spans.append(Span(tuple(rows), start, end, depth))
            start, depth = end, depth + 1
        groups: dict[int, list[int]] = {}  # by the key where the rows part
        for row in rows:
            groups.setdefault(keys[row][end], []).append(row)
        if len(groups) == 1:  # equal up to the last position: each row ends alone
            groups = {row: [row] for row in rows}
        for group in groups.values():
            split(group, start, depth)

    split(list(range(len(keys))), 0, 0)
    return spans


def sub_batches(spans: Sequence[Span], call_cost: int = CALL_COST) -> list[list[Span]]:
    """Spans of one round cut into forward calls: by length, longest first, where one call
    padding short spans to its longest costs more than a call of their own (`call_cost`
    positions). Exact minimum over such cuts (`cut_by_length`)."""
    return [[spans[i] for i in call] for call in cut_by_length([s.end - s.start for s in spans], call_cost)]


def prefill_spans(model: Llava, prompts: Sequence[torch.Tensor], spans: Sequence[Span],
                  room: int) -> tuple[torch.Tensor, KVCache, torch.Tensor, list[int]]:
    """Run `plan_spans`' spans round by round into a new cache with `room` more columns.

    Returns, in the cache's row order, the last position's logits of every prompt (B,1,V),
    the cache (its `length` set) and the attention mask (B, length) of the real positions;
    and that order (the prompt of each cache row). The rows of a call made only of rows' own
    spans sit side by side in that order, so the call runs in place in the cache.
    """
    first = prompts[0]
    bands = [0]  # round d writes columns [bands[d], bands[d + 1])
    for depth in range(max(s.depth for s in spans) + 1):
        bands.append(bands[-1] + max(s.end - s.start for s in spans if s.depth == depth))
    calls = [sub_batches([s for s in spans if s.depth == depth]) for depth in range(len(bands) - 1)]
    alone = [call for depth in calls for call in depth if all(len(s.rows) == 1 for s in call)]
    order = [s.rows[0] for call in alone for s in call]  # a row's own span is in one call only
    order += sorted(set(range(len(prompts))) - set(order))
    slot = {row: i for i, row in enumerate(order)}
    prompts = [prompts[row] for row in order]
    config = model.language_model.config
    cache = KVCache.allocate(config, len(prompts), bands[-1] + room, first.dtype, first.device)
    for buffer in (*cache.keys, *cache.values):  # gaps hold zeros: 0 weight x NaN would be NaN
        buffer[:, :, :bands[-1]] = 0
    real = torch.zeros((len(prompts), bands[-1]), dtype=torch.bool, device=first.device)
    logits: dict[int, torch.Tensor] = {}
    for low, depth_calls in zip(bands, calls):
        for call in depth_calls:
            todo = sorted((Span(tuple(slot[row] for row in s.rows), s.start, s.end, s.depth)
                           for s in call), key=lambda s: s.rows)  # in cache rows
            rows = in_place(todo)
            run, mask = run_round(model, prompts, todo, cache, real, low, logits, rows)
            if rows is None:
                spread(todo, run, mask, cache, real, low)
            else:  # the call wrote its keys and values into the cache itself
                real[rows.start:rows.stop, low:mask.shape[1]] = mask[:, low:]
    cache.length = bands[-1]
    return torch.stack([logits[i] for i in range(len(prompts))])[:, None], cache, real, order


def in_place(todo: Sequence[Span]) -> range | None:
    """The cache rows of a call made only of rows' own spans, side by side; else None."""
    rows = [s.rows[0] for s in todo]
    if any(len(s.rows) > 1 for s in todo) or rows != list(range(rows[0], rows[0] + len(rows))):
        return None
    return range(rows[0], rows[0] + len(rows))


def run_round(model: Llava, prompts: Sequence[torch.Tensor], todo: Sequence[Span], cache: KVCache,
              real: torch.Tensor, low: int, logits: dict[int, torch.Tensor],
              rows: range | None = None) -> tuple[KVCache, torch.Tensor]:
    """One forward call: each span as one batch row (right-padded to the longest) at column
    `low`, after the keys and values of its first row's earlier spans: in the cache's `rows`
    themselves, else in a cache of the call's own. Returns the call's cache and attention
    mask; the last logits of rows whose prompt ends here go into `logits`."""
    first, reps = prompts[0], [s.rows[0] for s in todo]
    width = max(s.end - s.start for s in todo)
    x = first.new_zeros((len(todo), width, first.shape[-1]))
    mask = torch.cat([real[reps, :low], real.new_zeros((len(todo), width))], dim=1)
    for i, s in enumerate(todo):
        x[i, :s.end - s.start] = prompts[s.rows[0]][s.start:s.end]
        mask[i, low:low + s.end - s.start] = True
    config = model.language_model.config
    if rows is not None:
        run = KVCache([k[rows.start:rows.stop, :, :low + width] for k in cache.keys],
                      [v[rows.start:rows.stop, :, :low + width] for v in cache.values], low)
    else:
        run = KVCache.allocate(config, len(todo), low + width, first.dtype, first.device)
        run.length = low
    if low and rows is None:
        index = torch.tensor(reps, device=first.device)
        for ours, theirs in zip((*cache.keys, *cache.values), (*run.keys, *run.values)):
            theirs[:, :, :low] = ours[:, :, :low].index_select(0, index)
    ending = [i for i, s in enumerate(todo) if s.end == len(prompts[s.rows[0]])]
    keep = max(width - (todo[i].end - todo[i].start) for i in ending) + 1 if ending else 1
    out = model.language_model(x, mask, cache=run, logits_to_keep=keep)
    for i in ending:  # the span's last real position, counted from the call's last column
        logits[todo[i].rows[0]] = out[i, keep - width + todo[i].end - todo[i].start - 1]
    return run, mask


def spread(todo: Sequence[Span], run: KVCache, mask: torch.Tensor, cache: KVCache,
           real: torch.Tensor, low: int) -> None:
    """Copy each span's keys, values and mask (columns from `low` on) to every row holding it."""
    high = run.keys[0].shape[2]
    source = torch.tensor([i for i, s in enumerate(todo) for _ in s.rows], device=real.device)
    rows = torch.tensor([row for s in todo for row in s.rows], device=real.device)
    for ours, theirs in zip((*cache.keys, *cache.values), (*run.keys, *run.values)):
        ours[:, :, low:high].index_copy_(0, rows, theirs[:, :, low:high].index_select(0, source))
    real[:, low:high].index_copy_(0, rows, mask[:, low:high].index_select(0, source))
