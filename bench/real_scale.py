"""LLaVA-1.5 at its real size on this CPU: our engine (bfloat16, int8) beside transformers (bfloat16).

Measured 2026-12-07 20:30 on the dev box, the random-weight 7B of `bench/make_checkpoint.py`
(torch 2.13 CPU, transformers 4.57.6, 2 threads; the CPU is an "AMD EPYC" that reports avx512_bf16,
so oneDNN multiplies bfloat16 natively). Nothing else was running: the load
average was 0.64 at the start and about 2 during the run (this run's own 2 threads). Bandwidth
31.5 / 32.3 GB/s. Wall time 294 s (conversion cached: it took 51 s, the .bin shards in the page
cache). Batch 1 = the image prompt, 633 tokens; batch 8 = 8 text prompts of 42-44 tokens.

| case | load s | peak RSS after load GB | peak RSS after gen GB | TTFT s (b1, image) | decode b1 tok/s (bound) | decode b8 tok/s (bound) | weights read/step GB |
|---|---|---|---|---|---|---|---|
| ours-bf16 | 29.0 | 14.71 | 14.99 | 24.42 | 1.22 (2.44) | 7.91 (19.55) | 13.21 |
| ours-int8 | 28.9 | 8.25 | 8.58 | 31.72 | 1.94 (4.79) | 8.57 (38.31) | 6.74 |
| transformers-bf16 | 6.8 | 0.42 | 14.99 | 25.07 | 0.84 (2.44) | 6.28 (19.55) | 13.22 |

Targets: ours-bf16 peak RSS 14.99 GB <= 15 GB met (by 0.01 GB); decode 1.22 tok/s >= 1.5 MISSED;
TTFT 25.07 / 24.42 = 1.0x transformers, >= 3x MISSED. The batch-1 greedy tokens of all three
cases are identical. Notes:
- transformers' bfloat16 prefill is not slow on this CPU: native bfloat16 products. Widening
  bfloat16 weights to float32 for many rows, which AVX2 CPUs need, loses here: a run that did so
  on this CPU (load average 1.0 rising to 3-5 from other jobs) gave
  ours-bf16 TTFT 138 s, decode 0.45 tok/s, b8 2.21 tok/s; ours-int8 TTFT 80 s, 2.11 / 8.32 tok/s
  (load 279 s, cold page cache); transformers 25.5 s, 0.76 / 5.99 tok/s.
- transformers' "load" memory-maps the safetensors: its weights are read inside the first
  forward, i.e. inside its TTFT (RSS after load 0.42 GB). Ours reads and converts (fp16 -> bf16)
  in its load.
- Decode is half the bandwidth bound: one bfloat16 decode step (1.02 s, `--profile-decode`) is
  92% `aten::mm` at 1 row (gate/up 401 ms, q/k/v 231, down 208, o 78, lm_head 17 ms), i.e. about
  14 GB/s through the bfloat16 GEMV against 32 GB/s for a float32 sum. An int8 step is 0.34 s
  (`_weight_int8pack_mm` 294 ms, ~22 GB/s); after the 633-token image prompt the measured batch-1
  rate is 0.51 s/token.
This machine's speed varies up to 3x with load: compare figures of one run only.

One run, on the same weights and the same question: a 336 x 336 image (576 image tokens) and the
POPE-style question "Is there a dog in the image?\\nAnswer the question using a single word or
phrase." in the llava_v1 template. Each case runs in a fresh subprocess (only one 7B model fits in
memory at a time):

- `ours-bf16`: `llava15.load(DIR, device="cpu", dtype="bfloat16")` (bfloat16 weights; on CPUs
  without native bfloat16, many-row products such as the prefill widen one layer's weight to
  float32 at a time, see `llava15.model.linear`);
- `ours-int8`: the same with `load_8bit=True` (decoder linears int8 with per-row scales);
- `transformers-bf16`: `LlavaForConditionalGeneration.from_pretrained(HFDIR, torch_dtype=bfloat16,
  low_cpu_mem_usage=True)`, where HFDIR is written once by `llava15 convert --dtype bfloat16` (kept
  in `--hf-dir` and reused; the seconds the conversion took are stored beside it and printed).

Every case gets exactly the same inputs, prepared once in the parent through the library's own
preprocessing (`tokenizer_image_token` + `expand_image_tokens`, `process_images`; our children
check that their engine produces the same ids and pixels): the expanded ids (the image token
replaced by the converted config's image token id for transformers) and the pixel values in
bfloat16. Greedy, EOS disabled (random weights emit EOS at random): exactly the requested number
of new tokens. Per case:

- load seconds; peak RSS (VmHWM, GB = 1e9 bytes) after loading and after all generation;
- TTFT: seconds from the call to the first new token, batch 1, the image prompt (vision tower,
  projector, prefill of ~640 positions, first token). transformers' TTFT and per-token times come
  from one `generate` call: a `LogitsProcessor` records `time.perf_counter()` at each call (the
  first call is right after the prefill), so its very slow bfloat16 prefill runs once;
- decode tokens/s at batch 1: `--new-tokens` new tokens after the image prompt, (N - 1) / the
  time from the first token to the last;
- decode tokens/s at batch 8: 8 new tokens for each of 8 SHORT TEXT-ONLY prompts (~40 tokens, no
  image) in every case (transformers' bfloat16 prefill of 8 image prompts would take far longer
  than the time budget), 8 x 7 / the time from the first step's tokens to the last's;
- beside each decode figure, the memory-bandwidth bound: the bandwidth measured in this run (sum
  of a 2 GB float32 tensor, best of 3, before and after the cases; the better one is used) divided
  by the bytes of weights one decode step reads (the language model's parameters less the input
  embedding: ~13.2 GB in bfloat16, ~7 GB in int8); at batch 8 one step gives 8 tokens, so its
  bound is 8x that.

Before the measurements each case runs one warm-up generation on a short text prompt (2 new
tokens), the same for all. A case that runs past `--case-timeout` seconds is killed and reports
what it measured until then.

    .venv/bin/python bench/real_scale.py --model /work/ckpt7b/llava-v1.5-7b \\
        --hf-dir /work/ckpt7b/llava-v1.5-7b-hf [--cases ours-bf16,ours-int8,transformers-bf16] \\
        [--new-tokens 16] [--threads N] [--json PATH] [--case-timeout 1500]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("ours-bf16", "ours-int8", "transformers-bf16")
QUESTION = "Is there a dog in the image?\nAnswer the question using a single word or phrase."
# batch 8: short text-only POPE-style questions, the same for every case
# (about 43 tokens each with the llava_v1 system prompt and roles)
BATCH_QUESTIONS = [f"Is there a {thing} in the image?"
                   for thing in ("dog", "cat", "cup", "book", "phone", "lamp", "bowl", "clock")]
WARMUP_QUESTION = "Hello"
CONV_MODE = "llava_v1"
IMAGE_SIZE = (336, 336)
BATCH = 8
BATCH_NEW_TOKENS = 8
EVENT = "REAL_SCALE "  # prefix of the child's result lines on stdout
GB = 1e9
TARGETS = {"rss_gb": 15.0, "decode_tok_s": 1.5, "ttft_speedup": 3.0}


# ------------------------------------------------------------------------------- measurements


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM). Not `getrusage`'s ru_maxrss: Linux carries the
    parent's resident size into a child's ru_maxrss across exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM")


def current_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmRSS")


def memory_bandwidth(gb: float = 2.0, repeats: int = 3) -> float:
    """GB/s of summing a `gb` GB float32 tensor, best of `repeats` (after one untimed pass)."""
    import torch

    x = torch.ones(int(gb * GB) // 4)
    x.sum()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - start)
    del x
    return gb / best


def decode_rate(times: list[float], tokens_per_step: int = 1) -> float | None:
    """Tokens/s between the first step and the last: `times` are the moments each step's tokens
    were ready (step 0 = right after the prefill)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return tokens_per_step * (len(times) - 1) / (times[-1] - times[0])


