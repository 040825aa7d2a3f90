"""Benchmark modules on small hand-made files in the official formats. Expected values are
derived by hand from the rules in docs/benchmarks.md (the GQA eval.py, MME calculation.py, VQA
evaluator, SEED converter, MMBench circular rule and MM-Vet grader are not installed)."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import pytest

from llava15.eval.answers import check_answers, load_answers
from llava15.eval.benchmarks import (BENCHMARKS, gqa, llavabench, mmbench, mmbench_cn, mme, mmvet,
                                     pope, seed, sqa, textvqa, vizwiz, vqav2)

SHORT = "\nAnswer the question using a single word or phrase."
MC = "\nAnswer with the option's letter from the given choices directly."


def jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def answers(pairs: list[tuple]) -> list[dict]:
    return [{"question_id": q, "prompt": "", "text": t} for q, t in pairs]


def test_registry_shape():
    assert list(BENCHMARKS) == ["vqav2", "gqa", "vizwiz", "sqa", "textvqa", "pope", "mme",
                                "mmbench", "mmbench_cn", "seed", "llavabench", "mmvet"]
    for module in BENCHMARKS.values():
        assert isinstance(module.FILES, dict) and callable(module.load) and callable(module.score)
    for name in ("vqav2", "vizwiz", "mmbench", "mmbench_cn", "seed", "mmvet"):
        assert callable(BENCHMARKS[name].write_submission)


def test_missing_file_names_official_location(tmp_path):
    with pytest.raises(FileNotFoundError, match="playground/data/eval/pope/llava_pope_test.jsonl"):
        pope.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="playground/data/eval/MME/llava_mme.jsonl"):
        mme.load(tmp_path)


def test_answers_errors_and_checks(tmp_path):
    bad = tmp_path / "a.jsonl"
    bad.write_text('{"question_id": 1, "text": "a"}\n\n{"question_id": 2, "text": \n')
    with pytest.raises(ValueError, match=r"a.jsonl:3: not valid JSON"):
        load_answers(bad)
    bad.write_text('{"question_id": 1, "text": "a"}\n{"text": "b"}\n')
    with pytest.raises(KeyError, match=r"a.jsonl:line 2: missing key\(s\) 'question_id'"):
        load_answers(bad)
    check = check_answers(answers([(1, "a"), (1, "b"), (9, "c")]), [1, 2])
    assert (check.duplicates, check.unknown, check.missing) == ([1], [9], [2])


def test_load_short_answer_questions(tmp_path):
    jsonl(tmp_path / "llava_pope_test.jsonl",
          [{"question_id": 3, "image": "x.jpg", "text": "Is there a cat?" + SHORT,
            "category": "random"}])
    (q,) = pope.load(tmp_path)
    assert (q.question_id, q.image, q.text, q.max_new_tokens) == (3, "x.jpg", "Is there a cat?" + SHORT, 128)
    assert pope.image_root(tmp_path) == tmp_path / "val2014"


def test_textvqa_question_from_prompt():
    assert textvqa.question_from_prompt("What Is It?\nReference OCR token: A, b" + SHORT) == "what is it?"
    assert textvqa.question_from_prompt("Reference OCR token: A\nWhat?\nx") == "what?"
    assert textvqa.question_from_prompt("What?" + SHORT) == "what?"
    assert textvqa.question_from_prompt("OCR tokens: a b Question: Why? Short answer:") == "why?"
    with pytest.raises(ValueError, match="cannot find the question"):
        textvqa.question_from_prompt("one line only")


def test_sqa_prompts(tmp_path):
    items = [{"id": "7", "image": "7/image.png", "conversations": [
                 {"from": "human", "value": "<image>\nContext: hot.\nWhich is hotter?\nA. sun\nB. ice"},
                 {"from": "gpt", "value": "A"}]},
             {"id": "8", "conversations": [{"from": "human", "value": "Which?\nA. x\nB. y"},
                                           {"from": "gpt", "value": "B"}]}]
    (tmp_path / "llava_test_CQM-A.json").write_text(json.dumps(items))
    q7, q8 = sqa.load(tmp_path)
    assert q7.text == "Context: hot.\nWhich is hotter?\nA. sun\nB. ice" + MC
    assert q7.extra["prompt"] == "<image>\n" + q7.text and q7.max_new_tokens == 1024
    assert q8.image is None and q8.extra["prompt"] == q8.text == "Which?\nA. x\nB. y" + MC


def make_mme(root: Path) -> None:
    release = root / "MME_Benchmark_release_version"
    flat, nested = release / "existence", release / "artwork" / "questions_answers_YN"
    flat.mkdir(parents=True)
    nested.mkdir(parents=True)
    (release / "artwork" / "images").mkdir()
    (flat / "1.txt").write_text("Is there a dog? Please answer yes or no.\tYes\n"
                                "Is there a cat? Please answer yes or no.\tNo\n")
    (flat / "2.txt").write_text("Is there a car?  Please answer yes or no.\tYes\n"   # double space
                                "Is there a bus? Please answer yes or no.\tNo\n")
    (nested / "9.txt").write_text("Is it by Monet? Please answer yes or no.\tNo\n"
                                  "Is it by Dali? Please answer yes or no.\tYes\n")


def test_mme_scores_acc_and_acc_plus(tmp_path):
    make_mme(tmp_path)
    rows = [("existence/1.jpg", "Is there a dog?", "Yes"), ("existence/1.jpg", "Is there a cat?", "no"),
            ("existence/2.jpg", "Is there a car?", "yes"), ("existence/2.jpg", "Is there a bus?", "Yes"),
            ("artwork/images/9.jpg", "Is it by Monet?", "maybe"),
            ("artwork/images/9.jpg", "Is it by Dali?", "Yes, it is")]
    recs = [{"question_id": q, "prompt": p + SHORT, "text": t} for q, p, t in rows]
    result = mme.score(recs, tmp_path)
    # existence: 3/4 questions right, 1/2 images fully right -> 75 + 50
    assert result["categories"]["existence"]["score"] == pytest.approx(125.0)
    # artwork: 'maybe' is other (wrong), 'yes, it is' right -> 50 + 0
    assert result["categories"]["artwork"]["score"] == pytest.approx(50.0)
    assert result["perception"] == pytest.approx(175.0) and result["cognition"] == 0
    assert "count" in result["perception_missing"]
    bad = [{"question_id": "existence/1.jpg", "prompt": "Unknown?" + SHORT, "text": "yes"}] * 2
    with pytest.raises(KeyError, match="no ground truth"):
        mme.score(bad, tmp_path)


def gqa_question(answer: str, structural: str, balanced: bool = True, group: str | None = "g",
                 semantic: list | None = None) -> dict:
    return {"question": "Is the man tall?", "answer": answer, "isBalanced": balanced,
            "types": {"structural": structural, "semantic": "attr", "detailed": "x"},
            "semantic": semantic or [{"operation": "select", "argument": "man"},
                                     {"operation": "query", "argument": "name"}],
            "groups": {"global": group}}


def test_gqa_exact_match_after_rstrip_lower(tmp_path):
    questions = {"1": gqa_question("yes", "verify"), "2": gqa_question("man", "query"),
                 "3": gqa_question("red", "query"), "4": gqa_question("x", "query", balanced=False)}
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "testdev_balanced_questions.json").write_text(json.dumps(questions))
    result = gqa.score(answers([("1", "Yes."), ("2", "the man"), ("3", "Red..")]), tmp_path)
    assert result["accuracy"] == pytest.approx(200 / 3) and result["questions"] == 3
    assert result["binary"] == 100.0 and result["open"] == 50.0
    # steps: 'select: man' counts, 'query: name' does not -> 1 step
    assert result["accuracyPerSteps"] == {"1": {"accuracy": pytest.approx(200 / 3), "count": 3}}
    assert result["accuracyPerLength"]["4"]["count"] == 3
    # group g: gold {yes:1, man:1, red:1}, predicted {yes:1, the man:1, red:1}
    # chi2 = (1-1)^2/1 + (0-1)^2/1 + (1-1)^2/1 = 1, weighted by 3 / 3 -> 1, / 100
    assert result["distribution"] == pytest.approx(0.01)
    with pytest.raises(KeyError, match="no prediction for balanced question 3"):
        gqa.score(answers([("1", "yes"), ("2", "man")]), tmp_path)


def test_vqav2_submission_and_local_score(tmp_path):
    jsonl(tmp_path / "llava_vqav2_mscoco_test2015.jsonl",
          [{"question_id": i, "image": f"{i}.jpg", "text": "q"} for i in (1, 2, 3)])
    path = vqav2.write_submission(answers([(1, "Two"), (3, "The T-Shirt.")]), tmp_path,
                                  tmp_path / "out" / "submission")
    assert path.suffix == ".json"
    assert json.loads(path.read_text()) == [{"question_id": 1, "answer": "2"},
                                            {"question_id": 2, "answer": ""},
                                            {"question_id": 3, "answer": "t shirt"}]
    ann = {"annotations": [
        {"question_id": 1, "answer_type": "number", "question_type": "how many",
         "answers": [{"answer": "2"}] * 4 + [{"answer": "3"}] * 6},
        {"question_id": 3, "answer_type": "other", "question_type": "what",
         "answers": [{"answer": "t-shirt"}] * 10}]}
    (tmp_path / "v2_mscoco_val2014_annotations.json").write_text(json.dumps(ann))
    result = vqav2.score(answers([(1, "Two"), (3, "t shirt")]), tmp_path)
    # q1: not unanimous, 'two' -> '2' matches 4 -> 1.0; q3: unanimous raw 't-shirt' != 't shirt'
    assert result["overall"] == 50.0
    assert result["perAnswerType"] == {"number": 100.0, "other": 0.0}


def test_vqav2_local_score_uses_the_converters_answers(tmp_path):
    """With unanimous humans vqaEval.py compares raw strings, so the raw model text "Yes." or
    "Two" would score 0; the official pipeline scores the converter's "yes" and "2"."""
    ann = {"annotations": [
        {"question_id": 1, "answer_type": "yes/no", "question_type": "is the",
         "answers": [{"answer": "yes"}] * 10},
        {"question_id": 2, "answer_type": "number", "question_type": "how many",
         "answers": [{"answer": "2"}] * 10},
        {"question_id": 3, "answer_type": "other", "question_type": "what",
         "answers": [{"answer": "red"}] * 10}]}
    (tmp_path / "v2_mscoco_val2014_annotations.json").write_text(json.dumps(ann))
    result = vqav2.score(answers([(1, "Yes."), (2, "Two"), (3, "Blue")]), tmp_path)
    assert result["overall"] == pytest.approx(66.67)
    assert result["perAnswerType"] == {"yes/no": 100.0, "number": 100.0, "other": 0.0}


