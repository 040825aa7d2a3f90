"""Golden AnyRes data from the official code (llava-torch 1.2.2.post1, transformers 4.37.2).

Run with the official venv:  /work/official/venv/bin/python tests/golden/make_anyres_golden.py
Writes tests/golden/anyres/anyres.json (best resolutions, grid shapes, unpadded map sizes) and
tests/golden/anyres/views.npz (process_anyres_image output for small images, 28-px processor).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPImageProcessor

from llava.mm_utils import get_anyres_image_grid_shape, process_anyres_image, select_best_resolution
from llava.model.llava_arch import unpad_image

OUT = Path(__file__).parent / "anyres"
PINPOINT_SETS = {
    "llava_next": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
    "hd_2x2": [[672, 672]],
    "tiny": [[56, 28], [28, 56], [56, 56], [84, 28]],
}
SIZES = [(640, 480), (480, 640), (336, 336), (1000, 200), (200, 1000), (1, 1), (337, 335),
         (1024, 768), (30, 30), (100, 33), (40, 20), (20, 45), (800, 801), (673, 336)]


def image(size, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def main() -> None:
    OUT.mkdir(exist_ok=True)
    cases = []
    for name, pinpoints in PINPOINT_SETS.items():
        tile = 28 if name == "tiny" else 336
        for size in SIZES:
            best = select_best_resolution(size, [tuple(p) for p in pinpoints])
            across, down = get_anyres_image_grid_shape(size, pinpoints, tile)
            side = tile // 14 if tile == 336 else tile // 7  # patches per side of a tile
            unpadded = unpad_image(torch.zeros(1, down * side, across * side), size).shape[1:]
            cases.append({"pinpoints": name, "size": list(size), "best": list(best),
                          "grid": [across, down], "patches_per_tile_side": side,
                          "unpadded": list(unpadded)})
    processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                   do_center_crop=True, do_resize=True, resample=3,
                                   image_mean=[0.48145466, 0.4578275, 0.40821073],
                                   image_std=[0.26862954, 0.26130258, 0.27577711])
    views = {}
    for i, size in enumerate([(40, 20), (20, 45), (30, 30), (100, 33), (60, 61)]):
        views[f"{size[0]}x{size[1]}"] = process_anyres_image(
            image(size, i), processor, PINPOINT_SETS["tiny"]).numpy()
    np.savez_compressed(OUT / "views.npz", **views)
    (OUT / "anyres.json").write_text(json.dumps({"pinpoints": PINPOINT_SETS, "cases": cases,
                                                 "view_seeds": "image(size, i) for i, size in "
                                                 "enumerate(view sizes)"}, indent=1))


if __name__ == "__main__":
    main()
