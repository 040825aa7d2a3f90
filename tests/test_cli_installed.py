"""The installed `llava15` command as a user types it: real subprocesses of `.venv/bin/llava15`
(and of `torchrun`), each checked for its exit status, what it prints and the files it writes.

A tiny random checkpoint (context 2048) and the offline world's benchmark files (written by
`llava15 synth`) are shared by the module; every run uses one thread, so that a one-process
and a two-process evaluation, or a killed-and-resumed and an uninterrupted demo, compute the
same floats.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
EXE = BIN / "llava15"
TORCHRUN = BIN / "torchrun"
BENCHMARKS = ("pope", "textvqa")
QUESTION_FILES = {"pope": "pope/llava_pope_test.jsonl",
                  "textvqa": "textvqa/llava_textvqa_val_v051_ocr.jsonl"}
HANG_GUARD_S = 600  # only against a hung child: no assertion here depends on speed


def llava15(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), *map(str, args)], input=stdin, capture_output=True, text=True,
                          timeout=HANG_GUARD_S)


def assert_clean(proc: subprocess.CompletedProcess, fails: bool = False) -> None:
    """Exit status 0 (or, where it `fails`, an error status: not a signal), and no traceback."""
    shown = f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, shown
    assert proc.returncode > 0 if fails else proc.returncode == 0, shown


def read_jsonl(path: Path) -> list[dict]:
    """Every line must be a JSON object: a torn or glued line fails here."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def question_ids(world: Path, name: str) -> list:
    return [q["question_id"] for q in read_jsonl(world / QUESTION_FILES[name])]


def summary_line(stdout: str, name: str) -> tuple[int, int, int]:
    """(answered, resumed, error rows) from eval's `<name>: <score> (...)` line."""
    found = re.search(rf"^{name}: \S+ \((\d+) answered, (\d+) resumed, (\d+) error rows\)$", stdout, re.M)
    assert found, stdout
    return tuple(int(x) for x in found.groups())


