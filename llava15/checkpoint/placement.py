"""Where a model runs and in what precision: device, dtype and quantization, decided (and
refused, with the reason) before any weight is read.

Defaults follow the official builder where it runs, and the hardware people have elsewhere:
- CUDA: float16, as the official `load_pretrained_model`;
- CPU: float32 when the weights fit in the memory available, otherwise bfloat16 weights (said in
  one log line). Half-precision weights on the CPU compute many-row products (prefill, the
  vision tower's 577 rows an image) in float32, one layer's weight widened at a time
  (`llava15.model.linear`), so they cost memory bandwidth only where it is the bound.
The vision tower and projector take the language model's dtype, as in the official builder.

`--load-8bit` / `--load-4bit` quantize the language model's decoder linears only (the vision
tower, the projector, the embeddings and `lm_head` stay in their dtype, as the official builder
and transformers' bitsandbytes integration leave them): on CUDA through `bitsandbytes` (LLM.int8,
and nf4 with double quantization and float16 compute), on the CPU as int8 with per-row scales
(`llava15.model.int8`). There is no fast 4-bit path for the CPU, so it is refused there.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from llava15.model.llama import DecoderLayer

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
HEADROOM = 1.10  # weights x this, plus RESERVE, must fit: activations, KV cache, the runtime
RESERVE = 1 << 30
GB = 1e9


class PlacementError(ValueError):
    """A device, dtype or quantization that cannot run here; the message is one line that says
    why and, where one exists, which flag would work."""


@dataclass(frozen=True)
class Placement:
    """How a model is laid out. `dtype` is the language model's (its activations too; quantized
    layers compute in it); `vision_dtype` the vision tower's and projector's; `quantization` is
    None, "int8" or "nf4"."""

    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    vision_dtype: torch.dtype = torch.float32
    quantization: str | None = None

    @property
    def uses_bitsandbytes(self) -> bool:
        return self.quantization is not None and self.device.type == "cuda"

    def describe(self) -> str:
        quant = f", LLM linears {self.quantization}" if self.quantization else ""
        return f"{self.device}, LLM {dtype_name(self.dtype)}{quant}, vision {dtype_name(self.vision_dtype)}"


@dataclass(frozen=True)
class PlacementRequest:
    """What a user asked for (`--device`, `--dtype`, `--load-8bit`, `--load-4bit`); None means
    the default. `resolve` turns it into a `Placement` once the model's size is known."""

    device: str | torch.device | None = None
    dtype: str | torch.dtype | None = None
    load_8bit: bool = False
    load_4bit: bool = False

    def check(self) -> None:
        """Refuse, before anything is read, what is wrong whatever the model's size."""
        check_flags(self.device, self.dtype, self.load_8bit, self.load_4bit)

    def resolve(self, counts: "ParamCounts", source: str = "the model",
                available: int | None = None) -> Placement:
        return resolve_placement(counts, device=self.device, dtype=self.dtype, load_8bit=self.load_8bit,
                                 load_4bit=self.load_4bit, available=available, source=source)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise PlacementError(f"unknown dtype {dtype!r} (choose float32, float16 or bfloat16)")
    return DTYPES[dtype]


@dataclass(frozen=True)
class ParamCounts:
    """Parameters of a model by how they are stored: the decoder's linear weights (what
    quantization touches, with their output rows for the scales), the rest of the language
    model, and the vision tower with the projector."""

    llm_linear: int
    llm_linear_rows: int
    llm_other: int
    vision: int

    @classmethod
    def of(cls, model: nn.Module) -> "ParamCounts":
        """Counted on any model, a meta one included (nothing is allocated)."""
        linear = rows = other = vision = 0
        for name, module in model.named_modules():
            if name.startswith("language_model.") and isinstance(module, DecoderLayer):
                for sub in module.modules():
                    if isinstance(sub, nn.Linear):
                        linear += sub.weight.numel()
                        rows += sub.out_features
        for name, p in model.named_parameters():
            if name.startswith("language_model."):
                other += p.numel()
            else:
                vision += p.numel()
        return cls(linear, rows, other - linear, vision)

    def bytes(self, dtype: torch.dtype, vision_dtype: torch.dtype, quantization: str | None) -> int:
        size = torch.empty((), dtype=dtype).element_size()
        if quantization == "int8":
            llm = self.llm_linear + 4 * self.llm_linear_rows  # int8 + a float32 scale per row
        elif quantization == "nf4":
            llm = self.llm_linear // 2 + 4 * (self.llm_linear // 64)  # 4 bits + block statistics
        else:
            llm = self.llm_linear * size
        vision = self.vision * torch.empty((), dtype=vision_dtype).element_size()
        return llm + self.llm_other * size + vision


