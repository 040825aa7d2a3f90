"""`llava15 score BENCHMARK ...`: the official scoring / submission scripts, one to one.

Each benchmark takes the arguments of the official script it replaces (`llava15 score ID -h`
names it), prints what that script prints, and with `--json FILE` writes every metric
machine-readable. The benchmarks come from the registry in `llava15.eval.benchmarks`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from llava15.eval.benchmarks import BENCHMARKS

    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, module in BENCHMARKS.items():
        p = sub.add_parser(name, help=module.SCORE_SCRIPT, description=module.SCORE_SCRIPT)
        p.add_argument("--json", help="also write every metric to this JSON file")
        module.add_score_arguments(p)


def run(args: argparse.Namespace) -> int:
    from llava15.eval.benchmarks import BENCHMARKS

    result = BENCHMARKS[args.benchmark].score_command(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    return 0
