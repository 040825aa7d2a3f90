"""GQA testdev-balanced (12,578 questions), exact-match accuracy.

Official pipeline: `model_vqa_loader.py` on `llava_gqa_testdev_balanced.jsonl` (images
`data/images/`), then `scripts/convert_gqa_for_eval.py` (`prediction = text.rstrip('.').lower()`
into `data/testdev_balanced_predictions.json`) and GQA's `eval.py --tier testdev_balanced` in
`data/` (LLaVA's copy: scene graphs and choices optional). Only `isBalanced` questions count;
a missing prediction for one of them is an error. Validity and plausibility need the choices
file, which testdev lacks, so they are 0 as officially printed.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from llava15.eval.answers import Answers, load_answers
from llava15.eval.question import (Question, SHORT_MAX_NEW_TOKENS, locate, read_json,
                                   read_question_file)

OFFICIAL_ROOT = "playground/data/eval/gqa"
FILES = {"questions": "llava_gqa_testdev_balanced.jsonl",
         "annotations": "data/testdev_balanced_questions.json", "images": "data/images"}
DETAILED = (("accuracyPerStructuralType", "Accuracy / structural type"),
            ("accuracyPerSemanticType", "Accuracy / semantic type"),
            ("accuracyPerSteps", "Accuracy / steps number"),
            ("accuracyPerLength", "Accuracy / words number"))


def image_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / FILES["images"]


def load(data_dir: str | Path) -> list[Question]:
    path = locate(data_dir, FILES["questions"], OFFICIAL_ROOT)
    return read_question_file(path, SHORT_MAX_NEW_TOKENS)


def convert_predictions(answers: Answers) -> list[dict]:
    """convert_gqa_for_eval.py: [{"questionId", "prediction": text.rstrip('.').lower()}]."""
    return [{"questionId": a["question_id"], "prediction": a["text"].rstrip(".").lower()}
            for a in load_answers(answers)]


def steps_number(question: dict) -> int:
    """Reasoning steps, not counting the final exist / query-name / choose-name operations."""
    return len([c for c in question["semantic"]
                if not any(o in f"{c['operation']}: {c['argument']}"
                           for o in ("exist", "query: name", "choose name"))])


def evaluate(predictions: list[dict], questions: dict[str, dict]) -> dict:
    """eval.py's balanced metrics from converted predictions and the GQA questions file.
    Question ids are compared as strings."""
    preds = {str(p["questionId"]): p["prediction"] for p in predictions}
    scores: dict = {"accuracy": [], "binary": [], "open": []}
    detailed: dict = {name: defaultdict(list) for name, _ in DETAILED}
    gold_dist: dict = defaultdict(lambda: defaultdict(int))
    pred_dist: dict = defaultdict(lambda: defaultdict(int))
    for qid, question in questions.items():
        if not question["isBalanced"]:
            continue
        if qid not in preds:
            raise KeyError(f"GQA: no prediction for balanced question {qid}")
        gold, predicted = question["answer"], preds[qid]
        score = float(predicted == gold)
        scores["accuracy"].append(score)
        detailed["accuracyPerLength"][len(question["question"].split())].append(score)
        detailed["accuracyPerSteps"][steps_number(question)].append(score)
        detailed["accuracyPerStructuralType"][question["types"]["structural"]].append(score)
        detailed["accuracyPerSemanticType"][question["types"]["semantic"]].append(score)
        scores["open" if question["types"]["structural"] == "query" else "binary"].append(score)
        group = question["groups"]["global"]
        if group is not None:
            gold_dist[group][gold] += 1
            pred_dist[group][predicted] += 1

    def avg(values: list) -> float:
        return sum(values) / len(values) * 100 if values else 0.0

    result = {k: avg(v) for k, v in scores.items()}
    result.update(validity=0.0, plausibility=0.0,
                  distribution=chi_square(gold_dist, pred_dist) / 100)
    for name, _ in DETAILED:
        result[name] = {str(t): {"accuracy": avg(v), "count": len(v)}
                        for t, v in sorted(detailed[name].items())}
    result["questions"] = len(scores["accuracy"])
    return result


def chi_square(gold: dict, predicted: dict) -> float:
    """Chi-square of predicted vs gold answer counts per global group, weighted by group size."""
    total_score, total = 0.0, 0
    for group, answers in gold.items():
        score = sum((predicted[group].get(ans, 0) - e) ** 2 / e for ans, e in answers.items())
        size = sum(answers.values())
        total_score += score * size
        total += size
    return total_score / total if total else 0.0


def score(answers: Answers, data_dir: str | Path) -> dict:
    questions = read_json(locate(data_dir, FILES["annotations"], OFFICIAL_ROOT))
    return evaluate(convert_predictions(answers), questions)


def write_predictions(answers: Answers, out_path: str | Path) -> Path:
    path = Path(out_path)
    path.write_text(json.dumps(convert_predictions(answers)))
    return path


def report(result: dict) -> str:
    lines = [""]
    for key in ("binary", "open", "accuracy", "validity", "plausibility", "distribution"):
        suffix = " (lower is better)" if key == "distribution" else "%"
        lines.append(f"{key.capitalize()}: {result[key]:.2f}{suffix}")
    for name, title in DETAILED:
        lines += ["", f"{title}:"]
        lines += [f"  {t}: {v['accuracy']:.2f}% ({v['count']} questions)"
                  for t, v in result[name].items()]
    return "\n".join(lines)


# ---------------------------------------------------------------- `llava15 score gqa`
SCORE_SCRIPT = "scripts/convert_gqa_for_eval.py, then GQA eval.py in the folder of --dst"


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--tier", default="testdev_balanced")


def score_command(args: argparse.Namespace) -> dict:
    write_predictions(args.src, args.dst)
    questions = Path(args.dst).parent / f"{args.tier}_questions.json"
    if not questions.exists():
        return {"predictions": args.dst}
    result = evaluate(json.loads(Path(args.dst).read_text()), read_json(questions))
    print(report(result))
    return result
