"""GPU check: what the first GPU machine should confirm, in one run, as one markdown table.

Four checks, each wrapped so that one failing prints its row as `error: <one line>` and the rest
go on (the traceback goes to stderr):

1. CUDA vs CPU logits on a tiny random LLaVA (`llava15.config.tiny()`, weights N(0, 0.1^2) but
   the norms): one image + text prompt (expanded ids), the same weights on CPU float32, CUDA
   float32 (TF32 off) and CUDA bfloat16; max |diff| / max |CPU logit|, and the greedy tokens of
   `llava15.infer.generate.generate` for two prompts (left padding, two images) CPU vs CUDA
   float32.
2. Decode speed at the LLaVA-1.5-7B LLM shape (`llava15.config.llava_v15_7b()`): a `Llava` built
   on the GPU in bfloat16 with N(0, 0.02^2) weights (nothing read from disk), the same LLM weights
   in `transformers.LlamaForCausalLM`; greedy, 64 new tokens after a 600-token text prompt at
   batch 1, 8 and 32: our `generate` (the Engine's fused weight layout) against `transformers`
   `generate(do_sample=False, min_new_tokens=64, max_new_tokens=64)` with its default cache.
   Decode tokens/s exclude the prefill: (T(64 new) - T(1 new)) over 63 x batch tokens, best of
   two after one warm-up, `torch.cuda.synchronize` around every timing.
3. `--load-8bit` / `--load-4bit`: a tiny official-layout checkpoint (`bench/make_checkpoint.py
   --shape tiny`), `llava15.load(dir, device="cuda", load_8bit=True)` (then `load_4bit=True`)
   and `.chat(...)` with an image; reports the answer and GPU memory. Needs bitsandbytes (rows
   say "not run" without it).
4. Stage-2 training, 30 steps, bf16, through `torchrun --nproc-per-node <GPUs> -m llava15 train`
   (FSDP2 with several GPUs; one GPU runs the loop's single-process bf16 autocast path) on a
   7B-wide slice: hidden 4096, intermediate 11008, 32 heads, vocabulary 32000, 4 decoder layers,
   the CLIP ViT-L/14-336 tower; random backbones written with safetensors and a synthetic
   official-format data set (single-turn conversations, 576 image tokens + ~500 text tokens)
   in a temp dir. tokens/s from the run's `metrics.jsonl` (steps after the first 5), and
   MFU = 6 x decoder-layer parameters x tokens/s / (GPUs x bf16 dense peak).

`--cpu-dry-run` runs every check on the CPU at tiny shapes (CUDA replaced by the CPU, 7B by
`tiny()`, batches 1/2/4, 3 training steps over 2 gloo processes), well under 2 minutes on 2 cores;
the GPU-only targets are shown but not judged there. Without it and without CUDA the script exits
with a one-line error. Exit status: 0 when every row passes (or is "ok"/"not run"), 1 otherwise.

    bash bench/gpu_check.sh [--cpu-dry-run] [--only 1,2] [--budget-s 480]
    PYTHONPATH=. python3 bench/gpu_check.py [--cpu-dry-run]

Budget on one H100: under 8 minutes in all (check 4 gets the time that is left, and its rows
report what was measured if the run is stopped).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import importlib.metadata
import importlib.util
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from PIL import Image

    from llava15.config import LlavaConfig
    from llava15.model.llava import Llava

REPO = Path(__file__).resolve().parents[1]
LOGITS_FP32_TARGET = 1e-4  # max |diff| / max |logit|
LOGITS_BF16_TARGET = 3e-2
SPEED_TARGETS = {1: 2.0, 32: 1.5}  # ours / transformers decode tokens/s, by batch
MFU_TARGET = 0.40
KEEP_FOR_TRAINING_S = 300.0  # check 2 skips its remaining batch sizes when less time than this is left
# bf16 dense tensor-core peaks (TFLOPS, no sparsity) by device-name fragment; first match wins
BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0),
                    ("GH200", 989.0), ("A100", 312.0), ("L40S", 362.0), ("A10", 125.0))
DEFAULT_PEAK = ("H100 SXM (assumed)", 989.0)


# ------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Row:
    """One line of the table. `status`: pass, fail, ok (measured, no target here), not run, error."""

    name: str
    result: str
    target: str
    status: str


@dataclass(frozen=True)
class Setup:
    """Where the checks run: the device standing for CUDA, whether this is the CPU dry run, the
    scratch directory and the wall-clock deadline (time.monotonic())."""

    device: torch.device
    dry_run: bool
    tmp: Path
    deadline: float

    @property
    def left_s(self) -> float:
        return self.deadline - time.monotonic()


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = f"{type(error).__name__}: {text[0] if text else ''}".strip()
    return message if len(message) <= 240 else message[:237] + "..."


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| check | result | target | status |", "| --- | --- | --- | --- |"]
    lines += [f"| {cell(r.name)} | {cell(r.result)} | {cell(r.target)} | {cell(r.status)} |" for r in rows]
    return "\n".join(lines)


def judged(ok: bool) -> str:
    return "pass" if ok else "fail"


def run_check(title: str, check: Callable[[Setup], Iterator[Row]], setup: Setup) -> list[Row]:
    """The check's rows; an exception ends it with a row `error: <one line>` (rows already
    yielded stay), and frees what it held on the GPU."""
    rows: list[Row] = []
    start = time.monotonic()
    try:
        for row in check(setup):
            rows.append(row)
            print(f"[gpu_check] {row.name}: {row.status}: {row.result}", file=sys.stderr, flush=True)
    except Exception as error:  # reported in the table, traceback on stderr
        tail = "".join(traceback.format_exception(error)[-12:])
        print(f"[gpu_check] {title} failed:\n{tail}", file=sys.stderr, flush=True)
        rows.append(Row(title, f"error: {one_line(error)}", "-", "error"))
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print(f"[gpu_check] {title}: {time.monotonic() - start:.1f} s", file=sys.stderr, flush=True)
    return rows


# ----------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Modules built inside get `dtype` parameters (restored on exit)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


@contextlib.contextmanager
def strict_float32() -> Iterator[None]:
    """No TF32 in CUDA matmuls or convolutions (cuDNN allows it by default), restored on exit."""
    matmul, conv = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, conv


def randomize(model: torch.nn.Module, std: float, seed: int) -> torch.nn.Module:
    """Every parameter but the norms' drawn from N(0, std^2), on the model's device."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, std)
    return model