def test_vizwiz_submission(tmp_path):
    jsonl(tmp_path / "llava_test.jsonl", [{"question_id": i, "image": f"VizWiz_test_{i:08d}.jpg",
                                           "text": "q"} for i in (0, 1)])
    path = vizwiz.write_submission(answers([(0, "Unanswerable."), (1, "A red cup")]), tmp_path,
                                   tmp_path / "up.json")
    assert json.loads(path.read_text()) == [
        {"image": "VizWiz_test_00000000.jpg", "answer": "unanswerable"},
        {"image": "VizWiz_test_00000001.jpg", "answer": "red cup"}]
    with pytest.raises(KeyError, match="1 missing"):
        vizwiz.write_submission(answers([(0, "x")]), tmp_path, tmp_path / "up.json")


def test_seed_exact_letter(tmp_path):
    data = {"question_type": {"Scene": 1, "Count": 2, "Action": 10}, "questions": [
        {"question_id": "1", "question_type_id": 1, "data_type": "image", "answer": "A"},
        {"question_id": "2", "question_type_id": 1, "data_type": "image", "answer": "B"},
        {"question_id": "3", "question_type_id": 2, "data_type": "image", "answer": "C"},
        {"question_id": "v4", "question_type_id": 10, "data_type": "video", "answer": "D"}]}
    (tmp_path / "SEED-Bench.json").write_text(json.dumps(data))
    recs = answers([(1, "A"), (2, "B."), (3, "C"), ("v4", "D")])
    result = seed.score(recs, tmp_path)
    assert result["per_type"] == {"Scene": 50.0, "Count": 100.0, "Action": 100.0}
    assert result["total"] == 75.0 and result["video"] == 100.0
    assert result["image"] == pytest.approx(200 / 3)
    path = seed.write_submission(recs, tmp_path, tmp_path / "up")
    assert [json.loads(x) for x in path.read_text().splitlines()][1] == {"question_id": "2",
                                                                         "prediction": "B."}


