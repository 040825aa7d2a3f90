"""MME: 14 yes/no categories, two questions per image; perception total reported.

Official pipeline: `model_vqa_loader.py` on `llava_mme.jsonl` (images under
`MME_Benchmark_release_version/`), then eval.zip's `convert_answer_to_mme.py`, which writes one
`<category>.txt` per category (`<stem>.txt\\t<question>\\t<GT>\\t<prediction>` in answer order,
GT found by rebuilding the release's question text), then MME's `eval_tool/calculation.py`
(acc + acc+ per category, summed into Perception and Cognition). We build the same lines in
memory and score them the same way, so odd predictions (tabs, newlines) behave as officially.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

from llava15.eval.answers import Answers, load_answers
from llava15.eval.question import (Question, SHORT_ANSWER, SHORT_MAX_NEW_TOKENS, locate,
                                   read_question_file)
from llava15.eval.scoring import mme_category_score

OFFICIAL_ROOT = "playground/data/eval/MME"
FILES = {"questions": "llava_mme.jsonl", "release": "MME_Benchmark_release_version"}
PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene",
              "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation",
             "code_reasoning")
YES_NO = "Please answer yes or no."


def image_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / FILES["release"]


def load(data_dir: str | Path) -> list[Question]:
    path = locate(data_dir, FILES["questions"], OFFICIAL_ROOT)
    return read_question_file(path, SHORT_MAX_NEW_TOKENS, "required")


def read_ground_truth(release_dir: str | Path) -> dict[tuple[str, str, str], str]:
    """(category, txt name, question) -> 'Yes'/'No' from the release's question files."""
    gt = {}
    for category_dir in sorted(p for p in Path(release_dir).iterdir() if p.is_dir()):
        qa_dir = (category_dir / "questions_answers_YN" if (category_dir / "images").exists()
                  else category_dir)
        for txt in sorted(qa_dir.glob("*.txt")):
            for line_no, line in enumerate(txt.read_text(encoding="utf-8").splitlines(), 1):
                fields = line.strip().split("\t")
                if len(fields) != 2:
                    raise ValueError(f"{txt}:{line_no}: expected '<question>\\t<answer>'")
                gt[(category_dir.name, txt.name, fields[0])] = fields[1]
    return gt


def category_lines(records: list[dict], gt: dict) -> dict[str, list[str]]:
    """convert_answer_to_mme.py, then calculation.py's readlines(): category -> file lines."""
    tuples = defaultdict(list)
    for record in records:
        category = record["question_id"].split("/")[0]
        stem = record["question_id"].split("/")[-1].split(".")[0] + ".txt"
        tuples[category].append((stem, record["prompt"], record["text"]))
    lines = {}
    for category, items in tuples.items():
        content = []
        for stem, prompt, text in items:
            if SHORT_ANSWER.strip() in prompt:
                prompt = prompt.replace(SHORT_ANSWER.strip(), "").strip()
            if YES_NO not in prompt:
                prompt = prompt + " " + YES_NO
                if (category, stem, prompt) not in gt:
                    prompt = prompt.replace(" " + YES_NO, "  " + YES_NO)
            if (category, stem, prompt) not in gt:
                raise KeyError(f"MME: no ground truth for category {category!r}, file {stem!r}, "
                               f"question {prompt!r}")
            content.append("\t".join((stem, prompt, gt[(category, stem, prompt)], text)) + "\n")
        # reading back in text mode: universal newlines, split after every '\n'
        text = "".join(content).replace("\r\n", "\n").replace("\r", "\n")
        lines[category] = re.findall(r"[^\n]*\n|[^\n]+$", text)
    return lines


def score_lines(lines: dict[str, list[str]]) -> dict:
    """calculation.py over category lines; totals over the categories present (officially all
    14 files must exist; missing ones are listed instead of crashing)."""
    result: dict = {"categories": {}}
    for group, names in (("perception", PERCEPTION), ("cognition", COGNITION)):
        present = [name for name in names if name in lines]
        for name in present:
            result["categories"][name] = mme_category_score(lines[name])
        result[group] = sum(result["categories"][name]["score"] for name in present)
        result[f"{group}_missing"] = [name for name in names if name not in lines]
    result["unknown_categories"] = sorted(set(lines) - set(PERCEPTION) - set(COGNITION))
    return result


def score(answers: Answers, data_dir: str | Path) -> dict:
    records = load_answers(answers, ("question_id", "prompt", "text"))
    gt = read_ground_truth(locate(data_dir, FILES["release"], OFFICIAL_ROOT, "folder"))
    return score_lines(category_lines(records, gt))


def write_category_files(answers: Answers, data_dir: str | Path, out_dir: str | Path) -> Path:
    """convert_answer_to_mme.py's output: `<out_dir>/<category>.txt` for calculation.py."""
    records = load_answers(answers, ("question_id", "prompt", "text"))
    gt = read_ground_truth(locate(data_dir, FILES["release"], OFFICIAL_ROOT, "folder"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for category, lines in category_lines(records, gt).items():
        (out / f"{category}.txt").write_text("".join(lines), encoding="utf-8")
    return out


def report(result: dict) -> str:
    """calculation.py's printout."""
    out = []
    for group, names in (("Perception", PERCEPTION), ("Cognition", COGNITION)):
        out += [f"=========== {group} ===========", f"total score: {result[group.lower()]} ", ""]
        out += [f"\t {name}  score: {result['categories'][name]['score']}"
                for name in names if name in result["categories"]]
        out += ["", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- `llava15 score mme`
SCORE_SCRIPT = "convert_answer_to_mme.py + eval_tool/calculation.py"


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True)
    p.add_argument("--mme-dir", default=".", help="the MME folder (official: cd there first)")


def score_command(args: argparse.Namespace) -> dict:
    root = Path(args.mme_dir)
    answers = root / "answers" / f"{args.experiment}.jsonl"
    out = write_category_files(answers, root, root / "eval_tool" / "answers" / args.experiment)
    result = score(answers, root)
    result["category_files"] = str(out)
    print(report(result))
    return result
