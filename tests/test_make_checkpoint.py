"""`bench/make_checkpoint.py`: the `tiny` shape written and loaded back through our own loader,
its streamed weight files against `torch.save`, and the 7b / 13b shapes against the released
checkpoints' dimensions (computed, never written)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench_scripts import load_bench
from checkpoint_fixtures import one_thread  # noqa: F401  (autouse: tiny models run fastest on one thread)


@pytest.fixture(scope="module")
def bench():
    return load_bench("make_checkpoint")


@pytest.fixture(scope="module")
def written(bench, tmp_path_factory):
    return bench.main(["--shape", "tiny", "--out", str(tmp_path_factory.mktemp("ckpt")), "--no-progress"])


def test_tiny_loads_as_official(bench, written):
    from llava15.checkpoint import load_llava

    shape = bench.SHAPES["tiny"]
    config = json.loads((written.llava_dir / "config.json").read_text())
    assert config["architectures"] == ["LlavaLlamaForCausalLM"] and config["model_type"] == "llava"
    assert config["mm_vision_tower"] == str(written.clip_dir.resolve())
    loaded = load_llava(written.llava_dir)
    assert loaded.layout == "official"
    text, vision = loaded.config.text, loaded.config.vision
    assert (text.vocab_size, text.hidden_size, text.intermediate_size, text.num_hidden_layers,
            text.num_attention_heads, text.num_key_value_heads, text.max_position_embeddings) == \
        (shape.vocab_size, shape.hidden_size, shape.intermediate_size, shape.num_hidden_layers,
         shape.num_attention_heads, shape.num_key_value_heads, 4096)
    assert (text.rms_norm_eps, text.bos_token_id, text.eos_token_id, text.pad_token_id) == (1e-5, 1, 2, 0)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size, vision.patch_size,
            vision.hidden_act) == (32, 3, 28, 14, "quick_gelu")
    c = loaded.config
    assert (c.mm_projector_type, c.mm_vision_select_layer, c.mm_vision_select_feature, c.image_aspect_ratio,
            c.mm_patch_merge_type) == ("mlp2x_gelu", -2, "patch", "pad", "flat")
    assert loaded.image_processor.crop_size == (28, 28) and loaded.image_processor.shortest_edge == 28
    # float16 on disk, loaded exactly (float32 holds every float16)
    params = dict(loaded.model.named_parameters())
    shard = written.llava_dir / "pytorch_model-00001-of-00002.bin"
    embed = torch.load(shard, weights_only=True, mmap=True)["model.embed_tokens.weight"]
    assert torch.equal(params["language_model.model.embed_tokens.weight"], embed.float())
    assert all(torch.isfinite(p).all() for p in params.values())


def test_tiny_index_and_shards(bench, written):
    index = json.loads((written.llava_dir / "pytorch_model.bin.index.json").read_text())
    weight_map = index["weight_map"]
    assert sorted(set(weight_map.values())) == ["pytorch_model-00001-of-00002.bin",
                                                "pytorch_model-00002-of-00002.bin"]
    expected = bench.llava_tensors(bench.SHAPES["tiny"])
    assert set(weight_map) == {s.name for s in expected}
    total = 0
    for shard in set(weight_map.values()):
        state = torch.load(written.llava_dir / shard, weights_only=True, mmap=True)
        assert set(state) == {k for k, v in weight_map.items() if v == shard}
        assert all(t.dtype == torch.float16 for t in state.values())
        total += sum(t.numel() * t.element_size() for t in state.values())
    assert index["metadata"]["total_size"] == total
    clip = torch.load(written.clip_dir / "pytorch_model.bin", weights_only=True, mmap=True)
    assert {t.dtype for k, t in clip.items() if not k.endswith("position_ids")} == {torch.float16}
    assert {k.split(".")[0] for k in clip} == {"text_model", "vision_model", "visual_projection",
                                               "text_projection", "logit_scale"}


def test_tiny_tokenizer_and_chat(written):
    import llava15
    from llava15.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(written.llava_dir)
    config = json.loads((written.llava_dir / "config.json").read_text())
    assert tokenizer.vocab_size == config["vocab_size"] == 512
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.pad_token_id == 0 and tokenizer.legacy is False  # pad = unk, as released
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == ["<unk>", "<s>", "</s>", "<0x00>"]
    assert tokenizer.encode("hi")[0] == 1
    engine = llava15.load(str(written.llava_dir))
    answer = engine.chat([("user", "hi")], images=[Image.new("RGB", (40, 30), (200, 30, 30))],
                         max_new_tokens=3)
    assert isinstance(answer, str)


def test_streamed_file_equals_torch_save(bench, tmp_path):
    """Same records in the same order at the same offsets, same bytes (but torch's random
    serialization id): the pickle, the bookkeeping records and the tensor data."""
    specs = bench.clip_tensors(bench.CLIP_TINY)
    generator = torch.Generator().manual_seed(0)
    tensors = {s.name: bench.materialize(s, generator) for s in specs}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    torch.save(tensors, tmp_path / "a" / "weights.bin")
    made = iter(tensors.values())
    sizes: list[int] = []
    bench.write_state_dict(tmp_path / "b" / "weights.bin", specs, lambda spec: next(made), sizes.append)
    assert sum(sizes) == sum(t.numel() * t.element_size() for t in tensors.values())
    ref, ours = zipfile.ZipFile(tmp_path / "a" / "weights.bin"), zipfile.ZipFile(tmp_path / "b" / "weights.bin")
    assert ref.namelist() == ours.namelist()
    for a, b in zip(ref.infolist(), ours.infolist()):
        assert a.header_offset == b.header_offset, a.filename
        if not a.filename.endswith("serialization_id"):
            assert ref.read(a) == ours.read(b), a.filename  # checks our CRCs too
    loaded = torch.load(tmp_path / "b" / "weights.bin", weights_only=True, mmap=True)
    assert list(loaded) == list(tensors) and all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_write_refuses_wrong_tensor(bench, tmp_path):
    spec = bench.TensorSpec("w", (2, 3), "normal", std=0.02)
    with pytest.raises(ValueError, match="w: made a torch.float32 tensor"):
        bench.write_state_dict(tmp_path / "w.bin", [spec], lambda s: torch.zeros(2, 3))


def test_refuses_non_empty_directory(bench, tmp_path):
    (tmp_path / "llava-v1.5-tiny").mkdir()
    (tmp_path / "llava-v1.5-tiny" / "stale.bin").write_bytes(b"")
    with pytest.raises(FileExistsError, match="llava-v1.5-tiny"):
        bench.write_checkpoint(bench.SHAPES["tiny"], tmp_path, progress=False)


# Llama-2 parameter counts (6,738,415,616 and 13,015,864,320) plus the mlp2x_gelu projector.
@pytest.mark.parametrize("name, dims, shards, total_bytes", [
    ("7b", (4096, 11008, 32, 32, 32), 2, 2 * (6_738_415_616 + 1024 * 4096 + 4096 + 4096 * 4096 + 4096)),
    ("13b", (5120, 13824, 40, 40, 40), 3, 2 * (13_015_864_320 + 1024 * 5120 + 5120 + 5120 * 5120 + 5120)),
])
def test_release_shapes(bench, name, dims, shards, total_bytes):
    shape = bench.SHAPES[name]
    assert (shape.hidden_size, shape.intermediate_size, shape.num_hidden_layers, shape.num_attention_heads,
            shape.num_key_value_heads) == dims
    assert (shape.vocab_size, shape.max_position_embeddings) == (32000, 4096)
    specs = bench.llava_tensors(shape)
    assert sum(s.nbytes for s in specs) == total_bytes
    assert all(s.dtype == torch.float16 for s in specs)
    plan = bench.plan_shards(specs, shape.max_shard_bytes)
    assert len(plan) == shards
    assert all(sum(s.nbytes for s in shard) <= 10 * 10**9 for shard in plan)
    config = bench.llava_config(shape, Path("/clip"))
    assert (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"],
            config["num_attention_heads"], config["num_key_value_heads"]) == dims
    assert (config["vocab_size"], config["max_position_embeddings"], config["torch_dtype"]) == (32000, 4096, "float16")
    assert config["mm_hidden_size"] == 1024 and config["mm_vision_tower"] == "/clip"
    clip = shape.clip
    assert (clip.hidden_size, clip.intermediate_size, clip.num_hidden_layers, clip.num_attention_heads,
            clip.image_size, clip.patch_size, clip.num_positions) == (1024, 4096, 24, 16, 336, 14, 577)
    vision = [s for s in bench.clip_tensors(clip) if s.name.startswith("vision_model.") and s.fill != "positions"]
    assert sum(s.numel for s in vision) == 303_507_456  # CLIP ViT-L/14-336's vision tower
