"""AnyRes grid choices, unpadded map sizes and tile pixels against the official functions
(golden data from `tests/golden/make_anyres_golden.py`, llava-torch 1.2.2.post1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llava15.config import anyres_grid_shape, select_best_resolution
from llava15.data.anyres import process_anyres_image
from llava15.data.image import ImageProcessorConfig
from llava15.model.anyres import unpadded_extent

GOLDEN = Path(__file__).parent / "golden" / "anyres"
DATA = json.loads((GOLDEN / "anyres.json").read_text())


@pytest.mark.parametrize("case", DATA["cases"], ids=lambda c: f"{c['pinpoints']}-{c['size']}")
def test_grid_choice_and_unpadding_match_the_official_code(case):
    pinpoints = [tuple(p) for p in DATA["pinpoints"][case["pinpoints"]]]
    size = tuple(case["size"])
    assert list(select_best_resolution(size, pinpoints)) == case["best"]
    tile = 28 if case["pinpoints"] == "tiny" else 336
    across, down = anyres_grid_shape(size, pinpoints, tile)
    assert [across, down] == case["grid"]
    side = case["patches_per_tile_side"]
    r0, r1, c0, c1 = unpadded_extent(size, down * side, across * side)
    assert [r1 - r0, c1 - c0] == case["unpadded"]


def test_views_match_the_official_process_anyres_image():
    views = np.load(GOLDEN / "views.npz")
    config = ImageProcessorConfig(shortest_edge=28, crop_size=(28, 28))
    pinpoints = [tuple(p) for p in DATA["pinpoints"]["tiny"]]
    for i, name in enumerate(views.files):
        width, height = map(int, name.split("x"))
        rng = np.random.default_rng(i)
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        ours = process_anyres_image(image, config, pinpoints).numpy()
        assert ours.shape == views[name].shape, name
        assert np.abs(ours - views[name]).max() <= 1e-5, name
