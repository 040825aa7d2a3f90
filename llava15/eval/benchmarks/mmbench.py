"""MMBench dev (English), circular evaluation; MMBench-CN reuses this module with `lang="cn"`.

Official pipeline: `model_vqa_mmbench.py --single-pred-prompt [--lang cn]` on the TSV (base64
images; `Question.image` holds the decoded image bytes), one pass per row: the dev TSV already
holds the circularly shifted copies (`index = i + k * 1_000_000`). With `all_rounds=True`,
`load` instead reproduces `--all-rounds`: each row is asked once per option with the option
texts rotated (letters stay A, B, ... in order; `option_char` records the original letters).
`scripts/convert_mmbench_for_submission.py` writes the server file (`write_submission`); the
OpenCompass server scores a question correct only if every circular copy is answered right.
"""

from __future__ import annotations

import argparse
import base64
import csv
import logging
import re
import sys
from collections import defaultdict
from pathlib import Path

from llava15.eval.answers import Answers, load_answers
from llava15.eval.question import (LONG_MAX_NEW_TOKENS, MULTIPLE_CHOICE, MULTIPLE_CHOICE_CN,
                                   Question, locate, output_path)
from llava15.eval.scoring import mmbench_infer

log = logging.getLogger(__name__)

OFFICIAL_ROOT = "playground/data/eval/mmbench"
FILES = {"questions": "mmbench_dev_20230712.tsv"}
LETTERS = ("A", "B", "C", "D")
ROUND = 1_000_000
# pandas.read_table's default NA strings: such a cell reads as NaN, i.e. a missing option/hint.
NA_STRINGS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                        "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
                        "nan", "null"})
DROPPED = ("hint", "category", "source", "image", "comment", "l2-category")
# What pandas' C parser reads as integer, float and boolean cells.
INTEGER = re.compile(r"[+-]?\d+")
FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity)", re.IGNORECASE)
BOOLEANS = frozenset({"True", "False", "TRUE", "FALSE", "true", "false"})


def is_none(value: str | None) -> bool:
    """model_vqa_mmbench.is_none on a pandas-read cell: NaN, 'nan' or 'none' (any case)."""
    return value is None or value in NA_STRINGS or value.lower() in ("nan", "none")


def read_tsv(path: str | Path) -> list[dict]:
    """Rows of the MMBench TSV as dicts of strings (csv module, pandas' default quoting)."""
    csv.field_size_limit(sys.maxsize)  # base64 images exceed the default 128 KiB field limit
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for n, row in enumerate(rows, start=2):
        for key in ("index", "question"):
            if row.get(key) is None:
                raise KeyError(f"{path}:{n}: missing column {key!r}")
    return rows


def options_of(row: dict) -> list[str]:
    """The option texts A, B, ... up to the first missing one."""
    options = []
    for letter in LETTERS:
        if is_none(row.get(letter)):
            break
        options.append(row[letter])
    return options


def prompt_text(row: dict, options: list[str]) -> str:
    """`[hint\n]question\nA. ..\nB. ..`: the answer file's `prompt` (no suffix, no image)."""
    question = row["question"]
    if not is_none(row.get("hint")):
        question = row["hint"] + "\n" + question
    for letter, option in zip(LETTERS, options):
        question = question + "\n" + letter + ". " + option
    return question


def questions_from_rows(rows: list[dict], lang: str = "en",
                        all_rounds: bool = False) -> list[Question]:
    questions = []
    for row in rows:
        options = options_of(row)
        option_char = list(LETTERS[:len(options)])
        image = base64.b64decode(row["image"]) if row.get("image") else None
        suffix = MULTIPLE_CHOICE_CN if lang == "cn" else MULTIPLE_CHOICE
        for round_id in range(len(options) if all_rounds else 1):
            prompt = prompt_text(row, options)
            extra = {"round_id": round_id, "options": list(options),
                     "option_char": list(option_char), "category": row.get("category"),
                     "l2-category": row.get("l2-category"), "answer": row.get("answer"),
                     "prompt": prompt}
            questions.append(Question(int(row["index"]), image, prompt + suffix,
                                      LONG_MAX_NEW_TOKENS, extra))
            options, option_char = options[1:] + options[:1], option_char[1:] + option_char[:1]
    return questions


