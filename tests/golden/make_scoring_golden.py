"""Make tests/golden/scoring/*.json by running the official LLaVA scorers on tricky inputs.

Run with the official environment (llava-torch 1.2.2.post1):
    /work/official/venv/bin/python tests/golden/make_scoring_golden.py
Each output file holds the inputs written for the official script and what it produced
(printed lines, result files, per-item values). Nothing from our package is imported.
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
import tempfile
import types
from pathlib import Path

import llava.eval.m4c_evaluator

OUT = Path(__file__).parent / "scoring"
EVAL_DIR = Path(llava.eval.m4c_evaluator.__file__).parent

TRICKY = [
    "Yes", "yes", "Yes.", "YES", "No", "no.", "No, there is not.", "Not", "not sure", "Nope", "NO",
    "None", "", " ", "Two", "two dogs", "The dog", "a cat", "An apple", "the", "(A)", "A.", "A",
    "The answer is B", "The answer is B.", "t-shirt", "T-Shirt", "10,000", "1,000 feet", "a,b",
    "It's red", "it's", "dont", "Don't", "isnt", "oclock", "Im", "Twenty one", "U.S.A.", "3.5",
    "1.", "e.g. cat", "hello world!", "what?", "left/right", "left / right", "x=y", "[red]",
    "\"quoted\"", "under_score", "a - b", "<tag>", "@home", "back`tick", "semi;colon", "ten",
    "none", "zero", "unanswerable", "Unanswerable.", "Unanswerable", "coca-cola", "Coca Cola",
    "mr. smith", "Mr. Smith", "st. louis", "5:00", "5.00", "$5", "50%", "\ttab\tseparated\n",
    "multi\nline", "1.2.3.4", ". . .", "many....periods........................................",
]


def run_script(name: str, argv: list[str]) -> str:
    """Run an official eval script as __main__ and return what it printed."""
    buffer = io.StringIO()
    old_argv = sys.argv
    sys.argv = [name] + argv
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(io.StringIO()):
            runpy.run_path(str(EVAL_DIR / name), run_name="__main__")
    finally:
        sys.argv = old_argv
    return buffer.getvalue()


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def normalizer_golden() -> dict:
    from llava.eval.m4c_evaluator import EvalAIAnswerProcessor
    processor = EvalAIAnswerProcessor()
    return {"cases": [[s, processor(s)] for s in TRICKY]}


def textvqa_golden(tmp: Path) -> dict:
    from llava.eval.m4c_evaluator import TextVQAAccuracyEvaluator
    gts = [
        ["yes"] * 10,
        ["Two"] * 3 + ["2"] * 2 + ["two dogs"] * 5,
        ["coca-cola"] * 4 + ["coca cola"] * 3 + ["Coke"] * 3,
        ["t-shirt"] * 2 + ["T-Shirt"] * 1 + ["shirt"] * 7,
        ["unanswerable"] * 9 + ["red"],
        ["10,000"] * 5 + ["10000"] * 5,
        ["mr. smith"] * 1 + ["smith"] * 9,
        ["The dog"] * 2 + ["dog"] * 8,
    ]
    data, results, items = [], [], []
    for i, answers in enumerate(gts):
        question = f"What Is Item {i}?"
        data.append({"question": question.lower(), "image_id": f"img{i % 3}",
                     "answers": answers, "question_id": 100 + i})
    preds = ["Yes.", "two", "Coca Cola", "T-shirt", "Unanswerable", "10,000", "Mr. Smith", "the dog"]
    for i, (pred, row) in enumerate(zip(preds, data)):
        ocr = "\nReference OCR token: a, b" if i % 2 == 0 else ""
        prompt = f"What Is Item {i}?{ocr}\nAnswer the question using a single word or phrase."
        results.append({"question_id": row["image_id"], "prompt": prompt, "text": pred})
    evaluator = TextVQAAccuracyEvaluator()
    for pred, row in zip(preds, data):
        items.append(evaluator.eval_pred_list([{"pred_answer": pred, "gt_answers": row["answers"]}]))
    # more predictions scored one by one against the second and third annotation
    extra = [[p, evaluator.eval_pred_list([{"pred_answer": p, "gt_answers": gts[k]}]), k]
             for k in (1, 2, 3) for p in TRICKY]
    (tmp / "val.json").write_text(json.dumps({"data": data}))
    write_jsonl(tmp / "answers.jsonl", results)
    printed = run_script("eval_textvqa.py", ["--annotation-file", str(tmp / "val.json"),
                                             "--result-file", str(tmp / "answers.jsonl")])
    return {"annotations": {"data": data}, "answers": results, "printed": printed,
            "item_accuracy": items, "extra": extra}


def pope_golden(tmp: Path) -> dict:
    splits = {"adversarial": ["yes", "no", "no", "yes", "no", "yes"],
              "popular": ["no", "yes", "yes", "no"],
              "random": ["yes", "no", "yes", "no", "yes"]}
    texts = iter(["Yes", "No, there is not.", "NO", "Nope", "no.", "not sure",
                  "Yes.", "yes", "There is no dog", "", "None",
                  "Yes, there is.", "Not", "No", "It is not.", "There is a cat. No dog."])
    questions, answers = [], []
    (tmp / "coco").mkdir()
    qid = 0
    for split, labels in splits.items():
        write_jsonl(tmp / "coco" / f"coco_pope_{split}.json",
                    [{"question_id": i + 1, "image": f"{split}{i}.jpg", "text": "Is there a dog?",
                      "label": label} for i, label in enumerate(labels)])
        for i in range(len(labels)):
            questions.append({"question_id": qid, "image": f"{split}{i}.jpg", "category": split,
                              "text": "Is there a dog in the image?\nAnswer the question using "
                                      "a single word or phrase."})
            answers.append({"question_id": qid, "prompt": questions[-1]["text"], "text": next(texts)})
            qid += 1
    # answers interleaved across splits: only the order within a split matters
    answers = answers[::2] + answers[1::2]
    write_jsonl(tmp / "questions.jsonl", questions)
    write_jsonl(tmp / "answers.jsonl", answers)
    printed = run_script("eval_pope.py", ["--annotation-dir", str(tmp / "coco"),
                                          "--question-file", str(tmp / "questions.jsonl"),
                                          "--result-file", str(tmp / "answers.jsonl")])
    annotations = {split: [json.loads(x) for x in (tmp / "coco" / f"coco_pope_{split}.json")
                           .read_text().splitlines()] for split in splits}
    return {"questions": questions, "answers": answers, "annotations": annotations,
            "printed": printed}


def sqa_golden(tmp: Path) -> dict:
    texts = ["A", "B.", "A. cat", "(A)", "a", "The answer is B.", "The answer is B",
             "The answer is A. The answer is B.", "E", "C", "", "B", "D. dog", "B. ", "A.cat"]
    problems, answers, test_ids = {}, [], []
    for i, text in enumerate(texts):
        pid = str(1000 + i)
        n_choices = 2 + i % 3
        problems[pid] = {"question": f"Q{i}?", "choices": [f"c{k}" for k in range(n_choices)],
                         "answer": i % n_choices, "hint": "", "image": "image.png" if i % 2 else None,
                         "split": "test"}
        test_ids.append(pid)
        prompt = f"Q{i}?\nA. c0\nB. c1\nAnswer with the option's letter from the given choices directly."
        if i % 2:
            prompt = "<image>\n" + prompt
        answers.append({"question_id": pid, "prompt": prompt, "text": text})
    # two test problems without any prediction (one of them an image question)
    for pid in ("2000", "2001"):
        problems[pid] = {"question": "Q?", "choices": ["x", "y"], "answer": 0, "hint": "",
                         "image": "image.png" if pid == "2001" else None, "split": "test"}
        test_ids.append(pid)
    problems["3000"] = {"question": "val", "choices": ["x", "y"], "answer": 0, "hint": "",
                        "image": None, "split": "val"}
    (tmp / "problems.json").write_text(json.dumps(problems))
    (tmp / "pid_splits.json").write_text(json.dumps({"test": test_ids, "val": ["3000"]}))
    write_jsonl(tmp / "answers.jsonl", answers)
    printed = run_script("eval_science_qa.py", [
        "--base-dir", str(tmp), "--result-file", str(tmp / "answers.jsonl"),
        "--output-file", str(tmp / "output.json"), "--output-result", str(tmp / "result.json")])
    return {"problems": problems, "pid_splits": {"test": test_ids, "val": ["3000"]},
            "answers": answers, "printed": printed,
            "output": json.loads((tmp / "output.json").read_text()),
            "result": json.loads((tmp / "result.json").read_text())}


def llavabench_golden(tmp: Path) -> dict:
    sys.modules.setdefault("openai", types.ModuleType("openai"))  # the module is never called
    review_module = runpy.run_path(str(EVAL_DIR / "eval_gpt_review_bench.py"))
    replies = ["8 7", "8 7\nBecause", "8, 7", "8,7", "8 7 ", " 8 7", "10 9.5\nok", "7\n8 6",
               "Assistant 1: 8", "", "8\t7", "9 6", "6 9\nthe second"]
    with contextlib.redirect_stdout(io.StringIO()):
        parsed = [[r, review_module["parse_score"](r)] for r in replies]
    reviews = []
    categories = ["conv", "detail", "complex"]
    pairs = [[8, 7], [9, 6], [7, 7], [10, 5], [6, 8], [8, 8.5], [9, 3], [-1, -1], [7.5, 6]]
    for i, pair in enumerate(pairs):
        reviews.append({"id": i + 1, "question_id": i, "category": "llava_bench_" + categories[i % 3],
                        "content": "", "tuple": pair})
    write_jsonl(tmp / "reviews.jsonl", reviews)
    printed = run_script("summarize_gpt_review.py", ["-f", str(tmp / "reviews.jsonl")])
    return {"parse_score": parsed, "reviews": reviews, "printed": printed}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    sys.stderr = io.StringIO()  # the m4c evaluator draws a tqdm bar per call
    makers = {"normalizer": lambda tmp: normalizer_golden(), "textvqa": textvqa_golden,
              "pope": pope_golden, "sqa": sqa_golden, "llavabench": llavabench_golden}
    for name, make in makers.items():
        with tempfile.TemporaryDirectory() as tmp:
            data = make(Path(tmp))
        (OUT / f"{name}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {OUT / (name + '.json')}")


if __name__ == "__main__":
    main()
