"""`eval` end to end on the offline world's benchmark files (all twelve, official formats):
answers in the official shape, scores, submission files, resume, batch parity, error rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llava15.eval.benchmarks import BENCHMARKS
from llava15.eval.harness import run_benchmark, score_benchmark
from llava15.world.synth import synthesize
from test_engine import tiny_engine


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    synthesize(out, seed=3, scale="small")
    return out / "eval"


@pytest.fixture(scope="module")
def engine():
    return tiny_engine()


def data_dir(world: Path, name: str) -> Path:
    return world / Path(BENCHMARKS[name].OFFICIAL_ROOT).name


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_benchmark_runs_end_to_end(world, engine, tmp_path, name):
    module = BENCHMARKS[name]
    run = run_benchmark(module, name, engine, data_dir(world, name), tmp_path, batch_size=8,
                        max_new_tokens=3)
    score_benchmark(module, run, data_dir(world, name), tmp_path)
    answers = [json.loads(x) for x in (tmp_path / name / "answers.jsonl").read_text().splitlines()]
    questions = module.load(data_dir(world, name))
    assert len(answers) == len(questions) == run.answered and not run.errors
    assert {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"} <= set(answers[0])
    assert run.scores and run.scores["errors"] == 0
    if hasattr(module, "write_submission"):
        assert any((tmp_path / name).glob("submission*"))


def test_batch_sixteen_equals_batch_one_and_resume_skips(world, engine, tmp_path):
    module = BENCHMARKS["pope"]
    one = run_benchmark(module, "pope", engine, data_dir(world, "pope"), tmp_path / "b1", 1,
                        max_new_tokens=4)
    many = run_benchmark(module, "pope", engine, data_dir(world, "pope"), tmp_path / "b16", 16,
                         max_new_tokens=4)
    text = lambda d: [json.loads(x)["text"] for x in (d / "pope" / "answers.jsonl").read_text().splitlines()]  # noqa: E731
    assert text(tmp_path / "b1") == text(tmp_path / "b16") and one.answered == many.answered
    again = run_benchmark(module, "pope", engine, data_dir(world, "pope"), tmp_path / "b16", 16,
                          max_new_tokens=4)
    assert again.answered == 0 and again.resumed == many.answered


def test_missing_image_is_an_error_row_not_a_crash(world, engine, tmp_path):
    import shutil

    copy = tmp_path / "pope"
    shutil.copytree(data_dir(world, "pope"), copy)
    first = BENCHMARKS["pope"].load(copy)[0]
    (BENCHMARKS["pope"].image_root(copy) / first.image).unlink()
    run = run_benchmark(BENCHMARKS["pope"], "pope", engine, copy, tmp_path / "out", 4,
                        max_new_tokens=2)
    questions = BENCHMARKS["pope"].load(copy)
    broken = [q.question_id for q in questions if q.image == first.image]  # POPE reuses images
    assert [e["question_id"] for e in run.errors] == broken
    assert "not found" in run.errors[0]["error"] or "No such file" in run.errors[0]["error"]
    assert run.answered == len(questions) - len(broken)


def test_batches_group_questions_by_image_and_the_file_keeps_question_order(world, tmp_path):
    """POPE asks about each image in several splits, far apart in the file: batches take an
    image's questions together (each batch then sees few distinct images), and the answer
    file still lists answers in question order (POPE's scorer pairs them with labels by line)."""
    module = BENCHMARKS["pope"]
    questions = module.load(data_dir(world, "pope"))
    engine = tiny_engine()
    seen_images: list[int] = []
    real_generate = engine.generate

    def spy(requests):
        seen_images.append(len({id(r.images[0]) for r in requests}))
        return real_generate(requests)

    engine.generate = spy
    run_benchmark(module, "pope", engine, data_dir(world, "pope"), tmp_path, 8, max_new_tokens=2)
    lines = [json.loads(x) for x in (tmp_path / "pope" / "answers.jsonl").read_text().splitlines()]
    assert [a["question_id"] for a in lines] == [q.question_id for q in questions]
    per_image = len(questions) / len({q.image for q in questions})
    in_file_order = [len({q.image for q in questions[i:i + 8]}) for i in range(0, len(questions), 8)]
    assert sum(seen_images) < sum(in_file_order)  # fewer images per batch than file order gives
    assert max(seen_images) <= 8 / per_image + 2


def test_put_in_question_order_keeps_unknown_lines_and_leaves_ordered_files_alone(tmp_path):
    from types import SimpleNamespace

    from llava15.eval.harness import put_in_question_order

    questions = [SimpleNamespace(question_id=i) for i in (3, 1, 2)]
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps({"question_id": i, "text": str(i)}) + "\n" for i in (2, 99, 1, 3)))
    put_in_question_order(path, questions)
    assert [json.loads(x)["question_id"] for x in path.read_text().splitlines()] == [3, 1, 2, 99]
    before = path.stat().st_mtime_ns
    put_in_question_order(path, questions)
    assert path.stat().st_mtime_ns == before and not list(tmp_path.glob("*.reordering"))
    # MME: an image's two questions share one id; the k-th answer of an id is its k-th question
    shared = [SimpleNamespace(question_id=i) for i in ("a", "b", "a", "b")]
    path.write_text("".join(json.dumps({"question_id": i, "text": t}) + "\n"
                            for i, t in (("a", "a1"), ("a", "a2"), ("b", "b1"), ("b", "b2"))))
    put_in_question_order(path, shared)
    assert [json.loads(x)["text"] for x in path.read_text().splitlines()] == ["a1", "b1", "a2", "b2"]


def test_resume_answers_the_second_question_of_a_shared_id(world, engine, tmp_path):
    """MME gives an image's two questions one id: a run stopped after the first of them must
    still answer the second on resume, and the file ends complete and in question order."""
    module = BENCHMARKS["mme"]
    full = run_benchmark(module, "mme", engine, data_dir(world, "mme"), tmp_path / "full", 4,
                         max_new_tokens=2)
    answers = (tmp_path / "full" / "mme" / "answers.jsonl").read_text().splitlines()
    questions = module.load(data_dir(world, "mme"))
    shared = next(i for i in range(1, len(questions))
                  if questions[i].question_id == questions[i - 1].question_id)
    cut = tmp_path / "cut" / "mme"
    cut.mkdir(parents=True)
    (cut / "answers.jsonl").write_text("\n".join(answers[:shared]) + "\n")  # stopped mid-image
    again = run_benchmark(module, "mme", engine, data_dir(world, "mme"), tmp_path / "cut", 4,
                          max_new_tokens=2)
    assert again.resumed == shared and again.answered == full.answered - shared
    resumed = [json.loads(x) for x in (cut / "answers.jsonl").read_text().splitlines()]
    assert [(a["question_id"], a["prompt"]) for a in resumed] == \
        [(json.loads(x)["question_id"], json.loads(x)["prompt"]) for x in answers]
