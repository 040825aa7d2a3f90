"""`llava15 score`: official command lines translate one to one and print what the official
scripts print (compared with the printouts in tests/golden/scoring/)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from test_judge import StubServer

from llava15.cli import score

GOLDEN = Path(__file__).parent / "golden" / "scoring"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    score.add_arguments(parser)
    return score.run(parser.parse_args(argv))


def jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_sqa_command_prints_and_writes_like_official(tmp_path, capsys):
    data = json.loads((GOLDEN / "sqa.json").read_text())
    (tmp_path / "problems.json").write_text(json.dumps(data["problems"]))
    (tmp_path / "pid_splits.json").write_text(json.dumps(data["pid_splits"]))
    jsonl(tmp_path / "a.jsonl", data["answers"])
    assert run(["sqa", "--base-dir", str(tmp_path), "--result-file", str(tmp_path / "a.jsonl"),
                "--output-file", str(tmp_path / "o.json"), "--output-result",
                str(tmp_path / "r.json"), "--split", "test", "--json", str(tmp_path / "m.json")]) == 0
    assert capsys.readouterr().out == data["printed"]
    assert json.loads((tmp_path / "r.json").read_text()) == data["result"]
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["correct"] == data["result"]["correct"]


def test_textvqa_command_prints_like_official(tmp_path, capsys):
    data = json.loads((GOLDEN / "textvqa.json").read_text())
    (tmp_path / "val.json").write_text(json.dumps(data["annotations"]))
    jsonl(tmp_path / "answers.jsonl", data["answers"])
    run(["textvqa", "--annotation-file", str(tmp_path / "val.json"),
         "--result-file", str(tmp_path / "answers.jsonl")])
    assert capsys.readouterr().out == data["printed"]


def test_gqa_and_vqav2_converters(tmp_path, capsys):
    gqa_dir = tmp_path / "gqa" / "data"
    gqa_dir.mkdir(parents=True)
    src = jsonl(tmp_path / "merge.jsonl", [{"question_id": "7", "prompt": "", "text": "Yes."}])
    run(["gqa", "--src", str(src), "--dst", str(gqa_dir / "testdev_balanced_predictions.json")])
    assert json.loads((gqa_dir / "testdev_balanced_predictions.json").read_text()) == [
        {"questionId": "7", "prediction": "yes"}]
    vqa = tmp_path / "vqav2"
    jsonl(vqa / "answers" / "split1" / "ck" / "merge.jsonl",
          [{"question_id": 5, "prompt": "", "text": "Two"}])
    jsonl(vqa / "llava_vqav2_mscoco_test2015.jsonl",
          [{"question_id": 5, "image": "a", "text": "q"}, {"question_id": 6, "image": "b", "text": "q"}])
    run(["vqav2", "--dir", str(vqa), "--ckpt", "ck", "--split", "split1"])
    assert "total results: 1, total split: 2, error_line: 0" in capsys.readouterr().out
    assert json.loads((vqa / "answers_upload" / "split1" / "ck.json").read_text()) == [
        {"question_id": 5, "answer": "2"}, {"question_id": 6, "answer": ""}]


def test_vqav2_score_command_and_eval_scoring_agree(tmp_path, capsys):
    """`score vqav2 --annotation-file` scores the upload file it wrote; `eval`'s scorer
    (`vqav2.score`) must give the same figures on the same answers."""
    from llava15.eval.benchmarks import vqav2

    vqa = tmp_path / "vqav2"
    texts = {1: "Yes.", 2: "Two", 3: "The T-Shirt.", 4: "no", 5: "3 dogs"}
    merge = jsonl(vqa / "answers" / "s" / "ck" / "merge.jsonl",
                  [{"question_id": q, "prompt": "", "text": t} for q, t in texts.items()])
    jsonl(vqa / "llava_vqav2_mscoco_test2015.jsonl",
          [{"question_id": q, "image": f"{q}.jpg", "text": "q"} for q in texts])
    humans = {1: ["yes"] * 10, 2: ["2"] * 10, 3: ["t-shirt"] * 5 + ["shirt"] * 5,
              4: ["yes"] * 10, 5: ["3"] * 10}
    annotations = vqa / "v2_mscoco_val2014_annotations.json"
    annotations.write_text(json.dumps({"annotations": [
        {"question_id": q, "answer_type": "other", "question_type": "what",
         "answers": [{"answer": a} for a in humans[q]]} for q in texts]}))
    run(["vqav2", "--dir", str(vqa), "--ckpt", "ck", "--split", "s", "--annotation-file",
         str(annotations), "--json", str(tmp_path / "v.json")])
    from_command = json.loads((tmp_path / "v.json").read_text())
    from_eval = vqav2.score(merge, vqa)
    assert from_command["overall"] == from_eval["overall"] == 60.0
    assert from_command["perQuestionType"] == from_eval["perQuestionType"]
    assert "Overall Accuracy is: 60.00" in capsys.readouterr().out


def test_llavabench_command_with_stub_judge(tmp_path, capsys):
    jsonl(tmp_path / "q.jsonl", [{"question_id": 0, "image": "a.jpg", "text": "Q", "category": "complex"}])
    jsonl(tmp_path / "c.jsonl", [{"image": "a.jpg", "caption": "cap"}])
    jsonl(tmp_path / "ref.jsonl", [{"question_id": 0, "text": "R", "answer_id": "r"}])
    jsonl(tmp_path / "ans.jsonl", [{"question_id": 0, "text": "A", "answer_id": "x"}])
    with StubServer([(200, "8 4\nreason")]) as stub:
        argv = ["llavabench", "-q", str(tmp_path / "q.jsonl"), "-c", str(tmp_path / "c.jsonl"),
                "-a", str(tmp_path / "ref.jsonl"), str(tmp_path / "ans.jsonl"),
                "-o", str(tmp_path / "reviews.jsonl"), "--judge-base-url", stub.url,
                "--judge-model", "m", "--judge-cache", str(tmp_path / "cache")]
        run(argv)
        run(argv)  # the second run is served from the cache
    assert len(stub.requests) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["reviews", "all 50.0 80.0 40.0", "llava_bench_complex 50.0 80.0 40.0"]
    review = json.loads((tmp_path / "reviews.jsonl").read_text())
    assert review["tuple"] == [8.0, 4.0] and review["category"] == "llava_bench_complex"


def test_mme_mmbench_seed_commands(tmp_path, capsys):
    from test_benchmarks import make_mme, mmbench_rows, write_tsv

    make_mme(tmp_path)
    short = "\nAnswer the question using a single word or phrase."
    jsonl(tmp_path / "answers" / "exp.jsonl", [
        {"question_id": "existence/1.jpg", "prompt": "Is there a dog?" + short, "text": "Yes"},
        {"question_id": "existence/1.jpg", "prompt": "Is there a cat?" + short, "text": "No"}])
    run(["mme", "--experiment", "exp", "--mme-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "total score: 200.0 " in out and "\t existence  score: 200.0" in out
    lines = (tmp_path / "eval_tool" / "answers" / "exp" / "existence.txt").read_text().splitlines()
    assert lines[0] == "1.txt\tIs there a dog? Please answer yes or no.\tYes\tYes"

    write_tsv(tmp_path / "dev.tsv", mmbench_rows())
    jsonl(tmp_path / "res" / "llava-v1.5-7b.jsonl", [
        {"question_id": i, "text": t}
        for i, t in ((0, "B"), (1000000, "A"), (2000000, "C"), (1, "B"))])
    run(["mmbench", "--annotation-file", str(tmp_path / "dev.tsv"), "--result-dir",
         str(tmp_path / "res"), "--upload-dir", str(tmp_path / "up"), "--experiment",
         "llava-v1.5-7b", "--json", str(tmp_path / "m.json")])
    assert "Overall (circular): 50.00%  (2 questions)" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["category"] == {"color": 100.0,
                                                                         "shape": 0.0}
    assert (tmp_path / "up" / "llava-v1.5-7b.xlsx").exists()

    data = {"question_type": {"Scene": 1}, "questions": [
        {"question_id": "1", "question_type_id": 1, "data_type": "image", "answer": "A"}]}
    (tmp_path / "seed.json").write_text(json.dumps(data))
    jsonl(tmp_path / "seed_answers.jsonl", [{"question_id": 1, "text": "A"}])
    run(["seed", "--annotation-file", str(tmp_path / "seed.json"), "--result-file",
         str(tmp_path / "seed_answers.jsonl"), "--result-upload-file", str(tmp_path / "up.jsonl")])
    assert capsys.readouterr().out.splitlines() == ["Scene: 100.00%", "Total accuracy: 100.00%",
                                                    "image accuracy: 100.00%"]


def test_mmvet_command_grades_num_run_times(tmp_path, capsys):
    meta = {"v1_0": {"question": "q0", "answer": "a", "capability": ["rec"]},
            "v1_1": {"question": "q1", "answer": "b", "capability": ["ocr", "rec"]}}
    (tmp_path / "mm-vet.json").write_text(json.dumps(meta))
    src = jsonl(tmp_path / "answers.jsonl", [{"question_id": 0, "text": "a"},
                                             {"question_id": 1, "text": "c"}])
    dst = tmp_path / "results" / "llava-v1.5-7b.json"
    replies = [(200, "1.0"), (200, "0.0"), (200, "1.0"), (200, "0.5")]
    with StubServer(replies) as stub:
        run(["mmvet", "--src", str(src), "--dst", str(dst), "--mmvet-path", str(tmp_path),
             "--num-run", "2", "--judge-base-url", stub.url, "--judge-model", "gpt-4-0613",
             "--judge-cache", str(tmp_path / "cache"), "--json", str(tmp_path / "m.json")])
    assert len(stub.requests) == 4  # the second run is asked, not served from the first's cache
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["runs"] == [50.0, 75.0] and result["total"] == 62.5 and result["std"] == 12.5
    grades = json.loads((dst.parent / "llava-v1.5-7b_gpt-4-0613-grade-2runs.json").read_text())
    assert grades["v1_1"]["score"] == [0.0, 0.5]
    assert json.loads(dst.read_text()) == {"v1_0": "a", "v1_1": "c"}