def write_tsv(path: Path, rows: list[dict]) -> Path:
    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image",
              "source", "l2-category", "comment", "split"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, delimiter="\t")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in header})
    return path


PNG = base64.b64encode(b"\x89PNG fake bytes").decode()


def mmbench_rows() -> list[dict]:
    base = {"image": PNG, "category": "color", "l2-category": "attr", "split": "dev"}
    return [  # question 0 (3 options, answer B) and its two circular copies; question 1 (2 options)
        {**base, "index": 0, "question": "Colour?", "hint": "Look.", "A": "red", "B": "blue",
         "C": "green", "answer": "B"},
        {**base, "index": 1000000, "question": "Colour?", "hint": "Look.", "A": "blue",
         "B": "green", "C": "red", "answer": "A"},
        {**base, "index": 2000000, "question": "Colour?", "hint": "Look.", "A": "green",
         "B": "red", "C": "blue", "answer": "C"},
        {**base, "index": 1, "question": "Shape?", "hint": "nan", "A": "round", "B": "NA",
         "C": "square", "answer": "A", "category": "shape"}]


def test_mmbench_prompts_and_rotations(tmp_path):
    write_tsv(tmp_path / "mmbench_dev_20230712.tsv", mmbench_rows())
    q = mmbench.load(tmp_path)
    assert len(q) == 4 and q[0].image == b"\x89PNG fake bytes" and q[0].max_new_tokens == 1024
    assert q[0].text == "Look.\nColour?\nA. red\nB. blue\nC. green" + MC
    assert q[0].extra["prompt"] == "Look.\nColour?\nA. red\nB. blue\nC. green"
    # hint 'nan' is no hint; option B 'NA' reads as NaN in pandas, so options stop at A
    assert q[3].text == "Shape?\nA. round" + MC and q[3].extra["options"] == ["round"]
    rounds = [x for x in mmbench.load(tmp_path, all_rounds=True) if x.question_id == 0]
    assert [x.extra["round_id"] for x in rounds] == [0, 1, 2]
    assert rounds[1].text == "Look.\nColour?\nA. blue\nB. green\nC. red" + MC
    assert rounds[1].extra["option_char"] == ["B", "C", "A"]
    (tmp_path / "mmbench_cn").mkdir()
    write_tsv(tmp_path / "mmbench_cn" / "mmbench_dev_cn_20231003.tsv", mmbench_rows())
    assert mmbench_cn.load(tmp_path / "mmbench_cn")[0].text.endswith("\n请直接回答选项字母。")


