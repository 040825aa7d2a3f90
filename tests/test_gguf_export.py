"""GGUF both ways without llama.cpp: export to llama.cpp's two files, read them back, and refuse
what is not a LLaVA-1.5 pair (the llama.cpp check itself is `test_gguf_llamacpp.py`)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from checkpoint_fixtures import GOLDEN, golden_outputs, logits_of
from random_llava import random_llava

gguf = pytest.importorskip("gguf")

from llava15.checkpoint.gguf_export import (GGUFExportError, chat_template, export_gguf,  # noqa: E402
                                            permute_rotary)
from llava15.checkpoint.gguf import unpermute_rotary  # noqa: E402
from llava15.checkpoint.load import load_llava  # noqa: E402
from llava15.checkpoint.save import save_llava_hf  # noqa: E402
from llava15.cli import main  # noqa: E402
from llava15.data.tokenizer import load_tokenizer  # noqa: E402

TEXTS = ["Hello world, what is in the image? 12345", " USER: hi ASSISTANT:", "ünïcödé 你好\n\ttabs",
         "A chat between a curious user and an artificial intelligence assistant.</s>USER:"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def random_hf(tmp_path_factory):
    """llava-tiny-full's shapes with random weights that float16 cannot hold exactly, saved in
    the llava-hf layout (added <image>/<pad> tokens, 576 embedding rows)."""
    golden = load_llava(GOLDEN / "llava-tiny-full")
    model = random_llava(golden.config, scale=0.2, seed=3)
    out = tmp_path_factory.mktemp("hf") / "random-hf"
    save_llava_hf(model, golden.config, golden.tokenizer_dir, golden.image_processor, out)
    return out


def gguf_fields(path) -> dict:
    reader = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in reader.fields.items()}, {t.name: t for t in reader.tensors}


def test_rotary_permutation_is_undone_by_the_importer():
    w = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
    permuted = permute_rotary(w, 8)
    assert not np.array_equal(permuted, w)
    assert np.array_equal(unpermute_rotary(permuted, 8), w)
    # llama.cpp's layout pairs row i with row i + d/2 of each head: rows 0 and 8 become 0 and 1
    assert np.array_equal(permuted[1], w[8]) and np.array_equal(permuted[16], w[16])


def test_exported_files_carry_llama_cpps_keys_and_tensors(tmp_path):
    pair = export_gguf(GOLDEN / "llava-tiny-full", tmp_path, name="tiny")
    assert (pair.llm.name, pair.mmproj.name) == ("tiny.gguf", "mmproj-tiny.gguf")
    fields, tensors = gguf_fields(pair.llm)
    assert fields["general.architecture"] == "llama" and fields["llama.block_count"] == 2
    assert fields["llama.attention.head_count_kv"] == 2 and fields["llama.rope.dimension_count"] == 16
    assert fields["tokenizer.ggml.model"] == "llama" and len(fields["tokenizer.ggml.tokens"]) == 512
    assert fields["tokenizer.ggml.tokens"][:3] == ["<unk>", "<s>", "</s>"]
    assert fields["tokenizer.ggml.token_type"][:4] == [2, 3, 3, 6]  # unknown, control x2, byte
    assert fields["tokenizer.chat_template"] == chat_template("vicuna_v1")
    assert set(tensors) >= {"token_embd.weight", "blk.1.ffn_down.weight", "output_norm.weight",
                            "output.weight"}
    assert tensors["blk.0.attn_q.weight"].tensor_type.name == "F16"
    assert tensors["blk.0.attn_norm.weight"].tensor_type.name == "F32"
    fields, tensors = gguf_fields(pair.mmproj)
    assert fields["general.architecture"] == "clip" and fields["clip.has_llava_projector"] is True
    assert fields["clip.projector_type"] == "mlp" and fields["clip.use_gelu"] is False  # quick_gelu
    # mm_vision_select_layer -2 of a 3-layer tower: the output of block 2 (llama.cpp's count)
    assert fields["clip.vision.block_count"] == 2 and fields["clip.vision.feature_layer"] == [2]
    assert "v.blk.1.ffn_up.weight" in tensors and "v.blk.2.attn_q.weight" not in tensors
    assert tensors["v.blk.0.ffn_up.weight"].shape.tolist() == [32, 64]  # fc1: 32 -> 64
    assert {"mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias"} <= set(tensors)
    assert not any("post_ln" in name for name in tensors)


def test_chat_template_renders_the_official_prompt():
    jinja2 = pytest.importorskip("jinja2")
    from llava15.data.conversation import get_template, render_prompt

    messages = [("user", "<image>\nWhat is it?"), ("assistant", "A cat."), ("user", "Color?"),
                ("assistant", None)]
    rendered = jinja2.Template(chat_template("llava_v1")).render(
        messages=[{"role": r, "content": t} for r, t in messages if t is not None],
        add_generation_prompt=True)
    assert rendered == render_prompt(get_template("llava_v1"), messages)
    assert chat_template("plain") is None


def test_round_trip_logits_within_float16(random_hf, tmp_path):
    ours = load_llava(random_hf)
    pair = export_gguf(random_hf, tmp_path)
    back = load_llava(pair.llm)
    assert back.layout == "gguf" and back.config.text.vocab_size == 576
    golden = golden_outputs("llava-tiny-full")
    reference = logits_of(ours.model, ours.config, golden)
    roundtrip = logits_of(back.model, back.config, golden)
    error = float((roundtrip - reference).abs().max() / reference.abs().max())
    assert 0 < error < 1e-2, error  # float16 weights: a small, nonzero difference ...
    with torch.no_grad():  # ... and exactly that of rounding our 2-D weights to float16
        for name, p in ours.model.named_parameters():
            if p.dim() == 2 and "position_embedding" not in name:
                p.copy_(p.half().float())
    rounded = logits_of(ours.model, ours.config, golden)
    assert float((roundtrip - rounded).abs().max() / rounded.abs().max()) < 1e-5
    a, b = load_tokenizer(ours.tokenizer_dir), load_tokenizer(back.tokenizer_dir)
    for text in TEXTS:
        assert a.encode(text) == b.encode(text), text
    assert b.decode(a.encode(TEXTS[2])) == a.decode(a.encode(TEXTS[2]))


def test_q8_0_round_trip_stays_close(random_hf, tmp_path):
    ours = load_llava(random_hf)
    pair = export_gguf(random_hf, tmp_path, outtype="q8_0")
    _, tensors = gguf_fields(pair.llm)
    assert tensors["blk.0.ffn_gate.weight"].tensor_type.name == "Q8_0"
    back = load_llava(pair.llm)
    golden = golden_outputs("llava-tiny-full")
    reference = logits_of(ours.model, ours.config, golden)
    roundtrip = logits_of(back.model, back.config, golden)
    error = float((roundtrip - reference).abs().max() / reference.abs().max())
    assert 1e-3 < error < 5e-2, error
    agree = (roundtrip.argmax(-1) == reference.argmax(-1)).float().mean()
    assert agree > 0.9


@pytest.mark.parametrize("name", ["llava-tiny-projector", "llava-tiny-lora"])
def test_layouts_with_a_base_export_like_the_merged_model(name, tmp_path):
    ours = load_llava(GOLDEN / name, model_base=GOLDEN / "base_llm")
    pair = export_gguf(GOLDEN / name, tmp_path, model_base=GOLDEN / "base_llm")
    back = load_llava(pair.llm)
    golden = golden_outputs(name)
    reference = logits_of(ours.model, ours.config, golden)
    error = float((logits_of(back.model, back.config, golden) - reference).abs().max()
                  / reference.abs().max())
    assert error < 2e-3, error


def test_export_refuses_what_llama_cpp_cannot_run(tmp_path, capsys):
    assert main(["export-gguf", "--model", str(GOLDEN / "llava-tiny-mha-linear"),
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "mm_projector_type 'linear'" in err and "attention biases" in err
    assert not list(tmp_path.glob("*.gguf"))
    with pytest.raises(GGUFExportError, match="--outtype 'q4_0'"):
        export_gguf(GOLDEN / "llava-tiny-full", tmp_path, outtype="q4_0")


def test_commands_take_a_gguf_pair(tmp_path, capsys):
    pair_dir = tmp_path / "pair"
    assert main(["export-gguf", "--model", str(GOLDEN / "llava-tiny-full"), "--out", str(pair_dir)]) == 0
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "red.png")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question_id": 1, "image": "red.png", "text": "Color?"}) + "\n")
    answers = {}
    for model in (GOLDEN / "llava-tiny-full", pair_dir / "llava-tiny-full.gguf", pair_dir):
        out = tmp_path / f"answers-{len(answers)}.jsonl"
        assert main(["predict", "--model", str(model), "--question-file", str(questions),
                     "--image-folder", str(tmp_path), "--answers-file", str(out),
                     "--max-new-tokens", "6", "--temperature", "0", "--device", "cpu",
                     "--dtype", "float32"]) == 0
        answers[str(model)] = json.loads(out.read_text())["text"]
    assert len(set(answers.values())) == 1, answers  # weights exact in float16: same answers


def test_bad_pairs_name_the_file_and_key(tmp_path):
    pair = export_gguf(GOLDEN / "llava-tiny-full", tmp_path / "a")
    with pytest.raises(ValueError, match="mmproj file"):
        load_llava(pair.mmproj)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(pair.llm, lonely / "model.gguf")
    with pytest.raises(ValueError, match="expected one mmproj"):
        load_llava(lonely / "model.gguf")
    # an mmproj whose projector writes another width than the language model reads
    other = tmp_path / "other"
    golden = load_llava(GOLDEN / "llava-tiny-full")
    import dataclasses

    from llava15.config import TextConfig

    wide = dataclasses.replace(golden.config, text=dataclasses.replace(
        golden.config.text, hidden_size=128, intermediate_size=256))
    assert isinstance(wide.text, TextConfig)
    save_llava_hf(random_llava(wide), wide, golden.tokenizer_dir, golden.image_processor, other / "hf")
    wide_pair = export_gguf(other / "hf", other / "gguf")
    with pytest.raises(ValueError, match="llama.embedding_length 64"):
        load_llava(pair.llm, mmproj=wide_pair.mmproj)
    # a language model of another architecture
    writer = gguf.GGUFWriter(str(tmp_path / "gpt.gguf"), "gpt2")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="general.architecture is 'gpt2'"):
        load_llava(tmp_path / "gpt.gguf", mmproj=pair.mmproj)
