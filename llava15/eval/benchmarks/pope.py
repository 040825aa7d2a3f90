"""POPE (COCO random / popular / adversarial): object hallucination as yes/no questions.

Official pipeline: `model_vqa_loader.py` on `llava_pope_test.jsonl` (images `val2014/`), then
`llava/eval/eval_pope.py --annotation-dir coco --question-file llava_pope_test.jsonl
--result-file answers.jsonl`. Per split the answers whose question has that `category` are
paired BY POSITION with the labels of `coco/coco_pope_<split>.json` (file order must match).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from llava15.eval.answers import Answers, check_answers, load_answers
from llava15.eval.question import (Question, SHORT_MAX_NEW_TOKENS, locate, read_jsonl,
                                   read_question_file)
from llava15.eval.scoring import binary_metrics, pope_label

OFFICIAL_ROOT = "playground/data/eval/pope"
FILES = {"questions": "llava_pope_test.jsonl", "annotations": "coco", "images": "val2014"}
SPLITS = ("adversarial", "popular", "random")


def image_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / FILES["images"]


def load(data_dir: str | Path) -> list[Question]:
    path = locate(data_dir, FILES["questions"], OFFICIAL_ROOT)
    return read_question_file(path, SHORT_MAX_NEW_TOKENS, "required")


def annotation_files(annotation_dir: str | Path) -> dict[str, Path]:
    """split name -> `coco_pope_<split>.json`, for every such file (eval_pope.py asserts that
    the folder holds nothing else); sorted by name for a stable report order."""
    files = {}
    for path in sorted(Path(annotation_dir).iterdir()):
        if not (path.name.startswith("coco_pope_") and path.name.endswith(".json")):
            raise ValueError(f"{path}: eval_pope.py expects only coco_pope_<split>.json files "
                             "in the annotation folder")
        files[path.name[len("coco_pope_"):-len(".json")]] = path
    if not files:
        raise FileNotFoundError(f"{annotation_dir}: no coco_pope_<split>.json files")
    return files


def score_files(answers: Answers, question_file: str | Path, annotation_dir: str | Path) -> dict:
    """eval_pope.py on explicit paths: {split: metrics} plus the F1/accuracy means over splits."""
    records = load_answers(answers)
    questions = {q["question_id"]: q for q in read_jsonl(question_file)}
    check = check_answers(records, questions)
    if check.unknown:
        raise KeyError(f"answers for question ids not in {question_file}: {check.unknown[:10]}")
    result: dict = {"splits": {}}
    for split, path in annotation_files(annotation_dir).items():
        labels = [rec["label"] for rec in read_jsonl(path)]
        texts = [a["text"] for a in records if questions[a["question_id"]]["category"] == split]
        if len(texts) != len(labels):
            raise ValueError(f"split {split!r}: {len(texts)} answers but {len(labels)} labels in "
                             f"{path}; answers are paired with labels by position")
        metrics = binary_metrics([pope_label(t) for t in texts],
                                 ["no" if label == "no" else "yes" for label in labels])
        metrics["samples"] = len(texts)
        result["splits"][split] = metrics
    splits = result["splits"].values()
    for key in ("f1", "accuracy"):
        values = [m[key] for m in splits]
        result[f"mean_{key}"] = (sum(values) / len(values)
                                 if all(v is not None for v in values) else None)
    result["answer_check"] = check.as_dict()
    return result


def score(answers: Answers, data_dir: str | Path) -> dict:
    return score_files(answers, locate(data_dir, FILES["questions"], OFFICIAL_ROOT),
                       locate(data_dir, FILES["annotations"], OFFICIAL_ROOT, "folder"))


def report(result: dict) -> str:
    """The lines eval_pope.py prints, per split."""
    lines = []
    for split, m in result["splits"].items():
        lines += [f"Category: {split}, # samples: {m['samples']}", "TP\tFP\tTN\tFN\t",
                  f"{m['TP']}\t{m['FP']}\t{m['TN']}\t{m['FN']}"]
        for name, key in (("Accuracy", "accuracy"), ("Precision", "precision"),
                          ("Recall", "recall"), ("F1 score", "f1"), ("Yes ratio", "yes_ratio")):
            lines.append(f"{name}: {m[key]}")
        values = [m[k] for k in ("f1", "accuracy", "precision", "recall", "yes_ratio")]
        lines.append(", ".join("nan" if v is None else f"{v:.3f}" for v in values))
        lines.append("====================================")
    return "\n".join(lines)


# ---------------------------------------------------------------- `llava15 score pope`
SCORE_SCRIPT = "llava/eval/eval_pope.py"


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    for flag in ("--annotation-dir", "--question-file", "--result-file"):
        p.add_argument(flag, required=True)


def score_command(args: argparse.Namespace) -> dict:
    result = score_files(args.result_file, args.question_file, args.annotation_dir)
    print(report(result))
    return result
