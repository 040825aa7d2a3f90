"""Our GGUF export in a real llama.cpp (`llama-cpp-python` 0.3.36, built from source with its
multimodal library).

The language model agrees with ours (tokens and logits). The vision side is where llama.cpp's
own LLaVA graph departs from LLaVA-1.5 in this version: it appends the CLIP class token after the
patch tokens but reads the features as if it came first (reported upstream as
ggml-org/llama.cpp#25814, a fix proposed in ggml-org/llama.cpp#25844). So the pinned check is that llama.cpp computes exactly
that graph on our exported weights, which proves the file is read as written, and the answers of
a trained model are compared and their agreement bounded, not required equal.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoint_fixtures import GOLDEN
from llamacpp_check import (ask_llamacpp, ask_ours, image_features, llamacpp_image_features,
                            llamacpp_pixels, open_llamacpp)
from PIL import Image

pytest.importorskip("llama_cpp")

from llava15.checkpoint.gguf_export import export_gguf  # noqa: E402
from llava15.data.image import process_images  # noqa: E402
from llava15.infer.engine import load_engine  # noqa: E402

TEXTS = ("A chat between a curious user and an artificial intelligence assistant. USER: What color "
         "is it?\nAnswer the question using a single word or phrase. ASSISTANT:",
         "\nHow many circles are there? ASSISTANT:", "two red circles, 3 blue squares")
# After a special token llama.cpp splits text as transformers' legacy tokenizer does (one more
# "▁"), while LLaVA-1.5's tokenizer is non-legacy: multi-turn prompts ("...</s>USER: ...")
# differ there, single-turn ones (the benchmarks') do not.
AFTER_SPECIAL = "A red circle.</s>USER: and the square? ASSISTANT:"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny official-layout checkpoint (weights exact in float16) and its f16 GGUF pair."""
    pair = export_gguf(GOLDEN / "llava-tiny-full", tmp_path_factory.mktemp("gguf"))
    engine = load_engine(GOLDEN / "llava-tiny-full", conv_mode="vicuna_v1", device="cpu",
                         dtype="float32")
    return engine, pair


def test_llama_cpp_tokenizes_and_scores_text_as_we_do(tiny):
    from llama_cpp import Llama

    engine, pair = tiny
    model = Llama(model_path=str(pair.llm), n_ctx=128, logits_all=True, n_threads=1, verbose=False)
    for text in TEXTS:
        ids = engine.tokenizer.encode(text)
        assert model.tokenize(text.encode(), add_bos=True, special=True) == ids, text
        model.reset()
        model.eval(ids)
        theirs = np.array(model.scores[:len(ids)])
        with torch.no_grad():
            ours = engine.model(torch.tensor([ids])).logits[0].numpy()
        # llama.cpp multiplies float16 weights with float16-rounded activations
        assert np.abs(theirs - ours).max() / np.abs(ours).max() < 5e-3
        assert (theirs.argmax(-1) == ours.argmax(-1)).all()
    from llava15.data.spm_tokenizer import SentencePieceTokenizer

    legacy = SentencePieceTokenizer(engine.tokenizer.directory, legacy=True)
    theirs = model.tokenize(AFTER_SPECIAL.encode(), add_bos=True, special=True)
    assert theirs == legacy.encode(AFTER_SPECIAL) != engine.tokenizer.encode(AFTER_SPECIAL)


def test_llama_cpp_image_features_are_our_weights_in_its_graph(tiny):
    """Square images at the tower's size (no resize on either side): llama.cpp's features equal
    our weights run through its class-token-last graph, and not LLaVA-1.5's."""
    engine, pair = tiny
    model = open_llamacpp(pair.llm, pair.mmproj, engine.template.system)
    width = engine.config.text.hidden_size
    size = engine.image_config.crop_size[0]
    rng = np.random.default_rng(0)
    for _ in range(3):
        image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        theirs = llamacpp_image_features(model, image, width)
        pixels = process_images([image], engine.image_config, "pad")
        as_llama_cpp = image_features(engine.model, pixels, cls_last=True)
        official = image_features(engine.model, pixels)
        with torch.no_grad():
            ours = engine.model.encode_images(pixels)[0].numpy()
        assert np.abs(official - ours).max() < 1e-5  # the emulation's official branch is ours
        scale = np.abs(theirs).max()
        assert np.abs(theirs - as_llama_cpp).max() / scale < 5e-3
        assert np.abs(theirs - official).max() / scale > 0.1


def test_llama_cpp_resizes_then_pads_where_llava_pads_then_resizes(tiny):
    """Non-square images: llama.cpp resizes the long side to the tower's size and then centres
    the image on the mean colour; the official `expand2square` pads first and resizes after.
    Square images of any size agree; for non-square ones the features differ by 10-30% of their
    largest value on this tower."""
    engine, pair = tiny
    model = open_llamacpp(pair.llm, pair.mmproj, engine.template.system)
    width, size = engine.config.text.hidden_size, engine.image_config.crop_size[0]
    rng = np.random.default_rng(1)
    for w, h in ((56, 56), (56, 28), (28, 56), (60, 20), (100, 70)):
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        theirs = llamacpp_image_features(model, image, width)
        scale = np.abs(theirs).max()
        measured = llamacpp_pixels(image, size, engine.image_config.image_mean, engine.image_config.image_std)
        official = process_images([image], engine.image_config, "pad")
        assert np.abs(theirs - image_features(engine.model, measured, cls_last=True)).max() / scale < 5e-3
        difference = np.abs(theirs - image_features(engine.model, official, cls_last=True)).max() / scale
        assert (difference < 5e-3) == (w == h), (w, h, difference)


def test_trained_model_answers_agree_mostly(smoke_demo, tmp_path):
    """The smoke demo's trained model on the held-out suite's square images, greedy, the
    official prompt on both sides: the share of identical answers is measured and bounded."""
    from llava15.world.demo import smoke_config
    from llava15.world.suite import load_suite

    out, _ = smoke_demo
    config = smoke_config(str(out))
    pair = export_gguf(out / "finetune", tmp_path / "gguf", name="smoke")
    engine = load_engine(out / "finetune", conv_mode="vicuna_v1", device="cpu", dtype="float32")
    model = open_llamacpp(pair.llm, pair.mmproj, engine.template.system)
    questions, _, _ = load_suite(config.data_dir() / "eval")
    root = config.data_dir() / "eval" / "vqav2" / "test2015"
    rows = []
    for q in questions[:40]:
        image = Image.open(root / q.image).convert("RGB")
        assert image.width == image.height
        rows.append((q.text, ask_ours(engine, image, q.text, 8).text,
                     ask_llamacpp(model, image, q.text, 8).text))
    agree = sum(a == b for _, a, b in rows) / len(rows)
    (tmp_path / "agreement.json").write_text(json.dumps({"agreement": agree, "rows": rows}))
    print(f"llama.cpp and llava15 agree on {agree:.0%} of {len(rows)} answers")
    assert len({a for _, a, _ in rows}) > 3  # a trained model, not one answer for everything
    assert agree >= 0.5, rows
