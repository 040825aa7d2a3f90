"""AnyRes / HD: merged features and logits equal `transformers`' LlavaNext on the same weights."""

from __future__ import annotations

import pytest
import torch

from llava15.config import LlavaConfig, TextConfig, VisionConfig, anyres_grid_shape
from llava15.model.anyres import anyres_token_count, merge_anyres_features
from llava15.model.llava import Llava

transformers = pytest.importorskip("transformers")

IMAGE_TOKEN = 120
PINPOINTS = ((56, 28), (28, 56), (56, 56), (84, 28))  # (width, height), tile 28


def build_pair(vocab_size: int = 128, image_token: int = IMAGE_TOKEN):
    """A random `LlavaNextForConditionalGeneration` and our `Llava` holding the same weights
    (AnyRes over PINPOINTS, `spatial_unpad`, 28-px tiles of 16 tokens)."""
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                  image_size=28, patch_size=7, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    text = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                rms_norm_eps=1e-5)
    hf_config = transformers.LlavaNextConfig(
        vision_config=transformers.CLIPVisionConfig(**vision),
        text_config=transformers.LlamaConfig(**text), image_token_index=image_token,
        image_grid_pinpoints=[[h, w] for w, h in PINPOINTS],  # HF stores (height, width)
        vision_feature_layer=-2, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    hf = transformers.LlavaNextForConditionalGeneration(hf_config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" not in name:
                p.copy_(0.08 * torch.randn_like(p))
    config = LlavaConfig(vision=VisionConfig(**vision), text=TextConfig(**text),
                         image_token_index=image_token, image_aspect_ratio="anyres",
                         image_grid_pinpoints=PINPOINTS, mm_patch_merge_type="spatial_unpad")
    ours = Llava(config).eval()
    table = [("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
             ("model.vision_tower.", "vision_tower."), ("model.multi_modal_projector.", "multi_modal_projector."),
             ("model.image_newline", "image_newline")]
    state = {}
    for key, value in hf.state_dict().items():
        for old, new in table:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        state[key] = value
    ours.load_state_dict(state)
    return hf, ours


@pytest.mark.parametrize("size", [(40, 20), (20, 45), (30, 30), (100, 33), (28, 28)])
def test_logits_match_llava_next(size):
    hf, ours = build_pair()
    grid = anyres_grid_shape(size, PINPOINTS, 28)
    n_views = 1 + grid[0] * grid[1]
    views = torch.randn(n_views, 3, 28, 28, generator=torch.Generator().manual_seed(3))
    n_tokens = anyres_token_count(size, grid, ours.config.num_image_tokens, "spatial_unpad")
    input_ids = torch.tensor([[1, 5, 6] + [IMAGE_TOKEN] * n_tokens + [7, 8, 9]])
    with torch.no_grad():
        expected = hf(input_ids=input_ids, pixel_values=views[None],
                      image_sizes=torch.tensor([[size[1], size[0]]])).logits
        got = ours(input_ids, [views], image_sizes=[size]).logits
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-4 * scale


def test_hd_spatial_merge_is_raster_order_of_the_big_map():
    # 2x2 tiles of a 2x2-token map: the big 4x4 map read row by row.
    dim = 1
    tiles = torch.arange(16.0).view(2, 2, 2, 2)  # (down, across, row, col)
    features = torch.cat([torch.full((1, 4, dim), -1.0), tiles.reshape(4, 4, dim)])
    merged = merge_anyres_features(features, (56, 56), (2, 2), "spatial", None)
    big = tiles.permute(0, 2, 1, 3).reshape(4, 4)  # rows of the big map
    assert merged[:4].flatten().tolist() == [-1.0] * 4
    assert merged[4:].flatten().tolist() == big.flatten().tolist()
    assert anyres_token_count((56, 56), (2, 2), 4, "spatial") == merged.shape[0]
