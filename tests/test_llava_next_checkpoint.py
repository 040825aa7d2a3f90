"""llava-hf LLaVA-NeXT directories (written by transformers' `LlavaNextForConditionalGeneration`
and `LlavaNextProcessor.save_pretrained`) load through `llava15.load` and answer as transformers
does: our preprocessing gives the HF image processor's pixels, the same number of image tokens,
logits within 1e-4 relative and the same greedy tokens, for wide, tall, square and the
rounding-edge image sizes; both key nestings load; bad configs give errors naming file and key.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import llava15
from checkpoint_fixtures import one_thread  # noqa: F401  (autouse fixture)
from llava15.checkpoint import load_llava, read_llava_config
from llava15.config import anyres_grid_shape, select_best_resolution
from llava15.data.anyres import process_anyres_image
from llava15.infer.engine import Request
from llava15.infer.generate import SamplingParams
from llava15.model.anyres import anyres_token_count

transformers = pytest.importorskip("transformers")

TOKENIZER = Path(__file__).parent / "golden" / "tokenizer"
IMAGE_TOKEN, PAD_TOKEN = 512, 513  # after the 512-piece tiny vocabulary, as llava-hf adds them
HF_PINPOINTS = [[28, 56], [56, 28], [56, 56], [28, 84]]  # transformers' (height, width), tile 28
PROMPT = [("user", "<image>\nWhat is in the picture?")]
# (width, height): wide, tall, a small square (a tie between 1x2 and 2x1 grids) and 188x47, where
# transformers' round(x, 7) unpadding keeps 4 feature rows and the official int(x) keeps 2
SIZES = [(40, 20), (20, 45), (20, 20), (188, 47)]
# The official chunked tokenization (`tokenizer_image_token`, which our engine follows) puts a
# SentencePiece "▁" (id 461) between the image and "\n"; transformers' processor, tokenizing the
# whole string, does not. The logits are compared on our ids, fed to both models.
SPACE_PIECE = 461


def write_llava_next(out: Path) -> None:
    """A tiny random LlavaNext model (float32), its processor and tokenizer, saved by transformers."""
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                  image_size=28, patch_size=7, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    text = dict(vocab_size=576, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                rms_norm_eps=1e-5)
    config = transformers.LlavaNextConfig(
        vision_config=transformers.CLIPVisionConfig(**vision), text_config=transformers.LlamaConfig(**text),
        image_token_index=IMAGE_TOKEN, image_grid_pinpoints=HF_PINPOINTS,
        vision_feature_layer=-2, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    model = transformers.LlavaNextForConditionalGeneration(config)
    with torch.no_grad():  # larger than HF's 0.02 init, so logits are far from ties
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(0.08 * torch.randn_like(p))
    model.save_pretrained(out)
    tokenizer = transformers.LlamaTokenizer.from_pretrained(TOKENIZER)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"], "pad_token": "<pad>"})
    assert tokenizer.convert_tokens_to_ids(["<image>", "<pad>"]) == [IMAGE_TOKEN, PAD_TOKEN]
    image_processor = transformers.LlavaNextImageProcessor(
        size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}, image_grid_pinpoints=HF_PINPOINTS)
    transformers.LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=7,
                                    vision_feature_select_strategy="default",
                                    num_additional_image_tokens=1).save_pretrained(out)


@pytest.fixture(scope="module")
def next_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("llava-next") / "llava-next-tiny-hf"
    write_llava_next(out)
    return out


@pytest.fixture(scope="module")
def hf_pair(next_dir):
    model = transformers.LlavaNextForConditionalGeneration.from_pretrained(next_dir, dtype=torch.float32)
    processor = transformers.LlavaNextProcessor.from_pretrained(next_dir, use_fast=False)
    return model.eval(), processor


@pytest.fixture(scope="module")
def engine(next_dir):
    return llava15.load(str(next_dir))


def random_image(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_loads_as_an_anyres_model_that_follows_transformers(engine, next_dir):
    config = engine.config
    assert (config.image_aspect_ratio, config.mm_patch_merge_type, config.unpad_round_digits) == \
        ("anyres", "spatial_unpad", 7)
    assert config.image_grid_pinpoints == tuple((w, h) for h, w in HF_PINPOINTS)  # ours: (width, height)
    assert (config.image_token_index, config.text.vocab_size, config.mm_vision_select_feature) == \
        (IMAGE_TOKEN, 576, "patch")
    assert engine.image_config.anyres_resample == 3 and engine.image_config.crop_size == (28, 28)
    assert engine.tokenizer.added_tokens["<image>"] == IMAGE_TOKEN
    assert load_llava(next_dir).layout == "llava-hf-old"  # what transformers 4.57 writes


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_engine_matches_transformers(engine, hf_pair, size):
    hf, processor = hf_pair
    image = random_image(size, seed=size[0])
    prompt = engine.build_prompt(PROMPT)
    ids = engine.encode(prompt, [image.size])
    inputs = processor(images=[image], text=prompt, return_tensors="pt")
    hf_ids = inputs["input_ids"][0].tolist()
    after_image = len(hf_ids) - hf_ids[::-1].index(IMAGE_TOKEN)
    assert ids == hf_ids[:after_image] + [SPACE_PIECE] + hf_ids[after_image:]
    assert ids.count(IMAGE_TOKEN) == hf_ids.count(IMAGE_TOKEN) == engine.image_token_counts([size])[0]
    views = engine.pixel_values([image])[0]
    assert torch.equal(views, inputs["pixel_values"][0, :views.shape[0]])
    assert inputs["image_sizes"][0].tolist() == [size[1], size[0]]

    input_ids = torch.tensor([ids])
    with torch.no_grad():
        expected = hf(input_ids=input_ids, pixel_values=inputs["pixel_values"],
                      image_sizes=inputs["image_sizes"]).logits
        got = engine.model(input_ids, [views], image_sizes=[size]).logits
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()

    with torch.no_grad():
        out = hf.generate(input_ids=input_ids, pixel_values=inputs["pixel_values"],
                          image_sizes=inputs["image_sizes"], max_new_tokens=16, do_sample=False,
                          eos_token_id=engine.tokenizer.eos_token_id, pad_token_id=PAD_TOKEN)
    reference = out[0, len(ids):].tolist()
    if engine.tokenizer.eos_token_id in reference:  # ours stops there and does not yield it
        reference = reference[:reference.index(engine.tokenizer.eos_token_id)]
    request = Request(prompt, [image], SamplingParams(max_new_tokens=16))
    assert [token for _, token in engine.stream_batch([request])] == reference


def test_the_edge_cases_differ_from_the_official_reading(engine):
    """The sizes above exercise both differences from the official code (llava_next.py)."""
    config = engine.config
    official_pinpoints = [tuple(p) for p in HF_PINPOINTS]  # the same list read as (width, height)
    ours = select_best_resolution((20, 20), config.image_grid_pinpoints)
    assert ours == (56, 28) and select_best_resolution((20, 20), official_pinpoints) == (28, 56)
    grid = anyres_grid_shape((188, 47), config.image_grid_pinpoints, 28)
    counts = [anyres_token_count((188, 47), grid, 16, "spatial_unpad", digits) for digits in (None, 7)]
    assert counts[0] < counts[1]


def test_new_key_nesting_loads_the_same_weights(next_dir, tmp_path):
    # transformers' LlavaNext `_checkpoint_conversion_mapping` (hub -> in-memory names)
    mapping = [(r"^language_model\.model", "model.language_model"), (r"^vision_tower", "model.vision_tower"),
               (r"^multi_modal_projector", "model.multi_modal_projector"),
               (r"^image_newline", "model.image_newline"), (r"^language_model\.lm_head", "lm_head")]
    state = load_file(str(next_dir / "model.safetensors"))
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in mapping:
            if re.match(pattern, key):
                key = re.sub(pattern, replacement, key)
                break
        renamed[key] = value
    assert any(k.startswith("model.language_model.") for k in renamed) and "model.image_newline" in renamed
    out = tmp_path / "new"
    shutil.copytree(next_dir, out, ignore=shutil.ignore_patterns("model*.safetensors"))
    save_file(renamed, str(out / "model.safetensors"))
    new, old = load_llava(out), load_llava(next_dir)
    assert new.layout == "llava-hf-new"
    old_state = old.model.state_dict()
    assert all(torch.equal(v, old_state[k]) for k, v in new.model.state_dict().items())


def test_image_processor_filter_comes_from_preprocessor_config(next_dir, tmp_path):
    out = tmp_path / "bilinear"
    shutil.copytree(next_dir, out)
    path = out / "preprocessor_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "resample": 2}))
    loaded = load_llava(out)
    assert loaded.image_processor.anyres_resample == 2
    hf_processor = transformers.LlavaNextImageProcessor.from_pretrained(out)
    pinpoints = list(loaded.config.image_grid_pinpoints)
    for size in ((40, 20), (20, 45)):
        image = random_image(size, seed=1)
        ours = process_anyres_image(image, loaded.image_processor, pinpoints)
        expected = hf_processor(images=[image], return_tensors="pt")["pixel_values"][0, :ours.shape[0]]
        assert torch.equal(ours, expected)
        official = process_anyres_image(image, replace(loaded.image_processor, anyres_resample=None),
                                        pinpoints)
        assert not torch.equal(official, expected)  # PIL's default filter (bicubic) differs


def write_config(tmp_path: Path, next_dir: Path, **changes) -> Path:
    out = tmp_path / "m"
    out.mkdir()
    config = {**json.loads((next_dir / "config.json").read_text()), **changes}
    (out / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    return out


@pytest.mark.parametrize("changes, message", [
    ({"image_grid_pinpoints": None}, r"key 'image_grid_pinpoints' is missing"),
    ({"architectures": ["LlavaNextVideoForConditionalGeneration"]}, r"key 'architectures' is"),
    ({"vision_feature_select_strategy": "full"}, r"key 'vision_feature_select_strategy' is 'full'"),
    ({"image_grid_pinpoints": [[28, 42]]},
     r"key 'image_grid_pinpoints' holds \[28, 42\], not a multiple of the vision tower's image size 28"),
    ({"image_grid_pinpoints": "[[28, 56]]"}, r"key 'image_grid_pinpoints' must be a non-empty list"),
])
def test_configs_we_cannot_honour(next_dir, tmp_path, changes, message):
    with pytest.raises(ValueError, match=rf"m/config\.json: {message}"):
        read_llava_config(write_config(tmp_path, next_dir, **changes))


def test_preprocessor_pinpoints_must_be_the_models(next_dir, tmp_path):
    out = tmp_path / "mismatch"
    shutil.copytree(next_dir, out)
    path = out / "preprocessor_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "image_grid_pinpoints": [[56, 56]]}))
    with pytest.raises(ValueError, match=r"mismatch/preprocessor_config\.json: key 'image_grid_pinpoints'"):
        load_llava(out)


def test_our_llava_hf_export_keeps_the_transformers_behaviour(next_dir, tmp_path):
    """`llava15 convert` writes our llava-hf layout (a LlavaConfig with our AnyRes keys); reading it
    back gives the same model, rounding, grids and image processing."""
    from llava15.checkpoint import save_llava_hf

    loaded = load_llava(next_dir)
    save_llava_hf(loaded.model, loaded.config, loaded.tokenizer_dir, loaded.image_processor, tmp_path / "out")
    again = load_llava(tmp_path / "out")
    # the export names the tokenizer's <pad> as pad_token_id, which transformers' config left out
    assert again.config.text.pad_token_id == PAD_TOKEN
    assert replace(again.config, text=loaded.config.text) == loaded.config
    assert again.image_processor == loaded.image_processor
    state = loaded.model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in again.model.state_dict().items())