def load(data_dir: str | Path, all_rounds: bool = False, lang: str = "en",
         files: dict = FILES, official_root: str = OFFICIAL_ROOT) -> list[Question]:
    path = locate(data_dir, files["questions"], official_root)
    return questions_from_rows(read_tsv(path), lang, all_rounds)


def copy_correct(record: dict, row: dict) -> bool | None:
    """Whether one asked copy is right: True/False, None if no letter could be inferred (the
    server would then ask ChatGPT). Uses the record's `options`/`option_char` (--all-rounds)
    when present, else the TSV row's options."""
    options = record.get("options") or options_of(row)
    option_char = record.get("option_char") or list(LETTERS[:len(options)])
    choices = dict(zip(LETTERS, options))
    letter = mmbench_infer(record["text"], choices)
    if letter is None:
        return None
    shown = LETTERS.index(letter) if letter in LETTERS else len(option_char)
    return shown < len(option_char) and option_char[shown] == row["answer"]


def circular_score(records: list[dict], rows: list[dict]) -> dict:
    """Circular accuracy over the TSV's questions (`index % 1e6`): correct iff every copy is
    answered correctly. A copy is a TSV row (dev TSVs hold the shifted copies) or, in an
    --all-rounds answer file, a `round_id` of a row. Missing and unresolved copies (no letter
    inferred; the server would ask ChatGPT) count as wrong and are reported."""
    by_index = {int(r["index"]): r for r in rows}
    asked: dict = defaultdict(dict)  # TSV index -> round_id -> record (the last line wins)
    for n, record in enumerate(records, start=1):
        qid = int(record["question_id"])
        if qid not in by_index:
            raise KeyError(f"answer #{n}: question_id {qid} is not an index of the TSV")
        asked[qid][int(record.get("round_id", 0))] = record
    outcomes, group_row = defaultdict(list), {}
    missing = unresolved = 0
    for index, row in by_index.items():
        main = index % ROUND
        if index == main or main not in group_row:
            group_row[main] = row
        rounds = asked.get(index, {})
        all_rounds = len(rounds) > 1 or any(r > 0 for r in rounds)
        expected = len(options_of(row)) if all_rounds else 1
        missing += max(0, expected - len(rounds))
        outcomes[main] += [False] * max(0, expected - len(rounds))
        for record in rounds.values():
            outcome = copy_correct(record, row)
            unresolved += outcome is None
            outcomes[main].append(outcome is True)
    per_cat, per_l2, overall = defaultdict(list), defaultdict(list), []
    for main in sorted(outcomes):
        ok = float(all(outcomes[main]))
        overall.append(ok)
        per_cat[group_row[main].get("category")].append(ok)
        per_l2[group_row[main].get("l2-category")].append(ok)

    def pct(values: list) -> float:
        return 100 * sum(values) / len(values)

    def table(groups: dict) -> dict:
        return {k: pct(v) for k, v in sorted(groups.items(), key=lambda kv: str(kv[0]))}

    return {"overall": pct(overall) if overall else None, "questions": len(overall),
            "missing_copies": missing, "unresolved_copies": unresolved,
            "category": table(per_cat), "l2-category": table(per_l2)}


def score(answers: Answers, data_dir: str | Path, files: dict = FILES,
          official_root: str = OFFICIAL_ROOT) -> dict:
    rows = read_tsv(locate(data_dir, files["questions"], official_root))
    if not rows or "answer" not in rows[0]:
        return {"server": "OpenCompass MMBench (the TSV has no answers)"}
    return circular_score(load_answers(answers), rows)


def submission_table(answers: Answers, rows: list[dict], header: list[str]) -> list[list[str]]:
    """convert_mmbench_for_submission.py's table: the TSV without DROPPED columns, with
    `prediction` inserted as the 7th column (the last answer for an index wins)."""
    missing = [c for c in DROPPED if c not in header]
    if missing:
        raise KeyError(f"MMBench TSV lacks column(s) {missing} that the converter drops")
    kept = [c for c in header if c not in DROPPED]
    columns = kept[:6] + ["prediction"] + kept[6:]
    predictions = {int(a["question_id"]): a["text"] for a in load_answers(answers)}
    table = [columns]
    for row in rows:
        values = {**row, "prediction": predictions.get(int(row["index"]), "")}
        table.append([values[c] for c in columns])
    return table


