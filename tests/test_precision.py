"""Reduced precision on the CPU against float32 on the same weights: bfloat16, float16 and int8
(`--load-8bit`) logits within stated tolerances, greedy tokens equal wherever float32's choice
is clearer than that tolerance; the kernels each path takes (half weights widened for many
rows, int8 products) against their definitions."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from checkpoint_fixtures import GOLDEN, expand, golden_outputs
from llava15.checkpoint import load_llava
from llava15.checkpoint.placement import PlacementRequest
from llava15.checkpoint.quantize import quantize_int8
from llava15.config import tiny
from llava15.infer.generate import SamplingParams, generate
from llava15.model.int8 import FEW_ROWS, FEW_ROWS_NATIVE_BF16, Int8Linear, quantize_rows
from llava15.model.linear import HALF_UPCAST_ROWS, linear, native_bf16, widens
from random_llava import random_llava

# Largest logit error relative to the largest float32 logit, per precision. Measured on the
# golden tiny checkpoint (its prompt, then the long prompt): bf16 0.016 / 0.018, fp16 0.0018 /
# 0.0022, int8 with bf16 activations 0.024 / 0.030, int8 with float32 ones 0.018 / 0.024; the
# bounds leave about 1.5-2x room.
TOLERANCE = {"bfloat16": 0.035, "float16": 0.005, "int8": 0.05, "int8-float32": 0.04}
REQUESTS = {"bfloat16": PlacementRequest(dtype="bfloat16"), "float16": PlacementRequest(dtype="float16"),
            "int8": PlacementRequest(load_8bit=True),
            "int8-float32": PlacementRequest(load_8bit=True, dtype="float32")}


@pytest.fixture(scope="module")
def reference():
    loaded = load_llava(GOLDEN / "llava-tiny-full")
    return loaded.model, loaded.config


def long_prompt(config, n_text: int = 140) -> list[int]:
    """Text around one image, longer than HALF_UPCAST_ROWS and FEW_ROWS so that a prefill
    takes the many-row paths and decoding the few-row ones."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, config.text.vocab_size, (n_text,), generator=g).tolist()
    return ids[:5] + [config.image_token_index] * config.num_image_tokens + ids[5:]


@pytest.mark.parametrize("name", list(REQUESTS))
def test_logits_within_tolerance_of_float32(reference, name):
    model32, config = reference
    loaded = load_llava(GOLDEN / "llava-tiny-full", placement=REQUESTS[name])
    golden = golden_outputs("llava-tiny-full")
    pixels = golden["pixel_values"]
    for ids in (expand(golden["input_ids"][0], config.image_token_index, config.num_image_tokens),
                torch.tensor([long_prompt(config)])):
        with torch.no_grad():
            want = model32(ids, pixels).logits
            got = loaded.model(ids, pixels).logits.float()
        error = float((got - want).abs().max() / want.abs().max())
        assert error < TOLERANCE[name], f"{name}: {ids.shape[1]} positions, error {error:.4f}"
    assert len(ids[0]) > max(HALF_UPCAST_ROWS, FEW_ROWS)


