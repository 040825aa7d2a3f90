"""CPU kernel choices for LLaVA-1.5-7B (LLaMA-7B shapes) on 2 threads, torch 2.13.

Answers three questions (NOTES.md next to this file has the answers):

1. bf16 weights: from how many rows does upcasting the weight to float32 (per call) beat the
   bf16 `F.linear`? Also the `torch.bmm`-of-row-blocks trick of `llava15/model/linear.py` on
   bf16, and bf16 against float32 `F.scaled_dot_product_attention` (600-token prefill, 1-query
   decode).
2. int8 weight-only linear (int8 weight, one float scale per output row): which kernel decodes
   (1 and 8 rows) fastest, at what error, what the prefill (577 rows) path should be (2), and
   from how many rows dequantizing per call beats the decode kernel (2b).
3. The memory bandwidth of the machine, to put the memory-bound GEMV times against.

Method. Each candidate is a callable; `bench` runs all candidates of one case interleaved (the
order rotates each round) and reports median/min times and, for ratios, the median over rounds
of the ratio of two candidates' times in the same round. Other processes share the 2 cores, and
a 2-thread OpenMP region whose second thread is descheduled waits a scheduler slice (several
ms): a sample of a fast call is therefore the best of 3 back-to-back calls, medians still carry
some of that noise, the minimum is the uncontended time, and per-round ratios cancel the rest. Weights are cycled through enough copies (`Pool`)
that every call reads its weight from DRAM as in a forward pass (one 4096 x 4096 int8 weight,
16 MiB, would otherwise sit in the 32 MiB L3 and look faster than it is).

`--isa avx2` re-runs the script with ATen, oneDNN, MKL and inductor restricted to AVX2 (the
code paths of a Zen 3 host without AVX-512); the default uses what this host has.

Run: .venv/bin/python experiments/cpu_kernels/bench_kernels.py [--isa avx2] [--parts 3,1,2]
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def _reexec_for_isa() -> None:
    """`--isa avx2` must act before torch is imported: re-run this file with the env set."""
    if "--isa" in sys.argv and sys.argv[sys.argv.index("--isa") + 1] == "avx2":
        if os.environ.get("ATEN_CPU_CAPABILITY") != "avx2":
            env = {**os.environ, **AVX2_ENV}
            raise SystemExit(subprocess.call([sys.executable, *sys.argv], env=env))


_reexec_for_isa()
# A private, empty inductor cache: cold compile times, and no stale frozen constants (with
# freezing, torch 2.13's FX graph cache can hand a module another module's weights).
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="bench_kernels_"))

import torch  # noqa: E402
import torch._dynamo.config  # noqa: E402
import torch._inductor.config as inductor_config  # noqa: E402
import torch.ao.nn.quantized.dynamic as nnqd  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

THREADS = 2
L3_BYTES = 32 << 20
POOL_BYTES = 2 * L3_BYTES  # copies are cycled: >= 2x the (LRU) L3, so every call reads DRAM
DECODE_SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008)]  # (out, in): attn, up/gate, down
BF16_SHAPES = DECODE_SHAPES + [(32000, 4096)]  # + lm_head
BF16_ROWS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 577]
INT8_ROWS = [1, 8, 16, 32, 64, 128, 256, 577]
BMM_MAX_ROWS = 64  # the bmm trick is a few-rows form; not measured above this
PREFILL_ROWS = 577  # 576 image tokens + 1: the shortest LLaVA-1.5 prefill
ENGINES = ["fbgemm", "x86", "onednn"]  # torch.ao quantized engines

torch.set_num_threads(THREADS)
torch._dynamo.config.recompile_limit = 64
torch._dynamo.config.accumulated_recompile_limit = 4096
warnings.filterwarnings("ignore")

Tensor = torch.Tensor


# ------------------------------------------------------------------------------------ timing


@dataclass
class Stat:
    """Per-call times of one candidate in milliseconds, in round order."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)


