"""SEED-Bench (image + video questions), exact-letter accuracy; the paper reports image.

Official pipeline: `model_vqa_loader.py` on `llava-seed-bench.jsonl` (images under the
benchmark folder: `SEED-Bench-image/`, middle video frames in `SEED-Bench-video-image/`), then
`scripts/convert_seed_for_submission.py --annotation-file SEED-Bench.json --result-file
answers.jsonl --result-upload-file upload.jsonl`: correct iff the output equals the answer
letter exactly (`A.`, `(A)`, `a` are wrong); accuracy per question type, total, image, video.
Question ids are matched as int when they parse as one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llava15.eval.answers import Answers, check_answers, index_answers, load_answers
from llava15.eval.question import (Question, SHORT_MAX_NEW_TOKENS, locate, output_path, read_json,
                                   read_question_file)

OFFICIAL_ROOT = "playground/data/eval/seed_bench"
FILES = {"questions": "llava-seed-bench.jsonl", "annotations": "SEED-Bench.json"}


def load(data_dir: str | Path) -> list[Question]:
    path = locate(data_dir, FILES["questions"], OFFICIAL_ROOT)
    return read_question_file(path, SHORT_MAX_NEW_TOKENS, "optional")


def _qid(raw: str | int) -> str | int:
    try:
        return int(raw)
    except ValueError:
        return raw


def accuracy(results: dict, data: dict, data_type: str | None = None) -> dict:
    """Per question type name and total accuracy (%) over questions of `data_type` (all if None).
    A type without a correct answer scores 0 (the official script raises KeyError there)."""
    names = {type_id: name for name, type_id in data["question_type"].items()}
    counts: dict = {}
    correct: dict = {}
    for q in data["questions"]:
        if data_type is not None and q["data_type"] != data_type:
            continue
        t = q["question_type_id"]
        counts[t] = counts.get(t, 0) + 1
        row = results.get(_qid(q["question_id"]))
        correct[t] = correct.get(t, 0) + (row is not None and row["text"] == q["answer"])
    per_type = {names.get(t, str(t)): correct[t] / counts[t] * 100 for t in sorted(counts)}
    total = sum(correct.values()) / sum(counts.values()) * 100 if counts else None
    return {"per_type": per_type, "total": total, "questions": sum(counts.values())}


def score_files(answers: Answers, annotation_file: str | Path) -> dict:
    records = load_answers(answers)
    results = index_answers(records)
    data = read_json(annotation_file)
    overall = accuracy(results, data)
    # answer ids as the converter matches them: int when the question id parses as one
    check = check_answers(records, [_qid(q["question_id"]) for q in data["questions"]])
    return {"per_type": overall["per_type"], "total": overall["total"],
            "image": accuracy(results, data, "image")["total"],
            "video": accuracy(results, data, "video")["total"],
            "questions": overall["questions"],
            "missing": sum(_qid(q["question_id"]) not in results for q in data["questions"]),
            "answer_check": check.as_dict()}


def score(answers: Answers, data_dir: str | Path) -> dict:
    return score_files(answers, locate(data_dir, FILES["annotations"], OFFICIAL_ROOT))


def write_upload(answers: Answers, annotation_file: str | Path, out_path: str | Path) -> Path:
    """The leaderboard file: one `{"question_id", "prediction"}` line per SEED question."""
    results = index_answers(load_answers(answers))
    lines = []
    for q in read_json(annotation_file)["questions"]:
        row = results.get(q["question_id"], results.get(_qid(q["question_id"])))
        if row is None:
            raise KeyError(f"SEED upload: no answer for question {q['question_id']!r}")
        lines.append(json.dumps({"question_id": q["question_id"], "prediction": row["text"]}))
    path = output_path(out_path, ".jsonl")
    path.write_text("".join(line + "\n" for line in lines))
    return path


def write_submission(answers: Answers, data_dir: str | Path, out_path: str | Path) -> Path:
    return write_upload(answers, locate(data_dir, FILES["annotations"], OFFICIAL_ROOT), out_path)


def report(result: dict) -> str:
    lines = [f"{name}: {acc:.2f}%" for name, acc in result["per_type"].items()]
    lines.append(f"Total accuracy: {result['total']:.2f}%")
    for kind in ("image", "video"):
        if result[kind] is not None:
            lines.append(f"{kind} accuracy: {result[kind]:.2f}%")
    return "\n".join(lines)


# ---------------------------------------------------------------- `llava15 score seed`
SCORE_SCRIPT = "scripts/convert_seed_for_submission.py"


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    for flag in ("--annotation-file", "--result-file", "--result-upload-file"):
        p.add_argument(flag, required=True)


def score_command(args: argparse.Namespace) -> dict:
    result = score_files(args.result_file, args.annotation_file)
    print(report(result))
    write_upload(args.result_file, args.annotation_file, args.result_upload_file)
    return result
