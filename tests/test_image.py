"""Image preprocessing equals the official LLaVA code (goldens), and loading fails clearly.

Goldens: `tests/golden/image/` from `tests/golden/make_image_golden.py` (official venv,
`llava.mm_utils.process_images` + transformers 4.37.2 `CLIPImageProcessor`); source images are rebuilt
here by the shared helper `tests/golden/image_cases.py`.
"""

from __future__ import annotations

import importlib.util
import io
import json
import struct
import warnings
import zlib
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llava15.data.image import (ImageError, ImageProcessorConfig, expand2square, load_image, preprocess,
                                process_images, resize_output_size)

GOLDEN = Path(__file__).parent / "golden"
MANIFEST = json.loads((GOLDEN / "image" / "manifest.json").read_text())
TOLERANCE = 1e-5


@cache
def image_cases():
    """The shared helper module (tests/ is not a package, so import it by path)."""
    spec = importlib.util.spec_from_file_location("image_cases", GOLDEN / "image_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def sources() -> dict[str, Image.Image]:
    return image_cases().build_cases()


@cache
def pixels() -> dict[str, np.ndarray]:
    with np.load(GOLDEN / "image" / "pixels.npz") as npz:
        return {k: npz[k] for k in npz.files}


def decode(array_id: str, shape: list[int]) -> np.ndarray:
    """Rebuild a golden float32 array from its per-channel value table and index (lossless)."""
    table, index = pixels()[array_id + ".values"], pixels()[array_id + ".index"]
    flat = np.take_along_axis(table, index.reshape(len(table), -1).astype(np.int64), axis=1)
    return flat.reshape(shape)


def config_of(processor: str) -> ImageProcessorConfig:
    """Our config from the very kwargs the golden's CLIPImageProcessor got (exercises from_dict)."""
    return ImageProcessorConfig.from_dict(MANIFEST["processors"][processor], source=processor)


def case_id(entry: dict) -> str:
    return f"{entry['case']}-{entry['processor']}-{entry['aspect_ratio']}"


def assert_close(ours: torch.Tensor, golden: np.ndarray) -> None:
    assert ours.dtype == torch.float32
    assert tuple(ours.shape) == golden.shape
    assert float(np.abs(ours.numpy() - golden).max()) <= TOLERANCE


@pytest.mark.filterwarnings("ignore:Palette images with Transparency:UserWarning")  # PIL's, officially too
@pytest.mark.parametrize("entry", MANIFEST["cases"], ids=case_id)
def test_process_images_matches_official(entry):
    """Ours on the image as built (any mode) == official on `image.convert('RGB')` (the loaders' input)."""
    ours = process_images([sources()[entry["case"]]], config_of(entry["processor"]), entry["aspect_ratio"])
    assert ours.shape[0] == 1
    assert_close(ours[0], decode(entry["array"], entry["shape"]))


@pytest.mark.parametrize("entry", MANIFEST["channel_axis_cases"], ids=case_id)
def test_images_one_or_three_pixels_tall(entry):
    """Deliberate divergence: transformers reads these as channels-first (garbled or an error, see
    `entry["official"]`); we match its pipeline with the channel axis stated."""
    image = image_cases().channel_axis_cases()[entry["case"]]
    ours = process_images([image], config_of(entry["processor"]), entry["aspect_ratio"])
    assert_close(ours[0], decode(entry["array"], entry["shape"]))


RAW_PAD = [e for e in MANIFEST["cases"] if e["aspect_ratio"] == "pad" and e["raw"] != "same"]


@pytest.mark.parametrize("entry", RAW_PAD, ids=case_id)
def test_expand2square_on_raw_modes_matches_official(entry):
    """Without the RGB conversion the official pad path differs (P, CMYK) or raises (L, LA, 1, I;16, I, F)."""
    config = config_of(entry["processor"])
    image = sources()[entry["case"]]
    if entry["raw"].startswith("error"):
        with pytest.raises(ValueError, match=f"mode '{image.mode}'"):
            expand2square(image, config.background_color)
    else:
        assert_close(preprocess(expand2square(image, config.background_color), config),
                     decode(entry["raw_array"], entry["shape"]))


def test_golden_covers_every_pil_mode_and_crop_shape():
    modes = {e["mode"] for e in MANIFEST["cases"]}
    assert {"RGB", "RGBA", "LA", "P", "L", "1", "CMYK", "I;16", "I", "F"} <= modes
    crops = {tuple(e["shape"][1:]) for e in MANIFEST["cases"]}
    assert {(112, 112), (336, 336), (96, 128), (97, 112), (97, 113)} <= crops


@pytest.mark.parametrize("record", MANIFEST["resize_output_size"],
                         ids=lambda r: f"{r['width']}x{r['height']}-{r['shortest_edge']}")
def test_resize_output_size_matches_transformers(record):
    got = resize_output_size((record["width"], record["height"]), record["shortest_edge"])
    assert got == (record["out_width"], record["out_height"])


def test_batch_equals_single_images():
    config = config_of("clip112")
    images = [sources()[n] for n in ("coffee_600x400", "rocket_tall_427x640", "mode_P", "astronaut_2x2")]
    for ar in ("pad", "square", None):
        batch = process_images(images, config, ar)
        assert batch.shape == (4, 3, 112, 112)
        for i, image in enumerate(images):
            assert torch.equal(batch[i], process_images([image], config, ar)[0])


def test_process_images_errors():
    config = config_of("clip112_nocrop")
    with pytest.raises(NotImplementedError, match="anyres"):
        process_images([sources()["mode_L"]], config, "anyres")
    with pytest.raises(ValueError, match="no images"):
        process_images([], config, "pad")
    with pytest.raises(ValueError, match="different shapes"):
        process_images([sources()["coffee_600x400"], sources()["rocket_tall_427x640"]], config, "square")


def test_preprocess_rgb_required_without_conversion():
    config = ImageProcessorConfig(do_convert_rgb=False)
    with pytest.raises(ValueError, match="mode 'L'"):
        preprocess(sources()["mode_L"], config)


def test_expand2square_official_geometry():
    """Paste offsets floor; squares come back unchanged (the same object, as officially)."""
    image = Image.new("RGB", (5, 2), (255, 0, 0))
    square = np.asarray(expand2square(image, (1, 2, 3)))
    assert square.shape == (5, 5, 3)
    assert (square[:, :, 0] == 255).sum(axis=1).tolist() == [0, 5, 5, 0, 0]
    tall = np.asarray(expand2square(Image.new("RGB", (2, 5), (255, 0, 0)), (1, 2, 3)))
    assert (tall[:, :, 0] == 255).sum(axis=0).tolist() == [0, 5, 5, 0, 0]
    same = Image.new("RGB", (4, 4))
    assert expand2square(same, (1, 2, 3)) is same


# --- ImageProcessorConfig -------------------------------------------------------------------------


def test_background_color_is_truncated_mean():
    assert ImageProcessorConfig().background_color == (122, 116, 104)


def test_to_dict_reads_back_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = ImageProcessorConfig(shortest_edge=64, crop_size=(48, 64), image_mean=(0.5, 0.25, 0.125),
                                  image_std=(0.2, 0.3, 0.4))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config.to_dict()))
    hf = transformers.CLIPImageProcessor.from_pretrained(tmp_path)
    assert dict(hf.size) == {"shortest_edge": 64} and dict(hf.crop_size) == {"height": 48, "width": 64}
    assert (hf.resample, hf.rescale_factor, hf.do_convert_rgb) == (3, 1 / 255, True)
    assert (hf.do_resize, hf.do_center_crop, hf.do_rescale, hf.do_normalize) == (True, True, True, True)
    assert tuple(hf.image_mean) == config.image_mean and tuple(hf.image_std) == config.image_std
    assert ImageProcessorConfig.from_file(tmp_path / "preprocessor_config.json") == config
    # transformers 4.57 itself as a second, independent reference on an RGB photo
    image = sources()["chelsea_451x300"]
    expected = hf(image, return_tensors="np")["pixel_values"][0]
    assert_close(preprocess(image, config), expected)


