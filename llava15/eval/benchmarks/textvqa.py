"""TextVQA val (5,000 questions) with the reference OCR tokens in the prompt.

Official pipeline: `model_vqa_loader.py` on `llava_textvqa_val_v051_ocr.jsonl` (images
`train_images/`), then `llava/eval/eval_textvqa.py --annotation-file TextVQA_0.5.1_val.json
--result-file answers.jsonl`: the question is recovered from the answer's `prompt`, the
annotation is looked up by `(image_id, question.lower())` (the file's `question_id` is the IMAGE
id) and scored with the m4c evaluator (normalised 10-annotator VQA accuracy).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from llava15.eval.answers import Answers, load_answers
from llava15.eval.question import (Question, SHORT_MAX_NEW_TOKENS, locate, read_json,
                                   read_question_file)
from llava15.eval.scoring import textvqa_accuracy

OFFICIAL_ROOT = "playground/data/eval/textvqa"
FILES = {"questions": "llava_textvqa_val_v051_ocr.jsonl", "annotations": "TextVQA_0.5.1_val.json",
         "images": "train_images"}


def image_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / FILES["images"]


def load(data_dir: str | Path) -> list[Question]:
    path = locate(data_dir, FILES["questions"], OFFICIAL_ROOT)
    return read_question_file(path, SHORT_MAX_NEW_TOKENS)


def question_from_prompt(prompt: str) -> str:
    """eval_textvqa.py's prompt_processor: the question line of the prompt, lower-cased."""
    lines = prompt.split("\n")
    if prompt.startswith("OCR tokens: "):
        match = re.search(r"Question: (.*?) Short answer:", prompt, re.DOTALL)
        if match is None:
            raise ValueError(f"prompt starts with 'OCR tokens: ' but has no 'Question: ... Short "
                             f"answer:' part: {prompt!r}")
        question = match.group(1)
    elif "Reference OCR token: " in prompt and len(lines) == 3:
        question = lines[1] if prompt.startswith("Reference OCR token:") else lines[0]
    elif len(lines) == 2:
        question = lines[0]
    else:
        raise ValueError(f"cannot find the question in the prompt (expected 2 lines, or 3 with "
                         f"'Reference OCR token: '): {prompt!r}")
    return question.lower()


def score_files(answers: Answers, annotation_file: str | Path) -> dict:
    records = load_answers(answers, ("question_id", "prompt", "text"))
    annotations = {(a["image_id"], a["question"].lower()): a
                   for a in read_json(annotation_file)["data"]}
    per_item = []
    for n, record in enumerate(records, start=1):
        key = (record["question_id"], question_from_prompt(record["prompt"]))
        if key not in annotations:
            raise KeyError(f"answer #{n}: no annotation in {annotation_file} for image_id "
                           f"{key[0]!r} and question {key[1]!r}")
        per_item.append(textvqa_accuracy(record["text"], annotations[key]["answers"]))
    if not per_item:
        raise ValueError("no answers to score")
    return {"samples": len(per_item), "accuracy": 100.0 * sum(per_item) / len(per_item)}


def score(answers: Answers, data_dir: str | Path) -> dict:
    return score_files(answers, locate(data_dir, FILES["annotations"], OFFICIAL_ROOT))


def report(result: dict, experiment: str = "") -> str:
    """What eval_textvqa.py prints (the experiment name is the result file's stem)."""
    return f"{experiment}\nSamples: {result['samples']}\nAccuracy: {result['accuracy']:.2f}%\n"


# ---------------------------------------------------------------- `llava15 score textvqa`
SCORE_SCRIPT = "llava/eval/eval_textvqa.py"


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--annotation-file", required=True)
    p.add_argument("--result-file", required=True)


def score_command(args: argparse.Namespace) -> dict:
    result = score_files(args.result_file, args.annotation_file)
    print(report(result, Path(args.result_file).stem))
    return result
