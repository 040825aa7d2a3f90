"""LLaVA-Bench (in-the-wild): 60 questions on 24 images, judged by GPT-4 against GPT-4 answers.

Official pipeline: `model_vqa.py` on `questions.jsonl` (images `images/`, free-form answers, no
suffix, max 1024 new tokens), then `llava/eval/eval_gpt_review_bench.py --question
questions.jsonl --context context.jsonl --rule rule.json --answer-list answers_gpt4.jsonl
answers.jsonl --output reviews.jsonl` and `summarize_gpt_review.py -f reviews.jsonl`. The three
files are paired BY POSITION. The score is the model's mean judge score relative to GPT-4's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llava15.eval.answers import Answers, load_answers
from llava15.eval.judge import (JudgeClient, add_judge_arguments, judge_from_arguments,
                                llavabench_content, llavabench_review, parse_review_score,
                                summarize_reviews)
from llava15.eval.question import (LONG_MAX_NEW_TOKENS, Question, locate, read_jsonl,
                                   read_question_file)

OFFICIAL_ROOT = "playground/data/eval/llava-bench-in-the-wild"
FILES = {"questions": "questions.jsonl", "context": "context.jsonl",
         "reference": "answers_gpt4.jsonl", "images": "images"}


def image_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / FILES["images"]


def load(data_dir: str | Path) -> list[Question]:
    path = locate(data_dir, FILES["questions"], OFFICIAL_ROOT)
    return read_question_file(path, LONG_MAX_NEW_TOKENS, "required")


def review(client: JudgeClient, question_file: str | Path, context_file: str | Path,
           reference_file: str | Path, answers: Answers, output: str | Path | None = None
           ) -> list[dict]:
    """eval_gpt_review_bench.py: one review per (question, reference, answer) line triple.
    With `output`, the review lines are written there (the client's cache makes re-runs free)."""
    questions, references = read_jsonl(question_file), read_jsonl(reference_file)
    records = load_answers(answers)
    contexts = {c["image"]: c for c in read_jsonl(context_file)}
    reviews = []
    for idx, (q, ref, ans) in enumerate(zip(questions, references, records)):
        if q["image"] not in contexts:
            raise KeyError(f"{context_file}: no context for image {q['image']!r}")
        content = llavabench_content(contexts[q["image"]]["caption"], q["text"], ref["text"],
                                     ans["text"], q["category"])
        text = llavabench_review(client, content)
        reviews.append({"id": idx + 1, "question_id": q["question_id"],
                        "answer1_id": ref.get("answer_id", ref["question_id"]),
                        "answer2_id": ans.get("answer_id"), "category": "llava_bench_" +
                        q["category"], "content": text, "tuple": parse_review_score(text)})
    if output is not None:
        Path(output).write_text("".join(json.dumps(r) + "\n" for r in reviews))
    return reviews


def score(answers: Answers, data_dir: str | Path, client: JudgeClient | None = None) -> dict:
    """Relative scores per category and overall; without a judge client only the answer count
    is reported (the harness has no judge unless one is configured)."""
    if client is None:
        return {"judge": "not configured", "answers": len(load_answers(answers))}
    reviews = review(client, *(locate(data_dir, FILES[k], OFFICIAL_ROOT)
                               for k in ("questions", "context", "reference")), answers)
    return {"summary": summarize_reviews(reviews),
            "failed_parses": sum(r["tuple"] == [-1, -1] for r in reviews)}


def report(summary: dict) -> str:
    """summarize_gpt_review.py's lines: name, relative score, reference x10, model x10."""
    return "\n".join(f"{name} {s['relative']} {s['reference']} {s['model']}"
                     for name, s in summary.items()) + "\n================================="


# ---------------------------------------------------------------- `llava15 score llavabench`
SCORE_SCRIPT = "llava/eval/eval_gpt_review_bench.py + summarize_gpt_review.py"


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--question", required=True)
    p.add_argument("-c", "--context", required=True)
    p.add_argument("-a", "--answer-list", nargs=2, required=True,
                   metavar=("GPT4_ANSWERS", "ANSWERS"))
    p.add_argument("-r", "--rule", help="ignored: the official llava_bench rules are built in")
    p.add_argument("-o", "--output", required=True)
    add_judge_arguments(p)


def score_command(args: argparse.Namespace) -> dict:
    reviews = review(judge_from_arguments(args), args.question, args.context,
                     args.answer_list[0], args.answer_list[1], args.output)
    result = {"summary": summarize_reviews(reviews)}
    print(Path(args.output).stem)
    print(report(result["summary"]))
    return result