def test_from_dict_accepts_old_int_forms():
    transformers = pytest.importorskip("transformers")
    config = ImageProcessorConfig.from_dict({"size": 224, "crop_size": 224, "feature_extractor_type": "x"})
    hf = transformers.CLIPImageProcessor(size=224, crop_size=224)
    assert (config.shortest_edge, config.crop_size) == (224, (224, 224))
    assert dict(hf.size) == {"shortest_edge": 224} and dict(hf.crop_size) == {"height": 224, "width": 224}


@pytest.mark.parametrize("bad, key", [({"size": {"height": 3, "width": 4}}, "size"),
                                      ({"crop_size": "336"}, "crop_size"),
                                      ({"do_resize": "yes"}, "do_resize"),
                                      ({"resample": True}, "resample"),
                                      ({"image_mean": [0.5, 0.5]}, "image_mean")])
def test_from_dict_errors_name_source_and_key(bad, key):
    with pytest.raises(ValueError, match=key) as info:
        ImageProcessorConfig.from_dict(bad, source="some/preprocessor_config.json")
    assert "some/preprocessor_config.json" in str(info.value)


def test_from_file_errors_name_the_file(tmp_path):
    path = tmp_path / "preprocessor_config.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=str(path)):
        ImageProcessorConfig.from_file(path)
    with pytest.raises(ValueError, match="missing.json"):
        ImageProcessorConfig.from_file(tmp_path / "missing.json")


