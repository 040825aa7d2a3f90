"""Token generation: one prefill, then KV-cached decode steps, for a batch of prompts.

Greedy (temperature 0, the evaluation protocol), or sampling with temperature, top-k and top-p
(HF `generate` semantics). A row ends on an EOS id, at `max_new_tokens`, or when the caller's
`stop_check` says so (used for stop strings, which need the tokenizer). Finished rows leave the
batch, so the remaining rows decode faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from llava15.infer.embed import embed_batch
from llava15.infer.fuse import decode_layout, fuse_projections
from llava15.infer.prefix import plan_spans, position_keys, prefill_spans
from llava15.model.llama import KVCache
from llava15.model.llava import Llava


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 -> greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 -> off
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class ContextLengthError(ValueError):
    """A prompt does not fit into the model's context."""


def check_context(prompt_length: int, limit: int, what: str = "the prompt") -> None:
    """Raise ContextLengthError unless a prompt of `prompt_length` positions (image positions
    included) leaves room for at least one new token in a context of `limit` positions."""
    if prompt_length >= limit:
        raise ContextLengthError(f"{what} has {prompt_length} tokens (image tokens included), "
                                 f"the model's context is {limit}")


def optimize_for_cpu(model: torch.nn.Module) -> None:
    """The one call that tunes a model for inference on this machine, made where inference
    starts (`load_engine`; an `Engine` built around a model leaves it as given): lay out the
    weights for fast decoding on the current thread count, then fuse each decoder layer's q/k/v
    and gate/up projections (`llava15.infer.fuse`).

    With several threads, weights stay row-major: `llava15.model.linear` computes few-row
    products fastest on that layout. On one thread that form loses, and `F.linear` is fastest
    on a column-major copy of each widening weight (out > in: the lm_head, gate/up): same
    shape and values, transposed strides, so x @ W^T runs on a contiguous W^T (lm_head of
    32000 x 512 at 1 row: 5.2 ms -> 2.3 ms). Results change only by float summation order.
    Only float32 CPU weights change layout (the measurements are theirs); half-precision and
    GPU weights keep row-major. Meant for inference, after the model is on its device and dtype
    and the thread count is set (called again, it lays out for the thread count then); `state_dict()` names and
    values are unchanged.
    """
    layout = decode_layout()
    with torch.no_grad():
        for module in model.modules():
            if (isinstance(module, torch.nn.Linear) and module.out_features > module.in_features
                    and module.weight.dtype == torch.float32 and module.weight.device.type == "cpu"):
                module.weight.data = layout(module.weight.data)
    float32_cpu = model.language_model.output_weight().dtype == torch.float32 and \
        model.language_model.output_weight().device.type == "cpu"
    fuse_projections(model, layout if float32_cpu else torch.Tensor.contiguous)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> input_ids (B,T) padded on the left with `pad_id`, attention_mask (B,T) bool."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        if len(prompt):
            input_ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            attention_mask[row, width - len(prompt):] = True
    return input_ids, attention_mask


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Top-k then top-p (nucleus) filtering of one row of logits (V,), as HF's warpers do."""
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits)  # ascending
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        remove = cumulative <= 1 - top_p
        remove[-1] = False  # always keep the most likely token
        logits = logits.masked_fill(remove.scatter(0, order, remove), float("-inf"))
    return logits