def bench(cands: dict[str, Callable[[], object]], budget_s: float = 6.0,
          max_rounds: int = 21, min_rounds: int = 3, too_slow_s: float = 4.0,
          burst_below_s: float = 0.02) -> dict[str, Stat]:
    """Time every candidate interleaved, rotating the order each round.

    The first call of each is a warm-up whose time sizes the number of rounds to about
    `budget_s` for the whole case (between `min_rounds` and `max_rounds`). A sample of a
    candidate faster than `burst_below_s` is the fastest of 3 back-to-back calls (a scheduler
    slice lost to another process then rarely spoils all three); slower ones take one call. A
    candidate whose warm-up exceeds `too_slow_s` keeps that one sample and is not repeated."""
    warm: dict[str, float] = {}
    for name, fn in cands.items():
        t0 = time.perf_counter()
        fn()
        warm[name] = time.perf_counter() - t0
    out: dict[str, list[float]] = {n: [] for n in cands}
    names = [n for n in cands if warm[n] <= too_slow_s]
    for n in cands:
        if warm[n] > too_slow_s:
            out[n].append(warm[n] * 1e3)
    burst = {n: 3 if warm[n] < burst_below_s else 1 for n in names}
    total = sum(warm[n] * burst[n] for n in names)
    rounds = int(max(min_rounds, min(max_rounds, budget_s / max(total, 1e-6))))
    for r in range(rounds if names else 0):
        for name in names[r % len(names):] + names[:r % len(names)]:
            best = math.inf
            for _ in range(burst[name]):
                t0 = time.perf_counter()
                cands[name]()
                best = min(best, time.perf_counter() - t0)
            out[name].append(best * 1e3)
    return {n: Stat(v) for n, v in out.items()}


def ratio(st: dict[str, Stat], name: str, base: str) -> float:
    """Median over rounds of time(name) / time(base) in the same round (a burst of load hits
    both); the ratio of medians when one of them was timed once (too slow)."""
    a, b = st[name].samples, st[base].samples
    if len(a) != len(b):
        return statistics.median(a) / statistics.median(b)
    return statistics.median(x / y for x, y in zip(a, b))


class Pool:
    """Copies of a weight (or of anything built per weight), cycled by `next()`."""

    def __init__(self, items: list) -> None:
        self.items = items
        self.i = 0

    @staticmethod
    def copies(nbytes: int) -> int:
        """How many copies of an `nbytes` weight span `POOL_BYTES`."""
        return max(1, math.ceil(POOL_BYTES / nbytes))

    def next(self) -> int:
        self.i = (self.i + 1) % len(self.items)
        return self.i

    def __call__(self) -> object:
        return self.items[self.next()]

    def __len__(self) -> int:
        return len(self.items)


def fmt_ms(s: Stat) -> str:
    """'median/min' in ms, 3 significant digits."""
    return f"{s.median:.3g}/{s.min:.3g}"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain fixed-width table."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)))
    sys.stdout.flush()


def rel_err(y: Tensor, ref: Tensor) -> float:
    """max |y - ref| / max |ref| (float64)."""
    y, ref = y.double(), ref.double()
    return ((y - ref).abs().max() / ref.abs().max()).item()


def first_of_run(rows: Sequence[int], wins: Sequence[bool]) -> str:
    """The smallest row count from which `wins` holds at every larger measured count."""
    return next((str(rows[i]) for i in range(len(wins)) if all(wins[i:])),
                f"never (<= {rows[-1]})")


# ------------------------------------------------------------------------- part 3: bandwidth


