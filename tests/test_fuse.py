"""Fused q/k/v and gate/up projections (inference) give the unfused model's numbers and leave the
state dict, and training, as they were."""

from __future__ import annotations

import copy

import pytest
import torch

from llava15.config import tiny
from llava15.infer.generate import SamplingParams, generate, optimize_for_cpu
from llava15.model.llava import Llava
from random_llava import random_llava

VARIANTS = {  # text-config switches over `tiny()` (GQA 4/2 heads)
    "mha": dict(num_key_value_heads=4),
    "gqa": dict(),
    "qkv_bias": dict(qkv_bias=True),
    "attention_bias": dict(num_key_value_heads=4, attention_bias=True),
    # weights of >= MIN_WEIGHT elements: q/k/v, gate/up, o, down and lm_head take the few-rows form
    "big": dict(hidden_size=512, intermediate_size=1024, vocab_size=600, num_attention_heads=8,
                num_key_value_heads=8),
}


def random_model(variant: str) -> Llava:
    config = tiny()
    config = config.replace(text=config.text.__class__(**{**vars(config.text), **VARIANTS[variant]}))
    return random_llava(config)


def prompts(model: Llava) -> tuple[list[list[int]], torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    image = [model.config.image_token_index] * model.config.num_image_tokens
    rows = [torch.randint(3, 100, (n,), generator=g).tolist() for n in (3, 9, 6)]
    return [r[:2] + image + r[2:] for r in rows], torch.randn(3, 3, 28, 28, generator=g)


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("n_threads", [1, 2])  # column-major layout / few-rows form
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_fused_model_gives_the_unfused_logits_tokens_and_state_dict(variant, n_threads, threads):
    torch.set_num_threads(n_threads)
    plain = random_model(variant)
    fused = copy.deepcopy(plain)
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    optimize_for_cpu(fused)
    assert fused.language_model.model.layers[0].self_attn.qkv_weight is not None
    after = fused.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)

    batch, pixels = prompts(plain)
    ids = torch.tensor([batch[1]])
    with torch.inference_mode():
        expected = plain(ids, pixels[1:2]).logits
        got = fused(ids, pixels[1:2]).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    params = SamplingParams(max_new_tokens=16)
    assert generate(fused, batch, pixels, params, []) == generate(plain, batch, pixels, params, [])


def test_fusing_twice_and_loading_weights_after_fusing_keep_one_set_of_values():
    model = random_model("gqa")
    optimize_for_cpu(model)
    optimize_for_cpu(model)
    other = random_model("gqa")
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-1)
    model.load_state_dict(other.state_dict())  # writes through the views into the fused weights
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.inference_mode():
        torch.testing.assert_close(model(ids).logits, other(ids).logits, rtol=1e-5, atol=1e-6)


def test_gradients_reach_the_parameters_of_a_fused_model():
    plain = random_model("qkv_bias")
    fused = copy.deepcopy(plain)
    optimize_for_cpu(fused)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    for model in (plain, fused):
        model(ids, labels=ids).loss.backward()
    pairs = zip(plain.language_model.named_parameters(), fused.language_model.parameters())
    for (name, p), q in pairs:
        assert q.grad is not None, name
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-5 * p.grad.abs().max().item(),
                                   msg=name)
