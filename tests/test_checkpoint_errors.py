"""Broken or incomplete checkpoints fail before any weight is copied, with errors naming the file
and the key."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from checkpoint_fixtures import one_thread  # noqa: F401  (autouse fixture)
from checkpoint_fixtures import GOLDEN, copy_checkpoint
from llava15.checkpoint import load_llava, read_llava_config


def edit_safetensors(path, edit):
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


def edit_config(directory, **changes):
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def test_missing_shard_names_the_index_and_shard(tmp_path):
    ckpt = copy_checkpoint("llava-tiny-full", tmp_path)
    (ckpt / "pytorch_model-00002-of-00002.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"pytorch_model\.bin\.index\.json.*pytorch_model-00002-of-00002\.bin"):
        load_llava(ckpt)


def test_index_listing_a_key_its_shard_lacks(tmp_path):
    ckpt = copy_checkpoint("llava-tiny-full", tmp_path)
    index = json.loads((ckpt / "pytorch_model.bin.index.json").read_text())
    index["weight_map"]["model.norm.weight"] = "pytorch_model-00001-of-00002.bin" \
        if index["weight_map"]["model.norm.weight"].endswith("2.bin") else "pytorch_model-00002-of-00002.bin"
    (ckpt / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"'model\.norm\.weight'"):
        load_llava(ckpt)


def test_unknown_key_is_listed_with_its_file(tmp_path):
    ckpt = copy_checkpoint("llava-tiny-mha-linear", tmp_path)
    edit_safetensors(ckpt / "model.safetensors", lambda s: s.update({"extra_gate.weight": torch.zeros(2)}))
    with pytest.raises(ValueError, match=r"1 unknown weight key.*\n.*model\.safetensors: extra_gate\.weight"):
        load_llava(ckpt)


def test_key_the_model_lacks_is_listed(tmp_path):
    ckpt = copy_checkpoint("llava-tiny-mha-linear", tmp_path)
    extra = "model.layers.7.mlp.up_proj.weight"  # a third layer in a 2-layer config
    edit_safetensors(ckpt / "model.safetensors", lambda s: s.update({extra: torch.zeros(2)}))
    with pytest.raises(ValueError, match=rf"does not have:\n.*model\.safetensors: {re.escape(extra)}"):
        load_llava(ckpt)


def test_wrong_shape_names_file_key_and_shapes(tmp_path):
    ckpt = copy_checkpoint("llava-tiny-mha-linear", tmp_path)
    edit_safetensors(ckpt / "model.safetensors",
                     lambda s: s.update({"lm_head.weight": s["lm_head.weight"][:500].clone()}))
    with pytest.raises(ValueError, match=r"model\.safetensors: lm_head\.weight has shape \[500, 64\], "
                                         r"the model's language_model\.lm_head\.weight is \[512, 64\]"):
        load_llava(ckpt)


def test_missing_key_is_listed(tmp_path):
    ckpt = copy_checkpoint("llava-tiny-mha-linear", tmp_path)
    edit_safetensors(ckpt / "model.safetensors", lambda s: s.pop("model.norm.weight"))
    with pytest.raises(ValueError, match=r"missing 1 key\(s\): language_model\.model\.norm\.weight"):
        load_llava(ckpt)


def test_missing_config_names_the_file(tmp_path):
    ckpt = copy_checkpoint("llava-tiny-mha-linear", tmp_path)
    (ckpt / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json: config file not found"):
        load_llava(ckpt)


def test_hub_id_vision_tower_is_not_downloaded(tmp_path):
    ckpt = copy_checkpoint("llava-tiny-mha-linear", tmp_path)
    edit_config(ckpt, mm_vision_tower="openai/clip-vit-large-patch14-336")
    with pytest.raises(FileNotFoundError, match=r"config\.json: vision tower 'openai/clip-vit-large-patch14-336'"
                                                r".*Nothing is downloaded.*vision_tower=DIR"):
        read_llava_config(ckpt)
    config, info = read_llava_config(ckpt, vision_tower=GOLDEN / "clip")  # the way out the message names
    assert info.vision_tower_dir == GOLDEN / "clip" and config.vision.image_size == 28


def test_hub_id_as_model_path():
    with pytest.raises(FileNotFoundError, match=r"liuhaotian/llava-v1\.5-7b: not a local checkpoint directory "
                                                r"\(nothing is downloaded"):
        load_llava("liuhaotian/llava-v1.5-7b")


def test_lora_and_projector_checkpoints_need_a_base():
    with pytest.raises(ValueError, match=r"llava-tiny-lora: a LoRA checkpoint.*model_base"):
        load_llava(GOLDEN / "llava-tiny-lora")
    with pytest.raises(ValueError, match=r"llava-tiny-projector: a projector-only checkpoint.*model_base"):
        load_llava(GOLDEN / "llava-tiny-projector")


def test_base_that_does_not_fit_the_config(tmp_path):
    ckpt = copy_checkpoint("llava-tiny-projector", tmp_path)
    edit_config(ckpt, num_hidden_layers=3)
    with pytest.raises(ValueError, match=r"num_hidden_layers=3 but the base model .*base_llm/config\.json has 2"):
        load_llava(ckpt, model_base=GOLDEN / "base_llm")


def test_lora_adapter_problems_name_the_file(tmp_path):
    ckpt = copy_checkpoint("llava-tiny-lora", tmp_path)
    state = torch.load(ckpt / "adapter_model.bin", weights_only=True)
    key_b = next(k for k in state if k.endswith("lora_B.weight"))
    torch.save({k: v for k, v in state.items() if k != key_b}, ckpt / "adapter_model.bin")
    with pytest.raises(ValueError, match=r"adapter_model\.bin: .* has lora_A but not its partner"):
        load_llava(ckpt, model_base=GOLDEN / "base_llm")
    torch.save(state, ckpt / "adapter_model.bin")
    config = json.loads((ckpt / "adapter_config.json").read_text())
    (ckpt / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ValueError, match=r"adapter_config\.json: fan_in_fan_out / use_dora"):
        load_llava(ckpt, model_base=GOLDEN / "base_llm")


def test_pickles_load_only_as_plain_tensors(tmp_path):
    ckpt = copy_checkpoint("llava-tiny-projector", tmp_path)
    torch.save({"model.mm_projector.0.weight": torch.zeros(64, 32), "code": print}, ckpt / "mm_projector.bin")
    with pytest.raises(ValueError, match=r"mm_projector\.bin: cannot load with torch\.load\(weights_only=True\)"):
        load_llava(ckpt, model_base=GOLDEN / "base_llm")