def eval_args(checkpoint: Path, data_dir: Path, out: Path, benchmarks=BENCHMARKS) -> list:
    return ["eval", "--model", checkpoint, "--benchmarks", ",".join(benchmarks), "--data-dir", data_dir,
            "--out", out, "--threads", "1", "--batch-size", "8"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random tiny LLaVA saved in the llava-hf layout, as a user would point --model at it."""
    from test_serve_support import GOLDEN, tiny_engine

    from llava15.checkpoint import save_llava_hf
    from llava15.data.image import ImageProcessorConfig

    engine = tiny_engine()
    assert engine.config.text.max_position_embeddings == 2048
    out = tmp_path_factory.mktemp("ckpt") / "tiny-llava"
    save_llava_hf(engine.model, engine.model.config, GOLDEN / "tokenizer",
                  ImageProcessorConfig(shortest_edge=28, crop_size=(28, 28)), out)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """`llava15 synth`: the offline world, its benchmarks in the official file formats."""
    out = tmp_path_factory.mktemp("world") / "w"
    proc = llava15("synth", "--out", out, "--scale", "small", "--seed", "3")
    assert_clean(proc)
    summary = json.loads(proc.stdout)
    for name in BENCHMARKS:
        assert summary["benchmarks"][name] == len(question_ids(out / "eval", name)) > 0
    return out


@pytest.fixture(scope="module")
def single_eval(checkpoint, world, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("eval1")
    return out, llava15(*eval_args(checkpoint, world / "eval", out))


def answers_of(out: Path, name: str) -> list[tuple]:
    return [(a["question_id"], a["text"]) for a in read_jsonl(out / name / "answers.jsonl")]


# 1. eval end to end, in one process and under torchrun

def test_eval_writes_answers_scores_and_report(single_eval, world):
    out, proc = single_eval
    assert_clean(proc)
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "tiny-llava" and set(results["benchmarks"]) == set(BENCHMARKS)
    for name in BENCHMARKS:
        ids = question_ids(world / "eval", name)
        assert summary_line(proc.stdout, name) == (len(ids), 0, 0)
        answers = read_jsonl(out / name / "answers.jsonl")
        assert [a["question_id"] for a in answers] == ids  # question order, each once
        assert all({"question_id", "prompt", "text", "answer_id", "model_id", "metadata"} <= set(a)
                   for a in answers)
        assert all(a["model_id"] == "tiny-llava" for a in answers)
        headline = results["headline"][name]
        assert isinstance(headline, float) and f"{name}: {headline:.2f} (" in proc.stdout
        assert results["benchmarks"][name]["scores"]["errors"] == 0
    assert (out / "results.md").read_text().count("tiny-llava") == 1
    assert (out / "radar.png").stat().st_size > 0


def test_eval_under_torchrun_merges_the_shards_into_the_one_process_run(single_eval, checkpoint, world,
                                                                      tmp_path):
    one, first = single_eval
    assert_clean(first)
    out = tmp_path / "eval2"
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(EXE),
                           *map(str, eval_args(checkpoint, world / "eval", out))],
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert_clean(proc)
    merged = json.loads((out / "results.json").read_text())
    single = json.loads((one / "results.json").read_text())
    for name in BENCHMARKS:
        n = len(question_ids(world / "eval", name))
        rank0 = read_jsonl(out / name / "answers.rank0.jsonl")
        rank1 = read_jsonl(out / name / "answers.rank1.jsonl")
        assert (len(rank0), len(rank1)) == (math.ceil(n / 2), n - math.ceil(n / 2))
        assert answers_of(out, name) == answers_of(one, name)  # every answer, in question order
        assert merged["benchmarks"][name]["scores"] == single["benchmarks"][name]["scores"]
        assert merged["headline"][name] == single["headline"][name]
    # The printed counts are the whole benchmark's, not the first process's share.
    for name in BENCHMARKS:
        n = len(question_ids(world / "eval", name))
        assert summary_line(proc.stdout, name) == (n, 0, 0), proc.stdout
        assert merged["benchmarks"][name]["answered"] == n


# 2. chat with its input piped

def test_chat_answers_piped_questions_until_end_of_input_or_an_empty_line(checkpoint, world, tmp_path):
    image = sorted((world / "eval" / "pope" / "val2014").iterdir())[0]
    question = "What is in the picture?"
    asked = {"question_id": 1, "image": image.name, "text": question}
    (tmp_path / "q.jsonl").write_text(json.dumps(asked) + "\n")
    predicted = llava15("predict", "--model", checkpoint, "--question-file", tmp_path / "q.jsonl",
                        "--image-folder", image.parent, "--answers-file", tmp_path / "a.jsonl",
                        "--temperature", "0", "--max_new_tokens", "8", "--threads", "1")
    assert_clean(predicted)
    expected = read_jsonl(tmp_path / "a.jsonl")[0]["text"]
    assert expected

    chat = ["chat", "--model", checkpoint, "--image", image, "--temperature", "0",
            "--max-new-tokens", "8", "--threads", "1"]
    proc = llava15(*chat, stdin=f"{question}\nAnd what colour is it?\n")  # then end of input
    assert_clean(proc)
    turns = proc.stdout.split("ASSISTANT: ")
    assert turns[0] == "USER: " and len(turns) == 3, proc.stdout
    assert turns[1].rstrip("\n").removesuffix("USER: ").strip() == expected
    assert turns[2].endswith("\nUSER: ") and turns[2].removesuffix("\nUSER: ").strip()

    proc = llava15(*chat, stdin=f"{question}\n\nnever asked\n")  # an empty line quits
    assert_clean(proc)
    turns = proc.stdout.split("ASSISTANT: ")
    assert len(turns) == 2 and turns[1].removesuffix("\nUSER: ").strip() == expected, proc.stdout

    # a turn that does not fit the context is dropped with a message; the chat goes on
    proc = llava15(*chat, stdin=f"{'word ' * 3000}\n{question}\n")
    assert_clean(proc)
    assert "the turn was dropped" in proc.stderr
    turns = proc.stdout.split("ASSISTANT: ")
    assert len(turns) == 2 and turns[1].removesuffix("\nUSER: ").strip() == expected, proc.stdout


# 3. the demo killed in the middle of a stage, and run again

def wait_for(event: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    """Poll until `event()` holds; the process must still be running until then."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not event():
        assert proc.poll() is None, f"the demo exited ({proc.returncode}) before {what}"
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"no {what} after {HANG_GUARD_S} s")
        time.sleep(0.01)


