"""Batch prediction over an official question file (the `model_vqa_loader.py` protocol).

Question lines: `{"question_id", "image"?, "text", "category"?}`. Answer lines:
`{"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}` in question order, where
`prompt` is the question text (without the image token) and `text` the decoded answer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llava15.data.conversation import build_question_prompt
from llava15.data.image import ImageError, load_image
from llava15.infer.engine import Engine, Request
from llava15.infer.generate import ContextLengthError, SamplingParams
from llava15.infer.order import by_image
from llava15.infer.question import Question


class QuestionFileError(ValueError):
    """A malformed question file; the message names the file and the line."""


@dataclass
class PredictSummary:
    answered: int = 0
    skipped: list[dict] = field(default_factory=list)  # {"question_id", "line", "error"}


def read_questions(path: str | Path) -> list[Question]:
    """Parse a JSONL question file; every problem names the file and its 1-based line."""
    questions = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise QuestionFileError(f"{path}:{line_no}: not valid JSON ({e.msg})") from e
            if not isinstance(record, dict):
                raise QuestionFileError(f"{path}:{line_no}: expected a JSON object")
            missing = [k for k in ("question_id", "text") if k not in record]
            if missing:
                raise QuestionFileError(f"{path}:{line_no}: missing key(s) {', '.join(missing)}")
            if not isinstance(record["text"], str):
                raise QuestionFileError(f"{path}:{line_no}: 'text' must be a string")
            questions.append(Question(record["question_id"], record.get("image"), record["text"],
                                      line=line_no))
    return questions


def predict(engine: Engine, questions: Sequence[Question], image_folder: str | Path,
            answers_file: str | Path, params: SamplingParams, batch_size: int = 1,
            skip_bad_images: bool = False, progress: Callable | None = None) -> PredictSummary:
    """Answer `questions`, writing one answer line each to `answers_file`, in question order.

    Batches take questions about the same image together (`llava15.infer.order.by_image`: each
    image is read and encoded once a batch); answers are written as soon as every earlier
    question is answered. A missing or unreadable image raises `ImageError` naming the file and
    question, unless `skip_bad_images`: then the question is counted in `summary.skipped` and
    gets no answer line. A question longer than the model's context raises `ContextLengthError`
    naming it, before the batch it would be in is decoded.
    """
    summary = PredictSummary()
    answers_path = Path(answers_file)
    answers_path.parent.mkdir(parents=True, exist_ok=True)
    order = by_image(questions, lambda q: q.image) if batch_size > 1 else list(range(len(questions)))
    pending: dict[int, dict | None] = {}  # answered (or skipped: None) but not yet written
    written = 0
    bar = progress(total=len(questions)) if progress else None
    with open(answers_path, "w", encoding="utf-8") as out:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            asked, requests = ask(engine, questions, chunk, image_folder, params, skip_bad_images,
                                  summary, pending)
            for i, text in zip(asked, engine.generate(requests) if requests else []):
                q = questions[i]
                pending[i] = {"question_id": q.question_id, "prompt": q.text, "text": text,
                              "answer_id": uuid.uuid4().hex, "model_id": engine.model_id,
                              "metadata": {}}
                summary.answered += 1
            while written in pending:  # everything up to here is answered: write it in order
                record = pending.pop(written)
                if record is not None:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
            out.flush()
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return summary


def ask(engine: Engine, questions: Sequence[Question], chunk: Sequence[int], image_folder: str | Path,
        params: SamplingParams, skip_bad_images: bool, summary: PredictSummary,
        pending: dict[int, dict | None]) -> tuple[list[int], list[Request]]:
    """The requests of the questions `chunk` (indices), each image file read once; a question
    whose image fails is raised or, with `skip_bad_images`, counted and marked done (None)."""
    asked, requests, loaded = [], [], {}
    for i in chunk:
        q, images = questions[i], []
        if q.image:
            try:
                if q.image not in loaded:
                    loaded[q.image] = load_image(Path(image_folder) / q.image)
                images = [loaded[q.image]]
            except ImageError as e:
                if not skip_bad_images:
                    raise ImageError(f"question {q.question_id!r} (line {q.line}): {e}") from e
                summary.skipped.append({"question_id": q.question_id, "line": q.line, "error": str(e)})
                pending[i] = None
                continue
        prompt = build_question_prompt(engine.template, q.text, with_image=bool(images))
        request = Request(prompt, images, params)
        try:
            engine.check_fits(request)
        except ContextLengthError as e:
            raise ContextLengthError(f"question {q.question_id!r} (line {q.line}): {e}") from None
        asked.append(i)
        requests.append(request)
    return asked, requests