def available_memory(device: torch.device) -> int:
    """Bytes free for weights on `device`: CUDA's free memory, or the host's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():  # Linux: what the kernel can hand out without swapping
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")  # elsewhere: physical memory


def resolve_device(device: str | torch.device | None) -> tuple[torch.device, tuple[torch.device, ...] | None]:
    """"auto"/None: the first visible GPU, else the CPU. Returns the device and, for "auto" with
    several GPUs visible, their list (the model still runs on the first)."""
    name = str(device) if device is not None else "auto"
    if name == "auto":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return torch.device("cpu"), None
        gpus = tuple(torch.device("cuda", i) for i in range(count))
        return gpus[0], gpus if count > 1 else None
    try:
        resolved = torch.device(name)
    except RuntimeError as e:
        raise PlacementError(f"--device {name}: not a device (choose cpu, cuda, cuda:N or auto)") from e
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise PlacementError(f"--device {name}: no CUDA GPU is visible to this torch "
                                 f"({torch.__version__}); use --device cpu")
        index = resolved.index if resolved.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise PlacementError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) are visible")
        return torch.device("cuda", index), None
    if resolved.type != "cpu":
        raise PlacementError(f"--device {name}: unsupported device type {resolved.type!r} (cpu or cuda)")
    return resolved, None


def check_flags(device: str | torch.device | None, dtype: str | torch.dtype | None, load_8bit: bool,
                load_4bit: bool) -> tuple[torch.device, tuple[torch.device, ...] | None, str | None,
                                          torch.dtype | None]:
    """The checks that need no model: the device exists, the flags go together, bitsandbytes is
    there when needed. Returns (device, the GPUs "auto" saw, quantization, dtype or None)."""
    if load_8bit and load_4bit:
        raise PlacementError("--load-8bit and --load-4bit exclude each other: choose one")
    main, spread = resolve_device(device)
    quantization = "int8" if load_8bit else "nf4" if load_4bit else None
    chosen = parse_dtype(dtype)
    on_gpu = main.type == "cuda"
    if quantization and on_gpu and importlib.util.find_spec("bitsandbytes") is None:
        raise PlacementError(f"--load-{'8' if load_8bit else '4'}bit on {main} needs bitsandbytes, which "
                             "is not installed: pip install bitsandbytes (or run without the flag)")
    if quantization == "nf4" and not on_gpu:
        raise PlacementError("--load-4bit has no fast path on the CPU (4-bit kernels here are slower "
                             "than bfloat16); use --load-8bit (int8 weights) or --dtype bfloat16")
    if quantization and on_gpu and chosen not in (None, torch.float16):
        raise PlacementError(f"--load-{'8' if load_8bit else '4'}bit on CUDA computes in float16, as "
                             f"the official builder; drop --dtype {dtype_name(chosen)}")
    return main, spread, quantization, chosen


def resolve_placement(counts: ParamCounts, *, device: str | torch.device | None = None,
                      dtype: str | torch.dtype | None = None, load_8bit: bool = False,
                      load_4bit: bool = False, available: int | None = None,
                      source: str = "the model") -> Placement:
    """The placement for a model of `counts` parameters; ValueError (one line, with the flag
    that would work) when the choice cannot run here. `available` overrides the measured free
    memory (bytes; for tests)."""
    main, spread, quantization, chosen = check_flags(device, dtype, load_8bit, load_4bit)
    on_gpu = main.type == "cuda"
    free = available if available is not None else available_memory(main)

    def needed(llm_dtype: torch.dtype, quant: str | None = quantization) -> int:
        return int(counts.bytes(llm_dtype, llm_dtype, quant) * HEADROOM) + RESERVE

    if chosen is None:
        if on_gpu:
            chosen = torch.float16
        elif quantization:
            chosen = torch.bfloat16
        elif needed(torch.float32) <= free:
            chosen = torch.float32
        else:
            chosen = torch.bfloat16
            log.warning("%s needs %.1f GB in float32 but %.1f GB are free: loading its weights in "
                        "bfloat16 (%.1f GB)", source, needed(torch.float32) / GB, free / GB,
                        needed(torch.bfloat16) / GB)
    if needed(chosen) > free:
        options = [f"--dtype {dtype_name(t)} needs {needed(t, None) / GB:.1f} GB"
                   for t in (torch.bfloat16,) if t != chosen and needed(t, None) <= free]
        if quantization != "int8" and needed(torch.bfloat16 if not on_gpu else torch.float16, "int8") <= free:
            options.append(f"--load-8bit needs {needed(torch.bfloat16, 'int8') / GB:.1f} GB")
        hint = "; " + ", ".join(options) if options else "; no dtype or quantization fits"
        raise PlacementError(f"{source} needs {needed(chosen) / GB:.1f} GB on {main} in "
                             f"{dtype_name(chosen)}{' + ' + quantization if quantization else ''} but "
                             f"{free / GB:.1f} GB are free{hint}")
    if spread:
        log.warning("%d GPUs are visible; the model runs on %s alone (layers are not spread over "
                    "several GPUs)", len(spread), main)
    return Placement(main, chosen, chosen, quantization)