def part3_bandwidth() -> float:
    """DRAM bandwidth in GB/s (read: sum of 512 MiB of float32; copy: copy_ into another 512
    MiB, bytes read + written); returns the 2-thread read figure from the minimum time."""
    a = torch.randn((512 << 20) // 4)  # filled: an untouched tensor maps the zero page (cache)
    b = torch.empty_like(a).fill_(1.0)
    nbytes = a.numel() * 4
    st = bench({"read (sum)": lambda: a.sum(), "copy (read+write)": lambda: b.copy_(a)},
               budget_s=6)
    torch.set_num_threads(1)
    st.update(bench({"read (sum), 1 thread": lambda: a.sum()}, budget_s=3))
    torch.set_num_threads(THREADS)
    rows = []
    for name, s in st.items():
        n = nbytes * (2 if name.startswith("copy") else 1)
        rows.append([name, f"{n / s.median / 1e6:.1f}", f"{n / s.min / 1e6:.1f}"])
    print_table("Part 3: memory bandwidth, 512 MiB of float32, 2 threads unless said",
                ["what", "GB/s (median)", "GB/s (best)"], rows)
    return nbytes / st["read (sum)"].min / 1e6


# ------------------------------------------------------------------- part 1: bf16 vs upcast


def bmm_linear(x: Tensor, w: Tensor, blocks: int = 4) -> Tensor:
    """`F.linear(x, w)` as `W @ x^T` over `blocks` row blocks of W (llava15/model/linear.py)."""
    out_f, in_f = w.shape
    y = torch.bmm(w.view(blocks, out_f // blocks, in_f), x.t().expand(blocks, in_f, x.shape[0]))
    return y.permute(2, 0, 1).reshape(x.shape[0], out_f).contiguous()


def part1_shape(out_f: int, in_f: int, bandwidth: float) -> str:
    """One bf16 weight shape over BF16_ROWS; prints its table, returns the crossover."""
    wp = Pool([torch.randn(out_f, in_f).mul_(0.02).bfloat16()
               for _ in range(Pool.copies(out_f * in_f * 2))])
    buf = torch.empty(out_f, in_f)  # the reused float32 scratch of "f32 upcast buf"
    table, wins = [], []
    for rows in BF16_ROWS:
        x = torch.randn(rows, in_f).bfloat16()
        cands: dict[str, Callable[[], object]] = {
            "bf16": lambda: F.linear(x, wp()),
            "f32 upcast": lambda: F.linear(x.float(), wp().float()).bfloat16(),
            "f32 upcast buf": lambda: F.linear(x.float(), buf.copy_(wp())).bfloat16(),
        }
        if rows <= BMM_MAX_ROWS:
            cands["bf16 bmm4"] = lambda: bmm_linear(x, wp())
        st = bench(cands, budget_s=4 if rows < 128 else 6)
        r_up = ratio(st, "bf16", "f32 upcast buf")
        wins.append(r_up > 1.0)
        gbs = out_f * in_f * 2 / st["bf16"].min / 1e6
        table.append([rows, *(fmt_ms(st[k]) if k in st else "-"
                              for k in ("bf16", "f32 upcast", "f32 upcast buf", "bf16 bmm4")),
                      f"{r_up:.2f}",
                      f"{ratio(st, 'bf16 bmm4', 'bf16'):.2f}" if "bf16 bmm4" in st else "-",
                      f"{gbs:.1f} ({gbs / bandwidth:.0%})"])
    print_table(f"Part 1: bf16 weight {out_f}x{in_f} (pool of {len(wp)}), ms median/min; "
                "bf16/upc = bf16 time over f32-upcast-buf time (median of per-round ratios; "
                ">1: upcast wins); bmm/bf16 likewise",
                ["rows", "bf16", "f32 upcast", "f32 upcast buf", "bf16 bmm4", "bf16/upc",
                 "bmm/bf16", "bf16 GB/s (of bw)"], table)
    return first_of_run(BF16_ROWS, wins)


def part1_bf16(bandwidth: float) -> None:
    """bf16 `F.linear` against float32 upcast per call, per shape and row count; bmm trick."""
    summary = [[f"{o}x{i}", part1_shape(o, i, bandwidth)] for o, i in BF16_SHAPES]
    print_table("Part 1 summary: upcasting to float32 wins from this row count on",
                ["shape", "crossover rows"], summary)


def part1_sdpa() -> None:
    """bf16 vs float32 SDPA: 600-token causal prefill and 1-query decode, 32 heads of 128."""
    table = []
    for name, q_len in (("prefill 600 causal", 600), ("decode 1 x 600", 1)):
        q32 = torch.randn(1, 32, q_len, 128)
        k32, v32 = torch.randn(1, 32, 600, 128), torch.randn(1, 32, 600, 128)
        q16, k16, v16 = q32.bfloat16(), k32.bfloat16(), v32.bfloat16()
        causal = q_len > 1
        st = bench({
            "bf16": lambda: F.scaled_dot_product_attention(q16, k16, v16, is_causal=causal),
            "f32": lambda: F.scaled_dot_product_attention(q32, k32, v32, is_causal=causal),
            "bf16 in, f32 compute": lambda: F.scaled_dot_product_attention(
                q16.float(), k16.float(), v16.float(), is_causal=causal).bfloat16(),
        }, budget_s=5)
        table.append([name, *(fmt_ms(s) for s in st.values()), f"{ratio(st, 'bf16', 'f32'):.2f}"])
    print_table("Part 1: F.scaled_dot_product_attention, 32 heads of 128, ms median/min",
                ["case", "bf16", "f32", "bf16 in, f32 compute", "bf16/f32"], table)


# ----------------------------------------------------------------- part 2: int8 weight-only


def reduce_rows_first(x: Tensor, w: Tensor, s: Tensor) -> Tensor:
    """Dequant-GEMV as one reduction, for torch.compile: (rows, out) float32."""
    return (x[:, None, :].float() * w.float()).sum(-1) * s


def reduce_out_first(x: Tensor, w: Tensor, s: Tensor) -> Tensor:
    """The same with the output laid out (out, rows): consecutive outputs reuse one weight row
    from L1, so the weight streams from DRAM once for all rows."""
    return ((w[:, None, :].float() * x[None, :, :].float()).sum(-1) * s[:, None]).t()


def dequant_linear(x: Tensor, w: Tensor, s: Tensor) -> Tensor:
    """`F.linear(x, w.to(x.dtype)) * s` (the pattern inductor maps to _weight_int8pack_mm)."""
    return F.linear(x, w.to(x.dtype)) * s


class WoqModule(nn.Module):
    """int8 weight + scales as buffers, for torch.compile with freezing (constant weights)."""

    def __init__(self, w: Tensor, s: Tensor) -> None:
        super().__init__()
        self.register_buffer("w", w)
        self.register_buffer("s", s)

    def forward(self, x: Tensor) -> Tensor:
        return torch._weight_int8pack_mm(x, self.w, self.s)


def dynamic_qlinear(w: Tensor, s: Tensor, engine: str) -> nnqd.Linear:
    """torch.ao dynamic-quantized Linear holding exactly the per-row int8 weight and scales,
    packed by `engine`. Per call it quantizes x per tensor to uint8 and runs an int8 GEMM."""
    torch.backends.quantized.engine = engine
    q = torch._make_per_channel_quantized_tensor(
        w, s.double(), torch.zeros(w.shape[0], dtype=torch.long), 0)
    lin = nnqd.Linear(w.shape[1], w.shape[0], bias_=False, dtype=torch.qint8)
    lin.set_weight_bias(q, None)
    return lin


class Int8Gemv:
    """The hand-written AVX2 kernel of int8_gemv.c, built with gcc, called through ctypes.

    `(x, w, s) -> (x.float() @ w.float().T * s).to(x.dtype)` for x (rows, in), w int8 (out, in)
    contiguous, s float32 (out,), in % 8 == 0. The .so's libgomp.so.1 resolves to the copy
    torch has loaded (one OpenMP runtime)."""

    SOURCE = Path(__file__).with_name("int8_gemv.c")

    def __init__(self) -> None:
        t0 = time.perf_counter()
        lib_path = Path(tempfile.mkdtemp(prefix="int8_gemv_")) / "int8_gemv.so"
        subprocess.run(["gcc", "-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC",
                        str(self.SOURCE), "-o", str(lib_path)], check=True)
        self.build_s = time.perf_counter() - t0
        self.lib = ctypes.CDLL(str(lib_path))
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        self.lib.int8_gemv.argtypes = [p, p, p, p, i64, i64, i64, ctypes.c_int]
        self.lib.int8_gemv.restype = None

    def __call__(self, x: Tensor, w: Tensor, s: Tensor) -> Tensor:
        rows, in_f = x.shape
        assert in_f % 8 == 0 and w.dtype == torch.int8 and w.is_contiguous()
        xf, sf = x.float().contiguous(), s.float().contiguous()
        y = torch.empty(rows, w.shape[0])
        self.lib.int8_gemv(xf.data_ptr(), w.data_ptr(), sf.data_ptr(), y.data_ptr(), rows,
                           in_f, w.shape[0], torch.get_num_threads())
        return y.to(x.dtype)


@dataclass
class Kernels:
    """Compiled / built kernels shared by all shapes (compiled lazily, dynamic shapes)."""

    rows_first: Callable[..., Tensor]
    out_first: Callable[..., Tensor]
    deq: Callable[..., Tensor]
    gemv: Int8Gemv

    @classmethod
    def build(cls) -> Kernels:
        return cls(torch.compile(reduce_rows_first, dynamic=True),
                   torch.compile(reduce_out_first, dynamic=True),
                   torch.compile(dequant_linear, dynamic=True), Int8Gemv())


class Int8Case:
    """One int8 weight shape: pool copies, scales, scratch buffers, and every candidate as a
    function of (x float32 exactly representable in bf16, x bf16, pool copy index)."""

    def __init__(self, out_f: int, in_f: int, k: Kernels) -> None:
        self.shape = (out_f, in_f)
        self.s32 = torch.rand(out_f).mul_(0.02 / 127).add_(1e-5)
        self.s16 = self.s32.bfloat16()  # int8pack with bf16 x takes bf16 scales (rounding counts)
        n = Pool.copies(out_f * in_f)
        self.wq = [torch.randint(-127, 128, (out_f, in_f), dtype=torch.int8) for _ in range(n)]
        # the bf16 model's weight: same values; fewer copies (twice the bytes)
        self.wb = [(w.float() * self.s32[:, None]).bfloat16()
                   for w in self.wq[:Pool.copies(out_f * in_f * 2)]]
        self.qlin = {e: [dynamic_qlinear(w, self.s32, e) for w in self.wq] for e in ENGINES}
        # reused scratch (a model needs one of each, sized for its largest layer): a fresh
        # 90-180 MB tensor per call costs 30-60 ms of page faults, a copy into these 5-8 ms
        self.buf32 = torch.empty(out_f, in_f)
        self.buf16 = torch.empty(out_f, in_f, dtype=torch.bfloat16)
        # frozen + max-autotune (CPP GEMM template): one compiled module per copy
        self.woq = [torch.compile(WoqModule(w, self.s16), mode="max-autotune-no-cudagraphs",
                                  dynamic=False) for w in self.wq]
        self.k = k

    def ao(self, engine: str, x32: Tensor, i: int) -> Tensor:
        torch.backends.quantized.engine = engine
        return self.qlin[engine][i](x32)

    def candidates(self, rows: int) -> dict[str, Callable[[Tensor, Tensor, int], Tensor]]:
        """name -> f(x32, x16, i) for this row count (decode rows or PREFILL_ROWS)."""
        wq, wb, s32, s16, k = self.wq, self.wb, self.s32, self.s16, self.k
        bf16 = torch.bfloat16
        c: dict[str, Callable[[Tensor, Tensor, int], Tensor]] = {
            "bf16 F.linear (baseline)": lambda x, xb, i: F.linear(xb, wb[i % len(wb)]),
            "int8pack x bf16": lambda x, xb, i: torch._weight_int8pack_mm(xb, wq[i], s16),
        }
        if rows < PREFILL_ROWS:
            c.update({
                "int8pack x f32": lambda x, xb, i: torch._weight_int8pack_mm(x, wq[i], s32),
                "deq bf16, F.linear, *s": lambda x, xb, i: F.linear(xb, wq[i].to(bf16)) * s16,
                "deq bf16*s, F.linear": lambda x, xb, i: F.linear(
                    xb, wq[i].to(bf16) * s16[:, None]),
                "deq bf16 buf, F.linear, *s": lambda x, xb, i: F.linear(
                    xb, self.buf16.copy_(wq[i])) * s16,
                "int8_gemv.c x bf16": lambda x, xb, i: k.gemv(xb, wq[i], s32),
                "compile reduce rows-first": lambda x, xb, i: k.rows_first(xb, wq[i], s32),
                "compile reduce out-first": lambda x, xb, i: k.out_first(xb, wq[i], s32),
                "compile deq+linear": lambda x, xb, i: k.deq(xb, wq[i], s16),
                "compile freeze+CPP template": lambda x, xb, i: self.woq[i](xb),
            })
        else:
            c.update({
                "deq bf16 buf, F.linear, *s": lambda x, xb, i: F.linear(
                    xb, self.buf16.copy_(wq[i])) * s16,
                "deq f32 buf, F.linear, *s": lambda x, xb, i: F.linear(
                    x, self.buf32.copy_(wq[i])) * s32,
                "f32 upcast of bf16 W (buf)": lambda x, xb, i: F.linear(
                    x, self.buf32.copy_(wb[i % len(wb)])).bfloat16(),
            })
        for e in ENGINES:
            c[f"ao dynamic {e}"] = lambda x, xb, i, e=e: self.ao(e, x, i)
        return c


def compile_first(case: Int8Case, cands: dict[str, Callable[[Tensor, Tensor, int], Tensor]],
                  x32: Tensor, x16: Tensor) -> list[list[str]]:
    """Compile the torch.compile candidates (first call on every copy), timing each."""
    out = []
    for name, fn in cands.items():
        if not name.startswith("compile"):
            continue
        frozen = "freeze" in name
        inductor_config.freezing = frozen
        inductor_config.force_disable_caches = frozen  # see the cache bug at the top
        inductor_config.max_autotune_gemm_backends = "CPP" if frozen else "ATEN,CPP"
        t0 = time.perf_counter()
        for i in range(len(case.wq) if frozen else 1):
            fn(x32, x16, i)
        note = f" ({len(case.wq)} modules)" if frozen else ""
        out.append([f"{case.shape[0]}x{case.shape[1]}", str(x32.shape[0]), name,
                    f"{time.perf_counter() - t0:.1f}{note}"])
        inductor_config.freezing = False
        inductor_config.force_disable_caches = False
    return out


def part2_shape(out_f: int, in_f: int, k: Kernels) -> list[list[str]]:
    """All int8 candidates on one shape at 1, 8 and PREFILL_ROWS rows; returns compile times."""
    case = Int8Case(out_f, in_f, k)
    table, compile_rows = [], []
    for rows in (1, 8, PREFILL_ROWS):
        x32 = torch.randn(rows, in_f).bfloat16().float()  # exact in bf16: kernel error only
        x16 = x32.bfloat16()
        x_out = x32.clone()
        x_out[:, :: in_f // 6] *= 40.0  # a few outlier channels, as LLM activations have
        w0 = case.wq[0].float() * case.s32[:, None]
        refs = [(x32, x32 @ w0.t()), (x_out, x_out @ w0.t())]
        cands = case.candidates(rows)
        compile_rows += compile_first(case, cands, x32, x16)
        errs = {n: [rel_err(fn(xr, xr.bfloat16(), 0), ref) for xr, ref in refs]
                for n, fn in cands.items()}
        pools = {n: Pool(list(range(len(case.wq)))) for n in cands}
        st = bench({n: (lambda n=n, fn=fn: fn(x32, x16, pools[n].next()))
                    for n, fn in cands.items()},
                   budget_s=8 if rows < PREFILL_ROWS else 20,
                   max_rounds=21 if rows < PREFILL_ROWS else 7,
                   min_rounds=5 if rows < PREFILL_ROWS else 3)
        for name, s in st.items():
            nbytes = out_f * in_f * (2 if "bf16 W" in name or "baseline" in name else 1)
            table.append([rows, name, fmt_ms(s),
                          f"{ratio(st, name, 'bf16 F.linear (baseline)'):.2f}",
                          f"{nbytes / s.min / 1e6:.1f}", *(f"{e:.1e}" for e in errs[name])])
    print_table(f"Part 2: int8 weight {out_f}x{in_f} (pool of {len(case.wq)}), ms median/min; "
                "x/bf16 = time over bf16 F.linear's (median of per-round ratios); GB/s = stored "
                "weight bytes / min time; err = max|y-ref|/max|ref| against float32 "
                "x @ (W*s).T, for plain x / x with outlier channels",
                ["rows", "candidate", "ms", "x/bf16", "GB/s", "err", "err outl."], table)
    return compile_rows


def part2_int8() -> None:
    """int8 weight-only candidates at 1 and 8 rows and the prefill path at 577 rows."""
    k = Kernels.build()
    print(f"\nint8_gemv.c built in {k.gemv.build_s:.1f} s")
    compile_rows = [r for o, i in DECODE_SHAPES for r in part2_shape(o, i, k)]
    print_table("Part 2: torch.compile cost of the first call (the first one also starts "
                "inductor; freeze+CPP: all pool modules, caches off)",
                ["shape", "rows", "candidate", "s"], compile_rows)


def part2b_shape(out_f: int, in_f: int) -> list[str]:
    """int8pack against dequantize-per-call over INT8_ROWS on one shape."""
    s32 = torch.rand(out_f).mul_(0.02 / 127).add_(1e-5)
    s16 = s32.bfloat16()
    wq = Pool([torch.randint(-127, 128, (out_f, in_f), dtype=torch.int8)
               for _ in range(Pool.copies(out_f * in_f))])
    wb = Pool([(wq.items[0].float() * s32[:, None]).bfloat16()
               for _ in range(Pool.copies(out_f * in_f * 2))])
    buf32 = torch.empty(out_f, in_f)  # one float32 scratch, reused (one per model suffices)
    buf16 = torch.empty(out_f, in_f, dtype=torch.bfloat16)
    table = []
    wins: dict[str, list[bool]] = {"deq f32 buf": [], "deq bf16 buf": []}
    for rows in INT8_ROWS:
        x16 = torch.randn(rows, in_f).bfloat16()
        x32 = x16.float()
        st = bench({
            "int8pack x bf16": lambda: torch._weight_int8pack_mm(x16, wq(), s16),
            "deq f32 buf": lambda: F.linear(x32, buf32.copy_(wq())) * s32,
            "deq bf16 buf": lambda: F.linear(x16, buf16.copy_(wq())) * s16,
            "bf16 F.linear": lambda: F.linear(x16, wb()),
        }, budget_s=4 if rows < 128 else 6)
        r = {n: ratio(st, n, "int8pack x bf16") for n in wins}
        for n in wins:
            wins[n].append(r[n] < 1.0)
        table.append([rows, *(fmt_ms(v) for v in st.values()), *(f"{v:.2f}" for v in r.values())])
    print_table(f"Part 2b: int8 weight {out_f}x{in_f}, int8pack against dequantizing per call "
                "into a reused buffer, ms median/min; f32/pack, bf16/pack = time over "
                "int8pack's (median of per-round ratios; <1: dequantizing wins)",
                ["rows", "int8pack x bf16", "deq f32 buf", "deq bf16 buf", "bf16 F.linear",
                 "f32/pack", "bf16/pack"], table)
    return [f"{out_f}x{in_f}", *(first_of_run(INT8_ROWS, w) for w in wins.values())]


def part2b_int8_rows() -> None:
    """From how many rows does dequantizing the int8 weight (per call) beat int8pack?"""
    summary = [part2b_shape(o, i) for o, i in DECODE_SHAPES[:2]]
    print_table("Part 2b summary: dequantizing per call beats int8pack from this row count on",
                ["shape", "deq f32 buf", "deq bf16 buf"], summary)


# ---------------------------------------------------------------------------------- main


def describe_host() -> None:
    """ISA facts that decide which kernels are fast."""
    flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split()
    env = ", ".join(f"{k}={os.environ[k]}" for k in AVX2_ENV if k in os.environ)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"ATen CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"oneDNN bf16 {torch.ops.mkldnn._is_mkldnn_bf16_supported()}, env {{{env}}}")
    print("cpu flags: " + " ".join(sorted(f for f in flags if f.startswith(("avx", "amx")))))
    print(f"load average at start: {os.getloadavg()}")


def main() -> None:
    global DECODE_SHAPES, BF16_SHAPES, BF16_ROWS, INT8_ROWS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--isa", choices=["native", "avx2"], default="native",
                        help="avx2: restrict ATen/oneDNN/MKL/inductor to AVX2 (Zen 3 paths)")
    parser.add_argument("--parts", default="3,1,2", help="comma list of parts, in run order")
    parser.add_argument("--quick", action="store_true", help="smoke test: one shape, few rows")
    args = parser.parse_args()
    if args.quick:
        DECODE_SHAPES, BF16_SHAPES = DECODE_SHAPES[:1], BF16_SHAPES[:1]
        BF16_ROWS, INT8_ROWS = [1, 8, 64], [1, 64, PREFILL_ROWS]
    if os.environ.get("ATEN_CPU_CAPABILITY") == "avx2":
        inductor_config.cpp.march = "znver3"  # the C++ compiler too, not only the vector width
    torch.set_grad_enabled(False)  # inference (and inductor freezing needs it)
    describe_host()
    t0 = time.perf_counter()
    bandwidth = 31.0  # GB/s, replaced by part 3's measurement when it runs first
    for part in args.parts.split(","):
        if part == "3":
            bandwidth = part3_bandwidth()
        elif part == "1":
            part1_bf16(bandwidth)
            part1_sdpa()
        elif part == "2":
            part2_int8()
            part2b_int8_rows()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
