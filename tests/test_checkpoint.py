"""Every official layout loads into our `Llava` and reproduces the official model: logits within 1e-4
(relative to the largest logit) and the official 32 greedy tokens. Goldens: official code, see
`tests/golden/make_checkpoint_golden.py`."""

from __future__ import annotations

import json

import pytest
import torch

from checkpoint_fixtures import one_thread  # noqa: F401  (autouse fixture)
from checkpoint_fixtures import (CHECKPOINTS, GOLDEN, assert_close_relative, golden_outputs, greedy,
                                 logits_of)
from llava15.checkpoint import load_llava, read_llava_config

LAYOUTS = {"llava-tiny-full": "official", "llava-tiny-mha-linear": "official",
           "llava-tiny-projector": "official-projector", "llava-tiny-lora": "official-lora"}


def load_golden(name: str):
    base = CHECKPOINTS[name]
    return load_llava(GOLDEN / name, model_base=base and GOLDEN / base)


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_official_layouts_reproduce_official_logits_and_greedy_tokens(name):
    loaded = load_golden(name)
    golden = golden_outputs(name)
    assert loaded.layout == LAYOUTS[name]
    assert_close_relative(logits_of(loaded.model, loaded.config, golden), golden["logits"])
    expected = golden["generated"][0].tolist()
    assert greedy(loaded.model, loaded.config, golden, len(expected), 512) == expected


def test_official_config_reading_follows_the_files():
    full, info = read_llava_config(GOLDEN / "llava-tiny-full")
    assert info.format == "official" and info.vision_tower_dir.resolve() == (GOLDEN / "clip").resolve()
    assert (full.mm_projector_type, full.mm_vision_select_layer, full.mm_vision_select_feature) == \
        ("mlp2x_gelu", -2, "patch")
    assert full.image_token_index == -200 and full.image_aspect_ratio == "pad"
    assert (full.text.num_attention_heads, full.text.num_key_value_heads, full.text.vocab_size) == (4, 2, 512)
    clip = json.loads((GOLDEN / "clip" / "config.json").read_text())
    assert (full.vision.hidden_size, full.vision.image_size, full.vision.patch_size,
            full.vision.num_hidden_layers) == (clip["hidden_size"], clip["image_size"], clip["patch_size"],
                                               clip["num_hidden_layers"])
    mha, _ = read_llava_config(GOLDEN / "llava-tiny-mha-linear")
    assert mha.text.attention_bias and mha.text.rope_theta == 500000.0 and mha.text.num_key_value_heads == 4
    assert (mha.mm_projector_type, mha.mm_vision_select_feature, mha.mm_vision_select_layer) == \
        ("linear", "cls_patch", -1)
    assert mha.num_image_tokens == 17
    projector, _ = read_llava_config(GOLDEN / "llava-tiny-projector")
    assert projector.image_aspect_ratio == "square"  # what the official stage-1 save records


def test_loaded_checkpoint_names_tokenizer_and_image_processor():
    loaded = load_golden("llava-tiny-lora")
    assert loaded.tokenizer_dir == GOLDEN / "base_llm"  # the official builder reads it from model_base
    clip = json.loads((GOLDEN / "clip" / "preprocessor_config.json").read_text())
    assert loaded.image_processor.crop_size == (clip["crop_size"]["height"], clip["crop_size"]["width"])
    assert loaded.image_processor.shortest_edge == clip["size"]["shortest_edge"]
    full = load_golden("llava-tiny-full")
    assert full.tokenizer_dir == GOLDEN / "llava-tiny-full"


def test_dtype_is_honoured():
    loaded = load_llava(GOLDEN / "llava-tiny-full", dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert not any(p.is_meta for p in loaded.model.parameters())
