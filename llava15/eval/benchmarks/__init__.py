"""The twelve benchmarks of LLaVA-1.5, one module each (ids as in `scripts/v1_5/eval/*.sh`).

Every module satisfies `Benchmark`: the official file names, the question loader, the scorer,
and the `llava15 score <id>` command that replaces the official scoring or conversion script.
Modules whose official number comes from a server also have `write_submission`, and modules
whose images live in a subfolder have `image_root(data_dir)`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Protocol

from llava15.eval.benchmarks import (gqa, llavabench, mmbench, mmbench_cn, mme, mmvet, pope,
                                     seed, sqa, textvqa, vizwiz, vqav2)
from llava15.eval.question import Question


class Benchmark(Protocol):
    """What `eval` and `score` use of a benchmark module.

    `FILES`: official file names relative to the benchmark's data folder (`questions` is the
    question file, whose prompts carry the response-format suffix); `OFFICIAL_ROOT`: where the
    official release puts that folder. `load` poses the questions as the official inference
    script does, `score(answers, data_dir, ...)` applies the official rule, `SCORE_SCRIPT` names
    the official script `score_command` replaces, with the flags `add_score_arguments` adds.
    """

    OFFICIAL_ROOT: str
    FILES: dict
    SCORE_SCRIPT: str

    def load(self, data_dir: str | Path) -> list[Question]: ...

    def score(self, answers, data_dir: str | Path) -> dict: ...

    def add_score_arguments(self, p: argparse.ArgumentParser) -> None: ...

    def score_command(self, args: argparse.Namespace) -> dict: ...


BENCHMARKS: dict[str, Benchmark] = {
    "vqav2": vqav2, "gqa": gqa, "vizwiz": vizwiz, "sqa": sqa, "textvqa": textvqa, "pope": pope,
    "mme": mme, "mmbench": mmbench, "mmbench_cn": mmbench_cn, "seed": seed,
    "llavabench": llavabench, "mmvet": mmvet}