def summarize(raw: dict, bandwidth: float | None) -> dict:
    """A case's figures from the raw events its child reported (partial ones too)."""
    row = {"case": raw["case"]}
    row["load_s"] = raw.get("load_s")
    row["rss_after_load_gb"] = raw["peak_after_load"] / GB if "peak_after_load" in raw else None
    row["rss_after_gen_gb"] = raw["peak_after_gen"] / GB if "peak_after_gen" in raw else None
    b1 = raw.get("b1_times") or []
    row["ttft_s"] = b1[0] if b1 else None
    row["b1_tokens"] = len(b1)
    row["decode_b1_tok_s"] = decode_rate(b1)
    b8 = raw.get("b8_times") or []
    row["b8_steps"] = len(b8)
    row["decode_b8_tok_s"] = decode_rate(b8, BATCH)
    weight_bytes = raw.get("decode_weight_bytes")
    row["decode_weight_gb"] = weight_bytes / GB if weight_bytes else None
    bound = bandwidth / row["decode_weight_gb"] if bandwidth and weight_bytes else None
    row["bound_b1_tok_s"] = bound
    row["bound_b8_tok_s"] = BATCH * bound if bound else None
    for key in ("b1_token_ids", "b8_tokens_per_row", "prompt_tokens", "batch_prompt_tokens",
                "placement", "error", "timed_out", "profile"):
        if key in raw:
            row[key] = raw[key]
    return row


