"""MM-Vet: 218 open-ended questions graded 0..1 by GPT-4 against the reference answer.

Official pipeline: `model_vqa.py` on `llava-mm-vet.jsonl` (images `images/`, free-form answers,
max 1024 new tokens), then `scripts/convert_mmvet_for_eval.py --src answers.jsonl --dst
results.json` (`{"v1_<qid>": text}`, `write_submission`) and MM-Vet's `mm-vet_evaluator.py`
(GPT-4 grader) with the MM-Vet release's `mm-vet.json`. Scores: mean x 100 per capability, per
capability combination and in total; with `num_run` > 1 (the evaluator's `--num_run`, 5 in the
MM-Vet paper) the mean over runs and the spread of the run totals.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from llava15.eval.answers import Answers, load_answers
from llava15.eval.judge import (JudgeClient, add_judge_arguments, judge_from_arguments,
                                mmvet_grade, parse_mmvet_score)
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


def capability_order(metadata: dict) -> list[str]:
    """Capabilities by frequency, as the evaluator's columns; ties (and names inside a
    combination, which it joins in set order) by first appearance, so names are reproducible."""
    counter: Counter = Counter()
    first_seen: dict[str, int] = {}
    for value in metadata.values():
        counter.update(set(value["capability"]))
        for cap in value["capability"]:
            first_seen.setdefault(cap, len(first_seen))
    return sorted(counter, key=lambda c: (-counter[c], first_seen[c]))


def percentages(scores: dict[str, float], metadata: dict) -> dict:
    """One run's unrounded mean x 100: `total`, per `capability` and per `combination`
    (names joined by '_', most frequent capability first); None where nothing was graded."""
    order = capability_order(metadata)
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
        return sum(values) / len(values) * 100 if values else None

    return {"total": pct(list(scores.values())), "capability": {k: pct(v) for k, v in caps.items()},
            "combination": {k: pct(v) for k, v in combos.items()}, "graded": len(scores)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def aggregate(scores: dict[str, float], metadata: dict) -> dict:
    """One grading run: `percentages` rounded to 1 decimal."""
    run = percentages(scores, metadata)
    return {"total": _round(run["total"]),
            "capability": {k: _round(v) for k, v in run["capability"].items()},
            "combination": {k: _round(v) for k, v in run["combination"].items()},
            "graded": run["graded"]}


def aggregate_runs(grades: dict[str, dict], metadata: dict) -> dict:
    """mm-vet_evaluator.py over `--num_run` runs: each figure is the mean over runs rounded to
    1 decimal; `std` is the population standard deviation of the run totals and `runs` the
    rounded totals (the evaluator's two extra columns); `capability_std`/`combination_std` give
    the same spread per column, and `per_run` each run's own rounded figures."""
    num_run = min(len(g["score"]) for g in grades.values())
    runs = [percentages({k: g["score"][i] for k, g in grades.items()}, metadata)
            for i in range(num_run)]

    def mean_std(values: list) -> tuple[float | None, float | None]:
        if any(v is None for v in values):
            return None, None
        mean = sum(values) / len(values)
        return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5

    result: dict = {"num_run": num_run, "graded": runs[0]["graded"]}
    total, std = mean_std([r["total"] for r in runs])
    result.update(total=_round(total), std=_round(std),
                  runs=[_round(r["total"]) for r in runs])
    for part in ("capability", "combination"):
        stats = {k: mean_std([r[part][k] for r in runs]) for k in runs[0][part]}
        result[part] = {k: _round(m) for k, (m, _) in stats.items()}
        result[f"{part}_std"] = {k: _round(sd) for k, (_, sd) in stats.items()}
    result["per_run"] = [{"total": _round(r["total"]),
                          "capability": {k: _round(v) for k, v in r["capability"].items()},
                          "combination": {k: _round(v) for k, v in r["combination"].items()}}
                         for r in runs]
    return result


def grade(client: JudgeClient, results: dict[str, str], metadata: dict, num_run: int = 1,
          progress=None) -> dict[str, dict]:
    """Per-sample grades as the evaluator's grade file holds them: `{id: {"model": [...],
    "content": [...], "score": [...]}}`, one entry per run. Every question needs a prediction."""
    if num_run < 1:
        raise ValueError(f"MM-Vet: --num-run must be at least 1, not {num_run}")
    missing = [k for k in metadata if k not in results]
    if missing:
        raise KeyError(f"MM-Vet: no prediction for {len(missing)} question(s), e.g. {missing[:5]}")
    grades = {key: {"model": [], "content": [], "score": []} for key in metadata}
    bar = progress(total=num_run * len(metadata)) if progress else None
    for run in range(num_run):
        for key, value in metadata.items():
            score, content = mmvet_grade(client, value["question"], value["answer"], results[key],
                                         run=run)
            grades[key]["model"].append(client.model)
            # the evaluator keeps the parsed token of a valid reply, the raw last reply else
            grades[key]["content"].append(content.split(" ")[0].strip()
                                          if parse_mmvet_score(content) is not None else content)
            grades[key]["score"].append(score)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return grades


def grade_file_name(model: str, judge_model: str, num_run: int) -> str:
    """The evaluator's per-sample grade file name."""
    return f"{model}_{judge_model}-grade-{num_run}runs.json"


def score(answers: Answers, data_dir: str | Path, client: JudgeClient | None = None,
          num_run: int = 1, grade_path: str | Path | None = None, progress=None) -> dict:
    """Graded figures over `num_run` runs (see `aggregate_runs`); the per-sample grades go to
    `grade_path` when given. Without a judge: only the answer count."""
    if client is None:
        return {"judge": "not configured", "answers": len(load_answers(answers))}
    metadata = read_json(locate(data_dir, FILES["metadata"], OFFICIAL_ROOT))
    grades = grade(client, convert(answers), metadata, num_run, progress)
    if grade_path is not None:
        Path(grade_path).parent.mkdir(parents=True, exist_ok=True)
        Path(grade_path).write_text(json.dumps(grades, indent=4, ensure_ascii=False))
    result = aggregate_runs(grades, metadata)
    if grade_path is not None:
        result["grades"] = str(grade_path)
    return result


# ---------------------------------------------------------------- `llava15 score mmvet`
SCORE_SCRIPT = "scripts/convert_mmvet_for_eval.py (+ MM-Vet GPT grading with --mmvet-path)"


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--mmvet-path", help="folder with MM-Vet's mm-vet.json; grades when given")
    p.add_argument("--num-run", type=int, default=1,
                   help="grading runs (mm-vet_evaluator.py --num_run; 5 in the MM-Vet paper): "
                        "reports each run, the mean and the spread")
    add_judge_arguments(p)


def score_command(args: argparse.Namespace) -> dict:
    Path(args.dst).parent.mkdir(parents=True, exist_ok=True)
    Path(args.dst).write_text(json.dumps(convert(args.src), indent=2))
    if not args.mmvet_path:
        return {"results": args.dst}
    from tqdm import tqdm

    judge = judge_from_arguments(args)
    grades = Path(args.dst).parent / grade_file_name(Path(args.dst).stem, judge.model, args.num_run)
    result = score(args.src, args.mmvet_path, judge, args.num_run, grades,
                   progress=lambda total: tqdm(total=total, desc="MM-Vet grading"))
    print(json.dumps(result, indent=2))
    return result
