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
