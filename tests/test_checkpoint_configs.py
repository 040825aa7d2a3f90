"""`read_llava_config` on the real 7B configs (key sets as docs/official-behaviour.md, 'Official
layout' and 'llava-hf layout', records them: the hub files store only what differs from the
transformers class defaults) and on option edge cases."""

from __future__ import annotations

import json

import pytest

from llava15.checkpoint import read_llava_config

OFFICIAL_7B = {  # liuhaotian/llava-v1.5-7b config.json (docs/official-behaviour.md, 'Official layout')
    "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava", "hidden_size": 4096,
    "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
    "max_position_embeddings": 4096, "max_length": 4096, "rms_norm_eps": 1e-5, "rope_scaling": None,
    "vocab_size": 32000, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False,
    "torch_dtype": "float16", "pretraining_tp": 1, "mm_vision_tower": "openai/clip-vit-large-patch14-336",
    "mm_hidden_size": 1024, "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2,
    "mm_vision_select_feature": "patch", "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
    "image_aspect_ratio": "pad", "use_mm_proj": True, "tune_mm_mlp_adapter": False,
    "freeze_mm_mlp_adapter": False, "mm_resampler_type": None, "unfreeze_mm_vision_tower": False}
CLIP_L336 = {  # openai/clip-vit-large-patch14-336: a full CLIPModel config
    "model_type": "clip", "projection_dim": 768,
    "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                      "num_hidden_layers": 24, "image_size": 336, "patch_size": 14, "projection_dim": 768}}
# llava-hf/llava-1.5-7b-hf config.json, nested configs as diffs (docs/official-behaviour.md,
# 'llava-hf layout')
HF_7B = {
    "architectures": ["LlavaForConditionalGeneration"], "model_type": "llava", "ignore_index": -100,
    "image_token_index": 32000, "pad_token_id": 32001, "projector_hidden_act": "gelu",
    "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "tie_word_embeddings": False,
    "text_config": {"_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"],
                    "max_position_embeddings": 4096, "model_type": "llama", "rms_norm_eps": 1e-05,
                    "torch_dtype": "float16", "vocab_size": 32064},
    "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                      "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
                      "patch_size": 14, "projection_dim": 768, "vocab_size": 32000}}


def write(directory, config):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def assert_v15_7b(config):
    v, t = config.vision, config.text
    assert (v.hidden_size, v.intermediate_size, v.num_hidden_layers, v.num_attention_heads, v.image_size,
            v.patch_size, v.hidden_act) == (1024, 4096, 24, 16, 336, 14, "quick_gelu")
    assert (t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_attention_heads,
            t.num_key_value_heads, t.max_position_embeddings, t.rms_norm_eps) == (4096, 11008, 32, 32, 32, 4096, 1e-5)
    assert (config.mm_projector_type, config.mm_vision_select_layer, config.num_image_tokens) == \
        ("mlp2x_gelu", -2, 576)


def test_official_7b_config_with_a_full_clip_model_directory(tmp_path):
    clip = write(tmp_path / "clip-vit-large-patch14-336", CLIP_L336)
    ckpt = write(tmp_path / "llava-v1.5-7b", OFFICIAL_7B)
    config, info = read_llava_config(ckpt, vision_tower=clip)
    assert_v15_7b(config)
    assert (config.text.vocab_size, config.image_token_index, config.image_aspect_ratio) == (32000, -200, "pad")
    assert info.format == "official" and info.notes == ()


def test_llava_hf_7b_config(tmp_path):
    config, info = read_llava_config(write(tmp_path / "llava-1.5-7b-hf", HF_7B))
    assert_v15_7b(config)
    assert (config.text.vocab_size, config.image_token_index, config.mm_vision_select_feature) == \
        (32064, 32000, "patch")
    assert info.format == "llava-hf"
    assert any("image_aspect_ratio" in n for n in info.notes)  # says that it pads, unlike transformers


def test_llava_hf_defaults_when_nested_configs_are_absent(tmp_path):
    config, _ = read_llava_config(write(tmp_path / "m", {"architectures": ["LlavaForConditionalGeneration"],
                                                          "model_type": "llava", "text_config": {},
                                                          "vision_feature_select_strategy": "full"}))
    # transformers' LlavaConfig default tower is ViT-L/14 at 336 px; LlamaConfig defaults for the LLM
    assert (config.vision.hidden_size, config.vision.image_size, config.text.max_position_embeddings,
            config.text.rms_norm_eps) == (1024, 336, 2048, 1e-6)
    assert config.num_image_tokens == 577


def test_official_defaults_follow_the_builder(tmp_path):
    clip = write(tmp_path / "clip", CLIP_L336)
    trimmed = {k: v for k, v in OFFICIAL_7B.items()
               if k not in ("mm_projector_type", "image_aspect_ratio", "mm_use_im_patch_token",
                            "mm_vision_select_feature")}
    config, info = read_llava_config(write(tmp_path / "old", trimmed), vision_tower=clip)
    assert (config.mm_projector_type, config.image_aspect_ratio, config.mm_vision_select_feature) == \
        ("linear", "square", "patch")
    assert any("<im_patch>" in n for n in info.notes)


@pytest.mark.parametrize("change, message", [
    ({"mm_use_im_start_end": True}, r"mm_use_im_start_end=true"),
    ({"rope_scaling": {"type": "linear", "factor": 2.0}}, r"key 'rope_scaling'"),
    ({"mm_hidden_size": 768}, r"mm_hidden_size 768 does not match the hidden size 1024"),
    ({"model_type": "mpt"}, r"model_type 'mpt' is not an official LLaVA config"),
])
def test_official_options_we_cannot_honour(tmp_path, change, message):
    clip = write(tmp_path / "clip", CLIP_L336)
    ckpt = write(tmp_path / "m", {**OFFICIAL_7B, **change})
    with pytest.raises(ValueError, match=rf"m/config\.json: .*{message}"):
        read_llava_config(ckpt, vision_tower=clip)


@pytest.mark.parametrize("change, message", [
    ({"vision_feature_layer": [-2, -5]}, r"several layers"),
    ({"projector_hidden_act": "relu"}, r"projector_hidden_act 'relu'"),
    ({"text_config": {"model_type": "qwen2"}}, r"language model type 'qwen2'"),
    ({"architectures": ["LlavaNextForConditionalGeneration"]}, r"key 'image_grid_pinpoints' is missing"),
    ({"architectures": ["Qwen2VLForConditionalGeneration"]},
     r"key 'architectures' is \['Qwen2VLForConditionalGeneration'\]: not supported"),
])
def test_llava_hf_options_we_cannot_honour(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        read_llava_config(write(tmp_path / "m", {**HF_7B, **change}))