def test_mmbench_circular_score(tmp_path):
    write_tsv(tmp_path / "mmbench_dev_20230712.tsv", mmbench_rows())
    # question 0: all three copies right (letter, '(A)', option text); question 1 right
    good = answers([(0, "B"), (1000000, "(A)"), (2000000, "It is blue."), (1, "A")])
    result = mmbench.score(good, tmp_path)
    assert result["overall"] == 100.0 and result["questions"] == 2
    # one copy wrong -> question 0 wrong; a missing copy also makes it wrong
    assert mmbench.score(good[:1] + answers([(1000000, "B")]) + good[2:], tmp_path)["overall"] == 50.0
    partial = mmbench.score([good[0], good[2], good[3]], tmp_path)
    assert partial["overall"] == 50.0 and partial["missing_copies"] == 1
    assert partial["category"] == {"color": 0.0, "shape": 100.0}
    # --all-rounds answers: letters refer to the rotated options (option_char maps them back)
    rounds = [{"question_id": 0, "round_id": r, "text": t, "options": o, "option_char": c}
              for r, t, o, c in ((0, "B", ["red", "blue", "green"], ["A", "B", "C"]),
                                 (1, "A", ["blue", "green", "red"], ["B", "C", "A"]),
                                 (2, "C", ["green", "red", "blue"], ["C", "A", "B"]))]
    rows = mmbench_rows()[:1]
    assert mmbench.circular_score(rounds, rows)["overall"] == 100.0
    rounds[2]["text"] = "A"
    assert mmbench.circular_score(rounds, rows)["overall"] == 0.0


