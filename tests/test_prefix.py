"""Shared-prefix prefill: spans shared by rows run once, and every row still gets what it gets
alone (logits to float rounding, greedy tokens exactly); repeated images are encoded once."""

from __future__ import annotations

import pytest
import torch

from llava15.config import tiny
from llava15.infer.embed import distinct_images, embed_batch
from llava15.infer.generate import SamplingParams, generate, left_pad, prefill
from llava15.infer.prefix import Span, plan_spans, position_keys, sub_batches
from llava15.model.llava import Llava
from random_llava import random_llava


@pytest.fixture(scope="module")
def model() -> Llava:
    return random_llava(tiny())


def ids(seed: int, n: int) -> list[int]:
    return torch.randint(3, 100, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def batch(model: Llava) -> tuple[list[list[int]], torch.Tensor]:
    """An evaluation-like batch: one system text; images 0, 0, 1, 0, 0, 0 (five rows share
    theirs); questions of different lengths, one asked twice (rows 0 and 3); a text-only row."""
    system, image = ids(0, 20), [model.config.image_token_index] * model.config.num_image_tokens
    questions = [ids(1, 5), ids(2, 8), ids(3, 5), ids(1, 5), ids(6, 3), ids(7, 30)]
    prompts = [system + image + q for q in questions] + [system + ids(4, 6)]
    pictures = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(5))
    return prompts, pictures[[0, 0, 1, 0, 0, 0]]


def test_plan_spans_shares_the_system_text_and_each_image():
    rows = [(1, 2, 3, 7, 7, 4), (1, 2, 3, 7, 7, 5, 6), (1, 2, 3, 8, 8, 4), (1, 2, 3, 7, 7, 4)]
    spans = plan_spans(rows, min_saved=1)
    assert spans[0] == Span((0, 1, 2, 3), 0, 3, 0)  # the system text, once
    assert Span((0, 1, 3), 3, 5, 1) in spans  # the shared image
    assert Span((2,), 3, 6, 1) in spans  # a row alone with its image
    alone = {s.rows[0]: (s.start, s.end) for s in spans if len(s.rows) == 1}
    assert alone == {0: (5, 6), 1: (5, 7), 2: (3, 6), 3: (5, 6)}  # rows 0 and 3 are equal
    for row, prompt in enumerate(rows):  # every position of every row in exactly one span
        covered = sorted(p for s in spans if row in s.rows for p in range(s.start, s.end))
        assert covered == list(range(len(prompt)))


def test_plan_spans_skips_sharing_that_saves_too_little():
    rows = [(1, 2, 9), (1, 2, 8)]
    assert all(len(s.rows) == 1 for s in plan_spans(rows, min_saved=3))
    assert plan_spans(rows, min_saved=2)[0] == Span((0, 1), 0, 2, 0)


def test_sub_batches_pad_only_where_a_call_costs_more():
    spans = [Span((row,), 0, n, 0) for row, n in enumerate([20, 100, 18, 98, 19])]
    lengths = lambda calls: [[s.end for s in call] for call in calls]  # noqa: E731
    assert lengths(sub_batches(spans, call_cost=64)) == [[100, 98], [20, 19, 18]]
    assert lengths(sub_batches(spans, call_cost=1000)) == [[100, 98, 20, 19, 18]]
    assert lengths(sub_batches(spans, call_cost=0)) == [[100], [98], [20], [19], [18]]


def test_position_keys_tell_images_apart_by_their_pixels():
    image = -200
    prompts = [[5, image, image, 6], [5, image, image, 7], [image, image]]
    input_ids, _ = left_pad(prompts, 0)
    keys = position_keys(input_ids, [4, 4, 2], image, 2, [0, 1, 0])
    assert keys == [(5, -1, -2, 6), (5, -3, -4, 7), (-1, -2)]
    keys = position_keys(input_ids, [4, 4, 2], image, 2, None)  # AnyRes: never shared
    assert keys == [(5, -1, -2, 6), (5, -3, -4, 7), (-5, -6)]


def test_repeated_images_are_encoded_once_and_embed_as_alone(model):
    prompts, pixels = batch(model)
    assert distinct_images(pixels) == ([0, 2], [0, 0, 1, 0, 0, 0])
    input_ids, _ = left_pad(prompts[:6], 0)
    calls = []
    hook = model.vision_tower.register_forward_hook(lambda m, args, out: calls.append(len(args[0])))
    with torch.inference_mode():
        ours, numbers = embed_batch(model, input_ids, pixels)
    hook.remove()
    assert calls == [2] and numbers == [0, 0, 1, 0, 0, 0]
    with torch.inference_mode():
        reference = model.embed_inputs(input_ids, pixels)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)
    assert torch.equal(ours[0, -len(prompts[0]):][20:36], ours[1, -len(prompts[1]):][20:36])


def test_shared_prefill_gives_each_row_its_logits_alone(model):
    prompts, pixels = batch(model)
    images = [[0], [1], [2], [3], [4], [5], []]
    with torch.inference_mode():
        start = prefill(model, prompts, pixels, None, 0, room=4)
        logits, cache, mask, order = start.logits, start.cache, start.attention_mask, start.rows
        assert sorted(order) == list(range(len(prompts)))
        assert cache.length == mask.shape[1] and int(mask.sum()) == sum(map(len, prompts))
        for slot, row in enumerate(order):
            own = pixels[images[row]] if images[row] else None
            alone = prefill(model, [prompts[row]], own, None, 0, room=4).logits
            torch.testing.assert_close(logits[slot], alone[0], rtol=0, atol=1e-5)


def test_shared_prefix_batch_decodes_the_tokens_of_each_prompt_alone(model):
    prompts, pixels = batch(model)
    params = SamplingParams(max_new_tokens=12)
    together = generate(model, prompts, pixels, params, eos_token_ids=[])
    rows_images = [[0], [1], [2], [3], [4], [5], []]
    for row, prompt in enumerate(prompts):
        own = pixels[rows_images[row]] if rows_images[row] else None
        assert together[row] == generate(model, [prompt], own, params, eos_token_ids=[])[0], row
    eos = together[2][1]  # rows meeting it end early; the others go on as they were
    early = generate(model, prompts, pixels, params, eos_token_ids=[eos])
    for row, tokens in enumerate(together):
        assert early[row] == (tokens[:tokens.index(eos)] if eos in tokens else tokens), row
