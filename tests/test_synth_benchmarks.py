"""`llava15 synth` held-out benchmarks: every file parsed the way its official loader parses it."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llava15.world.synth import synthesize
from llava15.world.synth import prompts as P
from llava15.world.synth.bench_yesno import MME_CATEGORIES
from llava15.world.synth.vocab import BACKGROUNDS

SUFFIX_SHORT = "\n" + P.SHORT_ANSWER
SUFFIX_MC = "\n" + P.MULTIPLE_CHOICE

# benchmark dir -> (question file, image folder the official script passes, suffix of every text)
QUESTION_FILES = {
    "vqav2": ("llava_vqav2_mscoco_test-dev2015.jsonl", "test2015", SUFFIX_SHORT),
    "gqa": ("llava_gqa_testdev_balanced.jsonl", "data/images", SUFFIX_SHORT),
    "vizwiz": ("llava_test.jsonl", "test", "\n" + P.VIZWIZ),
    "textvqa": ("llava_textvqa_val_v051_ocr.jsonl", "train_images", SUFFIX_SHORT),
    "pope": ("llava_pope_test.jsonl", "val2014", SUFFIX_SHORT),
    "MME": ("llava_mme.jsonl", "MME_Benchmark_release_version", SUFFIX_SHORT),
    "seed_bench": ("llava-seed-bench.jsonl", ".", SUFFIX_MC),
    "llava-bench-in-the-wild": ("questions.jsonl", "images", ""),
    "mm-vet": ("llava-mm-vet.jsonl", "images", ""),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    synthesize(out, seed=0, scale="small")
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def load_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("bench", sorted(QUESTION_FILES))
def test_question_files_have_the_official_keys_suffix_and_images(world, bench):
    name, folder, suffix = QUESTION_FILES[bench]
    root = world / "eval" / bench
    rows = read_jsonl(root / name)
    assert rows
    types = load_json(root / "types.json")
    for row in rows:
        assert {"question_id", "image", "text", "category"} <= set(row), row
        assert (root / folder / row["image"]).is_file(), row["image"]
        assert row["text"].endswith(suffix) and "<image>" not in row["text"]
        assert str(row["question_id"]) in types
    if bench != "MME":  # MME's two questions of an image share the image path as id, officially
        assert len({r["question_id"] for r in rows}) == len(rows)


def test_vqav2_annotations_hold_ten_answers_per_question(world):
    root = world / "eval" / "vqav2"
    rows = read_jsonl(root / "llava_vqav2_mscoco_test-dev2015.jsonl")
    annotations = {a["question_id"]: a for a in
                   load_json(root / "v2_mscoco_val2014_annotations.json")["annotations"]}
    questions = {q["question_id"]: q for q in
                 load_json(root / "v2_OpenEnded_mscoco_val2014_questions.json")["questions"]}
    for row in rows:
        a, q = annotations[row["question_id"]], questions[row["question_id"]]
        assert row["text"] == q["question"] + SUFFIX_SHORT
        assert row["image"] == f"COCO_test2015_{q['image_id']:012d}.jpg"
        answers = [x["answer"] for x in a["answers"]]
        assert len(answers) == 10 and answers.count(a["multiple_choice_answer"]) >= 4
        assert a["answer_type"] in ("yes/no", "number", "other")
    test2015 = read_jsonl(root / "llava_vqav2_mscoco_test2015.jsonl")
    assert {r["question_id"] for r in rows} <= {r["question_id"] for r in test2015}


def test_vqav2_background_answers_match_the_image(world):
    root = world / "eval" / "vqav2"
    types = load_json(root / "types.json")
    annotations = {a["question_id"]: a for a in
                   load_json(root / "v2_mscoco_val2014_annotations.json")["annotations"]}
    checked = 0
    for row in read_jsonl(root / "llava_vqav2_mscoco_test-dev2015.jsonl"):
        if types[str(row["question_id"])] != "scene":
            continue
        image = np.asarray(Image.open(root / "test2015" / row["image"]).convert("RGB"), dtype=int)
        ref = BACKGROUNDS[annotations[row["question_id"]]["multiple_choice_answer"]]
        assert (np.abs(image - ref).max(axis=-1) <= 12).mean() > 0.4  # JPEG q95: a few levels off
        checked += 1
    assert checked


def test_gqa_questions_follow_the_testdev_balanced_format(world):
    root = world / "eval" / "gqa"
    questions = load_json(root / "data" / "testdev_balanced_questions.json")
    for row in read_jsonl(root / "llava_gqa_testdev_balanced.jsonl"):
        q = questions[row["question_id"]]
        assert q["isBalanced"] and q["answer"] == q["answer"].lower()
        assert row["image"] == q["imageId"] + ".jpg" and row["text"] == q["question"] + SUFFIX_SHORT
        assert set(q["types"]) == {"structural", "semantic", "detailed"}


def test_vizwiz_has_unanswerable_questions_and_val_style_annotations(world):
    root = world / "eval" / "vizwiz"
    rows = read_jsonl(root / "llava_test.jsonl")
    test = load_json(root / "test.json")
    annotations = load_json(root / "test_annotations.json")
    assert [r["question_id"] for r in rows] == list(range(len(rows)))
    assert [t["image"] for t in test] == [r["image"] for r in rows]
    assert all(len(a["answers"]) == 10 for a in annotations)
    unanswerable = [a for a in annotations if not a["answerable"]]
    assert unanswerable and all(a["answers"][0]["answer"] == "unanswerable" for a in unanswerable)


def test_textvqa_prompts_resolve_to_annotations_as_eval_textvqa_does(world):
    root = world / "eval" / "textvqa"
    data = load_json(root / "TextVQA_0.5.1_val.json")["data"]
    annotations = {(a["image_id"], a["question"].lower()): a for a in data}
    for row in read_jsonl(root / "llava_textvqa_val_v051_ocr.jsonl"):
        lines = row["text"].split("\n")
        assert len(lines) == 3 and lines[1].startswith("Reference OCR token: ")
        a = annotations[(row["question_id"], lines[0].lower())]
        assert len(a["answers"]) == 10 and row["image"] == a["image_id"] + ".jpg"


def test_pope_answers_pair_with_labels_by_position(world):
    root = world / "eval" / "pope"
    rows = read_jsonl(root / "llava_pope_test.jsonl")
    for split in ("random", "popular", "adversarial"):
        labels = read_jsonl(root / "coco" / f"coco_pope_{split}.json")
        mine = [r for r in rows if r["category"] == split]
        assert len(mine) == len(labels)
        assert [x["question_id"] for x in labels] == list(range(1, len(labels) + 1))
        for r, lab in zip(mine, labels):
            assert r["image"] == lab["image"] and r["text"] == lab["text"] + SUFFIX_SHORT
        counts = Counter(lab["label"] for lab in labels)
        assert counts["yes"] == counts["no"] > 0


def test_mme_questions_resolve_to_yes_no_pairs_as_convert_answer_to_mme_does(world):
    release = world / "eval" / "MME" / "MME_Benchmark_release_version"
    gt = {}
    for category in os.listdir(release):  # get_gt() from convert_answer_to_mme.py, rule for rule
        cdir = release / category
        qa_dir = cdir / "questions_answers_YN" if (cdir / "images").exists() else cdir
        for file in os.listdir(qa_dir):
            if file.endswith(".txt"):
                lines = (qa_dir / file).read_text().splitlines()
                assert sorted(line.split("\t")[1] for line in lines) == ["No", "Yes"]
                for line in lines:
                    question, answer = line.strip().split("\t")
                    gt[(category, file, question)] = answer
    assert set(os.listdir(release)) == set(MME_CATEGORIES)
    per_image = Counter()
    for row in read_jsonl(world / "eval" / "MME" / "llava_mme.jsonl"):
        category = row["question_id"].split("/")[0]
        file = row["question_id"].split("/")[-1].split(".")[0] + ".txt"
        prompt = row["text"].replace(P.SHORT_ANSWER, "").strip() + " Please answer yes or no."
        assert (category, file, prompt) in gt and category == row["category"]
        per_image[row["question_id"]] += 1
    assert set(per_image.values()) == {2}


def test_mmbench_tsv_has_circular_copies_and_base64_images(world):
    for bench, tsv in (("mmbench", "mmbench_dev_20230712.tsv"),
                       ("mmbench_cn", "mmbench_dev_cn_20231003.tsv")):
        with open(world / "eval" / bench / tsv, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        assert list(rows[0]) == ["index", "question", "hint", "A", "B", "C", "D", "answer",
                                 "category", "image", "source", "l2-category", "comment", "split"]
        by_index = {int(r["index"]): r for r in rows}
        for r in rows:
            main = by_index[int(r["index"]) % 1_000_000]
            options = [r[c] for c in "ABCD" if r[c]]
            assert r["answer"] in "ABCD"[:len(options)]
            assert r[r["answer"]] == main[main["answer"]]  # the same answer text in every copy
            assert len(options) == sum(1 for c in "ABCD" if main[c])
            image = Image.open(io.BytesIO(base64.b64decode(r["image"])))
            size = json.loads((world / "manifest.json").read_text())["image_size"]
            assert image.size == (size, size)
        if bench == "mmbench_cn":
            assert all(any("\u4e00" <= ch <= "\u9fff" for ch in r["question"]) for r in rows)


def test_seed_json_matches_the_question_file(world):
    root = world / "eval" / "seed_bench"
    data = load_json(root / "SEED-Bench.json")
    rows = {r["question_id"]: r for r in read_jsonl(root / "llava-seed-bench.jsonl")}
    names = {v: k for k, v in data["question_type"].items()}
    for q in data["questions"]:
        row = rows[int(q["question_id"])]
        options = "\n".join(f"{c}. {q['choice_' + c.lower()]}" for c in "ABCD")
        assert row["text"] == f"{q['question']}\n{options}{SUFFIX_MC}"
        assert q["answer"] in "ABCD" and q["data_type"] == "image"
        assert row["image"] == "SEED-Bench-image/" + q["data_id"]
        assert row["category"] == names[q["question_type_id"]]


def test_scienceqa_conversations_match_problems(world):
    root = world / "eval" / "scienceqa"
    problems = load_json(root / "problems.json")
    test = load_json(root / "pid_splits.json")["test"]
    items = load_json(root / "llava_test_CQM-A.json")
    assert [it["id"] for it in items] == test
    with_image = 0
    for it in items:
        p = problems[it["id"]]
        human, gpt = it["conversations"]
        assert human["value"].startswith("<image>\n") == ("image" in it) == (p["image"] is not None)
        if "image" in it:
            assert (root / "images" / "test" / it["image"]).is_file()
            with_image += 1
        options = "\n".join(f"{'ABCDE'[i]}. {c}" for i, c in enumerate(p["choices"]))
        assert human["value"].endswith(p["question"] + "\n" + options)
        assert ("Context: " + p["hint"] in human["value"]) == bool(p["hint"])
        assert gpt["value"] == "ABCDE"[p["answer"]]
    assert 0 < with_image < len(items)


def test_llavabench_and_mmvet_files_line_up(world):
    root = world / "eval" / "llava-bench-in-the-wild"
    questions = read_jsonl(root / "questions.jsonl")
    references = read_jsonl(root / "answers_gpt4.jsonl")
    contexts = {c["image"]: c for c in read_jsonl(root / "context.jsonl")}
    assert [q["question_id"] for q in questions] == [r["question_id"] for r in references]
    assert {q["category"] for q in questions} == {"conv", "detail", "complex"}
    assert all(q["image"] in contexts and r["text"] for q, r in zip(questions, references))
    root = world / "eval" / "mm-vet"
    release = load_json(root / "mm-vet.json")
    for row in read_jsonl(root / "llava-mm-vet.jsonl"):
        item = release[f"v1_{row['question_id']}"]
        assert item["imagename"] == row["image"] and item["question"] == row["text"]
        assert set(item["capability"]) <= {"rec", "ocr", "know", "gen", "spat", "math"}


def test_manifest_counts_match_the_files(world):
    manifest = load_json(world / "manifest.json")
    assert manifest["seed"] == 0 and manifest["scale"] == "small"
    for rel, n in manifest["files"].items():
        path = world / rel
        if rel.endswith(".jsonl") or "coco_pope_" in rel:  # POPE's .json files are JSON lines
            assert len(read_jsonl(path)) == n, rel
        elif rel.endswith(".json"):
            assert len(load_json(path)) == n, rel
    for name, entry in manifest["benchmarks"].items():
        types = load_json(world / entry["dir"] / "types.json")
        assert set(entry["types"]) == set(types.values()), name
        assert sum(entry["types"].values()) == entry["questions"]


def test_held_out_images_never_appear_in_training(world):
    def digest(path: Path) -> str:
        return hashlib.sha256(np.asarray(Image.open(path).convert("RGB")).tobytes()).hexdigest()

    train = {digest(p) for p in (world / "images").rglob("*.png")}
    held_out = [p for p in (world / "eval").rglob("*.png")]
    assert held_out and not any(digest(p) in train for p in held_out)


# ---- the project's own loaders and scorers run on the files -----------------------------------

def _truths(name: str, d: Path) -> dict:
    """question_id -> the ground-truth answer text, read from the benchmark's own files."""
    if name == "vqav2":
        return {a["question_id"]: a["multiple_choice_answer"]
                for a in load_json(d / "v2_mscoco_val2014_annotations.json")["annotations"]}
    if name == "gqa":
        return {k: v["answer"]
                for k, v in load_json(d / "data" / "testdev_balanced_questions.json").items()}
    if name == "textvqa":
        return {a["image_id"]: a["answers"][0]
                for a in load_json(d / "TextVQA_0.5.1_val.json")["data"]}
    if name == "pope":
        rows, truth = read_jsonl(d / "llava_pope_test.jsonl"), {}
        for split in ("random", "popular", "adversarial"):
            mine = [r for r in rows if r["category"] == split]
            for r, lab in zip(mine, read_jsonl(d / "coco" / f"coco_pope_{split}.json")):
                truth[r["question_id"]] = lab["label"].capitalize()
        return truth
    if name in ("mmbench", "mmbench_cn"):
        with open(next(d.glob("*.tsv")), encoding="utf-8", newline="") as f:
            return {int(r["index"]): r["answer"] for r in csv.DictReader(f, delimiter="\t")}
    if name == "seed":
        questions = load_json(d / "SEED-Bench.json")["questions"]
        return {int(q["question_id"]): q["answer"] for q in questions}
    if name == "sqa":
        return {pid: "ABCDE"[p["answer"]] for pid, p in load_json(d / "problems.json").items()}
    raise KeyError(name)


