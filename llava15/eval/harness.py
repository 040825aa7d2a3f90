"""Run benchmarks end to end: official questions -> greedy answers -> official answer files -> scores.

For each benchmark module (`llava15.eval.benchmarks.BENCHMARKS`): `load(data_dir)` gives the
questions with the official prompt text and `max_new_tokens`; the engine answers
`"<image>\\n" + text` in the model's template (vicuna_v1 for the paper's numbers) with greedy
decoding, questions batched by image (`by_image`); answers are written in the official shape, in
question order, to `<out>/<name>/answers.jsonl` (resumable: question ids already there are
skipped); then `score(answers_path, data_dir)` runs the official rule and `write_submission`
writes the server file where a server scores the split.

A question whose image is missing or unreadable becomes an error row (counted, reported, never
a crash of the whole run). With several processes (`torchrun`), rank r answers the r-th
contiguous chunk into `answers.rank{r}.jsonl`; rank 0 merges in chunk order.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llava15.data.conversation import build_question_prompt
from llava15.data.image import ImageError, load_image
from llava15.eval.answers import drop_unfinished_line
from llava15.infer.engine import Engine, Request
from llava15.infer.generate import ContextLengthError, SamplingParams
from llava15.infer.order import by_image
from llava15.infer.question import chunk


@dataclass
class BenchmarkRun:
    name: str
    answered: int = 0
    resumed: int = 0
    errors: list[dict] = field(default_factory=list)
    scores: dict = field(default_factory=dict)
    seconds: float = 0.0


def read_answered(path: Path) -> Counter[str]:
    """How many answer lines each str(question_id) already has (for resuming). A count, not a
    set: MME gives an image's two questions one id, and a run stopped between them has answered
    only one."""
    done: Counter[str] = Counter()
    drop_unfinished_line(path)  # a run killed mid-write leaves its last answer unfinished
    if path.exists():
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:  # a run killed mid-write leaves a partial line
                    raise ValueError(f"{path}:{line_no}: not valid JSON ({e.msg}); remove the line "
                                     "to resume") from e
                done[str(record["question_id"])] += 1
    return done


def answer_line(question, text: str, model_id: str) -> dict:
    record = {"question_id": question.question_id,
              "prompt": question.extra.get("prompt", question.text), "text": text,
              "answer_id": uuid.uuid4().hex, "model_id": model_id, "metadata": {}}
    # MMBench's answer files carry the rotation's options and round (model_vqa_mmbench.py).
    for key in ("round_id", "options", "option_char"):
        if key in question.extra:
            record[key] = question.extra[key]
    return record


def answer_questions(engine: Engine, questions: Sequence, image_root: Path, out_path: Path,
                     run: BenchmarkRun, batch_size: int, progress: Callable | None = None,
                     max_new_tokens: int | None = None) -> None:
    """Append answers for the questions not yet in `out_path`; error rows go to `run.errors`.
    `max_new_tokens` caps the official budget (smoke runs only; official runs leave it None)."""
    done, todo = read_answered(out_path), []
    for q in questions:  # the first questions of an id count as its answered ones
        if done[str(q.question_id)] > 0:
            done[str(q.question_id)] -= 1
        else:
            todo.append(q)
    todo = [todo[i] for i in by_image(todo, lambda q: q.image)]  # few images a batch
    run.resumed = len(questions) - len(todo)
    bar = progress(total=len(todo), desc=run.name) if progress else None
    with open(out_path, "a", encoding="utf-8") as out:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            batch, requests = batch_requests(engine, chunk, image_root, run, max_new_tokens)
            answers = engine.generate(requests) if requests else []
            for q, text in zip(batch, answers):
                out.write(json.dumps(answer_line(q, text, engine.model_id), ensure_ascii=False) + "\n")
                run.answered += 1
            out.flush()
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    put_in_question_order(out_path, questions)


def put_in_question_order(path: Path, questions: Sequence) -> None:
    """Rewrite the answer file in the order of `questions`: some official scorers (POPE, MME's
    tool) pair answers with labels by line. Where questions share an id (MME), answers of that
    id keep their relative order. Lines of unknown question ids (or more lines of an id than
    questions) keep their relative order after the known ones; nothing is dropped. The file is replaced atomically, and only
    when out of order, so an interrupted run leaves a complete file (in answering order)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    positions: dict[str, list[int]] = {}  # MME shares one id between an image's two questions:
    for i, q in enumerate(questions):     # the k-th answer of an id goes to its k-th question
        positions.setdefault(str(q.question_id), []).append(i)
    seen: dict[str, int] = {}
    keys = []
    for line in lines:
        qid = str(json.loads(line)["question_id"])
        k = seen[qid] = seen.get(qid, -1) + 1
        slots = positions.get(qid, [])
        keys.append(slots[k] if k < len(slots) else len(questions))
    if keys == sorted(keys):
        return
    order = sorted(range(len(lines)), key=lambda i: (keys[i], i))
    staging = path.with_name(path.name + ".reordering")
    staging.write_text("".join(lines[i] + "\n" for i in order), encoding="utf-8")
    staging.replace(path)


