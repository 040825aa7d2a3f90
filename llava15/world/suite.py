"""The offline world's held-out short-answer suite: accuracy per question type, with the blind
baseline (the same model shown a gray image) beside it.

The suite is the synthetic VQAv2-style benchmark (`eval/vqav2`, official file formats): the
questions carry the paper's response-format prompt, answers go through the EvalAI answer
processor (as the official VQAv2 submission does) and are scored with the official VQA accuracy
against ten human-style answers, and `types.json` gives each question's type.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections import defaultdict
from pathlib import Path

from PIL import Image

from llava15.data.conversation import build_question_prompt
from llava15.eval.benchmarks import vqav2
from llava15.eval.question import read_json
from llava15.eval.scoring import normalize_answer, vqaeval_accuracy
from llava15.infer.engine import Engine, Request
from llava15.infer.generate import SamplingParams
from llava15.infer.question import Question

GRAY = (128, 128, 128)


def load_suite(eval_dir: str | Path) -> tuple[list, dict[str, str], dict[object, list[str]]]:
    """Questions, question_id -> type, question_id -> the ten reference answers."""
    data_dir = Path(eval_dir) / "vqav2"
    questions = vqav2.load(data_dir)
    types = {str(k): v for k, v in read_json(data_dir / "types.json").items()}
    annotations = read_json(data_dir / vqav2.FILES["val_annotations"])["annotations"]
    references = {a["question_id"]: [x["answer"] for x in a["answers"]] for a in annotations}
    return questions, types, references


def answer_suite(engine: Engine, eval_dir: str | Path, blind: bool = False, batch_size: int = 32,
                 max_new_tokens: int = 16, progress=None, limit: int | None = None) -> list[dict]:
    """One record per question: id, type, answer, accuracy. `blind` replaces every image by a
    uniform gray one of the same size. `limit`: only the first questions (the file mixes types)."""
    questions, types, references = load_suite(eval_dir)
    questions = questions[:limit]
    items = [dataclasses.replace(q, extra={"type": types[str(q.question_id)],
                                           "references": references[q.question_id]})
             for q in questions]
    return answer_items(engine, items, vqav2.image_root(Path(eval_dir) / "vqav2"), blind,
                        batch_size, max_new_tokens, progress)


def answer_items(engine: Engine, items: list[Question], root: Path, blind: bool = False,
                 batch_size: int = 32, max_new_tokens: int = 16, progress=None) -> list[dict]:
    """Greedy answers in batches, each scored as the official VQAv2 pipeline scores: the
    EvalAI answer processor (convert_vqav2_for_submission.py), then the VQA accuracy."""
    params = SamplingParams(max_new_tokens=max_new_tokens)
    records = []
    bar = progress(total=len(items)) if progress else None
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        requests = []
        for q in batch:
            image = Image.open(root / q.image).convert("RGB")
            if blind:
                image = Image.new("RGB", image.size, GRAY)
            prompt = build_question_prompt(engine.template, q.text, with_image=True)
            requests.append(Request(prompt, [image], params))
        for q, answer in zip(batch, engine.generate(requests)):
            records.append({"question_id": q.question_id, "type": q.extra["type"], "answer": answer,
                            "accuracy": vqaeval_accuracy(normalize_answer(answer), q.extra["references"])})
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return records


def summarize(records: list[dict]) -> dict:
    """Overall and per-type accuracy, and answer lengths in words (the response-format effect)."""
    by_type: dict[str, list[float]] = defaultdict(list)
    for r in records:
        by_type[r["type"]].append(r["accuracy"])
    lengths = [len(r["answer"].split()) for r in records]
    return {
        "overall": statistics.fmean(r["accuracy"] for r in records) if records else 0.0,
        "per_type": {t: statistics.fmean(v) for t, v in sorted(by_type.items())},
        "count_per_type": {t: len(v) for t, v in sorted(by_type.items())},
        "answer_words_mean": statistics.fmean(lengths) if lengths else 0.0,
        "answer_words_max": max(lengths, default=0),
        "single_word_share": sum(n == 1 for n in lengths) / len(lengths) if lengths else 0.0,
    }


def write_records(records: list[dict], path: str | Path) -> None:
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in records))