def _mme_truth(d: Path, question) -> str:
    category, stem = question.question_id.split("/")[0], question.question_id.split("/")[-1]
    release = d / "MME_Benchmark_release_version" / category
    qa_dir = release / "questions_answers_YN" if (release / "images").exists() else release
    lines = (qa_dir / (stem.split(".")[0] + ".txt")).read_text().splitlines()
    asked = question.text.split("\n")[0] + P.MME_YES_NO
    return next(line.split("\t")[1] for line in lines if line.split("\t")[0] == asked)


@pytest.mark.parametrize("name", ["vqav2", "gqa", "textvqa", "pope", "mme", "mmbench",
                                  "mmbench_cn", "seed", "sqa"])
def test_project_loaders_score_ground_truth_answers_perfectly(world, name):
    from llava15.eval.benchmarks import BENCHMARKS
    from llava15.world.synth.benchmarks import BENCHMARKS as WORLD

    d = world / "eval" / WORLD[name][0]
    module = BENCHMARKS[name]
    questions = module.load(d)
    truth = None if name == "mme" else _truths(name, d)
    records = []
    for q in questions:
        text = _mme_truth(d, q) if name == "mme" else truth[q.question_id]
        extra = {k: q.extra[k] for k in ("round_id", "options", "option_char") if k in q.extra}
        records.append({"question_id": q.question_id, "prompt": q.text, "text": text,
                        "answer_id": "x", "model_id": "oracle", "metadata": {}, **extra})
    perfect = json.dumps(module.score(records, d))
    wrong = [{**r, "text": "zebra"} for r in records]
    worse = json.dumps(module.score(wrong, d))
    numbers = {"vqav2": '"overall": 100.0', "gqa": '"accuracy": 100.0',
               "textvqa": '"accuracy": 100.0', "pope": '"f1": 1.0', "mme": '"score": 200.0',
               "mmbench": '"overall": 100.0', "mmbench_cn": '"overall": 100.0',
               "seed": '"total": 100.0', "sqa": '"acc": 100.0'}
    assert numbers[name] in perfect and numbers[name] not in worse
