"""`llava15 eval`: the paper's benchmarks end to end (answers, official scores, submissions).

    llava15 eval --model DIR --benchmarks pope,mme,... --data-dir playground/data/eval --out DIR
    torchrun --nproc-per-node 4 -m llava15 eval ...     # contiguous chunks per rank, merged

`--data-dir` holds one folder per benchmark in the official layout (`pope/`, `MME/`, ...).
Writes `<out>/<benchmark>/answers.jsonl`, `results.json`, `results.md` (our numbers beside the
paper's) and `radar.png`. Re-running skips questions already answered.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from llava15.cli.predict import add_model_arguments, load_engine_for, print_image_cost, setup_torch


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--benchmarks", default="all", help="comma-separated ids, or 'all'")
    p.add_argument("--data-dir", required=True, help="folder with one subfolder per benchmark")
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=16,
                   help="questions decoded together (answers equal batch size 1)")
    p.add_argument("--judge-base-url", default=None, help="OpenAI-compatible endpoint for "
                   "LLaVA-Bench and MM-Vet (without it they are answered but not judged)")
    p.add_argument("--judge-model", default="gpt-4-0613")
    p.add_argument("--judge-api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the judge's API key")
    p.add_argument("--mmvet-num-run", type=int, default=1,
                   help="MM-Vet grading runs (the evaluator's --num_run): mean and spread")


def selected(names: str) -> list[str]:
    from llava15.eval.benchmarks import BENCHMARKS

    if names == "all":
        return list(BENCHMARKS)
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    return chosen


def distributed() -> tuple[int, int]:
    """(rank, world) from torchrun's environment; a gloo group is set up for the barrier."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
    return rank, world


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from llava15.eval.benchmarks import BENCHMARKS
    from llava15.eval.harness import run_benchmark, score_benchmark
    from llava15.eval.judge import JudgeClient
    from llava15.eval.report import headline, markdown_table, radar_chart

    names = selected(args.benchmarks)
    setup_torch(args.threads)
    rank, world = distributed()
    engine = load_engine_for(args, "vicuna_v1")
    out = Path(args.out)
    print_image_cost(engine)
    judge = None
    if args.judge_base_url:
        judge = JudgeClient(args.judge_base_url, args.judge_model,
                            os.environ.get(args.judge_api_key_env), cache_dir=out / "judge-cache")
    results, headlines = {}, {}
    for name in names:
        module = BENCHMARKS[name]
        data_dir = Path(args.data_dir) / Path(module.OFFICIAL_ROOT).name
        run_ = run_benchmark(module, name, engine, data_dir, out, args.batch_size, rank, world,
                             progress=lambda **kw: tqdm(unit="q", disable=rank != 0, **kw))
        barrier(world)
        if rank != 0:
            continue
        score_benchmark(module, run_, data_dir, out, world, judge, args.mmvet_num_run)
        results[name] = {"scores": run_.scores, "answered": run_.answered, "resumed": run_.resumed,
                         "errors": run_.errors, "seconds": round(run_.seconds, 2)}
        headlines[name] = headline(name, run_.scores)
        shown = "-" if headlines[name] is None else f"{headlines[name]:.2f}"
        print(f"{name}: {shown} ({run_.answered} answered, {run_.resumed} resumed, "
              f"{len(run_.errors)} error rows)")
        for error in run_.errors[:5]:
            print(f"  question {error['question_id']!r}: {error['error']}", file=sys.stderr)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"model": engine.model_id, "headline": headlines,
                                                      "benchmarks": results}, indent=2, default=str))
        (out / "results.md").write_text(markdown_table(headlines, engine.model_id))
        radar_chart(headlines, out / "radar.png", engine.model_id)
        print(markdown_table(headlines, engine.model_id))
    return 0
