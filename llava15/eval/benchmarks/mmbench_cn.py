"""MMBench-CN dev: MMBench's pipeline with the Chinese TSV and `--lang cn` (suffix
`\\n请直接回答选项字母。`); see `mmbench.py` for loading, circular scoring and the upload file."""

from __future__ import annotations

from pathlib import Path

from llava15.eval.answers import Answers
from llava15.eval.benchmarks import mmbench
from llava15.eval.question import Question

OFFICIAL_ROOT = "playground/data/eval/mmbench_cn"
FILES = {"questions": "mmbench_dev_cn_20231003.tsv"}


def load(data_dir: str | Path, all_rounds: bool = False) -> list[Question]:
    return mmbench.load(data_dir, all_rounds, "cn", FILES, OFFICIAL_ROOT)


def score(answers: Answers, data_dir: str | Path) -> dict:
    return mmbench.score(answers, data_dir, FILES, OFFICIAL_ROOT)


def write_submission(answers: Answers, data_dir: str | Path, out_path: str | Path) -> Path:
    return mmbench.write_submission(answers, data_dir, out_path, FILES, OFFICIAL_ROOT)


# ---------------------------------------------------------------- `llava15 score mmbench_cn`
SCORE_SCRIPT = mmbench.SCORE_SCRIPT
add_score_arguments = mmbench.add_score_arguments
score_command = mmbench.score_command  # the TSV named by --annotation-file decides the language
