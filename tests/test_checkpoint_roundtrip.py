"""Other spellings of the same weights give the same logits as the official model: llava-hf written by
us and read by transformers and by us, the transformers >= 4.52 nesting, sharded safetensors, a full
CLIPModel directory, a safetensors LoRA adapter, and our `mm_projector.bin`."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from checkpoint_fixtures import one_thread  # noqa: F401  (autouse fixture)
from checkpoint_fixtures import (GOLDEN, assert_close_relative, copy_checkpoint, expand, golden_outputs,
                                 logits_of)
from llava15.checkpoint import load_llava, save_llava_hf, save_official_projector

# transformers' llava `_checkpoint_conversion_mapping` (hub -> in-memory), from
# docs/official-behaviour.md, 'llava-hf layout'
NEW_NESTING = [(r"^language_model\.model\.", "model.language_model."), (r"^vision_tower\.", "model.vision_tower."),
               (r"^multi_modal_projector\.", "model.multi_modal_projector."),
               (r"^language_model\.lm_head\.", "lm_head.")]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """llava-tiny-full -> ours -> llava-hf (forced into several shards)."""
    loaded = load_llava(GOLDEN / "llava-tiny-full")
    out = tmp_path_factory.mktemp("hf") / "llava-tiny-hf"
    save_llava_hf(loaded.model, loaded.config, loaded.tokenizer_dir, loaded.image_processor, out,
                  max_shard_bytes=120_000)
    return out


def test_llava_hf_files_and_vocabulary(hf_dir):
    index = json.loads((hf_dir / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    config = json.loads((hf_dir / "config.json").read_text())
    # the official conversion: <image> and <pad> follow the vocabulary, rows padded to a multiple of 64
    assert (config["image_token_index"], config["pad_token_id"], config["text_config"]["vocab_size"]) == \
        (512, 513, 576)
    added = json.loads((hf_dir / "added_tokens.json").read_text())
    assert added == {"<image>": 512, "<pad>": 513}
    shard = index["weight_map"]["language_model.lm_head.weight"]
    lm_head = load_file(str(hf_dir / shard))["language_model.lm_head.weight"]
    assert torch.equal(lm_head[512:], lm_head[:512].mean(0, keepdim=True).expand(64, -1))


def test_llava_hf_round_trip_reads_back_with_the_official_logits(hf_dir):
    loaded = load_llava(hf_dir)
    golden = golden_outputs("llava-tiny-full")
    assert loaded.layout == "llava-hf-old" and loaded.config.image_token_index == 512
    assert loaded.config.image_aspect_ratio == "pad"
    assert loaded.tokenizer_dir == hf_dir
    logits = logits_of(loaded.model, loaded.config, golden)
    assert_close_relative(logits[..., :512], golden["logits"])
    assert (logits[..., 512:].amax(-1) < logits[..., :512].amax(-1)).all()  # new rows never win


def test_transformers_reads_our_llava_hf_with_the_official_logits(hf_dir):
    transformers = pytest.importorskip("transformers")
    from llava15.data.tokenizer import load_tokenizer

    model = transformers.LlavaForConditionalGeneration.from_pretrained(hf_dir, dtype=torch.float32).eval()
    golden = golden_outputs("llava-tiny-full")
    ids = expand(golden["input_ids"][0], 512, 16)
    with torch.no_grad():
        logits = model(input_ids=ids, pixel_values=golden["pixel_values"]).logits
    assert_close_relative(logits[..., :512], golden["logits"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir, use_fast=False)
    assert tokenizer.convert_tokens_to_ids(["<image>", "<pad>"]) == [512, 513]
    ours = load_tokenizer(hf_dir)
    assert (ours.added_tokens["<image>"], ours.added_tokens["<pad>"], ours.vocab_size) == (512, 513, 514)


def test_new_nesting_loads(hf_dir, tmp_path):
    state = {}
    for shard in sorted(hf_dir.glob("model-*.safetensors")):
        state.update(load_file(str(shard)))
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in NEW_NESTING:
            if re.match(pattern, key):
                key = re.sub(pattern, replacement, key)
                break
        renamed[key] = value
    out = tmp_path / "new"
    out.mkdir()
    for f in hf_dir.iterdir():
        if not f.name.startswith("model"):
            (out / f.name).write_bytes(f.read_bytes())
    save_file(renamed, str(out / "model.safetensors"))
    loaded = load_llava(out)
    golden = golden_outputs("llava-tiny-full")
    assert loaded.layout == "llava-hf-new"
    assert_close_relative(logits_of(loaded.model, loaded.config, golden)[..., :512], golden["logits"])


def test_official_sharded_safetensors_and_full_clip_model_directory(tmp_path):
    transformers = pytest.importorskip("transformers")
    ckpt = copy_checkpoint("llava-tiny-full", tmp_path)
    index = json.loads((ckpt / "pytorch_model.bin.index.json").read_text())
    weight_map = {}
    for shard in sorted(set(index["weight_map"].values())):
        name = shard.replace("pytorch_model", "model").replace(".bin", ".safetensors")
        state = torch.load(ckpt / shard, weights_only=True)
        save_file({k: v.contiguous() for k, v in state.items()}, str(ckpt / name))
        weight_map.update(dict.fromkeys(state, name))
        (ckpt / shard).unlink()
    (ckpt / "pytorch_model.bin.index.json").unlink()
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    # a full CLIPModel directory: vision weights under vision_model.*, plus a text half
    vision = transformers.CLIPVisionModel.from_pretrained(GOLDEN / "clip", dtype=torch.float32)
    clip_config = transformers.CLIPConfig(
        vision_config=vision.config.to_dict(),
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=64), projection_dim=8)
    clip = transformers.CLIPModel(clip_config)
    clip.vision_model.load_state_dict(vision.vision_model.state_dict())
    clip.save_pretrained(tmp_path / "clip-full")
    loaded = load_llava(ckpt, vision_tower=tmp_path / "clip-full")
    golden = golden_outputs("llava-tiny-full")
    assert_close_relative(logits_of(loaded.model, loaded.config, golden), golden["logits"])


def test_lora_adapter_as_safetensors(tmp_path):
    ckpt = copy_checkpoint("llava-tiny-lora", tmp_path)
    state = torch.load(ckpt / "adapter_model.bin", weights_only=True)
    save_file(state, str(ckpt / "adapter_model.safetensors"))
    (ckpt / "adapter_model.bin").unlink()
    loaded = load_llava(ckpt, model_base=GOLDEN / "base_llm")
    golden = golden_outputs("llava-tiny-lora")
    assert_close_relative(logits_of(loaded.model, loaded.config, golden), golden["logits"])


@pytest.mark.parametrize("name", ["llava-tiny-projector", "llava-tiny-mha-linear"])
def test_save_official_projector_writes_the_official_keys(name, tmp_path):
    base = "base_llm" if name == "llava-tiny-projector" else None
    loaded = load_llava(GOLDEN / name, model_base=base and GOLDEN / base)
    path = save_official_projector(loaded.model, tmp_path / "p")
    ours = torch.load(path, weights_only=True)
    if name == "llava-tiny-projector":  # the official stage-1 file of the same weights
        official = torch.load(GOLDEN / name / "mm_projector.bin", weights_only=True)
    else:  # the official full checkpoint's projector keys
        official = {k: v for k, v in load_file(str(GOLDEN / name / "model.safetensors")).items()
                    if "mm_projector" in k}
    assert sorted(ours) == sorted(official)
    assert all(torch.equal(ours[k], official[k].float()) for k in official)


def test_convert_command_merges_lora_into_llava_hf(tmp_path):
    from llava15.cli import main

    out = tmp_path / "converted"
    assert main(["convert", "--model", str(GOLDEN / "llava-tiny-lora"), "--model-base",
                 str(GOLDEN / "base_llm"), "--out", str(out)]) == 0
    loaded = load_llava(out)
    golden = golden_outputs("llava-tiny-lora")
    assert loaded.layout == "llava-hf-old"
    assert_close_relative(logits_of(loaded.model, loaded.config, golden)[..., :512], golden["logits"])