# ------------------------------------------------------------------------------------- inputs


def prepare_inputs(model_dir: Path) -> dict:
    """The prompts and pixels every case gets, through the library's preprocessing (what
    `Engine.encode` and `Engine.pixel_values` do) without loading any weight."""
    import torch
    from PIL import Image

    from llava15.checkpoint.configs import read_llava_config
    from llava15.checkpoint.load import _image_processor
    from llava15.data.conversation import get_template, render_prompt
    from llava15.data.image import process_images
    from llava15.data.tokenizer import expand_image_tokens, load_tokenizer, tokenizer_image_token

    config, info = read_llava_config(model_dir)
    processor_dir = info.vision_tower_dir if info.format == "official" else model_dir
    image_config, _ = _image_processor(processor_dir, config)
    tokenizer = load_tokenizer(model_dir)
    template = get_template(CONV_MODE)
    index = config.image_token_index

    def ids(text: str) -> list[int]:
        prompt = render_prompt(template, [("user", text), ("assistant", None)])
        return expand_image_tokens(tokenizer_image_token(prompt, tokenizer, index), None, index,
                                   config.num_image_tokens)[0]

    image = test_image()
    pixels = process_images([image], image_config, config.image_aspect_ratio)
    return {"image_ids": ids("<image>\n" + QUESTION), "batch_ids": [ids(q) for q in BATCH_QUESTIONS],
            "warmup_ids": ids(WARMUP_QUESTION), "pixel_values": pixels.to(torch.bfloat16),
            "image_token_index": index, "num_image_tokens": config.num_image_tokens,
            "pad_token_id": tokenizer.pad_token_id or 0}


