"""ScienceQA-IMG: the ScienceQA test split, multiple choice, scored on image questions.

Official pipeline: `model_vqa_science.py --single-pred-prompt` on `llava_test_CQM-A.json`
(images `images/test/`), then `llava/eval/eval_science_qa.py --base-dir <dir> --result-file
answers.jsonl --output-file out.json --output-result result.json --split test`. The answer's
`prompt` is `"<image>\\n" + text` for image questions and IMG-Accuracy counts the predictions
whose prompt contains `<image>`: the harness must write `question.extra["prompt"]`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llava15.eval.answers import Answers, check_answers, index_answers, load_answers
from llava15.eval.question import (LONG_MAX_NEW_TOKENS, MULTIPLE_CHOICE, Question, locate,
                                   read_json, require_keys)
from llava15.eval.scoring import sqa_letter

OFFICIAL_ROOT = "playground/data/eval/scienceqa"
FILES = {"questions": "llava_test_CQM-A.json", "problems": "problems.json",
         "pid_splits": "pid_splits.json", "images": "images/test"}
OPTIONS = ("A", "B", "C", "D", "E")


def image_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / FILES["images"]


def load(data_dir: str | Path) -> list[Question]:
    """model_vqa_science.py: the human turn without `<image>`, stripped, plus the suffix."""
    path = locate(data_dir, FILES["questions"], OFFICIAL_ROOT)
    questions = []
    for n, item in enumerate(read_json(path)):
        require_keys(item, ("id", "conversations"), f"{path}: item {n}")
        text = item["conversations"][0]["value"].replace("<image>", "").strip() + MULTIPLE_CHOICE
        image = item.get("image")
        prompt = "<image>\n" + text if image is not None else text
        questions.append(Question(item["id"], image, text, LONG_MAX_NEW_TOKENS, {"prompt": prompt}))
    return questions


def score_files(answers: Answers, base_dir: str | Path, split: str = "test") -> dict:
    """eval_science_qa.py: acc over the split's problems, IMG acc over image prompts; plus
    `outputs` (the --output-file content) and `results` (pid -> predicted index or -1)."""
    base = Path(base_dir)
    split_ids = read_json(locate(base, FILES["pid_splits"], OFFICIAL_ROOT))[split]
    problems = read_json(locate(base, FILES["problems"], OFFICIAL_ROOT))
    records = load_answers(answers)
    predictions = index_answers(records)
    outputs: dict = {"correct": [], "incorrect": []}
    results, texts = {}, {}
    for pid in split_ids:
        prob = problems[pid]
        pred = predictions.get(pid, {"text": "FAILED", "prompt": "Unknown"})
        letter = sqa_letter(pred["text"], OPTIONS)
        index = OPTIONS.index(letter) if letter in OPTIONS[:len(prob["choices"])] else -1
        analysis = {"question_id": pid, "parsed_ans": letter,
                    "ground_truth": OPTIONS[prob["answer"]], "question": pred.get("prompt"),
                    "pred": pred["text"], "is_multimodal": "<image>" in pred.get("prompt", "")}
        results[pid], texts[pid] = index, pred["text"]
        outputs["correct" if index == prob["answer"] else "incorrect"].append(analysis)
    correct, total = len(outputs["correct"]), len(split_ids)
    img_correct = sum(a["is_multimodal"] for a in outputs["correct"])
    img_total = img_correct + sum(a["is_multimodal"] for a in outputs["incorrect"])
    return {"total": total, "correct": correct, "acc": correct / total * 100,
            "img_total": img_total, "img_correct": img_correct,
            "img_acc": img_correct / img_total * 100 if img_total else None,
            "missing": sum(pid not in predictions for pid in split_ids),
            "answer_check": check_answers(records, split_ids).as_dict(),
            "outputs": outputs, "results": results, "texts": texts}


def score(answers: Answers, data_dir: str | Path) -> dict:
    result = score_files(answers, data_dir)
    return {k: v for k, v in result.items() if k not in ("outputs", "results", "texts")}


def write_outputs(result: dict, output_file: str | Path, output_result: str | Path) -> None:
    """The two files eval_science_qa.py writes (the correct/incorrect lists and the result)."""
    Path(output_file).write_text(json.dumps(result["outputs"], indent=2))
    Path(output_result).write_text(json.dumps(
        {"acc": result["acc"], "correct": result["correct"], "count": result["total"],
         "results": result["results"], "outputs": result["texts"]}, indent=2))


def report(result: dict) -> str:
    img = "nan" if result["img_acc"] is None else f"{result['img_acc']:.2f}"
    return (f"Total: {result['total']}, Correct: {result['correct']}, "
            f"Accuracy: {result['acc']:.2f}%, IMG-Accuracy: {img}%")


# ---------------------------------------------------------------- `llava15 score sqa`
SCORE_SCRIPT = "llava/eval/eval_science_qa.py"


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-dir", required=True)
    p.add_argument("--result-file", required=True)
    p.add_argument("--output-file")
    p.add_argument("--output-result")
    p.add_argument("--split", default="test")


def score_command(args: argparse.Namespace) -> dict:
    result = score_files(args.result_file, args.base_dir, args.split)
    print(report(result))
    if args.output_file and args.output_result:
        write_outputs(result, args.output_file, args.output_result)
    return {k: v for k, v in result.items() if k not in ("outputs", "texts")}