def batch_requests(engine: Engine, questions: Sequence, image_root: Path, run: BenchmarkRun,
                   max_new_tokens: int | None) -> tuple[list, list[Request]]:
    """The questions that can be asked (their images load) and their requests; the others
    become error rows in `run.errors`. An image file asked about several times in the batch
    is read once (the engine then preprocesses and encodes it once)."""
    batch, requests, loaded = [], [], {}
    for q in questions:
        images = []
        if q.image is not None:
            source = q.image if isinstance(q.image, bytes) else image_root / q.image
            if source not in loaded:
                try:
                    loaded[source] = load_image(source)
                except ImageError as e:
                    loaded[source] = e
            if isinstance(loaded[source], ImageError):
                run.errors.append({"question_id": q.question_id, "error": str(loaded[source])})
                continue
            images = [loaded[source]]
        budget = q.max_new_tokens if max_new_tokens is None else min(max_new_tokens, q.max_new_tokens)
        params = SamplingParams(max_new_tokens=budget, temperature=0.0)
        prompt = build_question_prompt(engine.template, q.text, with_image=bool(images))
        request = Request(prompt, images, params)
        try:
            engine.check_fits(request)
        except ContextLengthError as e:
            run.errors.append({"question_id": q.question_id, "error": str(e)})
            continue
        batch.append(q)
        requests.append(request)
    return batch, requests


def merge_shards(out_dir: Path, world: int) -> Path:
    """Concatenate rank files in rank (= chunk) order into answers.jsonl."""
    merged = out_dir / "answers.jsonl"
    with open(merged, "w", encoding="utf-8") as out:
        for rank in range(world):
            part = out_dir / f"answers.rank{rank}.jsonl"
            if part.exists():
                out.write(part.read_text(encoding="utf-8"))
    return merged


def run_benchmark(module, name: str, engine: Engine, data_dir: str | Path, out_dir: str | Path,
                  batch_size: int = 1, rank: int = 0, world: int = 1,
                  progress: Callable | None = None, max_new_tokens: int | None = None) -> BenchmarkRun:
    """Answer and score one benchmark. With world > 1 every rank answers its chunk; only rank 0
    merges and scores (the caller synchronises ranks between answering and scoring)."""
    import time

    run = BenchmarkRun(name)
    started = time.perf_counter()
    data_dir, bench_out = Path(data_dir), Path(out_dir) / name
    bench_out.mkdir(parents=True, exist_ok=True)
    questions = module.load(data_dir)
    part = bench_out / (f"answers.rank{rank}.jsonl" if world > 1 else "answers.jsonl")
    answer_questions(engine, chunk(questions, world, rank), image_root(module, data_dir),
                     part, run, batch_size, progress, max_new_tokens)
    run.seconds = time.perf_counter() - started
    if world > 1:
        (bench_out / f"errors.rank{rank}.json").write_text(json.dumps(run.errors))
        (bench_out / f"counts.rank{rank}.json").write_text(
            json.dumps({"answered": run.answered, "resumed": run.resumed}))
    return run


JUDGED = ("llavabench", "mmvet")  # scored by a GPT judge (llava15.eval.judge.JudgeClient)


def score_benchmark(module, run: BenchmarkRun, data_dir: str | Path, out_dir: str | Path,
                    world: int = 1, judge=None, mmvet_num_run: int = 1) -> BenchmarkRun:
    """Rank 0, after every rank answered: merge, score, write the submission file if any.
    Judged benchmarks get `judge` (None: answered but not judged, and the scores say so);
    MM-Vet is graded `mmvet_num_run` times, its per-sample grades saved beside the answers."""
    bench_out = Path(out_dir) / run.name
    if world > 1:
        answers = merge_shards(bench_out, world)
        run.errors = [e for r in range(world)
                      for e in json.loads((bench_out / f"errors.rank{r}.json").read_text())]
        counts = [json.loads((bench_out / f"counts.rank{r}.json").read_text()) for r in range(world)]
        run.answered = sum(c["answered"] for c in counts)
        run.resumed = sum(c["resumed"] for c in counts)
    else:
        answers = bench_out / "answers.jsonl"
    extra = {"client": judge} if run.name in JUDGED else {}
    if run.name == "mmvet" and judge is not None:
        extra.update(num_run=mmvet_num_run, grade_path=bench_out / f"grades-{mmvet_num_run}runs.json")
    run.scores = module.score(answers, Path(data_dir), **extra)
    write_submission = getattr(module, "write_submission", None)
    if write_submission is not None:
        write_submission(answers, Path(data_dir), bench_out / "submission")
    run.scores["errors"] = len(run.errors)
    return run


def image_root(module, data_dir: Path) -> Path:
    """Where a benchmark's relative image paths start (the module may say; default data_dir)."""
    root = getattr(module, "image_root", None)
    return Path(root(data_dir)) if callable(root) else data_dir
