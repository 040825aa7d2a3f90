"""Peak memory of `llava15.checkpoint.load_llava`, relative to the size of the loaded weights.

Writes a ~120 MB (float32) random LLaVA in three layouts — llava-hf safetensors (2 shards), official
sharded `pytorch_model-*.bin` in float16, official `model.safetensors` in float16 — then loads each in
a fresh subprocess as float32 and prints the peak RSS growth (`resource.getrusage` max RSS minus the
RSS just before loading, imports done) divided by the bytes of the loaded float32 weights.
Measured on the 2-core dev box: 1.00 for safetensors (tensors are read straight into the
parameters), about 1.25 for float16 `.bin` shards (a memory-mapped shard stays resident until its
tensors are copied; peak = weights + the largest shard).

    .venv/bin/python bench/load_memory.py [--layers 6] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "tests" / "golden" / "tokenizer"


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(directory: str) -> None:
    """Child process: load `directory` and print the memory figures as JSON.

    A tiny model is first built on the meta device: the first `nn.init` call on a meta tensor
    imports torch's Python decompositions (about 70 MB, once per process, whatever the model
    size); that one-time cost is reported apart from the growth that scales with the weights."""
    import torch

    from llava15.checkpoint import load_llava
    from llava15.config import tiny
    from llava15.model.llava import Llava

    start = current_rss_bytes()
    with torch.device("meta"):
        Llava(tiny())
    before = current_rss_bytes()
    loaded = load_llava(directory, dtype=torch.float32)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    weights = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    print(json.dumps({"layout": loaded.layout, "weights_mb": weights / 2**20,
                      "rss_before_mb": before / 2**20,
                      "meta_warmup_mb": (before - start) / 2**20, "peak_growth_mb": (peak - before) / 2**20,
                      "ratio": (peak - before) / weights}))


def official_name(key: str) -> str:
    key = re.sub(r"^language_model\.model\.", "model.", key)
    key = re.sub(r"^language_model\.lm_head\.", "lm_head.", key)
    match = re.match(r"^multi_modal_projector\.linear_(\d+)\.(\w+)$", key)
    return f"model.mm_projector.{2 * (int(match.group(1)) - 1)}.{match.group(2)}" if match else key


def write_checkpoints(root: Path, layers: int) -> dict[str, Path]:
    import torch
    from safetensors.torch import save_file

    from llava15.checkpoint import save_llava_hf
    from llava15.config import LlavaConfig, TextConfig, VisionConfig
    from llava15.data.image import ImageProcessorConfig
    from llava15.model.llava import Llava

    vision = VisionConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                          image_size=112, patch_size=14)
    text = TextConfig(vocab_size=8192, hidden_size=512, intermediate_size=1408, num_hidden_layers=layers,
                      num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=1024)
    config = LlavaConfig(vision=vision, text=text)
    torch.manual_seed(0)
    model = Llava(config)
    image = ImageProcessorConfig(shortest_edge=112, crop_size=(112, 112))
    hf = root / "llava-hf"
    save_llava_hf(model, config, TOKENIZER, image, hf, max_shard_bytes=80 * 2**20)
    state = model.state_dict()
    clip = root / "clip"
    clip.mkdir()
    save_file({k.removeprefix("vision_tower."): v.half().contiguous() for k, v in state.items()
               if k.startswith("vision_tower.")}, str(clip / "model.safetensors"))
    (clip / "config.json").write_text(json.dumps({
        "model_type": "clip_vision_model", "hidden_size": 256, "intermediate_size": 1024,
        "num_hidden_layers": 4, "num_attention_heads": 4, "image_size": 112, "patch_size": 14}))
    (clip / "preprocessor_config.json").write_text(json.dumps(image.to_dict()))
    official = {official_name(k): v.half().contiguous() for k, v in state.items() if not k.startswith("vision_tower.")}
    llama = {"model_type": "llava_llama", "vocab_size": 8192, "hidden_size": 512, "intermediate_size": 1408,
             "num_hidden_layers": layers, "num_attention_heads": 8, "num_key_value_heads": 8,
             "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "mm_vision_tower": str(clip),
             "mm_hidden_size": 256, "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2,
             "mm_use_im_patch_token": False, "image_aspect_ratio": "pad"}
    bin_dir, st_dir = root / "official-bin", root / "official-safetensors"
    for d in (bin_dir, st_dir):
        d.mkdir()
        (d / "config.json").write_text(json.dumps(llama))
    keys = list(official)
    halves = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    weight_map = {}
    for name, part in halves.items():
        torch.save({k: official[k] for k in part}, bin_dir / name)
        weight_map.update(dict.fromkeys(part, name))
    (bin_dir / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    save_file(official, str(st_dir / "model.safetensors"))
    return {"llava-hf safetensors f32, 2 shards": hf, "official .bin f16, 2 shards": bin_dir,
            "official safetensors f16": st_dir}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--keep", default=None, help="write the checkpoints here and keep them")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="load_memory_"))
    root.mkdir(parents=True, exist_ok=True)
    for label, directory in write_checkpoints(root, args.layers).items():
        out = subprocess.run([sys.executable, __file__, "--measure", str(directory)], check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{label:36s} weights {r['weights_mb']:7.1f} MB  peak growth {r['peak_growth_mb']:7.1f} MB  "
              f"ratio {r['ratio']:.2f}  (RSS before loading {r['rss_before_mb']:.0f} MB, one-time meta-init "
              f"import {r['meta_warmup_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