def sample_next(logits: torch.Tensor, params: Sequence[SamplingParams],
                generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """logits (B,V) -> next token ids (B,), each row with its own parameters."""
    if all(p.greedy for p in params):
        return logits.argmax(-1)
    tokens = []
    for row, p in enumerate(params):
        if p.greedy:
            tokens.append(logits[row].argmax(-1))
            continue
        scores = filter_logits(logits[row].float() / p.temperature, p.top_k, p.top_p)
        tokens.append(torch.multinomial(scores.softmax(-1), 1, generator=generators[row])[0])
    return torch.stack(tokens)


@dataclass
class Prefill:
    """What a prefill leaves for decoding, every field in the cache's row order: the next-token
    `logits` (B,V), the `cache` (its `length` set, `room` columns free), the `attention_mask`
    (B, length) of its real positions, `rows` (the prompt of each cache row) and `encode_s`,
    the seconds spent encoding images (vision tower, projector and merge; 0.0 without images)."""

    logits: torch.Tensor
    cache: KVCache
    attention_mask: torch.Tensor
    rows: list[int]
    encode_s: float


def prefill(model: Llava, prompts: Sequence[Sequence[int]], pixel_values, image_sizes,
            pad_token_id: int, room: int) -> Prefill:
    """Run the prompts into a new cache with `room` columns to decode into: the one prefill of
    every generation path (`generate_tokens`, and the server's running batch).

    One prompt runs exactly as the official code runs it. Several run through
    `llava15.infer.prefix`: what they share (the system text, a repeated image) once, each
    distinct image through the vision tower once, no compute on padding beyond what saves a call.
    """
    device = next(model.parameters()).device
    input_ids, attention_mask = left_pad(prompts, pad_token_id)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    sizes = list(image_sizes) if image_sizes else None
    width = input_ids.shape[1]
    started = time.perf_counter()
    if len(prompts) == 1:
        inputs_embeds, numbers = model.embed_inputs(input_ids, pixel_values, sizes), None
    else:
        inputs_embeds, numbers = embed_batch(model, input_ids, pixel_values, sizes)  # images once
    if device.type == "cuda":  # kernels run asynchronously: wait for them before reading the clock
        torch.cuda.synchronize(device)
    encode_s = time.perf_counter() - started if pixel_values is not None else 0.0
    if len(prompts) == 1:
        cache = KVCache.allocate(model.config.text, 1, width + room, inputs_embeds.dtype, device)
        logits = model.language_model(inputs_embeds, attention_mask, cache=cache, logits_to_keep=1)
        cache.length = width
        return Prefill(logits[:, -1], cache, attention_mask, [0], encode_s)
    rows = [inputs_embeds[row, width - len(prompt):] for row, prompt in enumerate(prompts)]
    config = model.config
    spans = plan_spans(position_keys(input_ids, [len(p) for p in prompts], config.image_token_index,
                                     config.num_image_tokens, numbers))
    logits, cache, mask, order = prefill_spans(model, rows, spans, room)
    return Prefill(logits[:, -1], cache, mask, order, encode_s)


def generate_tokens(model: Llava, prompts: Sequence[Sequence[int]],
                    pixel_values: torch.Tensor | None, params: SamplingParams | Sequence[SamplingParams],
                    eos_token_ids: Sequence[int], pad_token_id: int = 0,
                    stop_check: Callable[[int, list[int]], bool] | None = None,
                    image_sizes: Sequence[tuple[int, int]] | None = None,
                    ) -> Iterator[tuple[int, int]]:
    """Yield `(row, token_id)` as tokens are produced; EOS ends a row and is not yielded.

    `prompts` are expanded input ids (image positions included); `pixel_values` holds the
    images of all rows in order (for AnyRes: a list of per-image views, with `image_sizes`).
    `stop_check(row, tokens_so_far)` may end a row early.
    """
    per_row = list(params) if isinstance(params, Sequence) else [params] * len(prompts)
    if len(per_row) != len(prompts):
        raise ValueError(f"{len(per_row)} sampling parameter sets for {len(prompts)} prompts")
    if not prompts:
        return
    limit = model.config.text.max_position_embeddings
    for row, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise ValueError(f"prompt {row} is empty")
        check_context(len(prompt), limit, f"prompt {row}")
    # Positions count real tokens only, so each row's room is the context minus its own prompt.
    budget = [min(p.max_new_tokens, limit - len(prompt)) for p, prompt in zip(per_row, prompts)]
    if max(budget) <= 0:
        return
    generators = [torch.Generator().manual_seed(p.seed) if p.seed is not None else None
                  for p in per_row]
    device = next(model.parameters()).device
    eos = torch.tensor(sorted(set(eos_token_ids)), device=device, dtype=torch.long)
    with torch.inference_mode():
        start = prefill(model, prompts, pixel_values, image_sizes, pad_token_id, max(budget))
        logits, cache, attention_mask = start.logits, start.cache, start.attention_mask
        rows = start.rows  # the prompt of each live batch row
        produced: list[list[int]] = [[] for _ in prompts]
        while rows:
            next_tokens = sample_next(logits, [per_row[r] for r in rows],
                                      [generators[r] for r in rows])
            is_eos = torch.isin(next_tokens, eos).tolist()
            keep = []
            for i, row in enumerate(rows):
                if is_eos[i]:
                    continue
                token = int(next_tokens[i])
                produced[row].append(token)
                yield row, token
                done = len(produced[row]) >= budget[row] or (
                    stop_check is not None and stop_check(row, produced[row]))
                if not done:
                    keep.append(i)
            if not keep:
                return
            if len(keep) < len(rows):
                index = torch.tensor(keep, device=device)
                cache = cache.select(index)
                attention_mask = attention_mask[index]
                next_tokens = next_tokens[index]
                rows = [rows[i] for i in keep]
            attention_mask = torch.cat(
                [attention_mask, attention_mask.new_ones((len(rows), 1))], dim=1)
            logits = model.decode(next_tokens[:, None], attention_mask, cache)[:, -1]
            cache.length += 1


def generate(model: Llava, prompts: Sequence[Sequence[int]], pixel_values: torch.Tensor | None,
             params: SamplingParams | Sequence[SamplingParams], eos_token_ids: Sequence[int],
             pad_token_id: int = 0,
             stop_check: Callable[[int, list[int]], bool] | None = None) -> list[list[int]]:
    """The new tokens of every prompt (EOS excluded)."""
    out: list[list[int]] = [[] for _ in prompts]
    for row, token in generate_tokens(model, prompts, pixel_values, params, eos_token_ids,
                                      pad_token_id, stop_check):
        out[row].append(token)
    return out
