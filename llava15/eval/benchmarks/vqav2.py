"""VQAv2 test-dev (scored by the EvalAI server), with optional local scoring on val2014.

Official pipeline: `model_vqa_loader.py` on `llava_vqav2_mscoco_test-dev2015.jsonl` (images
`test2015/`), then `scripts/convert_vqav2_for_submission.py --split <split> --ckpt <name>`, which
writes `[{"question_id", "answer": EvalAIAnswerProcessor(text)}]` for EVERY question of
`llava_vqav2_mscoco_test2015.jsonl` ("" where there is no prediction). For local development,
when the official val annotations are in the folder, `score` applies vqaEval.py's rule.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from llava15.eval.answers import Answers, check_answers, index_answers, load_answers
from llava15.eval.question import (Question, SHORT_MAX_NEW_TOKENS, locate, output_path, read_json,
                                   read_jsonl, read_question_file)
from llava15.eval.scoring import normalize_answer, vqaeval_accuracy

OFFICIAL_ROOT = "playground/data/eval/vqav2"
SPLIT = "llava_vqav2_mscoco_test-dev2015"
FILES = {"questions": f"{SPLIT}.jsonl", "test_all": "llava_vqav2_mscoco_test2015.jsonl",
         "images": "test2015",
         # optional, for local scoring only (official VQA release names)
         "val_annotations": "v2_mscoco_val2014_annotations.json"}


def image_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / FILES["images"]


def load(data_dir: str | Path, split: str = SPLIT) -> list[Question]:
    path = locate(data_dir, f"{split}.jsonl", OFFICIAL_ROOT)
    return read_question_file(path, SHORT_MAX_NEW_TOKENS)


def score_upload(upload: list[dict], annotation_file: str | Path) -> dict:
    """vqaEval.py on an upload file's records (`question_id`, `answer`) that have an annotation:
    overall, per answer type and per question type, each `round(100 * mean, 2)`."""
    answers = {u["question_id"]: u["answer"] for u in upload}
    per_answer_type, per_question_type, overall = defaultdict(list), defaultdict(list), []
    for ann in read_json(annotation_file)["annotations"]:
        if ann["question_id"] not in answers:
            continue
        acc = vqaeval_accuracy(answers[ann["question_id"]], [a["answer"] for a in ann["answers"]])
        overall.append(acc)
        per_answer_type[ann["answer_type"]].append(acc)
        per_question_type[ann["question_type"]].append(acc)
    if not overall:
        raise ValueError(f"no answer matches a question of {annotation_file}")

    def pct(values: list) -> float:
        return round(100 * sum(values) / len(values), 2)

    return {"overall": pct(overall), "questions": len(overall),
            "perAnswerType": {k: pct(v) for k, v in per_answer_type.items()},
            "perQuestionType": {k: pct(v) for k, v in per_question_type.items()}}


def score_annotations(answers: Answers, annotation_file: str | Path) -> dict:
    """The figure the official pipeline gives: the answered questions go through
    convert_vqav2_for_submission.py (the EvalAI answer processor turns "Two." into "2"), and
    vqaEval.py scores that upload, never the raw model text."""
    answered = [{"question_id": a["question_id"]} for a in load_answers(answers)]
    return score_upload(submission(answers, answered), annotation_file)


def score(answers: Answers, data_dir: str | Path) -> dict:
    """Local vqaEval.py score when val annotations are present, else only answer counts (the
    test-dev number comes from the EvalAI server: upload `write_submission`'s file)."""
    annotations = Path(data_dir) / FILES["val_annotations"]
    if annotations.exists():
        return score_annotations(answers, annotations)
    records = load_answers(answers)
    expected = [q.question_id for q in load(data_dir)]
    return {"server": "EvalAI VQAv2 challenge (test-dev phase)", "answers": len(records),
            "answer_check": check_answers(records, expected).as_dict()}


def submission(answers: Answers, test_questions: list[dict]) -> list[dict]:
    predictions = {a["question_id"]: a["text"] for a in load_answers(answers)}
    return [{"question_id": q["question_id"],
             "answer": normalize_answer(predictions[q["question_id"]])
             if q["question_id"] in predictions else ""} for q in test_questions]


def write_submission(answers: Answers, data_dir: str | Path, out_path: str | Path) -> Path:
    """The EvalAI upload: every test2015 question, answers normalised, "" when unanswered."""
    test = read_jsonl(locate(data_dir, FILES["test_all"], OFFICIAL_ROOT))
    path = output_path(out_path, ".json")
    path.write_text(json.dumps(submission(answers, test)))
    return path


# ---------------------------------------------------------------- `llava15 score vqav2`
SCORE_SCRIPT = "scripts/convert_vqav2_for_submission.py"


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="./playground/data/eval/vqav2")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--annotation-file",
                   help="val annotations (v2_mscoco_val2014_annotations.json): also score the "
                        "upload with vqaEval.py's rule")


def score_command(args: argparse.Namespace) -> dict:
    src = Path(args.dir) / "answers" / args.split / args.ckpt / "merge.jsonl"
    test = read_jsonl(Path(args.dir) / FILES["test_all"])
    upload = submission(src, test)
    dst = Path(args.dir) / "answers_upload" / args.split / f"{args.ckpt}.json"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(upload))
    answered = len(read_jsonl(src))
    print(f"total results: {answered}, total split: {len(test)}, error_line: 0")
    result = {"results": answered, "split": len(test), "upload": str(dst)}
    if args.annotation_file:
        result.update(score_upload(upload, args.annotation_file))
        print(f"Overall Accuracy is: {result['overall']:.2f}")
    return result
