"""The `llava15` command line: one subcommand per module in this package.

Each subcommand module defines `add_arguments(parser)` and `run(args) -> int`, and imports
heavy libraries (torch, transformers) inside `run`, so `llava15 --help` stays fast.
This package is the only place that reads argv, configures logging or sets torch flags.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from llava15.cli.threads import configure_threads

# subcommand -> (module, one-line help). An explicit table: nothing is discovered at run time.
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("llava15.cli.predict", "answer a question file (drop-in for model_vqa_loader)"),
    "chat": ("llava15.cli.chat", "multi-turn chat in the terminal, streaming"),
    "convert": ("llava15.cli.convert", "convert a checkpoint to the llava-hf layout"),
    "export-gguf": ("llava15.cli.export_gguf", "write the two GGUF files llama.cpp and ollama run"),
    "eval": ("llava15.cli.eval", "run benchmarks end to end: answers, official scores, report"),
    "score": ("llava15.cli.score", "score answers / write submissions as the official scripts do"),
    "train": ("llava15.cli.train", "train one stage of the recipe (pretrain | finetune)"),
    "check-data": ("llava15.cli.check_data", "dry run over training data: mismatches, missing images, lengths"),
    "serve": ("llava15.cli.serve", "OpenAI-compatible server with batching and a chat page"),
    "demo": ("llava15.cli.demo", "the whole recipe in the offline world on a CPU, with a report"),
    "synth": ("llava15.cli.synth", "write the offline world's synthetic training data and benchmarks"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llava15", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_threads(getattr(args, "threads", None))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return int(args._module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
