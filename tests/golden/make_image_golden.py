"""Make the image-preprocessing goldens with the official LLaVA code.

Run from the repository root with the official venv (llava-torch 1.2.2.post1, transformers 4.37.2):

    /work/official/venv/bin/python tests/golden/make_image_golden.py

For every (source image, processor, aspect ratio) of `image_cases.golden_runs()` it calls
`llava.mm_utils.process_images([image], CLIPImageProcessor(**kwargs), cfg)` twice: on
`image.convert('RGB')` (what every official loader hands over) and on the raw image (recording the
error where the official code raises). It also records transformers' resize output size
(`get_resize_output_image_size`) for odd sizes, and, for RGB images 1 or 3 pixels tall (whose
channel axis transformers guesses wrongly), the CLIP pipeline with `input_data_format="channels_last"`.

Outputs `tests/golden/image/pixels.npz` (compressed) and `tests/golden/image/manifest.json`.
The float32 arrays are stored losslessly as a per-channel table of distinct values plus a uint8/uint16
index (a preprocessed image has at most 256 distinct values per channel), which keeps the files small;
`decode()` in `tests/test_image.py` rebuilds them exactly.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import PIL
import transformers
from llava.mm_utils import expand2square, process_images
from transformers import CLIPImageProcessor
from transformers.image_transforms import get_resize_output_image_size

sys.path.insert(0, str(Path(__file__).resolve().parent))
import image_cases  # noqa: E402  (the shared helper beside this script)

OUT = Path(__file__).resolve().parent / "image"


class ModelConfig:
    """The one attribute `process_images` reads from a model config."""

    def __init__(self, image_aspect_ratio: str):
        self.image_aspect_ratio = image_aspect_ratio


def encode(array: np.ndarray, store: dict[str, np.ndarray]) -> str:
    """Store a (C, H, W) float32 array as `<id>.values` (C, K) and `<id>.index` (C, H, W); return the id.

    Identical arrays (a square image padded or not) are stored once.
    """
    digest = hashlib.sha1(array.tobytes() + str(array.shape).encode()).hexdigest()[:16]
    if digest + ".values" in store:
        return digest
    channels = array.shape[0]
    flat = array.reshape(channels, -1)
    tables, indices = [], []
    for c in range(channels):
        values, inverse = np.unique(flat[c], return_inverse=True)
        tables.append(values)
        indices.append(inverse.reshape(-1))
    k = max(len(t) for t in tables)
    table = np.full((channels, k), np.nan, dtype=np.float32)
    for c, values in enumerate(tables):
        table[c, :len(values)] = values
    index = np.stack(indices).astype(np.uint8 if k <= 256 else np.uint16).reshape(array.shape)
    rebuilt = np.take_along_axis(table, index.reshape(channels, -1).astype(np.int64), axis=1)
    assert np.array_equal(rebuilt.reshape(array.shape), array), digest  # lossless
    store[digest + ".values"] = table
    store[digest + ".index"] = index
    return digest


def official(image, kwargs: dict, aspect_ratio: str) -> np.ndarray:
    """The official `process_images` on one image -> (3, H, W) float32."""
    out = process_images([image], CLIPImageProcessor(**kwargs), ModelConfig(aspect_ratio))
    out = out[0] if isinstance(out, list) else out[0]
    return out.numpy().astype(np.float32, copy=False)


def main() -> None:
    cases = image_cases.build_cases()
    store: dict[str, np.ndarray] = {}
    entries = []
    for name, proc, aspect_ratio in image_cases.golden_runs():
        kwargs = image_cases.PROCESSORS[proc]
        image = cases[name]
        loaded = official(image.convert("RGB"), kwargs, aspect_ratio)
        entry = {"case": name, "mode": image.mode, "size": list(image.size), "processor": proc,
                 "aspect_ratio": aspect_ratio, "shape": list(loaded.shape), "array": encode(loaded, store)}
        try:
            raw = official(image, kwargs, aspect_ratio)
        except Exception as e:  # recorded, not swallowed: the manifest says what the official code raised
            entry["raw"] = f"error: {type(e).__name__}: {e}"
        else:
            same = raw.shape == loaded.shape and np.array_equal(raw, loaded)
            entry["raw"] = "same" if same else "differs"
            if not same:
                entry["raw_array"] = encode(raw, store)
        entries.append(entry)
        print(name, proc, aspect_ratio, entry["shape"], entry["raw"])

    # Images 1 or 3 pixels tall: the official result (often garbled or an error) and the same pipeline
    # with the channel axis stated (`input_data_format="channels_last"`), which is what we match.
    axis_entries = []
    kwargs = image_cases.PROCESSORS[image_cases.ALL_CASES_AT]
    for name, image in image_cases.channel_axis_cases().items():
        for aspect_ratio in image_cases.ASPECT_RATIOS:
            processor = CLIPImageProcessor(**kwargs)
            shown = expand2square(image, tuple(int(x * 255) for x in processor.image_mean)) \
                if aspect_ratio == "pad" else image
            stated = processor.preprocess(shown, input_data_format="channels_last",
                                          return_tensors="np")["pixel_values"][0]
            entry = {"case": name, "size": list(image.size), "processor": image_cases.ALL_CASES_AT,
                     "aspect_ratio": aspect_ratio, "shape": list(stated.shape), "array": encode(stated, store)}
            try:
                official_out = official(image, kwargs, aspect_ratio)
            except Exception as e:  # recorded in the manifest
                entry["official"] = f"error: {type(e).__name__}: {e}"
            else:
                same = official_out.shape == stated.shape and np.array_equal(official_out, stated)
                entry["official"] = "same" if same else "differs"
            axis_entries.append(entry)
            print(name, aspect_ratio, entry["official"])

    resize = []
    for w, h, s in image_cases.RESIZE_SIZES:
        dummy = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (h, w, 3))
        out_h, out_w = get_resize_output_image_size(dummy, size=s, default_to_square=False,
                                                    input_data_format="channels_last")
        resize.append({"width": w, "height": h, "shortest_edge": s, "out_width": int(out_w),
                       "out_height": int(out_h)})

    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "pixels.npz", **store)
    manifest = {
        "made_by": "tests/golden/make_image_golden.py with /work/official/venv "
                   "(llava.mm_utils.process_images + transformers.CLIPImageProcessor)",
        "versions": {"transformers": transformers.__version__, "pillow": PIL.__version__,
                     "numpy": np.__version__},
        "processors": image_cases.PROCESSORS,
        "cases": entries,
        "channel_axis_cases": axis_entries,
        "resize_output_size": resize,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print("wrote", OUT, sum(a.nbytes for a in store.values()), "bytes raw")


if __name__ == "__main__":
    main()