def infer_column(values: list[str]) -> list:
    """One TSV column as `pandas.read_table` types it, so the upload holds what the official
    converter's `to_excel` writes: NA strings become empty cells; a column whose other values are
    all integers is integer (float when a cell is empty), all numbers float, all booleans bool;
    otherwise every value stays the string it was (an option "3" among texts is the text "3")."""
    present = [v for v in values if v not in NA_STRINGS]
    has_na = len(present) < len(values)

    def typed(convert) -> list:
        return [None if v in NA_STRINGS else convert(v) for v in values]

    if present and all(INTEGER.fullmatch(v) for v in present):
        return typed(float if has_na else int)
    if present and all(FLOAT.fullmatch(v) for v in present):
        return typed(float)
    if present and all(v in BOOLEANS for v in present):
        return typed(lambda v: v.lower() == "true")
    return typed(str)


def typed_table(table: list[list[str]]) -> list[list]:
    """`submission_table` with pandas' column types; `prediction` stays text (the converter
    assigns strings into a column of None, so nothing is inferred there)."""
    header, rows = table[0], table[1:]
    columns = []
    for i, name in enumerate(header):
        values = [row[i] for row in rows]
        columns.append([v if v != "" else None for v in values] if name == "prediction"
                       else infer_column(values))
    return [header] + [list(row) for row in zip(*columns)]


def write_submission(answers: Answers, data_dir: str | Path, out_path: str | Path,
                     files: dict = FILES, official_root: str = OFFICIAL_ROOT,
                     fmt: str = "xlsx") -> Path:
    """The upload file `<out_path>.xlsx` as convert_mmbench_for_submission.py writes it (sheet
    "Sheet1", pandas' column types), or with `fmt="tsv"` the same table as text."""
    if fmt not in ("xlsx", "tsv"):
        raise ValueError(f"MMBench submission format must be 'xlsx' or 'tsv', not {fmt!r}")
    path_in = locate(data_dir, files["questions"], official_root)
    with open(path_in, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f, delimiter="\t"))
    table = submission_table(answers, read_tsv(path_in), header)
    path = output_path(out_path, "." + fmt)
    if fmt == "tsv":
        with open(path, "w", encoding="utf-8", newline="") as f:
            csv.writer(f, delimiter="\t").writerows(table)
        return path
    import openpyxl
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    book = openpyxl.Workbook()
    book.active.title = "Sheet1"
    cleaned = 0
    for line in typed_table(table):
        # Control characters cannot be stored in xlsx (pandas' to_excel raises on them); a
        # prediction loses them rather than the whole upload failing, and the count is reported.
        for i, value in enumerate(line):
            if isinstance(value, str) and ILLEGAL_CHARACTERS_RE.search(value):
                line[i], cleaned = ILLEGAL_CHARACTERS_RE.sub("", value), cleaned + 1
        book.active.append(line)
    book.save(path)
    if cleaned:
        log.warning("%s: removed control characters that xlsx cannot hold from %d cell(s)",
                    path, cleaned)
    return path


# ---------------------------------------------------------------- `llava15 score mmbench`
SCORE_SCRIPT = "scripts/convert_mmbench_for_submission.py (+ circular score when the TSV has answers)"


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    for flag in ("--annotation-file", "--result-dir", "--upload-dir", "--experiment"):
        p.add_argument(flag, required=True)
    p.add_argument("--format", choices=("xlsx", "tsv"), default="xlsx",
                   help="upload file type (official: xlsx)")


def score_command(args: argparse.Namespace) -> dict:
    answers = Path(args.result_dir) / f"{args.experiment}.jsonl"
    data_dir = Path(args.annotation_file).parent
    files = {"questions": Path(args.annotation_file).name}
    upload = write_submission(answers, data_dir, Path(args.upload_dir) / args.experiment, files,
                              str(data_dir), fmt=args.format)
    print(f"wrote {upload}")
    result = score(answers, data_dir, files, str(data_dir))
    result["upload"] = str(upload)
    if result.get("overall") is not None:
        print(f"Overall (circular): {result['overall']:.2f}%  ({result['questions']} questions)")
        for category, acc in result["category"].items():
            print(f"  {category}: {acc:.2f}%")
    return result