def test_mmbench_submission_table(tmp_path):
    write_tsv(tmp_path / "mmbench_dev_20230712.tsv", mmbench_rows())
    path = mmbench.write_submission(answers([(0, "B"), (1, "A")]), tmp_path,
                                    tmp_path / "up" / "llava-v1.5-13b", fmt="tsv")
    assert path == tmp_path / "up" / "llava-v1.5-13b.tsv"
    with open(path, newline="", encoding="utf-8") as f:
        table = list(csv.reader(f, delimiter="\t"))
    assert table[0] == ["index", "question", "A", "B", "C", "D", "prediction", "answer", "split"]
    assert table[1][6] == "B" and table[2][6] == "" and len(table) == 5


def official_mmbench_upload(tsv: Path, answer_file: Path, out: Path) -> None:
    """convert_mmbench_for_submission.py's steps with pandas: read the TSV, drop six columns,
    insert an empty `prediction` 7th, set each answer's text on its index, write xlsx."""
    import pandas as pd

    df = pd.read_table(tsv)
    upload = df.drop(columns=["hint", "category", "source", "image", "comment", "l2-category"])
    upload.insert(6, "prediction", None)
    for line in answer_file.read_text().splitlines():
        record = json.loads(line)
        upload.loc[df["index"] == record["question_id"], "prediction"] = record["text"]
    upload.to_excel(out, index=False, engine="openpyxl")


def xlsx_cells(path: Path) -> list[list]:
    import openpyxl

    sheet = openpyxl.load_workbook(path).active
    return [[(type(c.value).__name__, c.value) for c in row] for row in sheet.iter_rows()]


def test_mmbench_xlsx_equals_the_official_pandas_upload(tmp_path):
    """Cell values and types (integer index, numeric option columns, empty NA cells, numeric-
    looking text among texts, the sheet name) as pandas' read_table + to_excel give them."""
    rows = mmbench_rows()
    rows[0].update(A="3", D="2")        # "3" among texts stays text; D: one number, others NA
    rows[1].update(split="7", C="1.5")  # a column of numbers with NA cells reads as float
    for row in rows[1:]:
        row["split"] = "7"
    rows[3]["C"] = "True"
    tsv = write_tsv(tmp_path / "mmbench_dev_20230712.tsv", rows)
    records = [(0, "B"), (1000000, "3"), (1, "A"), (1, "C")]  # "3" stays text; last answer wins
    answer_file = tmp_path / "answers.jsonl"
    answer_file.write_text("".join(json.dumps({"question_id": i, "text": t}) + "\n"
                                   for i, t in records))
    ours = mmbench.write_submission(answer_file, tmp_path, tmp_path / "up" / "llava-v1.5-13b")
    assert ours == tmp_path / "up" / "llava-v1.5-13b.xlsx"
    official_mmbench_upload(tsv, answer_file, tmp_path / "official.xlsx")
    assert xlsx_cells(ours) == xlsx_cells(tmp_path / "official.xlsx")
    import openpyxl
    assert openpyxl.load_workbook(ours).sheetnames == ["Sheet1"]
    assert xlsx_cells(ours)[1][0] == ("int", 0)


