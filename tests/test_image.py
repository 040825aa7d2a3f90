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


@pytest.mark.parametrize("entry", MANIFEST["cases"], ids=case_id)
def test_process_images_matches_official(entry):
    """Ours on the image as built (any mode) == official on `image.convert('RGB')` (the loaders' input)."""
    ours = process_images([sources()[entry["case"]]], config_of(entry["processor"]), entry["aspect_ratio"])
    assert ours.shape[0] == 1
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


def test_golden_covers_what_the_brief_asks():
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
