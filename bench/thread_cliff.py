"""The thread cliff: a training step's time with and without a competing busy process.

On a 2-core machine, torch's two OpenMP threads spin-wait for each other between parallel
regions. When another process holds one core, the spinning thread burns the time slices the
other needs, and a small model's step can become many times slower. This benchmark measures a
stage-2 training step of the offline world's model shapes (CLIP 3 x 128 at 96 px, LLaMA 2 x 128,
batch 16, rows of 50-150 tokens) in fresh processes, each configuration alone and beside one
busy-looping process:

* `threads=N active`: libgomp's default (a waiting thread spins 300,000 times, then sleeps);
* `threads=N spin 1000`: `GOMP_SPINCOUNT=1000` (a short spin);
* `threads=N passive`: `OMP_WAIT_POLICY=PASSIVE` (a waiting thread sleeps at once);
* `threads=1`: one thread, nothing to wait for;
* `llava15 default`: what the `llava15` command chooses (`llava15.cli.threads.configure_threads`).

It prints ms per step, and for each configuration the slowdown under load (busy / quiet), and
writes the table as JSON (and a PNG bar chart with `--plot`).

    .venv/bin/python bench/thread_cliff.py [--steps 20] [--json out.json] [--plot out.png]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUSY = "while True: pass"


def child(steps: int) -> None:
    """One configuration: build the model, warm up, time `steps` training steps, print JSON."""
    import torch

    from llava15.config import IGNORE_INDEX, LlavaConfig, TextConfig, VisionConfig
    from llava15.data.dataset import Sample, collate
    from llava15.model.llava import Llava
    from llava15.train.objective import Objective

    vision = VisionConfig(hidden_size=128, intermediate_size=384, num_hidden_layers=3,
                          num_attention_heads=4, image_size=96, patch_size=32)
    text = TextConfig(vocab_size=1024, hidden_size=128, intermediate_size=384,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=512)
    torch.manual_seed(0)
    model = Llava(LlavaConfig(vision=vision, text=text, image_token_index=1023))
    model.vision_tower.requires_grad_(False)
    objective = Objective(model)
    g = torch.Generator().manual_seed(1)
    samples = []
    for i in range(16):
        n = int(torch.randint(50, 150, (1,), generator=g))
        ids = torch.cat([torch.tensor([1]), torch.full((9,), 1023), torch.randint(3, 1000, (n,), generator=g)])
        labels = ids.clone()
        labels[: 10 + n - max(3, n // 8)] = IGNORE_INDEX
        samples.append(Sample(i, ids, labels, torch.randn(3, 96, 96, generator=g)))
    batch = collate(samples, pad_token_id=0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        loss = objective(batch.input_ids, batch.labels, batch.attention_mask, batch.position_ids,
                         batch.pixel_values) / batch.num_targets
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(json.dumps({"threads": torch.get_num_threads(), "ms": 1000 * statistics.median(times)}))


def measure(env_extra: dict, steps: int, busy: bool, use_cli_default: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    code = ("from llava15.cli.threads import configure_threads; configure_threads(None); "
            if use_cli_default else "")
    code += f"import sys; sys.argv = ['x']; sys.path.insert(0, {str(ROOT / 'bench')!r}); " \
            f"import thread_cliff; thread_cliff.child({steps})"
    competitor = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", help="write the table here")
    parser.add_argument("--plot", help="write a PNG bar chart here")
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0))
    configs = {f"threads={cpus} active": ({"OMP_NUM_THREADS": str(cpus)}, False),
               f"threads={cpus} spin 1000": ({"OMP_NUM_THREADS": str(cpus), "GOMP_SPINCOUNT": "1000"},
                                             False),
               f"threads={cpus} passive": ({"OMP_NUM_THREADS": str(cpus),
                                            "OMP_WAIT_POLICY": "PASSIVE"}, False),
               "threads=1": ({"OMP_NUM_THREADS": "1"}, False),
               "llava15 default": ({}, True)}
    rows = {}
    print(f"{cpus} usable cores; ms per training step (median of {args.steps})")
    print(f"{'configuration':<24}{'quiet':>9}{'busy':>9}{'busy/quiet':>12}")
    for name, (env, cli_default) in configs.items():
        quiet = measure(env, args.steps, False, cli_default)
        busy = measure(env, args.steps, True, cli_default)
        rows[name] = {"threads": quiet["threads"], "quiet_ms": round(quiet["ms"], 2),
                      "busy_ms": round(busy["ms"], 2), "slowdown": round(busy["ms"] / quiet["ms"], 2)}
        r = rows[name]
        print(f"{name:<24}{r['quiet_ms']:>9.1f}{r['busy_ms']:>9.1f}{r['slowdown']:>11.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpus": cpus, "steps": args.steps, "rows": rows}, indent=2))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(rows)
        fig, ax = plt.subplots(figsize=(7, 3.5))
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [rows[n]["quiet_ms"] for n in names], 0.4, label="quiet")
        ax.bar([x + 0.2 for x in xs], [rows[n]["busy_ms"] for n in names], 0.4, label="one core busy")
        ax.set_xticks(list(xs), names, fontsize=8)
        ax.set_ylabel("ms per training step")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