def test_mmbench_xlsx_drops_control_characters_and_says_so(tmp_path, caplog):
    write_tsv(tmp_path / "mmbench_dev_20230712.tsv", mmbench_rows())
    path = mmbench.write_submission(answers([(0, "B\x01\x1b"), (1, "A")]), tmp_path, tmp_path / "x")
    assert xlsx_cells(path)[1][6] == ("str", "B") and xlsx_cells(path)[4][6] == ("str", "A")
    assert "control characters" in caplog.text and "1 cell(s)" in caplog.text


@pytest.mark.parametrize("values, expected", [
    (["1", "2"], [1, 2]), (["1", ""], [1.0, None]), (["1", "2.5"], [1.0, 2.5]),
    (["1", "x"], ["1", "x"]), (["NA", "nan"], [None, None]), (["True", "false"], [True, False]),
    (["1e3", "-2"], [1000.0, -2.0])])
def test_mmbench_column_types_follow_pandas(values, expected):
    typed = mmbench.infer_column(values)
    assert typed == expected and [type(v) for v in typed] == [type(v) for v in expected]


def test_output_path_keeps_dots_of_experiment_names(tmp_path):
    from llava15.eval.question import output_path

    assert output_path(tmp_path / "llava-v1.5-13b", ".jsonl").name == "llava-v1.5-13b.jsonl"
    assert output_path(tmp_path / "a.jsonl", ".jsonl").name == "a.jsonl"
    assert output_path(tmp_path / "sub" / "x", ".json") == tmp_path / "sub" / "x.json"


class FakeJudge:
    """Duck-typed JudgeClient returning queued replies and recording the messages."""

    model = "fake-judge"

    def __init__(self, replies: list[str]):
        self.replies, self.calls, self.runs = list(replies), [], []

    def chat(self, messages, temperature, max_tokens, run=0):
        self.calls.append((messages, temperature, max_tokens))
        self.runs.append(run)
        return self.replies.pop(0)


def test_mmvet_convert_and_aggregate(tmp_path):
    assert mmvet.convert(answers([(0, "a"), (1, "b")])) == {"v1_0": "a", "v1_1": "b"}
    meta = {"v1_0": {"question": "q0", "answer": "a", "capability": ["rec", "ocr"]},
            "v1_1": {"question": "q1", "answer": "b", "capability": ["rec"]},
            "v1_2": {"question": "q2", "answer": "c<AND>d", "capability": ["ocr", "math"]}}
    (tmp_path / "mm-vet.json").write_text(json.dumps(meta))
    judge = FakeJudge(["1.0", "0.5", "0.0"])
    result = mmvet.score(answers([(0, "a"), (1, "x"), (2, "c")]), tmp_path, judge)
    assert result["total"] == 50.0
    assert result["capability"] == {"rec": 75.0, "ocr": 50.0, "math": 0.0}
    assert result["combination"] == {"rec_ocr": 100.0, "rec": 50.0, "ocr_math": 0.0}
    assert all(call[1:] == (0.0, 3) for call in judge.calls)
    assert result["std"] == 0.0 and result["runs"] == [50.0] and result["num_run"] == 1


