"""Evaluation throughput: questions per second at batch 16 against batch 1 (the official scripts'
only mode) on the demo model, with identical answers required.

    .venv/bin/llava15 demo --out demo-out          # once, to have the demo model and world
    .venv/bin/python bench/eval_speed.py --demo-out demo-out [--benchmark pope] [--limit N]

Both batch sizes are warmed up first (the first forward calls pay one-off costs), then timed
`--repeat` times, alternating, so that both see the same machine; the speed-up is the ratio of
the median times. On a machine shared with other work, wall times swing from run to run: read
the ratio of one invocation, not times across invocations. With other processes busy, two torch
threads on two cores mostly wait for each other (batch 1 measured 10-50x slower than with one
thread): use --threads 1 there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from llava15.eval.benchmarks import BENCHMARKS
from llava15.eval.harness import run_benchmark
from llava15.infer.engine import load_engine

BATCHES = (1, 16)


def limited(module, limit: int | None):
    """The benchmark module, cut to its first `limit` questions (None: all)."""

    class Limited:
        OFFICIAL_ROOT, image_root = module.OFFICIAL_ROOT, getattr(module, "image_root", None)

        @staticmethod
        def load(d):
            return module.load(d)[:limit]

    return Limited


def timed_run(module, name: str, engine, data_dir: Path, batch: int) -> tuple[float, list[str]]:
    """Seconds to answer the questions at `batch`, and the answers."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run_benchmark(module, name, engine, data_dir, tmp, batch_size=batch)
        seconds = time.perf_counter() - started
        lines = (Path(tmp) / name / "answers.jsonl").read_text().splitlines()
    return seconds, [json.loads(x)["text"] for x in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-out", default="demo-out")
    parser.add_argument("--benchmark", default="pope")
    parser.add_argument("--limit", type=int, default=None,
                        help="time only the first N questions (default: the whole benchmark)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per batch size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.demo_out)
    engine = load_engine(out / "finetune", conv_mode="vicuna_v1")
    module = BENCHMARKS[args.benchmark]
    data_dir = out / "data" / "eval" / Path(module.OFFICIAL_ROOT).name
    for batch in BATCHES:  # warm-up, untimed
        timed_run(limited(module, 2 * batch), args.benchmark, engine, data_dir, batch)
    questions = limited(module, args.limit)
    seconds: dict[int, list[float]] = {batch: [] for batch in BATCHES}
    answers: dict[int, list[str]] = {}
    for _ in range(args.repeat):
        for batch in BATCHES:
            took, answers[batch] = timed_run(questions, args.benchmark, engine, data_dir, batch)
            seconds[batch].append(took)
    n = len(answers[1])
    for batch in BATCHES:
        median = statistics.median(seconds[batch])
        runs = ", ".join(f"{s:.2f}" for s in seconds[batch])
        print(f"batch {batch:>2}: {n} questions in {median:.2f} s = {n / median:.1f} q/s "
              f"({1000 * median / n:.2f} ms a question; runs: {runs} s)")
    ratio = statistics.median(seconds[1]) / statistics.median(seconds[16])
    print(f"speed-up batch 16 / batch 1: {ratio:.2f}x; identical answers: {answers[1] == answers[16]}")


if __name__ == "__main__":
    main()
