"""Generation: the KV cache changes nothing, left padding changes nothing, sampling filters behave."""

from __future__ import annotations

import pytest
import torch

from llava15.config import tiny
from llava15.infer.generate import (ContextLengthError, SamplingParams, filter_logits, generate,
                                    generate_tokens)
from llava15.model.llava import Llava
from random_llava import random_llava


@pytest.fixture(scope="module")
def model() -> Llava:
    return random_llava(tiny())


def image_prompt(model: Llava, seed: int, prefix: int, suffix: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 100, (prefix + suffix,), generator=g).tolist()
    image = [model.config.image_token_index] * model.config.num_image_tokens
    return ids[:prefix] + image + ids[prefix:]


def greedy_without_cache(model: Llava, prompt: list[int], pixel_values, n: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids]), pixel_values).logits
            ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt):]


def test_kv_cache_equals_full_recompute(model):
    prompt = image_prompt(model, 0, 4, 6)
    pixel_values = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    expected = greedy_without_cache(model, prompt, pixel_values, 24)
    got = generate(model, [prompt], pixel_values, SamplingParams(max_new_tokens=24), eos_token_ids=[])
    assert got[0] == expected


def test_left_padded_batch_equals_each_prompt_alone(model):
    prompts = [image_prompt(model, 1, 2, 3), image_prompt(model, 2, 9, 11), image_prompt(model, 3, 5, 1)]
    pixels = torch.randn(3, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    params = SamplingParams(max_new_tokens=20)
    batch = generate(model, prompts, pixels, params, eos_token_ids=[])
    for row, prompt in enumerate(prompts):
        alone = generate(model, [prompt], pixels[row:row + 1], params, eos_token_ids=[])
        assert batch[row] == alone[0], row


def test_text_only_rows_and_eos_and_early_exit(model):
    text = [[5, 6, 7, 8], [9, 10]]
    first = generate(model, text, None, SamplingParams(max_new_tokens=8), eos_token_ids=[])
    eos = first[0][3]  # make the 4th token of row 0 an EOS: row 0 stops before it
    stopped = generate(model, text, None, SamplingParams(max_new_tokens=8), eos_token_ids=[eos])
    assert stopped[0] == first[0][:first[0].index(eos)]
    expected_row1 = first[1][:first[1].index(eos)] if eos in first[1] else first[1]
    assert stopped[1] == expected_row1


def test_stop_check_ends_a_row(model):
    text = [[5, 6, 7, 8]]
    full = generate(model, text, None, SamplingParams(max_new_tokens=8), eos_token_ids=[])
    cut = generate(model, text, None, SamplingParams(max_new_tokens=8), eos_token_ids=[],
                   stop_check=lambda row, toks: len(toks) == 3)
    assert cut[0] == full[0][:3]


def test_sampling_is_seeded_and_stream_matches(model):
    params = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.9, top_k=20, seed=7)
    a = generate(model, [[5, 6, 7]], None, params, eos_token_ids=[])
    b = generate(model, [[5, 6, 7]], None, params, eos_token_ids=[])
    assert a == b
    streamed = [tok for _, tok in generate_tokens(model, [[5, 6, 7]], None, params, [])]
    assert streamed == a[0]


def test_filter_logits_against_reference():
    torch.manual_seed(0)
    logits = torch.randn(50)
    probs = logits.softmax(-1)
    top_k = filter_logits(logits, top_k=5, top_p=1.0)
    assert set(torch.nonzero(top_k > float("-inf")).flatten().tolist()) == set(logits.topk(5).indices.tolist())
    nucleus = filter_logits(logits, top_k=0, top_p=0.5)
    kept = torch.nonzero(nucleus > float("-inf")).flatten()
    # reference: the smallest set of most likely tokens whose mass exceeds... HF keeps tokens
    # whose ascending cumulative mass is above 1 - top_p
    order = probs.argsort(descending=True)
    mass, expected = 0.0, []
    for i in order.tolist():
        expected.append(i)
        mass += probs[i].item()
        if mass >= 0.5:
            break
    assert set(kept.tolist()) == set(expected)


def test_bad_inputs_give_clear_errors(model):
    with pytest.raises(ContextLengthError, match="context is 256"):
        generate(model, [[5] * 300], None, SamplingParams(), eos_token_ids=[])
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError, match="image tokens and image features do not match"):
        prompt = image_prompt(model, 0, 2, 2)
        del prompt[2]  # one image-token position too few
        model(torch.tensor([prompt]), torch.randn(1, 3, 28, 28))
    with pytest.raises(ValueError, match="no pixel_values"):
        model(torch.tensor([image_prompt(model, 0, 2, 2)]))