# --- load_image -----------------------------------------------------------------------------------

SAVE_AS = {"mode_RGBA": "png", "mode_LA": "png", "mode_P": "gif", "mode_P_transparent_index": "png",
           "mode_P_transparent_bytes": "png", "mode_L": "jpeg", "mode_1": "png", "mode_CMYK": "jpeg",
           "mode_I;16": "png", "mode_I": "tiff", "mode_F": "tiff", "astronaut_odd_113x97": "jpeg"}


@pytest.mark.parametrize("name", SAVE_AS)
def test_load_image_is_the_official_loader(name, tmp_path):
    """`Image.open(path).convert('RGB')` is what every official loader does."""
    path = tmp_path / f"{name.replace(';', '_')}.{SAVE_AS[name]}"
    sources()[name].save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PIL's note on bytes transparency, in both paths
        expected = np.asarray(Image.open(path).convert("RGB"))
        for source in (path, str(path), path.read_bytes()):
            image = load_image(source)
            assert image.mode == "RGB" and np.array_equal(np.asarray(image), expected)
        assert np.array_equal(np.asarray(load_image(Image.open(path))), expected)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares `width` x `height` (RGB, 8-bit), with one tiny IDAT: never decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4))
            + chunk(b"IEND", b""))


def encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    sources()["astronaut_512x512"].save(buffer, format=fmt)
    return buffer.getvalue()


BAD_FILES = {
    "empty.png": (b"", "empty"),
    "truncated.jpg": (lambda: encoded("JPEG")[:6000], "truncated or corrupt"),
    "truncated.png": (lambda: encoded("PNG")[:6000], "truncated or corrupt"),
    "bomb.png": (lambda: png_header(100_000, 100_000), "too large"),
    "big.png": (lambda: png_header(10_000, 10_000), "too large"),  # PIL only warns here; we refuse
    "notes.txt": (b"this is not an image\n", "not an image"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_load_image_errors_name_the_file(name, tmp_path):
    content, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content() if callable(content) else content)
    limit, filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    with pytest.raises(ImageError, match=message) as info:
        load_image(path)
    assert str(path) in str(info.value)
    if path.stat().st_size:
        with pytest.raises(ImageError, match=message):
            load_image(path.read_bytes())
    assert Image.MAX_IMAGE_PIXELS == limit and warnings.filters == filters  # nothing global changed


def test_load_image_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="not found") as info:
        load_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(info.value)
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)
    with pytest.raises(TypeError):
        load_image(123)


def test_load_image_max_pixels(tmp_path):
    path = tmp_path / "photo.png"
    sources()["astronaut_odd_113x97"].save(path)
    assert load_image(path, max_pixels=113 * 97).size == (113, 97)
    for source in (path, path.read_bytes(), sources()["astronaut_odd_113x97"]):
        with pytest.raises(ImageError, match="too large"):
            load_image(source, max_pixels=113 * 97 - 1)
