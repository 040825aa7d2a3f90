"""Parity with `transformers.LlavaForConditionalGeneration` on tiny random weights (float32).

The same state dict is loaded into the HF model and ours; logits must agree to 1e-4 relative and
32 greedy tokens must be identical. Covers MHA and GQA, CLS dropped and kept, q/k/v bias and
tied embeddings on the decoder.
"""

from __future__ import annotations

import pytest
import torch

from llava15.config import LlavaConfig, TextConfig, VisionConfig
from llava15.infer.generate import SamplingParams, generate
from llava15.model.llava import Llava

transformers = pytest.importorskip("transformers")

IMAGE_TOKEN = 120
VOCAB = 128


def hf_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers >= 4.52 in-memory keys -> our (llava-hf hub) keys."""
    table = [("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
             ("model.vision_tower.", "vision_tower."),
             ("model.multi_modal_projector.", "multi_modal_projector.")]
    out = {}
    for key, value in state.items():
        for old, new in table:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def build_pair(num_kv_heads: int, select: str, attention_bias: bool = False, tie: bool = False,
               select_layer: int = -2):
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                  image_size=28, patch_size=7, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    text = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=num_kv_heads, max_position_embeddings=256,
                rms_norm_eps=1e-5, rope_theta=10000.0, attention_bias=attention_bias,
                tie_word_embeddings=tie)
    hf_config = transformers.LlavaConfig(
        vision_config=transformers.CLIPVisionConfig(**vision),
        text_config=transformers.LlamaConfig(**text),
        image_token_index=IMAGE_TOKEN, vision_feature_layer=select_layer,
        vision_feature_select_strategy="default" if select == "patch" else "full",
        projector_hidden_act="gelu", tie_word_embeddings=tie)
    hf_config._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = transformers.LlavaForConditionalGeneration(hf_config).eval()
    with torch.no_grad():  # larger weights than HF's 0.02 init, so logits are far from ties
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    ours_config = LlavaConfig(
        vision=VisionConfig(**{k: v for k, v in vision.items()}),
        text=TextConfig(**text), mm_projector_type="mlp2x_gelu", mm_vision_select_layer=select_layer,
        mm_vision_select_feature=select, image_token_index=IMAGE_TOKEN)
    ours = Llava(ours_config).eval()
    missing, unexpected = ours.load_state_dict(hf_to_ours(hf.state_dict()), strict=False)
    assert not missing, missing
    # tied models carry lm_head in HF's state dict too
    assert all(k == "language_model.lm_head.weight" for k in unexpected), unexpected
    return hf, ours


def make_inputs(ours: Llava, batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    n_img = ours.config.num_image_tokens
    prefix = torch.randint(0, 100, (batch, 5), generator=g)
    suffix = torch.randint(0, 100, (batch, 7), generator=g)
    input_ids = torch.cat([prefix, torch.full((batch, n_img), IMAGE_TOKEN), suffix], dim=1)
    pixel_values = torch.randn(batch, 3, 28, 28, generator=g)
    return input_ids, pixel_values


def assert_close_relative(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> None:
    scale = b.abs().max().item()
    assert (a - b).abs().max().item() <= rel * scale, (a - b).abs().max().item() / scale


CASES = [
    dict(num_kv_heads=4, select="patch"),
    dict(num_kv_heads=2, select="patch"),
    dict(num_kv_heads=2, select="cls_patch"),
    dict(num_kv_heads=1, select="patch", attention_bias=True),
    dict(num_kv_heads=4, select="patch", tie=True, select_layer=-1),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_logits_match_transformers(case):
    hf, ours = build_pair(**case)
    input_ids, pixel_values = make_inputs(ours)
    with torch.no_grad():
        expected = hf(input_ids=input_ids, pixel_values=pixel_values).logits
        got = ours(input_ids, pixel_values).logits
    assert got.shape == expected.shape
    assert_close_relative(got, expected)


@pytest.mark.parametrize("case", CASES[:3], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_greedy_tokens_match_transformers(case):
    hf, ours = build_pair(**case)
    input_ids, pixel_values = make_inputs(ours, batch=1)
    with torch.no_grad():
        hf_out = hf.generate(input_ids=input_ids, pixel_values=pixel_values, max_new_tokens=32,
                             min_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=0)
    expected = hf_out[0, input_ids.shape[1]:].tolist()
    got = generate(ours, input_ids.tolist(), pixel_values, SamplingParams(max_new_tokens=32),
                   eos_token_ids=[])
    assert got[0] == expected


def test_loss_matches_transformers():
    hf, ours = build_pair(num_kv_heads=2, select="patch")
    input_ids, pixel_values = make_inputs(ours)
    labels = input_ids.clone()
    labels[:, :10] = -100
    labels[labels == IMAGE_TOKEN] = -100
    with torch.no_grad():
        expected = hf(input_ids=input_ids, pixel_values=pixel_values, labels=labels).loss
        got = ours(input_ids, pixel_values, labels=labels).loss
    assert abs(got.item() - expected.item()) <= 1e-5 * abs(expected.item())