def test_image():
    """A deterministic 336 x 336 RGB picture (a gradient with a few shapes)."""
    import numpy as np
    from PIL import Image, ImageDraw

    h, w = IMAGE_SIZE[1], IMAGE_SIZE[0]
    y, x = np.mgrid[0:h, 0:w]
    array = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1).astype(np.uint8)
    image = Image.fromarray(array, "RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 80, 200, 220), fill=(200, 120, 40))
    draw.rectangle((210, 40, 300, 300), fill=(30, 90, 160))
    return image


# --------------------------------------------------------------------------------- the child


def emit(**fields) -> None:
    print(EVENT + json.dumps(fields), flush=True)


def decode_weight_bytes(model, skip=("vision_tower", "projector", "embed_tokens")) -> int:
    """Bytes of the tensors one decode step reads: the language model's parameters and buffers
    (int8 weights and their scales), less the vision side and the input embedding (one row read).
    Each storage counts once: the engine's fused q/k/v and gate/up weights leave the separate
    projections as views into them."""
    storages = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if any(s in name for s in skip) or "rotary" in name:
            continue
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def run_ours(case: str, spec: dict, inputs: dict) -> None:
    import torch

    import llava15
    from llava15.infer.generate import SamplingParams, generate_tokens

    start = time.perf_counter()
    engine = llava15.load(spec["model"], device="cpu", dtype="bfloat16", load_8bit=case == "ours-int8",
                          conv_mode=CONV_MODE)
    emit(load_s=time.perf_counter() - start, peak_after_load=peak_rss_bytes(),
         rss_after_load=current_rss_bytes(), decode_weight_bytes=decode_weight_bytes(engine.model),
         placement=str(next(engine.model.language_model.parameters()).dtype))
    # the engine's own preprocessing gives the parent's inputs
    prompt = engine.build_prompt([("user", "<image>\n" + QUESTION)])
    assert engine.encode(prompt) == inputs["image_ids"], "engine ids differ from the prepared ones"
    pixels = engine.pixel_values([test_image()])
    assert torch.equal(pixels.to(torch.bfloat16), inputs["pixel_values"]), "engine pixels differ"
    model, n = engine.model, spec["new_tokens"]

    def timed(prompts, pixel_values, new_tokens, key, per_step):
        times, tokens = [], [[] for _ in prompts]
        started = time.perf_counter()
        for row, token in generate_tokens(model, prompts, pixel_values, SamplingParams(max_new_tokens=new_tokens),
                                          eos_token_ids=[], pad_token_id=inputs["pad_token_id"]):
            tokens[row].append(token)
            if sum(map(len, tokens)) % per_step == 0:
                times.append(time.perf_counter() - started)
                if key:
                    emit(**{key: times})
        return tokens

    timed([inputs["warmup_ids"]], None, 2, None, 1)
    tokens = timed([inputs["image_ids"]], pixels, n, "b1_times", 1)
    emit(b1_token_ids=tokens[0], prompt_tokens=len(inputs["image_ids"]))
    tokens = timed(inputs["batch_ids"], None, BATCH_NEW_TOKENS, "b8_times", BATCH)
    emit(b8_tokens_per_row=[len(t) for t in tokens], batch_prompt_tokens=[len(p) for p in inputs["batch_ids"]])
    emit(peak_after_gen=peak_rss_bytes())
    if spec.get("profile"):
        emit(profile=profile_decode(model, inputs))


def profile_decode(model, inputs: dict, top: int = 12) -> list[dict]:
    """Batch-1 decode steps after a short text prompt (a step reads every weight whatever the
    context: the weights dominate): one timed plainly, one under `torch.profiler`; returns the
    times and the ops (with their input shapes) that took the most self CPU time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from llava15.infer.generate import prefill

    with torch.inference_mode():
        state = prefill(model, [inputs["warmup_ids"]], None, None, inputs["pad_token_id"], 4)
        token, mask, times = state.logits.argmax(-1)[:, None], state.attention_mask, []
        prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
        for profiled in (False, False, True):
            mask = torch.cat([mask, mask.new_ones((1, 1))], 1)
            with prof if profiled else contextlib.nullcontext():
                started = time.perf_counter()
                model.decode(token, mask, state.cache)
                times.append(time.perf_counter() - started)
            state.cache.length += 1
    events = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    return [{"step_s": times[1], "profiled_step_s": times[2]}] + [
        {"op": e.key, "shapes": str(e.input_shapes)[:120], "calls": e.count,
         "self_ms": round(e.self_cpu_time_total / 1000, 2)} for e in events[:top]]


def run_transformers(spec: dict, inputs: dict) -> None:
    import torch
    from transformers import LlavaForConditionalGeneration, LogitsProcessor, LogitsProcessorList

    start = time.perf_counter()
    model = LlavaForConditionalGeneration.from_pretrained(spec["hf_dir"], torch_dtype=torch.bfloat16,
                                                          low_cpu_mem_usage=True).eval()
    emit(load_s=time.perf_counter() - start, peak_after_load=peak_rss_bytes(),
         rss_after_load=current_rss_bytes(),
         decode_weight_bytes=decode_weight_bytes(model, ("vision_tower", "multi_modal_projector", "embed_tokens")),
         placement=str(next(model.parameters()).dtype))
    image_id = model.config.image_token_index
    ours_id = inputs["image_token_index"]
    pad = model.generation_config.pad_token_id
    pad = inputs["pad_token_id"] if pad is None else pad

    class Clock(LogitsProcessor):
        def __init__(self, key, started):
            self.key, self.started, self.times = key, started, []

        def __call__(self, input_ids, scores):
            self.times.append(time.perf_counter() - self.started)
            if self.key:
                emit(**{self.key: self.times})
            return scores

    def timed(prompts, pixel_values, new_tokens, key):
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p):] = torch.tensor([image_id if t == ours_id else t for t in p])
            mask[r, width - len(p):] = 1
        extra = {} if pixel_values is None else {"pixel_values": pixel_values}
        clock = Clock(key, time.perf_counter())
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, pad_token_id=pad,
                                 logits_processor=LogitsProcessorList([clock]), **extra)
        return out[:, width:].tolist()

    timed([inputs["warmup_ids"]], None, 2, None)
    tokens = timed([inputs["image_ids"]], inputs["pixel_values"], spec["new_tokens"], "b1_times")
    emit(b1_token_ids=tokens[0], prompt_tokens=len(inputs["image_ids"]))
    tokens = timed(inputs["batch_ids"], None, BATCH_NEW_TOKENS, "b8_times")
    emit(b8_tokens_per_row=[len(t) for t in tokens], batch_prompt_tokens=[len(p) for p in inputs["batch_ids"]])
    emit(peak_after_gen=peak_rss_bytes())


def child(case: str, spec_path: str) -> None:
    import torch

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    inputs = torch.load(spec["inputs"], weights_only=True)
    emit(rss_start=current_rss_bytes(), threads=torch.get_num_threads())
    if case.startswith("ours-"):
        run_ours(case, spec, inputs)
    else:
        run_transformers(spec, inputs)
    emit(done=True)


# -------------------------------------------------------------------------------- the parent


def run_case(case: str, spec_path: Path, timeout: float, log) -> dict:
    """Run `case` in a fresh interpreter; merge its events (the latest value of each field)."""
    raw: dict = {"case": case}
    proc = subprocess.Popen([sys.executable, __file__, "--child", case, "--spec", str(spec_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    stderr: list[str] = []
    drain = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
    drain.start()

    def read() -> None:
        for line in proc.stdout:
            if line.startswith(EVENT):
                event = json.loads(line[len(EVENT):])
                raw.update(event)
                log(case, event)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        proc.kill()  # our own child, by its handle
        raw["timed_out"] = True
        reader.join(30)
    proc.wait()
    drain.join(5)
    if proc.returncode != 0 and not raw.get("timed_out"):
        raw["error"] = f"exit {proc.returncode}: " + "".join(stderr)[-2000:]
    return raw


def ensure_hf_dir(model: Path, hf_dir: Path) -> dict:
    """Convert `model` into `hf_dir` (llava-hf layout, bfloat16) unless it is already there.
    Returns {"convert_s": seconds the conversion took (now or when it was made), "cached": bool}."""
    record = hf_dir / "real_scale_convert.json"
    if (hf_dir / "config.json").is_file():
        info = json.loads(record.read_text()) if record.is_file() else {}
        return {"convert_s": info.get("convert_s"), "cached": True}
    partial = hf_dir.with_name(hf_dir.name + ".partial")
    if partial.exists():
        import shutil
        shutil.rmtree(partial)
    started = time.perf_counter()
    # 1 GiB shards: safetensors copies a shard to bytes before writing, so the peak is the model
    # plus one shard (the default 5 GiB brings a 7B conversion near 20 GB)
    subprocess.run([sys.executable, "-m", "llava15", "convert", "--model", str(model), "--out", str(partial),
                    "--dtype", "bfloat16", "--max-shard-gb", "1"], check=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    (partial / "real_scale_convert.json").write_text(json.dumps({"convert_s": seconds, "model": str(model)}))
    partial.rename(hf_dir)
    return {"convert_s": seconds, "cached": False}


def cpu_info() -> str:
    """The CPU's model name and whether oneDNN multiplies bfloat16 natively on it (AVX512-BF16 or
    AMX): that decides how fast a bfloat16 prefill can be, ours and transformers' alike."""
    import torch

    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return f"{name}, {'native' if native else 'no native'} bfloat16 (oneDNN)"


