"""VizWiz test (8,000 questions, scored by the EvalAI server).

Official pipeline: `model_vqa_loader.py` on `llava_test.jsonl` (images `test/`; the prompt asks
for 'Unanswerable' when the image is insufficient), then
`scripts/convert_vizwiz_for_submission.py --annotation-file llava_test.jsonl --result-file
answers.jsonl --result-upload-file upload.json`, which requires an answer for every question
and writes `[{"image", "answer": EvalAIAnswerProcessor(text)}]`. There is no local score; no
special case exists for 'unanswerable' (it is an ordinary normalised answer).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llava15.eval.answers import Answers, check_answers, load_answers
from llava15.eval.question import (Question, SHORT_MAX_NEW_TOKENS, locate, output_path, read_jsonl,
                                   read_question_file)
from llava15.eval.scoring import normalize_answer

OFFICIAL_ROOT = "playground/data/eval/vizwiz"
FILES = {"questions": "llava_test.jsonl", "images": "test"}


def image_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / FILES["images"]


def load(data_dir: str | Path) -> list[Question]:
    path = locate(data_dir, FILES["questions"], OFFICIAL_ROOT)
    return read_question_file(path, SHORT_MAX_NEW_TOKENS)


def score(answers: Answers, data_dir: str | Path) -> dict:
    records = load_answers(answers)
    expected = [q.question_id for q in load(data_dir)]
    return {"server": "EvalAI VizWiz-VQA challenge", "answers": len(records),
            "answer_check": check_answers(records, expected).as_dict()}


def submission(answers: Answers, questions: list[dict]) -> list[dict]:
    predictions = {a["question_id"]: a["text"] for a in load_answers(answers)}
    missing = [q["question_id"] for q in questions if q["question_id"] not in predictions]
    if missing:
        raise KeyError(f"VizWiz submission needs an answer for every question; "
                       f"{len(missing)} missing, e.g. {missing[:10]}")
    return [{"image": q["image"], "answer": normalize_answer(predictions[q["question_id"]])}
            for q in questions]


def write_submission(answers: Answers, data_dir: str | Path, out_path: str | Path) -> Path:
    questions = read_jsonl(locate(data_dir, FILES["questions"], OFFICIAL_ROOT))
    path = output_path(out_path, ".json")
    path.write_text(json.dumps(submission(answers, questions)))
    return path


# ---------------------------------------------------------------- `llava15 score vizwiz`
SCORE_SCRIPT = "scripts/convert_vizwiz_for_submission.py"


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    for flag in ("--annotation-file", "--result-file", "--result-upload-file"):
        p.add_argument(flag, required=True)


def score_command(args: argparse.Namespace) -> dict:
    questions = read_jsonl(args.annotation_file)
    upload = submission(args.result_file, questions)
    Path(args.result_upload_file).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result_upload_file).write_text(json.dumps(upload))
    answered = len(read_jsonl(args.result_file))
    print(f"total results: {answered}, total split: {len(questions)}, error_line: 0")
    return {"results": answered, "split": len(questions), "upload": args.result_upload_file}
