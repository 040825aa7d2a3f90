"""The small file helpers every benchmark module shares, and the question record they fill
(`llava15.infer.question.Question`, the one `predict` and the offline world use too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llava15.infer.question import Question

# Response-format suffixes of the paper's prompts (docs/benchmarks.md, 'Response-format suffixes').
SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
MULTIPLE_CHOICE = "\nAnswer with the option's letter from the given choices directly."
MULTIPLE_CHOICE_CN = "\n请直接回答选项字母。"

# model_vqa_loader.py generates at most 128 new tokens; model_vqa.py, model_vqa_science.py and
# model_vqa_mmbench.py at most 1024.
SHORT_MAX_NEW_TOKENS = 128
LONG_MAX_NEW_TOKENS = 1024


def locate(data_dir: str | Path, relative: str, official_root: str, what: str = "file") -> Path:
    """`data_dir / relative`, or a FileNotFoundError naming the official location."""
    path = Path(data_dir) / relative
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: {what} not found; the official release puts it at "
            f"{official_root}/{relative}")
    return path


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a syntax error names the file, line and column."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from e


def read_jsonl(path: str | Path) -> list[dict]:
    """Parse a JSON-lines file (blank lines skipped); a bad line raises naming file and line."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({e.msg})") from e
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object, got "
                                 f"{type(record).__name__}")
            records.append(record)
    return records


def require_keys(record: dict, keys: tuple[str, ...], where: str) -> None:
    """Raise a KeyError naming `where` (file:line or record id) if a key is missing."""
    missing = [k for k in keys if k not in record]
    if missing:
        raise KeyError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")


def output_path(out_path: str | Path, suffix: str) -> Path:
    """The submission path: `out_path` as given when its name ends with `suffix`, else with
    `suffix` appended to the whole name. Experiment names hold dots (`llava-v1.5-13b`), so
    anything after a dot is part of the name, never an extension to replace or keep."""
    path = Path(out_path)
    if not path.name.endswith(suffix):
        path = path.with_name(path.name + suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def read_question_file(path: Path, max_new_tokens: int, category: str = "ignore") -> list[Question]:
    """A `model_vqa_loader.py` question file (`question_id`, `image`, `text`[, `category`]).

    `category`: "required" (a missing one is an error), "optional" (kept when present, else
    None) or "ignore". A kept category goes into `Question.extra["category"]`."""
    keys = ("question_id", "image", "text") + (("category",) if category == "required" else ())
    questions = []
    for n, q in enumerate(read_jsonl(path), start=1):
        require_keys(q, keys, f"{path}: record {n}")
        extra = {} if category == "ignore" else {"category": q.get("category")}
        questions.append(Question(q["question_id"], q["image"], q["text"], max_new_tokens, extra))
    return questions
