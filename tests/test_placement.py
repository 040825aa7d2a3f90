"""Device, dtype and quantization choices: the defaults, and each refusal as one line before any
weight is read."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

from checkpoint_fixtures import GOLDEN
from llava15.checkpoint import load_llava
from llava15.checkpoint.placement import (GB, ParamCounts, PlacementError, PlacementRequest,
                                          resolve_placement)
from llava15.cli import main
from llava15.config import llava_v15_7b, llava_v15_13b
from llava15.model.llava import Llava


def counts_of(config) -> ParamCounts:
    with torch.device("meta"):
        return ParamCounts.of(Llava(config))


def test_parameter_counts_of_the_official_shapes():
    counts = counts_of(llava_v15_7b())
    # LLaMA-2-7B: 6,738,415,616 parameters, of which 32 x 202,375,168 in decoder linears
    assert counts.llm_linear == 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert counts.llm_linear + counts.llm_other == 6_738_415_616
    # CLIP ViT-L/14-336 vision model plus the 2-layer projector (1024 -> 4096 -> 4096)
    projector = 1024 * 4096 + 4096 + 4096 * 4096 + 4096
    assert counts.vision - projector == pytest.approx(303_507_456, rel=0.01)


def test_cpu_default_is_float32_when_it_fits_and_bfloat16_when_not(caplog):
    counts = counts_of(llava_v15_7b())
    assert resolve_placement(counts, device="cpu", available=64 * 10**9).dtype == torch.float32
    with caplog.at_level(logging.WARNING):
        placement = resolve_placement(counts, device="cpu", available=24 * 10**9)
    assert placement.dtype == torch.bfloat16 and placement.vision_dtype == torch.bfloat16
    assert "bfloat16" in caplog.text and "float32" in caplog.text


def test_too_large_says_how_much_and_which_flag_fits():
    counts = counts_of(llava_v15_13b())
    with pytest.raises(PlacementError) as error:
        resolve_placement(counts, device="cpu", dtype="bfloat16", available=20 * 10**9)
    message = str(error.value)
    assert "\n" not in message and "--load-8bit needs" in message and "bfloat16" in message
    needed = float(message.split(" needs ")[1].split(" GB")[0])
    assert 27 < needed < 33  # 13B in bf16 with headroom
    int8 = resolve_placement(counts, device="cpu", load_8bit=True, available=20 * 10**9)
    assert int8.quantization == "int8"
    assert counts.bytes(torch.bfloat16, torch.bfloat16, "int8") / GB < 15


@pytest.mark.parametrize("kwargs,words", [
    (dict(device="cpu", load_4bit=True), "--load-4bit has no fast path on the CPU"),
    (dict(device="cpu", load_8bit=True, load_4bit=True), "exclude each other"),
    (dict(device="cpu", dtype="float8"), "unknown dtype"),
    (dict(device="tpu"), "--device tpu"),
])
def test_refusals_are_one_line(kwargs, words):
    with pytest.raises(PlacementError) as error:
        resolve_placement(counts_of(llava_v15_7b()), available=10**12, **kwargs)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_cuda_without_a_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without a GPU
    with pytest.raises(PlacementError, match="no CUDA GPU is visible"):
        resolve_placement(counts_of(llava_v15_7b()), device="cuda", available=10**12)
    assert resolve_placement(counts_of(llava_v15_7b()), device="auto", available=10**12).device.type == "cpu"


def test_bitsandbytes_missing_on_cuda(monkeypatch):
    """What a GPU machine without bitsandbytes is told (CUDA's presence simulated)."""
    import importlib.util

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    for flag in ("load_8bit", "load_4bit"):
        with pytest.raises(PlacementError, match="needs bitsandbytes"):
            resolve_placement(counts_of(llava_v15_7b()), device="cuda", available=10**12, **{flag: True})
    placement = resolve_placement(counts_of(llava_v15_7b()), device="cuda:0", available=10**12)
    assert placement.dtype == torch.float16 and placement.vision_dtype == torch.float16


def test_refused_before_any_weight_is_read(tmp_path):
    """A checkpoint whose weight shards are missing: a refused flag is the error, not the shards."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(GOLDEN / "llava-tiny-full", ckpt)
    shutil.copytree(GOLDEN / "clip", tmp_path / "clip")  # the config names it as ../clip
    for shard in ckpt.glob("pytorch_model-*.bin"):
        shard.unlink()
    with pytest.raises(PlacementError, match="--load-4bit"):
        load_llava(ckpt, placement=PlacementRequest(device="cpu", load_4bit=True))
    with pytest.raises(FileNotFoundError, match="shard"):
        load_llava(ckpt, placement=PlacementRequest(device="cpu"))


def test_cli_exits_with_the_reason(tmp_path, capsys):
    question = tmp_path / "q.jsonl"
    question.write_text('{"question_id": 1, "text": "hi"}\n')
    for flags, words in ((["--device", "cpu", "--load-4bit"], "--load-4bit has no fast path"),
                         (["--load-8bit", "--load-4bit"], "not allowed with argument")):
        with pytest.raises(SystemExit) as exit_:
            main(["predict", "--model", str(GOLDEN / "llava-tiny-full"), "--question-file", str(question),
                  "--answers-file", str(tmp_path / "a.jsonl"), *flags])
        shown = str(exit_.value.code) + capsys.readouterr().err
        assert words in shown
    assert not (tmp_path / "a.jsonl").exists()