def fmt(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> list[str]:
    lines = ["| case | load s | peak RSS after load GB | peak RSS after gen GB | TTFT s (b1, image) | "
             "decode b1 tok/s (bound) | decode b8 tok/s (bound) | weights read/step GB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        note = " (timed out)" if r.get("timed_out") else " (failed)" if r.get("error") else ""
        lines.append(
            f"| {r['case']}{note} | {fmt(r['load_s'], 1)} | {fmt(r['rss_after_load_gb'])} | "
            f"{fmt(r['rss_after_gen_gb'])} | {fmt(r['ttft_s'])} | "
            f"{fmt(r['decode_b1_tok_s'])} ({fmt(r['bound_b1_tok_s'])}) | "
            f"{fmt(r['decode_b8_tok_s'])} ({fmt(r['bound_b8_tok_s'])}) | {fmt(r['decode_weight_gb'])} |")
    return lines


def target_lines(rows: list[dict]) -> list[str]:
    by = {r["case"]: r for r in rows}
    ours, hf = by.get("ours-bf16"), by.get("transformers-bf16")
    lines = []

    def verdict(ok):
        return "n/a" if ok is None else "met" if ok else "MISSED"

    if ours:
        rss = max([v for v in (ours["rss_after_load_gb"], ours["rss_after_gen_gb"]) if v is not None], default=None)
        lines.append(f"- ours-bf16 peak RSS {fmt(rss)} GB, target <= {TARGETS['rss_gb']:.0f} GB: "
                     f"{verdict(None if rss is None else rss <= TARGETS['rss_gb'])}")
        rate = ours["decode_b1_tok_s"]
        lines.append(f"- ours-bf16 decode at batch 1 {fmt(rate)} tok/s, target >= {TARGETS['decode_tok_s']} tok/s: "
                     f"{verdict(None if rate is None else rate >= TARGETS['decode_tok_s'])}")
    if ours and hf:
        if ours["ttft_s"] and hf["ttft_s"]:
            speedup = hf["ttft_s"] / ours["ttft_s"]
            lines.append(f"- TTFT: transformers-bf16 {fmt(hf['ttft_s'])} s / ours-bf16 {fmt(ours['ttft_s'])} s = "
                         f"{speedup:.1f}x, target >= {TARGETS['ttft_speedup']:.0f}x: "
                         f"{verdict(speedup >= TARGETS['ttft_speedup'])}")
        elif ours["ttft_s"] and hf.get("timed_out") and hf.get("load_s") is not None:
            lines.append(f"- TTFT: transformers-bf16 produced no token before the case timeout; ours-bf16 "
                         f"{fmt(ours['ttft_s'])} s")
        if ours.get("b1_token_ids") and hf.get("b1_token_ids"):
            same = ours["b1_token_ids"] == hf["b1_token_ids"]
            lines.append("- batch-1 greedy tokens, ours-bf16 vs transformers-bf16: "
                         + ("identical" if same else "differ"))
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="official LLaVA-1.5 checkpoint directory")
    parser.add_argument("--hf-dir", type=Path, default=None,
                        help="llava-hf copy for transformers (written by `llava15 convert` when missing); "
                             "default: MODEL-hf beside MODEL")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--case-timeout", type=float, default=1500.0, help="seconds per case, load included")
    parser.add_argument("--bandwidth-gb", type=float, default=2.0, help="size of the summed tensor")
    parser.add_argument("--profile-decode", action="store_true",
                        help="ours-*: profile one batch-1 decode step and print the top ops")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.spec)
        return {}
    if args.model is None:
        parser.error("--model is required")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {list(CASES)}")
    if args.new_tokens < 2:
        parser.error("--new-tokens must be >= 2 (a decode rate needs two tokens)")

    import tempfile

    import torch

    torch.set_num_threads(args.threads)
    run_started = time.perf_counter()
    load_before = os.getloadavg()
    hf_dir = args.hf_dir or args.model.with_name(args.model.name + "-hf")
    conversion = None
    if "transformers-bf16" in cases:
        conversion = ensure_hf_dir(args.model, hf_dir)
        print(f"llava-hf copy {hf_dir}: " + (f"cached (converted earlier in {fmt(conversion['convert_s'], 0)} s)"
              if conversion["cached"] else f"converted in {conversion['convert_s']:.0f} s"), flush=True)
    bandwidths = [memory_bandwidth(args.bandwidth_gb)]
    print(f"memory bandwidth (sum of {args.bandwidth_gb:g} GB float32, best of 3): {bandwidths[0]:.1f} GB/s",
          flush=True)

    def log(case, event):
        shown = {k: (f"{v[-1]:.2f}s #{len(v)}" if k.endswith("_times") else v) for k, v in event.items()
                 if k not in ("profile",)}
        if shown:
            print(f"  [{case}] {shown}", flush=True)
        for line in event.get("profile") or []:
            print(f"  [{case}] profile {line}", flush=True)

    raws = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs_path, spec_path = Path(tmp) / "inputs.pt", Path(tmp) / "spec.json"
        inputs = prepare_inputs(args.model)
        torch.save(inputs, inputs_path)
        spec_path.write_text(json.dumps({"model": str(args.model), "hf_dir": str(hf_dir), "threads": args.threads,
                                         "new_tokens": args.new_tokens, "inputs": str(inputs_path),
                                         "profile": args.profile_decode}))
        for case in cases:
            print(f"{case}: running (timeout {args.case_timeout:.0f} s)", flush=True)
            started = time.perf_counter()
            raw = run_case(case, spec_path, args.case_timeout, log)
            raw["wall_s"] = time.perf_counter() - started
            raws.append(raw)
    bandwidths.append(memory_bandwidth(args.bandwidth_gb))
    bandwidth = max(bandwidths)
    rows = [summarize(raw, bandwidth) | {"wall_s": raw["wall_s"]} for raw in raws]
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "threads": args.threads, "cpu_count": os.cpu_count(),
        "cpu": cpu_info(), "torch": torch.__version__,
        "model": str(args.model), "hf_dir": str(hf_dir) if "transformers-bf16" in cases else None,
        "conversion": conversion, "new_tokens": args.new_tokens, "image_tokens": inputs["num_image_tokens"],
        "prompt_tokens": len(inputs["image_ids"]), "batch_prompt_tokens": [len(p) for p in inputs["batch_ids"]],
        "batch": BATCH, "batch_new_tokens": BATCH_NEW_TOKENS,
        "bandwidth_gb_s": bandwidth, "bandwidth_runs_gb_s": bandwidths,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "wall_s": time.perf_counter() - run_started, "rows": rows,
    }
    image_tokens = result["image_tokens"]
    loads = ["/".join(f"{x:.2f}" for x in avg) for avg in (load_before, result["loadavg_after"])]
    lines = ["", f"{result['cpu']}, torch {torch.__version__}; {args.threads} threads; bandwidth "
             f"{bandwidth:.1f} GB/s (runs: " + ", ".join(f"{b:.1f}" for b in bandwidths)
             + f"); load average before {loads[0]}, after {loads[1]}",
             f"batch 1: the image prompt ({rows[0].get('prompt_tokens', '?')} tokens, {image_tokens} image positions), "
             f"{args.new_tokens} new tokens; batch 8: {BATCH} text-only prompts of "
             f"{rows[0].get('batch_prompt_tokens', '?')} tokens, {BATCH_NEW_TOKENS} new tokens each (every case); "
             "bound = bandwidth / weights read per step (x8 at batch 8)", ""]
    lines += table(rows) + [""] + target_lines(rows)
    for r in rows:
        if r.get("error"):
            lines.append(f"- {r['case']} failed: {r['error'][-600:]}")
    lines.append(f"run wall time {result['wall_s']:.0f} s")
    print("\n".join(lines), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
