"""Peak memory of `llava15.checkpoint.load_llava`, relative to the size of the loaded weights.

Writes a random LLaVA (about 150 MB in float32) in three layouts — llava-hf safetensors (float32,
2 shards), official sharded `pytorch_model-*.bin` in float16, official `model.safetensors` in
float16 — then loads each in a fresh subprocess in every inference precision (float32, bfloat16,
float16 and `--load-8bit` int8, through the same placement request the commands use) and prints
the peak RSS growth (VmHWM, the process's peak resident set, minus the RSS just before loading, imports
done) divided by the bytes the loaded model holds (parameters and buffers). The target is 1.1:
tensors are read straight into their parameters (safetensors), converted through a bounded
buffer, or copied from a memory-mapped `.bin` shard whose pages are handed back once copied;
int8 layers are quantized one tensor at a time. The figures go in the README.

    .venv/bin/python bench/load_memory.py [--layers 8] [--keep DIR] [--dtypes float32,bfloat16,int8]
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


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM). Not `getrusage`'s ru_maxrss: Linux carries the
    parent's resident size at fork into the child's ru_maxrss across exec, so a child of a
    large process (a test run) would report its parent's size as its own peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM (peak memory is measured on Linux only)")


def measure(directory: str, precision: str) -> None:
    """Child process: load `directory` in `precision` and print the memory figures as JSON.

    A tiny model is first built on the meta device: the first `nn.init` call on a meta tensor
    imports torch's Python decompositions (about 70 MB, once per process, whatever the model
    size), and the dtype conversions and the int8 quantizer run once on small tensors; those
    one-time costs are reported apart from the growth that scales with the weights."""
    import torch

    from llava15.checkpoint import load_llava
    from llava15.checkpoint.placement import PlacementRequest
    from llava15.config import tiny
    from llava15.model.llava import Llava

    from llava15.model.int8 import Int8Linear

    start = current_rss_bytes()
    with torch.device("meta"):
        Llava(tiny())
    # The first use of a kernel pages in its code from libtorch (several MB, once per process):
    # conversions and the int8 quantizer run once on small tensors so that it counts as warm-up.
    small = torch.randn(64, 64)
    for dtype in (torch.float16, torch.bfloat16):
        small.to(dtype).float().to(torch.bfloat16)
    Int8Linear(64, 64).quantize_from(small.half())
    before = current_rss_bytes()
    request = (PlacementRequest(device="cpu", load_8bit=True) if precision == "int8"
               else PlacementRequest(device="cpu", dtype=precision))
    loaded = load_llava(directory, placement=request)
    peak = peak_rss_bytes()
    weights = sum(t.numel() * t.element_size()
                  for t in [*loaded.model.parameters(), *loaded.model.buffers()])
    print(json.dumps({"layout": loaded.layout, "precision": loaded.placement.describe(),
                      "weights_mb": weights / 2**20,
                      "rss_before_mb": before / 2**20,
                      "meta_warmup_mb": (before - start) / 2**20, "peak_growth_mb": (peak - before) / 2**20,
                      "ratio": (peak - before) / weights}))


def official_name(key: str) -> str:
    key = re.sub(r"^language_model\.model\.", "model.", key)
    key = re.sub(r"^language_model\.lm_head\.", "lm_head.", key)
    match = re.match(r"^multi_modal_projector\.linear_(\d+)\.(\w+)$", key)
    return f"model.mm_projector.{2 * (int(match.group(1)) - 1)}.{match.group(2)}" if match else key


def write_checkpoints(root: Path, layers: int, vocab: int = 4096) -> dict[str, Path]:
    import torch
    from safetensors.torch import save_file

    from llava15.checkpoint import save_llava_hf
    from llava15.config import LlavaConfig, TextConfig, VisionConfig
    from llava15.data.image import ImageProcessorConfig
    from llava15.model.llava import Llava

    vision = VisionConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                          image_size=112, patch_size=14)
    text = TextConfig(vocab_size=vocab, hidden_size=512, intermediate_size=1408, num_hidden_layers=layers,
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
    llama = {"model_type": "llava_llama", "vocab_size": vocab, "hidden_size": 512, "intermediate_size": 1408,
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


def run_all(root: Path, layers: int, precisions: list[str]) -> list[dict]:
    """Write the checkpoints under `root` and measure each layout in each precision, every
    load in a fresh process; one result dict per load (with "label" and "precision_flag")."""
    results = []
    for label, directory in write_checkpoints(root, layers).items():
        for precision in precisions:
            results.append({"label": label, "precision_flag": precision,
                            **measure_in_subprocess(directory, precision)})
    return results


def measure_in_subprocess(directory: Path, precision: str) -> dict:
    """`measure` in a fresh Python process (peak RSS is per process)."""
    out = subprocess.run([sys.executable, __file__, "--measure", str(directory), "--precision", precision],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--keep", default=None, help="write the checkpoints here and keep them")
    parser.add_argument("--dtypes", default="float32,bfloat16,float16,int8",
                        help="comma-separated: float32, bfloat16, float16, int8 (--load-8bit)")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.precision)
        return
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="load_memory_"))
    root.mkdir(parents=True, exist_ok=True)
    for r in run_all(root, args.layers, args.dtypes.split(",")):
        print(f"{r['label']:36s} as {r['precision_flag']:8s} weights {r['weights_mb']:7.1f} MB  peak growth "
              f"{r['peak_growth_mb']:7.1f} MB  ratio {r['ratio']:.2f}  (RSS before loading "
              f"{r['rss_before_mb']:.0f} MB, one-time meta-init import {r['meta_warmup_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