def sibling(name: str) -> ModuleType:
    """`bench/<name>.py` as a module (in `sys.modules` only while it executes, when its
    dataclasses look their module up), without putting `bench/` on `sys.path`."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], object]) -> tuple[float, object]:
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def relative_diff(reference: torch.Tensor, other: torch.Tensor) -> float:
    reference, other = reference.float().cpu(), other.float().cpu()
    return float((reference - other).abs().max() / reference.abs().max())


def bf16_peak(device: torch.device) -> tuple[str, float]:
    name = torch.cuda.get_device_name(device)
    for fragment, tflops in BF16_PEAK_TFLOPS:
        if fragment in name:
            return name, tflops
    return DEFAULT_PEAK


def header(setup: Setup) -> list[str]:
    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    lines = [f"- torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}, "
             f"transformers {version('transformers')}, python {sys.version.split()[0]}"]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        lines.append(f"- device: {torch.cuda.device_count()} x {props.name}, "
                     f"{props.total_memory / 2**30:.1f} GiB each")
    else:
        lines.append(f"- device: no CUDA; {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads")
    bnb = importlib.util.find_spec("bitsandbytes") is not None
    lines.append(f"- bitsandbytes: {version('bitsandbytes') if bnb else 'not installed'}")
    mode = "CPU dry run (tiny shapes, GPU targets not judged)" if setup.dry_run else "GPU"
    lines.append(f"- mode: {mode}; checks run on {setup.device}")
    return lines


# ------------------------------------------------------------------- 1. CUDA vs CPU logits


def check_logits(setup: Setup) -> Iterator[Row]:
    from llava15.config import tiny
    from llava15.infer.generate import SamplingParams, generate, optimize_for_cpu
    from llava15.model.llava import Llava

    config = tiny()
    device, where = setup.device, setup.device.type.upper()
    cpu_model = randomize(Llava(config).eval(), std=0.1, seed=0)  # tests/random_llava.py's init
    fp32 = copy.deepcopy(cpu_model).to(device)
    bf16 = copy.deepcopy(cpu_model).to(device=device, dtype=torch.bfloat16)
    for model in (cpu_model, fp32, bf16):
        optimize_for_cpu(model)  # as load_engine does after placing a model

    g = torch.Generator().manual_seed(1)
    vocab, n_image = config.text.vocab_size, config.num_image_tokens

    def prompt(before: int, after: int) -> list[int]:
        return ([1] + torch.randint(3, vocab, (before,), generator=g).tolist()
                + [config.image_token_index] * n_image + torch.randint(3, vocab, (after,), generator=g).tolist())

    prompts = [prompt(5, 12), prompt(9, 3)]
    size = config.vision.image_size
    pixels = torch.randn(2, 3, size, size, generator=g)
    ids = torch.tensor([prompts[0]])

    with strict_float32(), torch.inference_mode():
        reference = cpu_model(ids, pixels[:1]).logits
        on_device = fp32(ids.to(device), pixels[:1].to(device)).logits
        half = bf16(ids.to(device), pixels[:1].to(device)).logits
    diff32, diff16 = relative_diff(reference, on_device), relative_diff(reference, half)
    shape = f"tiny LLaVA, {ids.shape[1]} positions ({n_image} image), max |logit| {reference.abs().max():.2f}"
    yield Row(f"1a logits float32, {where} vs CPU", f"max rel diff {diff32:.2e} ({shape}; TF32 off)",
              f"<= {LOGITS_FP32_TARGET:.0e}", judged(diff32 <= LOGITS_FP32_TARGET))
    yield Row(f"1b logits bfloat16, {where} vs CPU float32", f"max rel diff {diff16:.2e}",
              f"<= {LOGITS_BF16_TARGET:.0e}", judged(diff16 <= LOGITS_BF16_TARGET))

    params = SamplingParams(max_new_tokens=16)
    with strict_float32():
        cpu_tokens = generate(cpu_model, prompts, pixels, params, [])
        device_tokens = generate(fp32, prompts, pixels.to(device), params, [])
    same = sum(a == b for a, b in zip(cpu_tokens, device_tokens))
    n = sum(map(len, cpu_tokens))
    yield Row(f"1c greedy tokens float32, {where} vs CPU",
              f"{same}/{len(prompts)} prompts identical ({n} tokens, 2 images, left-padded batch)",
              "all identical", judged(same == len(prompts) and n == 16 * len(prompts)))


# ------------------------------------------------------------- 2. 7B-shaped decode speed


@dataclass(frozen=True)
class SpeedShape:
    prompt_tokens: int
    new_tokens: int
    batches: tuple[int, ...]
    repeats: int


def build_speed_models(setup: Setup) -> tuple[LlavaConfig, Llava, torch.nn.Module]:
    """Our `Llava` (7B, or tiny in the dry run) and `transformers.LlamaForCausalLM` with the same
    LLM weights, both built on the device in bfloat16."""
    import transformers

    from llava15.config import llava_v15_7b, tiny
    from llava15.infer.generate import optimize_for_cpu
    from llava15.model.llava import Llava

    config = tiny() if setup.dry_run else llava_v15_7b()
    text = config.text
    with default_dtype(torch.bfloat16), setup.device:
        ours = randomize(Llava(config).eval(), std=0.02, seed=0)
        hf_config = transformers.LlamaConfig(
            vocab_size=text.vocab_size, hidden_size=text.hidden_size, intermediate_size=text.intermediate_size,
            num_hidden_layers=text.num_hidden_layers, num_attention_heads=text.num_attention_heads,
            num_key_value_heads=text.num_key_value_heads, max_position_embeddings=text.max_position_embeddings,
            rms_norm_eps=text.rms_norm_eps, tie_word_embeddings=False,
            bos_token_id=text.bos_token_id, eos_token_id=text.eos_token_id, pad_token_id=text.pad_token_id)
        # 10000 in both; transformers 5 keeps it in `rope_parameters`
        theta = getattr(hf_config, "rope_theta", None) or (getattr(hf_config, "rope_parameters", None)
                                                          or {}).get("rope_theta")
        if theta != text.rope_theta:
            raise ValueError(f"rope_theta {text.rope_theta} is not transformers' default {theta}")
        hf = transformers.LlamaForCausalLM(hf_config).eval()
    hf.load_state_dict(ours.language_model.state_dict())  # our names are LlamaForCausalLM's
    optimize_for_cpu(ours)
    return config, ours, hf


def check_generation_speed(setup: Setup) -> Iterator[Row]:
    from llava15.infer.generate import SamplingParams, generate

    shape = SpeedShape(48, 16, (1, 2, 4), 1) if setup.dry_run else SpeedShape(600, 64, (1, 8, 32), 2)
    device = setup.device
    config, ours, hf = build_speed_models(setup)
    params = sum(p.numel() for p in ours.language_model.parameters())
    attention = getattr(hf.config, "_attn_implementation", "?")
    vocab = config.text.vocab_size

    def run_ours(prompts: list[list[int]], n: int) -> list[list[int]]:
        return generate(ours, prompts, None, SamplingParams(max_new_tokens=n), [], pad_token_id=0)

    def run_hf(ids: torch.Tensor, n: int) -> list[list[int]]:
        with torch.inference_mode():
            out = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                              min_new_tokens=n, max_new_tokens=n, eos_token_id=None, pad_token_id=0)
        return out[:, ids.shape[1]:].tolist()

    def best(fn: Callable[[int], list[list[int]]], n: int) -> tuple[float, list[list[int]]]:
        runs = [timed(device, lambda: fn(n)) for _ in range(shape.repeats)]
        return min(t for t, _ in runs), runs[-1][1]

    names = "abcdefgh"
    for k, batch in enumerate(shape.batches):
        if setup.left_s < KEEP_FOR_TRAINING_S:
            yield Row(f"2{names[k]} decode speed, batch {batch}",
                      f"not run: {setup.left_s:.0f} s of the budget left, kept for check 4", "-", "not run")
            continue
        g = torch.Generator().manual_seed(10 + batch)
        ids = torch.randint(3, vocab - 1, (batch, shape.prompt_tokens), generator=g)
        prompts = ids.tolist()
        ids = ids.to(device)
        run_ours(prompts, 8)  # warm-up
        run_hf(ids, 8)
        ours_1, _ = best(lambda n: run_ours(prompts, n), 1)
        ours_n, ours_tokens = best(lambda n: run_ours(prompts, n), shape.new_tokens)
        hf_1, _ = best(lambda n: run_hf(ids, n), 1)
        hf_n, hf_tokens = best(lambda n: run_hf(ids, n), shape.new_tokens)
        if any(len(t) != shape.new_tokens for t in ours_tokens + hf_tokens):
            raise RuntimeError(f"batch {batch}: expected {shape.new_tokens} new tokens per row, got "
                               f"ours {[len(t) for t in ours_tokens]}, transformers {[len(t) for t in hf_tokens]}")
        decoded = batch * (shape.new_tokens - 1)
        ours_rate, hf_rate = decoded / (ours_n - ours_1), decoded / (hf_n - hf_1)
        ratio = ours_rate / hf_rate
        agree = sum(a == b for a, b in zip(ours_tokens, hf_tokens))
        result = (f"ours {ours_rate:.1f} tok/s, transformers {hf_rate:.1f} tok/s: {ratio:.2f}x "
                  f"(prefill ours {ours_1 * 1e3:.0f} ms, transformers {hf_1 * 1e3:.0f} ms; "
                  f"same greedy tokens {agree}/{batch} rows)")
        if k == 0:
            result += (f"; {params / 1e6:,.1f}M-param LLM bf16, prompt {shape.prompt_tokens}, "
                       f"{shape.new_tokens} new, transformers attn={attention}")
        wanted = SPEED_TARGETS.get(batch) if not setup.dry_run else None
        if setup.dry_run:
            target, status = "GPU: >= 2x at batch 1, >= 1.5x at 32 (not judged on CPU)", "ok"
        elif wanted is None:
            target, status = "none (reported)", "ok"
        else:
            target, status = f">= {wanted:g}x transformers", judged(ratio >= wanted)
        yield Row(f"2{names[k]} decode speed, batch {batch}", result, target, status)


# --------------------------------------------------------------- 3. 8-bit / 4-bit loading


def sample_image() -> Image.Image:
    from PIL import Image

    image = Image.new("RGB", (96, 72), (240, 240, 240))
    image.paste((200, 30, 30), (20, 15, 60, 55))
    return image


def load_and_answer(llava_dir: Path, setup: Setup, **flags: bool) -> str:
    import llava15
    from llava15.model.int8 import Int8Linear

    device = setup.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    engine = llava15.load(str(llava_dir), device=str(device), **flags)
    model = engine.model
    kinds = {type(m).__name__ for m in model.language_model.model.layers.modules()}
    quantized = sum(isinstance(m, Int8Linear) or type(m).__name__ in ("Linear8bitLt", "Linear4bit")
                    for m in model.modules())
    if not quantized:
        raise RuntimeError(f"no quantized linears after loading with {flags} (decoder holds {sorted(kinds)})")
    weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    if device.type == "cuda":
        loaded = torch.cuda.memory_allocated(device) - before
    answer = engine.chat([("user", "What is in the image?")], images=[sample_image()], max_new_tokens=8)
    memory = f"weights {gib(weights)}"
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - before
        memory = f"GPU memory after load {gib(loaded)}, peak in chat {gib(peak)}"
    return f"answered {answer!r} ({quantized} quantized linears; {memory})"


def check_quantized_load(setup: Setup) -> Iterator[Row]:
    from llava15.checkpoint.placement import PlacementError

    on_gpu = setup.device.type == "cuda"
    names = ("3a --load-8bit load + chat", "3b --load-4bit load + chat")
    if on_gpu and importlib.util.find_spec("bitsandbytes") is None:
        for name in names:
            yield Row(name, "not run: bitsandbytes not installed", "answers", "not run")
        return
    make_checkpoint = sibling("make_checkpoint")
    written = make_checkpoint.write_checkpoint(make_checkpoint.SHAPES["tiny"], setup.tmp / "checkpoint",
                                               progress=False)
    result = load_and_answer(written.llava_dir, setup, load_8bit=True)
    note = "" if on_gpu else " (CPU int8 weights)"
    yield Row(names[0], result + note, "answers", "pass")
    if on_gpu:
        yield Row(names[1], load_and_answer(written.llava_dir, setup, load_4bit=True), "answers", "pass")
        return
    try:
        result = load_and_answer(written.llava_dir, setup, load_4bit=True)
    except PlacementError as refused:
        yield Row(names[1], f"not run on CPU (refused as it should be: {one_line(refused)})",
                  "GPU: answers", "not run")
    else:
        yield Row(names[1], f"loaded on the CPU although 4-bit is refused there: {result}",
                  "CPU: refused with PlacementError", "fail")


# ------------------------------------------------------------------- 4. training throughput


@dataclass(frozen=True)
class TrainShape:
    text: dict
    vision: dict
    image_config: dict
    steps: int
    global_batch: int
    micro_batch: int
    words: int  # per answer; ~4.5 tokens a word with the check's 512-piece tokenizer
    max_length: int
    processes: int
    workers: int
    warmup_steps: int  # left out of tokens/s


def train_shape(setup: Setup) -> TrainShape:
    if setup.dry_run:
        return TrainShape(
            text=dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512),
            vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                        image_size=28, patch_size=7),
            image_config=dict(shortest_edge=28, crop_size=(28, 28)),
            steps=3, global_batch=8, micro_batch=2, words=25, max_length=256, processes=2, workers=0,
            warmup_steps=1)
    processes = max(1, torch.cuda.device_count())
    return TrainShape(
        text=dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=4,
                  num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
        vision={},  # VisionConfig's defaults: CLIP ViT-L/14 at 336 px
        image_config={},  # openai/clip-vit-large-patch14-336's preprocessing
        steps=30, global_batch=16 * processes * 2, micro_batch=16, words=110, max_length=2048,
        processes=processes, workers=6, warmup_steps=5)


def word_list(text: str) -> list[str]:
    return sorted({w for w in re.findall(r"[a-z]{3,9}", text)})


def write_training_world(root: Path, shape: TrainShape, device: torch.device) -> tuple[list[str], int]:
    """Backbones (random, safetensors), a tokenizer, images and an official-format stage-2 JSON under
    `root`; returns the `llava15 train` flags that use them and the decoder-layer parameter count."""
    from llava15.config import TextConfig, VisionConfig
    from llava15.data.image import ImageProcessorConfig
    from llava15.model.clip import VisionTower
    from llava15.model.llama import LanguageModel
    from llava15.world.backbones import save_clip_dir, save_llm_dir
    from llava15.world.stage0 import train_tokenizer

    corpus_text = sibling("make_checkpoint").stdlib_text(256 * 2**10)
    corpus = root / "corpus.txt"
    corpus.write_text(corpus_text, encoding="utf-8")
    tokenizer = train_tokenizer(corpus, root / "tokenizer", 512)

    text, vision = TextConfig(**shape.text), VisionConfig(**shape.vision)
    with default_dtype(torch.bfloat16), device:
        llm = randomize(LanguageModel(text), std=0.02, seed=0)
        tower = randomize(VisionTower(vision), std=0.02, seed=1)
    layers = sum(p.numel() for p in llm.model.layers.parameters())
    save_llm_dir(llm.to("cpu"), tokenizer, root / "llm")
    save_clip_dir(tower.to("cpu"), ImageProcessorConfig(**shape.image_config), root / "clip")
    del llm, tower

    rng = random.Random(0)
    images = root / "images"
    images.mkdir()
    size = vision.image_size
    from PIL import Image

    names = []
    for i in range(8):
        image = Image.new("RGB", (size + 16 * i, size), tuple(rng.randrange(256) for _ in range(3)))
        image.paste(tuple(rng.randrange(256) for _ in range(3)), (size // 4, size // 4, size // 2, size // 2))
        names.append(f"{i}.png")
        image.save(images / names[-1])
    words = word_list(corpus_text)
    records = [{"id": f"s{i}", "image": names[i % len(names)], "conversations": [
        {"from": "human", "value": "<image>\nDescribe the image in detail."},
        {"from": "gpt", "value": " ".join(rng.choice(words) for _ in range(shape.words)) + "."}]}
        for i in range(shape.steps * shape.global_batch)]
    data = root / "finetune.json"
    data.write_text(json.dumps(records))
    flags = [f"--llm={root / 'llm'}", f"--vision-tower={root / 'clip'}", f"--data.path={data}",
             f"--image-folder={images}"]
    return flags, layers


def run_process_group(command: list[str], env: dict[str, str], log: Path,
                      timeout: float) -> tuple[int | None, str | None]:
    """Run `command` in a session of its own, output to `log`; past `timeout` seconds stop the
    whole group (torchrun's workers and their data-loader processes too, not only torchrun).
    Returns (exit status or None, why it was stopped or None)."""
    with open(log, "w") as sink:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            return process.wait(timeout=timeout), None
        except subprocess.TimeoutExpired:
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                with contextlib.suppress(ProcessLookupError):  # the group may be gone already
                    os.killpg(process.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=grace)
                    break
            return None, f"stopped at the {timeout:.0f} s budget"


def check_training(setup: Setup) -> Iterator[Row]:
    shape = train_shape(setup)
    root = setup.tmp / "train"
    root.mkdir()
    build_device = setup.device if setup.device.type == "cuda" else torch.device("cpu")
    flags, layer_params = write_training_world(root, shape, build_device)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    out = root / "run"
    gpu = setup.device.type == "cuda"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={shape.processes}", "-m", "llava15", "train", "--stage=finetune",
               *flags, f"--data.num_workers={shape.workers}", f"--model-max-length={shape.max_length}",
               f"--stage.global_batch_size={shape.global_batch}", f"--micro_batch_size={shape.micro_batch}",
               f"--max_steps={shape.steps}", "--save_steps=100000", "--seed=0", f"--out={out}",
               "--gradient_checkpointing=false", f"--device={'cuda' if gpu else 'cpu'}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if not gpu:
        command.append("--threads=1")
        env["OMP_NUM_THREADS"] = "1"
    timeout = max(30.0, setup.left_s - 5) if gpu else 150.0
    log = root / "train.log"
    start = time.monotonic()
    code, stopped = run_process_group(command, env, log, timeout)
    wall = time.monotonic() - start
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
               if line.strip()] if (out / "metrics.jsonl").is_file() else []
    if code not in (0, None) or len(metrics) < shape.steps:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        print("\n".join(lines[-25:]), file=sys.stderr)
        why = stopped or f"exit status {code}"
        last = lines[-1] if lines else "(no output)"
        raise RuntimeError(f"training {why} after {len(metrics)}/{shape.steps} steps: {last}")
    timed_rows = metrics[shape.warmup_steps:]
    tokens = sum(m["tokens"] for m in timed_rows)
    seconds = sum(m["seconds"] for m in timed_rows)
    rate = tokens / seconds
    losses = [m["loss"] for m in metrics]
    finite = all(math.isfinite(x) for x in losses)
    per_step = tokens / len(timed_rows)
    mode = (f"FSDP2 over {shape.processes} processes" if shape.processes > 1 else "1 process (no FSDP: one GPU)")
    result = (f"{rate:,.0f} tokens/s over steps {shape.warmup_steps + 1}-{shape.steps} "
              f"({per_step:,.0f} tokens/step = {per_step / shape.global_batch:,.0f} a sample, global batch "
              f"{shape.global_batch}, micro {shape.micro_batch}); "
              f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; {mode}, {'bf16' if gpu else 'float32 gloo'}, "
              f"no grad checkpointing; wall {wall:.0f} s incl. start-up and final save"
              + (f" ({stopped})" if stopped else ""))
    if gpu:
        device_name, peak = bf16_peak(setup.device)
        mfu = 6 * layer_params * rate / (shape.processes * peak * 1e12)
        result += (f"; MFU {mfu:.1%} = 6 x {layer_params / 1e9:.2f}B decoder-layer params x tokens/s / "
                   f"({shape.processes} x {peak:g} TFLOPS bf16 peak, {device_name})")
        yield Row("4 train stage 2, 7B-wide 4 layers", result, f"MFU >= {MFU_TARGET:.0%}",
                  judged(finite and mfu >= MFU_TARGET))
    else:
        yield Row("4 train stage 2, tiny 2 layers", result + "; MFU n/a on CPU",
                  f"GPU: MFU >= {MFU_TARGET:.0%}; dry run: {shape.steps} steps, finite loss",
                  judged(finite and len(metrics) == shape.steps))
    shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------------ main

CHECKS: dict[str, tuple[str, Callable[[Setup], Iterator[Row]]]] = {
    "1": ("1 CUDA vs CPU logits", check_logits),
    "2": ("2 decode speed 7B shape", check_generation_speed),
    "3": ("3 --load-8bit / --load-4bit", check_quantized_load),
    "4": ("4 train stage 2", check_training),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="every check at tiny shapes on the CPU")
    parser.add_argument("--only", default=",".join(CHECKS), help="comma-separated check numbers (default: all)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget for all checks")
    args = parser.parse_args(argv)
    wanted = [c.strip() for c in args.only.split(",") if c.strip()]
    if unknown := [c for c in wanted if c not in CHECKS]:
        parser.error(f"unknown checks {unknown}; choose from {', '.join(CHECKS)}")
    if not args.cpu_dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible (torch "
              f"{torch.__version__}); run with --cpu-dry-run for the CPU rehearsal", file=sys.stderr)
        return 2
    device = torch.device("cpu") if args.cpu_dry_run else torch.device("cuda", 0)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        setup = Setup(device, args.cpu_dry_run, Path(tmp), start + args.budget_s)
        rows: list[Row] = []
        for key in wanted:
            title, check = CHECKS[key]
            scratch = setup.tmp / f"check{key}"
            scratch.mkdir()
            rows += run_check(title, check, Setup(setup.device, setup.dry_run, scratch, setup.deadline))
            shutil.rmtree(scratch, ignore_errors=True)
        lines = header(setup)
    elapsed = time.monotonic() - start
    print("\n".join(lines))
    print(f"- total time: {elapsed:.0f} s\n")
    print(markdown(rows))
    return 0 if all(r.status in ("pass", "ok", "not run") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
