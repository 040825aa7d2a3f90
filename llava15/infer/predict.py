"""Batch prediction over an official question file (the `model_vqa_loader.py` protocol).

Question lines: `{"question_id", "image"?, "text", "category"?}`. Answer lines:
`{"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}` in question order, where
`prompt` is the question text (without the image token) and `text` the decoded answer.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llava15.data.conversation import build_question_prompt
from llava15.data.image import ImageError, load_image
from llava15.infer.engine import Engine, Request
from llava15.infer.generate import SamplingParams


class QuestionFileError(ValueError):
    """A malformed question file; the message names the file and the line."""


@dataclass(frozen=True)
class Question:
    question_id: object
    text: str
    image: str | None = None
    line: int = 0


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
            questions.append(Question(record["question_id"], record["text"], record.get("image"), line_no))
    return questions


def split_chunk(items: Sequence, num_chunks: int, chunk_idx: int) -> list:
    """The official `get_chunk`: contiguous chunks of ceil(n / k) items."""
    if not 0 <= chunk_idx < num_chunks:
        raise ValueError(f"chunk index {chunk_idx} is outside 0..{num_chunks - 1}")
    size = math.ceil(len(items) / num_chunks)
    return list(items[chunk_idx * size:(chunk_idx + 1) * size])


def predict(engine: Engine, questions: Sequence[Question], image_folder: str | Path,
            answers_file: str | Path, params: SamplingParams, batch_size: int = 1,
            skip_bad_images: bool = False, progress: Callable | None = None) -> PredictSummary:
    """Answer `questions` in order, writing one answer line each to `answers_file`.

    A missing or unreadable image raises `ImageError` naming the file and question, unless
    `skip_bad_images`: then the question is counted in `summary.skipped` and gets no answer line.
    """
    summary = PredictSummary()
    answers_path = Path(answers_file)
    answers_path.parent.mkdir(parents=True, exist_ok=True)
    bar = progress(total=len(questions)) if progress else None
    with open(answers_path, "w", encoding="utf-8") as out:
        for start in range(0, len(questions), batch_size):
            batch, requests = [], []
            for q in questions[start:start + batch_size]:
                images = []
                if q.image:
                    try:
                        images = [load_image(Path(image_folder) / q.image)]
                    except ImageError as e:
                        if not skip_bad_images:
                            raise ImageError(f"question {q.question_id!r} (line {q.line}): {e}") from e
                        summary.skipped.append({"question_id": q.question_id, "line": q.line, "error": str(e)})
                        continue
                prompt = build_question_prompt(engine.template, q.text, with_image=bool(images))
                batch.append(q)
                requests.append(Request(prompt, images, params))
            for q, text in zip(batch, engine.generate(requests) if requests else []):
                out.write(json.dumps({"question_id": q.question_id, "prompt": q.text, "text": text,
                                      "answer_id": uuid.uuid4().hex, "model_id": engine.model_id,
                                      "metadata": {}}, ensure_ascii=False) + "\n")
                summary.answered += 1
            out.flush()
            if bar is not None:
                bar.update(min(batch_size, len(questions) - start))
    if bar is not None:
        bar.close()
    return summary