def start_demo(out: Path, log: Path, stack: ExitStack) -> subprocess.Popen:
    """`llava15 demo --smoke` in the background; `stack` stops it if the test ends first."""
    with open(log, "a") as sink:
        proc = subprocess.Popen([str(EXE), "demo", "--smoke", "--threads", "1", "--out", str(out)],
                                stdout=sink, stderr=subprocess.STDOUT)
    stack.callback(stop, proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def losses(run_dir: Path) -> dict[int, float]:
    """Loss per step, the last row of a step winning (a restarted stage logs its steps again)."""
    return {row["step"]: row["loss"] for row in read_jsonl(run_dir / "metrics.jsonl")}


def test_demo_killed_mid_stage_resumes_to_the_results_of_an_uninterrupted_run(tmp_path):
    """The reference runs uninterrupted; once its synth and stage 0 are done, a copy of them
    runs the rest of the demo beside it: killed (SIGKILL) after its first pretrain step, run
    again and killed (SIGTERM) once pretrain saved its checkpoint (before the stage's marker),
    then run to the end. Both must end with the same weights, suite answers and accuracies."""
    from safetensors.torch import load_file

    ref, work = tmp_path / "ref", tmp_path / "work"
    with ExitStack() as stack:
        reference = start_demo(ref, tmp_path / "ref.log", stack)
        wait_for(lambda: (ref / "stage0.done.json").exists(), reference, "stage 0 done")
        work.mkdir()
        for name in ("data", "backbones"):
            shutil.copytree(ref / name, work / name)
        for name in ("synth.done.json", "stage0.done.json"):
            shutil.copy2(ref / name, work / name)

        killed = start_demo(work, tmp_path / "work.log", stack)
        metrics = work / "pretrain" / "metrics.jsonl"
        wait_for(lambda: metrics.exists() and metrics.stat().st_size > 0, killed, "a pretrain step")
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(HANG_GUARD_S) == -signal.SIGKILL
        assert not list((work / "pretrain").glob("checkpoint-*"))

        killed = start_demo(work, tmp_path / "work.log", stack)
        wait_for(lambda: any((work / "pretrain").glob("checkpoint-*/trainer_state.json")), killed,
                 "the pretrain checkpoint")
        killed.send_signal(signal.SIGTERM)
        assert killed.wait(HANG_GUARD_S) == -signal.SIGTERM
        assert not (work / "pretrain.done.json").exists()  # killed inside the stage

        resumed = llava15("demo", "--smoke", "--threads", "1", "--out", work)
        assert_clean(resumed)
        assert "stage0: already done" in resumed.stderr and "resumed from" in resumed.stderr
        assert reference.wait(HANG_GUARD_S) == 0, (tmp_path / "ref.log").read_text()[-3000:]

    for stage in ("synth", "stage0", "pretrain", "finetune", "evaluate"):
        assert (work / f"{stage}.done.json").exists(), stage
    for stage in ("pretrain", "finetune"):
        assert losses(work / stage) == losses(ref / stage), stage
    a, b = (load_file(str(d / "finetune" / "model.safetensors")) for d in (work, ref))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    for name in ("suite_model.jsonl", "suite_blind.jsonl"):
        assert read_jsonl(work / name) == read_jsonl(ref / name), name
    got, want = (json.loads((d / "results.json").read_text()) for d in (work, ref))
    assert got["accuracy"] == want["accuracy"] and got["examples"] == want["examples"]
    model, blind = want["accuracy"]["model"], want["accuracy"]["blind"]
    n = sum(model["count_per_type"].values())
    assert re.search(rf"^overall +{n} +{model['overall']:.3f} +{blind['overall']:.3f} ", resumed.stdout,
                     re.M), resumed.stdout


# 4. eval resumed from an answers file whose last line is half-written

def test_eval_resumes_from_a_half_written_last_line(single_eval, checkpoint, world, tmp_path):
    one, first = single_eval
    assert_clean(first)
    complete = (one / "pope" / "answers.jsonl").read_bytes().splitlines(keepends=True)
    kept, torn = complete[:10], complete[10]
    (tmp_path / "pope").mkdir()
    (tmp_path / "pope" / "answers.jsonl").write_bytes(b"".join(kept) + torn[:len(torn) // 2])
    proc = llava15(*eval_args(checkpoint, world / "eval", tmp_path, ["pope"]))
    assert_clean(proc)
    ids = question_ids(world / "eval", "pope")
    assert summary_line(proc.stdout, "pope") == (len(ids) - 10, 10, 0)
    answers = read_jsonl(tmp_path / "pope" / "answers.jsonl")
    assert [a["question_id"] for a in answers] == ids  # each question once, in order
    assert answers[:10] == [json.loads(line) for line in kept]  # kept as they were
    assert answers[10]["answer_id"] != json.loads(complete[10])["answer_id"]  # answered again
    assert answers_of(tmp_path, "pope") == answers_of(one, "pope")
    results, single = (json.loads((d / "results.json").read_text()) for d in (tmp_path, one))
    assert results["benchmarks"]["pope"]["scores"] == single["benchmarks"]["pope"]["scores"]


# 5. train given a broken or a missing data file

@pytest.fixture(scope="module")
def backbones(tmp_path_factory) -> Path:
    from test_train_world import make_backbones

    root = tmp_path_factory.mktemp("backbones")
    make_backbones(root)
    return root


def broken_jsonl(world: Path, path: Path) -> int:
    records = json.loads((world / "finetune.json").read_text())[:6]
    lines = [json.dumps(r) for r in records]
    lines[3] = lines[3][:len(lines[3]) // 2]
    path.write_text("\n".join(lines) + "\n")
    return 4


def broken_json(world: Path, path: Path) -> int:
    lines = json.dumps(json.loads((world / "finetune.json").read_text())[:3], indent=1).splitlines()
    lines[10] += ",,"
    path.write_text("\n".join(lines) + "\n")
    return 11


@pytest.mark.parametrize("make", [broken_jsonl, broken_json], ids=["jsonl", "json"])
def test_train_names_the_file_and_line_of_a_broken_record(make, backbones, world, tmp_path):
    data = tmp_path / f"data.{make.__name__.removeprefix('broken_')}"
    line = make(world, data)
    proc = llava15("train", "--stage", "finetune", "--llm", backbones / "llm", "--vision-tower",
                   backbones / "clip", "--data-path", data, "--image-folder", world / "images",
                   "--out", tmp_path / "run", "--max_steps", "1", "--threads", "1")
    assert_clean(proc, fails=True)
    assert re.search(rf"{re.escape(str(data))}:? line {line}\b", proc.stderr), proc.stderr[-2000:]
    assert not list((tmp_path / "run").glob("checkpoint-*"))


def test_train_names_a_missing_data_file(backbones, world, tmp_path):
    missing = tmp_path / "no-such-file.json"
    proc = llava15("train", "--stage", "finetune", "--llm", backbones / "llm", "--vision-tower",
                   backbones / "clip", "--data-path", missing, "--image-folder", world / "images",
                   "--out", tmp_path / "run", "--max_steps", "1", "--threads", "1")
    assert_clean(proc, fails=True)
    assert f"{missing} does not exist" in proc.stderr, proc.stderr[-2000:]


# 6. a question longer than the model's context

LONG = "Describe every word: " + "word " * 3000  # far over the 2048 positions of the checkpoint


def test_predict_stops_on_an_over_long_question_with_a_clear_error(checkpoint, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in (
        {"question_id": "short", "text": "What is this?"}, {"question_id": "long", "text": LONG},
        {"question_id": "after", "text": "Is it red?"})))
    answers = tmp_path / "a.jsonl"
    proc = llava15("predict", "--model", checkpoint, "--question-file", questions, "--answers-file",
                   answers, "--temperature", "0", "--max_new_tokens", "4", "--threads", "1")
    assert_clean(proc, fails=True)
    assert re.search(r"error: question 'long' \(line 2\): the prompt has \d+ tokens \(image tokens "
                     r"included\), the model's context is 2048", proc.stderr), proc.stderr[-2000:]
    assert [a["question_id"] for a in read_jsonl(answers)] == ["short"]  # the answers before it

    proc = llava15("predict", "--model", checkpoint, "--question-file", tmp_path / "absent.jsonl",
                   "--answers-file", answers)
    assert_clean(proc, fails=True)
    assert "absent.jsonl" in proc.stderr


def test_eval_counts_and_reports_an_over_long_question(checkpoint, world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(world / "eval" / "textvqa", data / "textvqa")
    path = data / QUESTION_FILES["textvqa"]
    questions = read_jsonl(path)
    questions[4]["text"] = LONG
    path.write_text("".join(json.dumps(q) + "\n" for q in questions))
    long_id = questions[4]["question_id"]
    proc = llava15(*eval_args(checkpoint, data, tmp_path / "out", ["textvqa"]))
    assert_clean(proc)
    assert summary_line(proc.stdout, "textvqa") == (len(questions) - 1, 0, 1)
    assert re.search(rf"question {re.escape(repr(long_id))}: .*context is 2048", proc.stderr), \
        proc.stderr[-2000:]
    answered = [a["question_id"] for a in read_jsonl(tmp_path / "out" / "textvqa" / "answers.jsonl")]
    assert answered == [q["question_id"] for q in questions if q["question_id"] != long_id]
    results = json.loads((tmp_path / "out" / "results.json").read_text())["benchmarks"]["textvqa"]
    assert [e["question_id"] for e in results["errors"]] == [long_id]
    assert results["scores"]["errors"] == 1
