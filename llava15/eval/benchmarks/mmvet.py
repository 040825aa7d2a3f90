"""MM-Vet: 218 open-ended questions graded 0..1 by GPT-4 against the reference answer.

Official pipeline: `model_vqa.py` on `llava-mm-vet.jsonl` (images `images/`, free-form answers,
max 1024 new tokens), then `scripts/convert_mmvet_for_eval.py --src answers.jsonl --dst
results.json` (`{"v1_<qid>": text}`, `write_submission`) and MM-Vet's `mm-vet_evaluator.py`
(GPT-4 grader) with the MM-Vet release's `mm-vet.json`. Scores: mean x 100 per capability, per
capability combination and in total (one grading run).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from llava15.eval.answers import Answers, load_answers
from llava15.eval.judge import JudgeClient, mmvet_grade
from llava15.eval.question import (LONG_MAX_NEW_TOKENS, Question, locate, output_path, read_json,
                                   read_question_file)

OFFICIAL_ROOT = "playground/data/eval/mm-vet"
FILES = {"questions": "llava-mm-vet.jsonl", "images": "images",
         # from the MM-Vet release (mm-vet.zip), placed beside the question file
         "metadata": "mm-vet.json"}


def image_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / FILES["images"]


def load(data_dir: str | Path) -> list[Question]:
    path = locate(data_dir, FILES["questions"], OFFICIAL_ROOT)
    return read_question_file(path, LONG_MAX_NEW_TOKENS)


def convert(answers: Answers) -> dict[str, str]:
    """convert_mmvet_for_eval.py: {"v1_<question_id>": text} (the last line wins)."""
    return {f"v1_{a['question_id']}": a["text"] for a in load_answers(answers)}


def write_submission(answers: Answers, data_dir: str | Path, out_path: str | Path) -> Path:
    path = output_path(out_path, ".json")
    path.write_text(json.dumps(convert(answers), indent=2))
    return path


def aggregate(scores: dict[str, float], metadata: dict) -> dict:
    """Per capability, per capability combination (names joined by '_', most frequent
    capability first) and total, each mean x 100 rounded to 1 decimal (one grading run)."""
    counter: Counter = Counter()
    first_seen: dict[str, int] = {}
    for value in metadata.values():
        counter.update(set(value["capability"]))
        for cap in value["capability"]:
            first_seen.setdefault(cap, len(first_seen))
    # the evaluator orders by frequency; ties (and names inside a combination, which it joins
    # in set order) are ordered here by first appearance, so names are reproducible
    order = sorted(counter, key=lambda c: (-counter[c], first_seen[c]))
    caps: dict = {name: [] for name in order}
    combos: dict = {}
    for key, value in metadata.items():
        if key not in scores:
            continue
        for cap in set(value["capability"]):
            caps[cap].append(scores[key])
        combo = "_".join(c for c in order if c in set(value["capability"]))
        combos.setdefault(combo, []).append(scores[key])

    def pct(values: list) -> float | None:
        return round(sum(values) / len(values) * 100, 1) if values else None

    return {"total": pct(list(scores.values())), "capability": {k: pct(v) for k, v in caps.items()},
            "combination": {k: pct(v) for k, v in combos.items()}, "graded": len(scores)}


def grade(client: JudgeClient, results: dict[str, str], metadata: dict) -> dict[str, float]:
    missing = [k for k in metadata if k not in results]
    if missing:
        raise KeyError(f"MM-Vet: no prediction for {len(missing)} question(s), e.g. {missing[:5]}")
    return {key: mmvet_grade(client, value["question"], value["answer"], results[key])[0]
            for key, value in metadata.items()}


def score(answers: Answers, data_dir: str | Path, client: JudgeClient | None = None) -> dict:
    if client is None:
        return {"judge": "not configured", "answers": len(load_answers(answers))}
    metadata = read_json(locate(data_dir, FILES["metadata"], OFFICIAL_ROOT))
    return aggregate(grade(client, convert(answers), metadata), metadata)
