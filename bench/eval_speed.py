"""Evaluation throughput: questions per second at batch 16 against batch 1 (the official scripts'
only mode) on the demo model, with identical answers required.

    .venv/bin/llava15 demo --out demo-out          # once, to have the demo model and world
    .venv/bin/python bench/eval_speed.py --demo-out demo-out [--benchmark pope] [--limit 160]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from llava15.eval.benchmarks import BENCHMARKS
from llava15.eval.harness import run_benchmark
from llava15.infer.engine import load_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-out", default="demo-out")
    parser.add_argument("--benchmark", default="pope")
    parser.add_argument("--limit", type=int, default=160, help="questions timed per batch size")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.demo_out)
    engine = load_engine(out / "finetune", conv_mode="vicuna_v1")
    module = BENCHMARKS[args.benchmark]
    data_dir = out / "data" / "eval" / Path(module.OFFICIAL_ROOT).name

    class Limited:  # the benchmark module, cut to the first `limit` questions
        OFFICIAL_ROOT, image_root = module.OFFICIAL_ROOT, module.image_root

        @staticmethod
        def load(d):
            return module.load(d)[: args.limit]

    answers, rates = {}, {}
    for batch in (1, 16):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            run = run_benchmark(Limited, args.benchmark, engine, data_dir, tmp, batch_size=batch)
            seconds = time.perf_counter() - started
            lines = (Path(tmp) / args.benchmark / "answers.jsonl").read_text().splitlines()
            answers[batch] = [json.loads(x)["text"] for x in lines]
        rates[batch] = run.answered / seconds
        print(f"batch {batch:>2}: {run.answered} questions in {seconds:.1f} s = {rates[batch]:.1f} q/s")
    print(f"speed-up batch 16 / batch 1: {rates[16] / rates[1]:.2f}x; "
          f"identical answers: {answers[1] == answers[16]}")


if __name__ == "__main__":
    main()
