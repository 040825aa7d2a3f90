"""Scoring rules shared by several benchmarks, ported rule for rule from the official scripts.

- VQA accuracy (leave-one-annotator-out over 10 answers) in its two official variants:
  `textvqa_accuracy` (m4c_evaluator.TextVQAAccuracyEvaluator, used by eval_textvqa.py) and
  `vqaeval_accuracy` (the VQA challenge's vqaEval.py, run by the VQAv2 server).
- `pope_label` / `binary_metrics`: llava/eval/eval_pope.py.
- `sqa_letter`: llava/eval/eval_science_qa.py.
- `mmbench_infer`: the MMBench evaluator's answer matching (lmms-eval's MMBench_Evaluator).
- `mme_parse` / `mme_category_score`: MME eval_tool/calculation.py.
Every function is pure; see docs/benchmarks.md for the rules and their quirks.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from llava15.eval.normalize import (VQA_COMMA_STRIP, normalize_answer, process_digit_article,
                                    process_punctuation)

__all__ = ["normalize_answer", "soft_score", "textvqa_accuracy", "vqaeval_accuracy",
           "pope_label", "binary_metrics", "sqa_letter", "mmbench_infer_option",
           "mmbench_infer_text", "mmbench_infer", "mme_parse", "mme_category_score"]


def soft_score(prediction: str, gt_answers: Sequence[str]) -> float:
    """Mean over annotators i of min(1, #{j != i: gt_j == prediction} / 3).

    Strings are compared as given (normalise them first where the rule says so)."""
    accs = []
    for i in range(len(gt_answers)):
        matches = sum(1 for j, gt in enumerate(gt_answers) if j != i and gt == prediction)
        accs.append(min(1.0, matches / 3))
    return sum(accs) / len(accs)


def textvqa_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
    """m4c accuracy: prediction and the 10 human answers through `normalize_answer`."""
    if len(gt_answers) != 10:
        raise ValueError(f"TextVQA accuracy needs exactly 10 human answers, got {len(gt_answers)}")
    return soft_score(normalize_answer(prediction), [normalize_answer(a) for a in gt_answers])


def vqaeval_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
    """vqaEval.py accuracy: newline/tab-clean and strip both sides; only when the human answers
    are not unanimous are they and the prediction normalised (punctuation, digits, articles).
    With unanimous answers the raw strings must match exactly."""
    def clean(s: str) -> str:
        return s.replace("\n", " ").replace("\t", " ").strip()

    pred = clean(prediction)
    gts = [clean(a) for a in gt_answers]
    if len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(a, VQA_COMMA_STRIP)) for a in gts]
        pred = process_digit_article(process_punctuation(pred, VQA_COMMA_STRIP))
    return soft_score(pred, gts)


def pope_label(text: str) -> str:
    """eval_pope.py: keep the text before the first '.', drop commas, split on single spaces;
    'no' iff a word is exactly 'No', 'no' or 'not', else 'yes' ('NO', 'Nope' and '' are yes)."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def binary_metrics(predictions: Sequence[str], labels: Sequence[str]) -> dict:
    """POPE metrics with positive = 'yes': TP/FP/TN/FN, accuracy, precision, recall, F1 and the
    ratio of 'yes' predictions. A metric whose denominator is zero (where the official script
    raises ZeroDivisionError) is None."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    tp = sum(p == "yes" and l == "yes" for p, l in zip(predictions, labels))
    fp = sum(p == "yes" and l != "yes" for p, l in zip(predictions, labels))
    tn = sum(p != "yes" and l != "yes" for p, l in zip(predictions, labels))
    fn = sum(p != "yes" and l == "yes" for p, l in zip(predictions, labels))

    def div(a: float, b: float) -> float | None:
        return a / b if b else None

    precision, recall = div(tp, tp + fp), div(tp, tp + fn)
    f1 = (div(2 * precision * recall, precision + recall)
          if precision is not None and recall is not None else None)
    return {"TP": tp, "FP": fp, "TN": tn, "FN": fn, "accuracy": div(tp + tn, len(labels)),
            "precision": precision, "recall": recall, "f1": f1,
            "yes_ratio": div(sum(p == "yes" for p in predictions), len(predictions))}


_SQA_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")  # '.' is any character, as officially


def sqa_letter(text: str, options: Sequence[str] = ("A", "B", "C", "D", "E")) -> str:
    """eval_science_qa.py letter extraction: the whole text is a letter; or it starts with
    'X. '; or 'The answer is X' followed by any character occurs exactly once; else 'FAILED'."""
    if text in options:
        return text
    if len(text) >= 3 and text[0] in options and text[1:3] == ". ":
        return text[0]
    found = _SQA_ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else "FAILED"


# (prefix, suffix) forms of a letter token tried after the bare letter, in order.
_MMBENCH_FORMS = (("", "."), ("", ","), ("", ":"), ("", ")"), ("", ")."), ("(", ")"), ("(", ")."),
                  (":", ""), (":", ","), (":", "."), (":", ")"), (":", ")."))


def mmbench_infer_option(answer: str, num_choice: int = 5) -> str | None:
    """The letter named by exactly one whitespace token (bare, then the forms above), or None.

    A bare-letter match is skipped when the token 'A' is present among more than 3 tokens
    (it may be the article); the forms are then tried.
    """
    if "Failed to obtain answer via API" in answer:
        return None
    choices = string.ascii_uppercase[:num_choice]
    splits = [x.strip() for x in answer.split()]

    def count(prefix: str = "", suffix: str = "") -> int:
        return sum(prefix + c + suffix in splits for c in choices)

    if count() == 1 and not ("A" in splits and len(splits) > 3):
        for ch in choices:
            if ch in splits:
                return ch
    for prefix, suffix in _MMBENCH_FORMS:
        if count(prefix, suffix) == 1:
            for ch in choices:
                if prefix + ch + suffix in splits:
                    return ch
    return None


def mmbench_infer_text(answer: str, choices: dict[str, str]) -> str | None:
    """The letter whose option text (lower-cased) is the only one contained in the answer."""
    answer = answer.lower()
    cands = [k for k, text in choices.items() if str(text).lower() in answer]
    return cands[0] if len(cands) == 1 else None


def mmbench_infer(answer: str, choices: dict[str, str]) -> str | None:
    """Option letter first, option text second; None when neither decides (the server would
    then ask ChatGPT)."""
    return mmbench_infer_option(answer) or mmbench_infer_text(answer, choices)


def mme_parse(prediction: str) -> str:
    """calculation.py: 'yes'/'no' exactly, else 'yes' if the first 4 characters contain 'yes',
    else 'no' if they contain 'no', else 'other'. The caller lower-cases (and, officially, the
    line's trailing newline is still attached)."""
    if prediction in ("yes", "no"):
        return prediction
    prefix = prediction[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def mme_category_score(lines: Sequence[str]) -> dict:
    """Score one category file of calculation.py from its lines (`image\\tquestion\\tgt\\tpred\\n`).

    Lines are paired in order (one image = two questions). A line that does not split into
    exactly four tab-separated fields is skipped, as officially (it then counts for neither
    acc nor acc+). Returns acc, acc_plus (fractions), score = 100*acc + 100*acc_plus, and counts.
    """
    if len(lines) % 2:
        raise ValueError(f"MME category file has {len(lines)} lines; questions come in pairs")
    gts, preds, images_correct, skipped = [], [], 0, 0
    for start in range(0, len(lines), 2):
        correct = 0
        for line in lines[start:start + 2]:
            fields = line.split("\t")
            if len(fields) != 4:
                skipped += 1
                continue
            gt, pred = fields[2].lower(), mme_parse(fields[3].lower())
            if gt not in ("yes", "no"):
                raise ValueError(f"MME ground truth must be yes or no, got {fields[2]!r}")
            gts.append(gt)
            preds.append(pred)
            correct += gt == pred
        images_correct += correct == 2
    acc = sum(g == p for g, p in zip(gts, preds)) / len(gts) if gts else 0.0
    acc_plus = images_correct / (len(lines) // 2) if lines else 0.0
    return {"acc": acc, "acc_plus": acc_plus, "score": acc * 100 + acc_plus * 100,
            "questions": len(gts), "images": len(lines) // 2, "skipped_lines": skipped,
            "other": sum(p == "other" for p in preds)}
