"""Scoring rules against the official scripts' outputs (tests/golden/scoring/, made by running
the official llava-torch scorers) and against values derived by hand from docs/benchmarks.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llava15.eval.benchmarks import pope, sqa, textvqa
from llava15.eval.judge import parse_review_score, summarize_reviews
from llava15.eval.scoring import (binary_metrics, mmbench_infer, mmbench_infer_option,
                                  mmbench_infer_text, mme_category_score, mme_parse,
                                  normalize_answer, pope_label, soft_score, sqa_letter,
                                  textvqa_accuracy, vqaeval_accuracy)

GOLDEN = Path(__file__).parent / "golden" / "scoring"


def golden(name: str) -> dict:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ------------------------------------------------------------------ official goldens
def test_normalizer_matches_official_processor():
    cases = golden("normalizer")["cases"]
    assert len(cases) > 60
    for text, expected in cases:
        assert normalize_answer(text) == expected, text


def test_textvqa_accuracy_matches_m4c_evaluator():
    data = golden("textvqa")
    gts = [row["answers"] for row in data["annotations"]["data"]]
    for pred, expected, k in data["extra"]:
        assert textvqa_accuracy(pred, gts[k]) == pytest.approx(expected, abs=1e-12), (pred, k)


def test_textvqa_score_matches_eval_textvqa(tmp_path):
    data = golden("textvqa")
    (tmp_path / "val.json").write_text(json.dumps(data["annotations"]))
    answers = write_jsonl(tmp_path / "answers.jsonl", data["answers"])
    result = textvqa.score_files(answers, tmp_path / "val.json")
    printed = re.search(r"Samples: (\d+)\nAccuracy: ([\d.]+)%", data["printed"])
    assert result["samples"] == int(printed.group(1))
    assert f"{result['accuracy']:.2f}" == printed.group(2)
    assert textvqa.report(result, "answers") == data["printed"].rstrip("\n") + "\n"


def test_pope_matches_eval_pope(tmp_path):
    data = golden("pope")
    (tmp_path / "coco").mkdir()
    for split, records in data["annotations"].items():
        write_jsonl(tmp_path / "coco" / f"coco_pope_{split}.json", records)
    questions = write_jsonl(tmp_path / "q.jsonl", data["questions"])
    answers = write_jsonl(tmp_path / "a.jsonl", data["answers"])
    result = pope.score_files(answers, questions, tmp_path / "coco")
    # the official prints splits in os.listdir order; compare block by block
    def blocks(text: str) -> set[str]:
        return {b.strip() for b in text.split("=" * 36) if b.strip()}

    assert blocks(pope.report(result)) == blocks(data["printed"])
    assert len(blocks(data["printed"])) == 3


def test_sqa_matches_eval_science_qa(tmp_path):
    data = golden("sqa")
    (tmp_path / "problems.json").write_text(json.dumps(data["problems"]))
    (tmp_path / "pid_splits.json").write_text(json.dumps(data["pid_splits"]))
    answers = write_jsonl(tmp_path / "a.jsonl", data["answers"])
    result = sqa.score_files(answers, tmp_path)
    assert sqa.report(result) == data["printed"].strip()
    sqa.write_outputs(result, tmp_path / "out.json", tmp_path / "result.json")
    assert json.loads((tmp_path / "out.json").read_text()) == data["output"]
    assert json.loads((tmp_path / "result.json").read_text()) == data["result"]


def test_llavabench_parse_and_summary_match_official():
    data = golden("llavabench")
    for reply, expected in data["parse_score"]:
        assert parse_review_score(reply) == expected, reply
    summary = summarize_reviews(data["reviews"])
    printed = [line for line in data["printed"].splitlines() if line and line[0] != "="][1:]
    ours = [f"{k} {v['relative']} {v['reference']} {v['model']}" for k, v in summary.items()]
    assert ours == printed


# ------------------------------------------------------------- hand-derived (docs/benchmarks.md)
def test_soft_score_counts_other_annotators():
    # m matching annotators among 10: 0 -> 0, 1 -> 0.3, 2 -> 0.6, 3 -> 0.9, >=4 -> 1
    for m, expected in ((0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)):
        gts = ["x"] * m + ["y"] * (10 - m)
        assert soft_score("x", gts) == pytest.approx(expected)


def test_textvqa_requires_ten_answers():
    with pytest.raises(ValueError, match="exactly 10"):
        textvqa_accuracy("a", ["a"] * 9)


def test_vqaeval_unanimous_answers_compare_raw_strings():
    assert vqaeval_accuracy("t shirt", ["t-shirt"] * 10) == 0.0     # not normalised
    assert vqaeval_accuracy(" t-shirt\n", ["t-shirt"] * 10) == 1.0  # only stripped
    gts = ["t-shirt"] * 3 + ["shirt"] * 7                           # not unanimous: normalised
    assert vqaeval_accuracy("T-Shirt", gts) == pytest.approx(0.9)
    assert vqaeval_accuracy("Two", ["2"] * 4 + ["3"] * 6) == pytest.approx(1.0)
    assert vqaeval_accuracy("10,000", ["10000"] * 5 + ["many"] * 5) == pytest.approx(1.0)


def test_pope_label_rule():
    no = ["No", "no", "no.", "No, there is not.", "It is not.", "There is no dog", "not", "No.There"]
    yes = ["Yes", "NO", "Nope", "None", "Not", "", "Yes. No.", "I don't know"]
    assert [pope_label(t) for t in no] == ["no"] * len(no)
    assert [pope_label(t) for t in yes] == ["yes"] * len(yes)


def test_binary_metrics_degenerate_is_none():
    m = binary_metrics(["no", "no"], ["yes", "no"])
    assert (m["TP"], m["FP"], m["TN"], m["FN"]) == (0, 0, 1, 1)
    assert m["precision"] is None and m["f1"] is None and m["recall"] == 0.0
    assert m["accuracy"] == 0.5 and m["yes_ratio"] == 0.0


def test_sqa_letter_rule():
    cases = {"A": "A", "E": "E", "A. cat": "A", "B. ": "B", "A.": "FAILED", "(A)": "FAILED",
             "a": "FAILED", "The answer is B.": "B", "The answer is B": "FAILED",
             "The answer is A. The answer is B.": "FAILED", "": "FAILED", "F": "FAILED"}
    for text, expected in cases.items():
        assert sqa_letter(text) == expected, text


def test_mmbench_option_inference():
    assert mmbench_infer_option("B") == "B"
    assert mmbench_infer_option("The answer is C") == "C"
    assert mmbench_infer_option("(B)") == "B"
    assert mmbench_infer_option("B.") == "B"
    assert mmbench_infer_option("Answer:C") is None          # one token 'Answer:C', no form
    assert mmbench_infer_option("answer :D") == "D"          # ':D' form
    assert mmbench_infer_option("A or B") is None            # two bare letters
    # 'A' among more than 3 tokens may be the article: bare letters are skipped, forms tried
    assert mmbench_infer_option("A dog is on the left") is None
    assert mmbench_infer_option("A dog, so (B)") == "B"
    assert mmbench_infer_option("E") == "E"                  # letters A-E, whatever the options
    assert mmbench_infer_text("It is a red apple", {"A": "Red apple", "B": "Pear"}) == "A"
    assert mmbench_infer_text("apple or pear", {"A": "apple", "B": "pear"}) is None
    assert mmbench_infer("I think a pear", {"A": "apple", "B": "pear"}) == "B"


def test_mme_parse_rule():
    # callers pass the lower-cased prediction with the file line's trailing newline
    cases = {"yes": "yes", "no": "no", "yes\n": "yes", "no\n": "no", "yes, it is\n": "yes",
             "nope\n": "no", "not sure\n": "no", "snow\n": "no", "y\n": "other",
             "the answer is yes\n": "other", "\n": "other", "unknown\n": "other"}
    for text, expected in cases.items():
        assert mme_parse(text) == expected, text


def test_mme_category_score_acc_and_acc_plus():
    lines = ["1.txt\tQ1\tYes\tYes\n", "1.txt\tQ2\tNo\tNo\n",        # image 1: both right
             "2.txt\tQ1\tYes\tYes\n", "2.txt\tQ2\tNo\tyes\n",       # image 2: one right
             "3.txt\tQ1\tYes\tmaybe\n", "3.txt\tQ2\tNo\tNo.\n"]     # image 3: other + right
    s = mme_category_score(lines)
    assert s["acc"] == pytest.approx(4 / 6) and s["acc_plus"] == pytest.approx(1 / 3)
    assert s["score"] == pytest.approx(400 / 6 + 100 / 3) and s["other"] == 1
    # a prediction containing a tab makes a 5-field line: skipped for acc, image not acc+
    s = mme_category_score(["1.txt\tQ1\tYes\tYes\tx\n", "1.txt\tQ2\tNo\tNo\n"])
    assert (s["acc"], s["acc_plus"], s["skipped_lines"]) == (1.0, 0.0, 1)
