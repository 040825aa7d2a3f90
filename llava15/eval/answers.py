"""Reading answer files (the official `{question_id, prompt, text, ...}` JSON lines) and checking
them against the question list.

The official scorers index answers with a dict comprehension, so a duplicated question id
silently keeps the last line, an answer to an unknown question is ignored and a missing answer
is scored as the script's default. We keep those semantics for the numbers but report all
three, so a broken run is visible instead of quietly mis-scored.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llava15.eval.question import read_jsonl

log = logging.getLogger(__name__)

Answers = str | Path | list[dict]


def drop_unfinished_line(path: str | Path) -> bool:
    """Make an answer file that a killed run left mid-write safe to append to and resume.

    Each answer is written as one line ending in a newline, so a last line without one is an
    unfinished write: it is cut off (its question is then answered again) and this returns True.
    A last line that is a whole JSON record only gets its newline, since the next answer
    appended would otherwise run on in the same line. Lines before the last are left alone."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "r+b") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return False
        start = data.rfind(b"\n") + 1
        try:
            json.loads(data[start:])
        except ValueError as e:  # a JSON error, or bytes cut inside a UTF-8 character
            f.truncate(start)
            line = data.count(b"\n") + 1
            log.warning("%s:%d: dropped an unfinished last line (%d bytes, %s); its question is "
                        "answered again", path, line, len(data) - start, e)
            return True
        f.write(b"\n")
    return False


def load_answers(answers: Answers,
                 required: tuple[str, ...] = ("question_id", "text")) -> list[dict]:
    """The answer records of a JSONL file (or a list of dicts, checked the same way).

    Raises ValueError naming the file and line for malformed JSON and KeyError naming the
    line for a record without `question_id` or `text`; a non-string `text` is a TypeError.
    """
    if isinstance(answers, (str, Path)):
        records, where = read_jsonl(answers), f"{answers}:line "
        # read_jsonl skips blank lines, so re-number by record for the messages below
        numbered = _line_numbers(answers)
    else:
        records, where = list(answers), "answer #"
        numbered = list(range(1, len(records) + 1))
    for record, number in zip(records, numbered):
        if not isinstance(record, dict):
            raise TypeError(f"{where}{number}: expected a dict, got {type(record).__name__}")
        missing = [k for k in required if k not in record]
        if missing:
            raise KeyError(f"{where}{number}: missing key(s) {', '.join(map(repr, missing))}")
        if "text" in required and not isinstance(record["text"], str):
            raise TypeError(f"{where}{number}: 'text' must be a string, got "
                            f"{type(record['text']).__name__}")
    return records


def _line_numbers(path: str | Path) -> list[int]:
    with open(path, encoding="utf-8") as f:
        return [n for n, line in enumerate(f, start=1) if line.strip()]


def question_key(record: dict) -> Any:
    return record["question_id"]


@dataclass
class AnswerCheck:
    """Problems found when matching answers to questions (ids listed, at most 20 each)."""

    duplicates: list = field(default_factory=list)
    unknown: list = field(default_factory=list)
    missing: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {name: {"count": len(ids), "examples": [str(i) for i in ids[:20]]}
                for name, ids in (("duplicates", self.duplicates), ("unknown", self.unknown),
                                  ("missing", self.missing))}

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.unknown or self.missing)


def check_answers(answers: list[dict], expected: Iterable, key: Callable[[dict], Any] = question_key
                  ) -> AnswerCheck:
    """Duplicated answer keys, answers whose key is not an expected question, and expected
    questions without an answer. Keys are compared as given (no int/str coercion)."""
    counts = Counter(key(a) for a in answers)
    expected_list = list(expected)
    expected_set = set(expected_list)
    return AnswerCheck(
        duplicates=[k for k, n in counts.items() if n > 1],
        unknown=[k for k in counts if k not in expected_set],
        missing=[k for k in expected_list if k not in counts],
    )


def index_answers(answers: list[dict], key: Callable[[dict], Any] = question_key) -> dict:
    """key -> answer record; the last line wins for a duplicated key, as in the official scripts."""
    return {key(a): a for a in answers}