def test_mmvet_num_run_reports_each_run_mean_and_spread(tmp_path):
    """mm-vet_evaluator.py --num_run 3: means over runs, population std of the run totals,
    the per-sample grade file with one entry per run; each run is asked apart."""
    meta = {"v1_0": {"question": "q0", "answer": "a", "capability": ["rec", "ocr"]},
            "v1_1": {"question": "q1", "answer": "b", "capability": ["rec"]}}
    (tmp_path / "mm-vet.json").write_text(json.dumps(meta))
    # run 0: 1.0, 0.0 (total 50); run 1: 1.0, 1.0 (100); run 2: 0.4 ok, then "x" five+1 times
    judge = FakeJudge(["1.0", "0.0", "1.0", "1.0", "0.4 ok"] + ["x"] * 6)
    grades = tmp_path / "out" / mmvet.grade_file_name("llava-v1.5-7b", judge.model, 3)
    result = mmvet.score(answers([(0, "a"), (1, "y")]), tmp_path, judge, num_run=3,
                         grade_path=grades)
    assert judge.runs == [0, 0, 1, 1, 2] + [2] * 6
    assert result["runs"] == [50.0, 100.0, 20.0]
    assert result["total"] == round((50 + 100 + 20) / 3, 1) == 56.7
    mean = (50 + 100 + 20) / 3
    assert result["std"] == round((((50 - mean) ** 2 + (100 - mean) ** 2 + (20 - mean) ** 2) / 3)
                                  ** 0.5, 1) == 33.0
    assert result["capability"] == {"rec": 56.7, "ocr": 80.0}
    assert result["capability_std"]["ocr"] == round((2 * 0.2 ** 2 / 3 + 0.4 ** 2 / 3) ** 0.5 * 100, 1)
    assert result["combination"] == {"rec_ocr": 80.0, "rec": 33.3}
    assert [r["total"] for r in result["per_run"]] == [50.0, 100.0, 20.0]
    saved = json.loads(grades.read_text())
    assert grades.name == "llava-v1.5-7b_fake-judge-grade-3runs.json"
    assert saved["v1_0"] == {"model": ["fake-judge"] * 3, "content": ["1.0", "1.0", "0.4"],
                             "score": [1.0, 1.0, 0.4]}
    assert saved["v1_1"]["score"] == [0.0, 1.0, 0.0] and saved["v1_1"]["content"][2] == "x"


def test_llavabench_review_pairs_by_position(tmp_path):
    jsonl(tmp_path / "questions.jsonl", [
        {"question_id": 0, "image": "a.jpg", "text": "Q0", "category": "conv"},
        {"question_id": 1, "image": "b.jpg", "text": "Q1", "category": "detail"}])
    jsonl(tmp_path / "context.jsonl", [{"image": "a.jpg", "caption": "cap a"},
                                       {"image": "b.jpg", "caption": ["b1", "b2"]}])
    jsonl(tmp_path / "answers_gpt4.jsonl", [{"question_id": 0, "text": "R0", "answer_id": "r0"},
                                            {"question_id": 1, "text": "R1", "answer_id": "r1"}])
    judge = FakeJudge(["8 6\nok", "10 5\nok"])
    result = llavabench.score(answers([(0, "A0"), (1, "A1")]), tmp_path, judge)
    assert result["summary"]["all"] == {"relative": 61.1, "reference": 90.0, "model": 55.0,
                                        "count": 2}
    assert result["summary"]["llava_bench_detail"]["relative"] == 50.0
    messages, temperature, max_tokens = judge.calls[1]
    assert (temperature, max_tokens) == (0.2, 1024)
    assert messages[1]["content"].startswith("[Context]\nb1\nb2\n\n[Question]\nQ1\n\n[Assistant 1]\nR1")
    assert llavabench.score(answers([(0, "A0")]), tmp_path) == {"judge": "not configured",
                                                                "answers": 1}


def test_answer_checks_reported(tmp_path):
    data = {"question_type": {"Scene": 1}, "questions": [
        {"question_id": "1", "question_type_id": 1, "data_type": "image", "answer": "A"},
        {"question_id": "2", "question_type_id": 1, "data_type": "image", "answer": "A"}]}
    (tmp_path / "SEED-Bench.json").write_text(json.dumps(data))
    check = seed.score(answers([(1, "B"), (1, "A"), (5, "A")]), tmp_path)["answer_check"]
    assert check["duplicates"]["examples"] == ["1"] and check["unknown"]["examples"] == ["5"]
    assert check["missing"]["examples"] == ["2"]


def test_eval_package_imports_without_torch():
    import subprocess
    import sys

    code = ("import sys; import llava15.eval.benchmarks, llava15.eval.judge, llava15.cli.score; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