@pytest.mark.parametrize("name", list(REQUESTS))
def test_greedy_tokens_agree_where_float32_is_clear(reference, name):
    """Each greedy token of the reduced model equals float32's choice on the same prefix
    wherever float32's top-1 leads its top-2 by more than twice the tolerance."""
    model32, config = reference
    model = load_llava(GOLDEN / "llava-tiny-full", placement=REQUESTS[name]).model
    pixels = golden_outputs("llava-tiny-full")["pixel_values"]
    prompt = long_prompt(config)
    tokens = generate(model, [prompt], pixels, SamplingParams(max_new_tokens=24), eos_token_ids=[])[0]
    assert len(tokens) == 24
    with torch.no_grad():
        logits = model32(torch.tensor([prompt + tokens]), pixels).logits[0, len(prompt) - 1:-1]
    bound = 2 * TOLERANCE[name] * float(logits.abs().max())
    top2 = logits.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > bound
    checked = [(i, t, int(logits[i].argmax())) for i, t in enumerate(tokens) if clear[i]]
    assert checked, "no step was clear enough to check: the test would pass on anything"
    assert all(t == want for _, t, want in checked), checked


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_weights_widen_to_float32_for_many_rows_only(dtype):
    """float16 weights always widen above HALF_UPCAST_ROWS; bfloat16 ones only on a CPU
    without native bfloat16 products."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 80, generator=g).to(dtype)
    bias = torch.randn(96, generator=g).to(dtype)
    widened = dtype == torch.float16 or not native_bf16()
    assert widens(weight, HALF_UPCAST_ROWS + 1) == widened
    with torch.no_grad():
        many = torch.randn(HALF_UPCAST_ROWS + 1, 80, generator=g).to(dtype)
        want = (F.linear(many.float(), weight.float(), bias.float()).to(dtype) if widened
                else F.linear(many, weight, bias))
        assert torch.equal(linear(many, weight, bias), want)
        few = many[:HALF_UPCAST_ROWS]
        assert not widens(weight, HALF_UPCAST_ROWS)
        assert torch.equal(linear(few, weight, bias), F.linear(few, weight, bias))


def test_quantize_rows_rounds_to_the_nearest_step():
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(40, 33, generator=g) * torch.logspace(-3, 1, 40)[:, None]
    weight[7] = 0  # a zero row must not divide by zero
    q, scale = quantize_rows(weight)
    assert q.dtype == torch.int8 and scale.shape == (40,)
    assert int(q.abs().max()) == 127
    error = (q.float() * scale[:, None] - weight).abs()
    assert bool((error <= scale[:, None] / 2 + 1e-7).all())
    assert bool((q[7] == 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", sorted({1, FEW_ROWS_NATIVE_BF16, FEW_ROWS_NATIVE_BF16 + 1, FEW_ROWS,
                                         FEW_ROWS + 50}))
@pytest.mark.parametrize("in_features", [64, 40])  # 40: not a multiple of 16, the int8 kernel's unit
def test_int8_linear_computes_x_times_dequantized_weight(dtype, rows, in_features):
    g = torch.Generator().manual_seed(2)
    dense = torch.nn.Linear(in_features, 48, bias=True)
    with torch.no_grad():
        dense.weight.copy_(torch.randn(48, in_features, generator=g))
        dense.bias.copy_(torch.randn(48, generator=g))
    layer = Int8Linear.like(dense.to(dtype))
    layer.quantize_from(dense.weight)
    layer.bias.data.copy_(dense.bias)
    x = torch.randn(rows, in_features, generator=g).to(dtype)
    with torch.no_grad():
        want = x.float() @ layer.dequantized().T + dense.bias.float()
        got = layer(x)
    assert got.dtype == dtype and got.shape == (rows, 48)
    # bfloat16 activations (the int8 kernel casts to them) round to 2^-8 relative
    assert float((got.float() - want).abs().max() / want.abs().max()) < 2e-2


def test_int8_model_in_memory_matches_int8_loaded(reference):
    """`quantize_int8` on a loaded float model equals `--load-8bit` at load time."""
    model32, config = reference
    loaded = load_llava(GOLDEN / "llava-tiny-full", placement=REQUESTS["int8-float32"]).model
    again = quantize_int8(load_llava(GOLDEN / "llava-tiny-full").model)
    ids = torch.tensor([long_prompt(config)])
    pixels = golden_outputs("llava-tiny-full")["pixel_values"]
    with torch.no_grad():
        assert torch.equal(loaded(ids, pixels).logits, again(ids, pixels).logits)
    quantized = [m for m in again.modules() if isinstance(m, Int8Linear)]
    assert len(quantized) == 7 * config.text.num_hidden_layers  # q k v o gate up down


def test_generated_image_token_id_is_decoded_as_text():
    """A llava-hf model's image-token id is a real vocabulary id; a model that emits it keeps
    decoding (it is embedded as the token it is), as transformers does."""
    config = tiny()
    config = dataclasses.replace(config, image_token_index=config.text.vocab_size - 1)
    model = random_llava(config)
    prompt = [5, 6] + [config.image_token_index] * config.num_image_tokens + [7, 8]
    pixels = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # make the image token the first greedy choice: its row = the last state
        ids = torch.tensor([prompt])
        embeds = model.embed_inputs(ids, pixels)
        positions = torch.arange(len(prompt))[None]
        state = model.language_model.hidden_states(embeds, None, positions)[0, -1]
        model.language_model.lm_head.weight[config.image_token_index] = 100 * state / state.norm()
    tokens = generate(model, [prompt], pixels, SamplingParams(max_new_tokens=4), eos_token_ids=[])[0]
    assert tokens[0] == config.image_token_index
    assert len(tokens) == 4
