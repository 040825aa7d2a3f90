"""Multiple-choice benchmarks: MMBench / MMBench-CN (TSV, base64 images, circular copies),
SEED-Bench (image part) and ScienceQA-IMG, in their official layouts (docs/benchmarks.md,
'MMBench and MMBench-CN', 'SEED-Bench' and 'ScienceQA-IMG')."""

from __future__ import annotations

import base64
from types import MappingProxyType

from llava15.world.synth import prompts as P
from llava15.world.synth.bench_common import Bench
from llava15.world.synth.chinese import CN_TYPES, ask_cn
from llava15.world.synth.language import article
from llava15.world.synth.questions import LETTERS, QA, ask, format_options, with_options
from llava15.world.synth.vocab import BACKGROUND_NAMES, COLOR_NAMES, PLURALS, SHAPES, number_word

MMBENCH_COLUMNS = ("index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image",
                   "source", "l2-category", "comment", "split")
INSTANCE = "finegrained_perception (instance-level)"
MMBENCH_CATEGORY = MappingProxyType({
    "color": ("attribute_recognition", INSTANCE), "shape": ("attribute_recognition", INSTANCE),
    "size": ("attribute_recognition", INSTANCE), "detail": ("attribute_recognition", INSTANCE),
    "position": ("object_localization", INSTANCE), "count": ("object_localization", INSTANCE),
    "ocr": ("ocr", INSTANCE), "scene": ("image_scene", "coarse_perception"),
})
MMBENCH_TYPES = ("color", "shape", "count", "position", "size", "ocr", "detail", "scene")
CIRCULAR_STEP = 1_000_000


def _tsv_field(value: str) -> str:
    if any(c in value for c in "\t\n\r"):
        raise ValueError(f"MMBench TSV field contains a tab or newline: {value!r}")
    return value


def _mmbench(b: Bench, n_questions: int, tsv: str, chinese: bool) -> None:
    """Main questions get index 0..n-1; circular copy k (k < number of options) has index
    i + k*1e6 and its options rotated by k. Rows are ordered copy by copy."""
    copies: list[list[dict]] = [[] for _ in range(4)]
    i = 0
    while i < n_questions:
        scene = b.source.draw()
        qtype = b.rng.choice(CN_TYPES if chinese else MMBENCH_TYPES)
        qa = ask_cn(scene, b.rng, qtype) if chinese else ask(scene, b.rng, qtype)
        if qa is None:
            continue
        options, _ = with_options(qa, b.rng)
        hint = ""
        if b.rng.random() >= 0.7:
            hint = ("图中有一些形状。" if chinese
                    else f"The image shows shapes on a {scene.background} background.")
        image = base64.b64encode(b.image_bytes(scene)).decode("ascii")
        category, l2 = MMBENCH_CATEGORY[qa.qtype]
        for k in range(len(options)):
            rotated = options[k:] + options[:k]
            row = {"index": str(i + k * CIRCULAR_STEP), "question": qa.question, "hint": hint,
                   **{LETTERS[j]: (rotated[j] if j < len(rotated) else "") for j in range(4)},
                   "answer": LETTERS[rotated.index(qa.answer)], "category": category,
                   "image": image, "source": "synthetic", "l2-category": l2, "comment": "",
                   "split": "dev"}
            copies[k].append(row)
            b.typed(row["index"], qa.qtype)
        i += 1
    lines = ["\t".join(MMBENCH_COLUMNS)]
    for rows in copies:
        lines += ["\t".join(_tsv_field(r[c]) for c in MMBENCH_COLUMNS) for r in rows]
    b.text(tsv, "\n".join(lines) + "\n", sum(len(c) for c in copies))


def write_mmbench(b: Bench, n_questions: int) -> None:
    _mmbench(b, n_questions, "mmbench_dev_20230712.tsv", chinese=False)


def write_mmbench_cn(b: Bench, n_questions: int) -> None:
    _mmbench(b, n_questions, "mmbench_dev_cn_20231003.tsv", chinese=True)


# ---- SEED-Bench -----------------------------------------------------------------------------

SEED_QUESTION_TYPES = MappingProxyType({
    "Scene Understanding": 1, "Instance Identity": 2, "Instance Attributes": 3,
    "Instance Location": 4, "Instances Counting": 5, "Spatial Relation": 6,
    "Instance Interaction": 7, "Visual Reasoning": 8, "Text Understanding": 9,
    "Action Recognition": 10, "Action Prediction": 11, "Procedure Understanding": 12})
# The image types this world can ask about (6-8 need relations between things it has not got).
SEED_WORLD_TYPES = MappingProxyType({
    "scene": "Scene Understanding", "shape": "Instance Identity", "color": "Instance Attributes",
    "position": "Instance Location", "count": "Instances Counting", "ocr": "Text Understanding"})
SEED_PAD = MappingProxyType({"position": ("left", "right", "top", "bottom"),
                             "scene": BACKGROUND_NAMES + ("green",)})


def _four_options(qa: QA, b: Bench) -> tuple[list[str], str]:
    """SEED always has four options: pad short choice lists with same-kind words."""
    if len(qa.choices) >= 4:
        return with_options(qa, b.rng, 4)
    pool = [c for c in SEED_PAD[qa.qtype] if c != qa.answer]
    b.rng.shuffle(pool)
    options = [qa.answer] + pool[:3]
    b.rng.shuffle(options)
    return options, LETTERS[options.index(qa.answer)]


def write_seed(b: Bench, n_questions: int) -> None:
    rows, questions = [], []
    qid = 0
    while qid < n_questions:
        qtype = b.rng.choice(tuple(SEED_WORLD_TYPES))
        scene = b.source.draw(word=True if qtype == "ocr" else None)
        qa = ask(scene, b.rng, qtype)
        if qa is None:
            continue
        options, letter = _four_options(qa, b)
        data_id = f"{qid + 1:07d}_{b.rng.getrandbits(32):010d}.jpg"
        b.image(scene, f"SEED-Bench-image/{data_id}")
        name = SEED_WORLD_TYPES[qtype]
        questions.append({"answer": letter, **{f"choice_{c}": o for c, o in zip("abcd", options)},
                          "data_id": data_id, "data_type": "image", "question": qa.question,
                          "question_id": str(qid), "question_type_id": SEED_QUESTION_TYPES[name]})
        rows.append({"image": f"SEED-Bench-image/{data_id}",
                     "text": f"{qa.question}\n{format_options(options)}\n{P.MULTIPLE_CHOICE}",
                     "category": name, "question_id": qid})
        b.typed(qid, qtype)
        qid += 1
    b.jsonl("llava-seed-bench.jsonl", rows)
    b.json("SEED-Bench.json", {"question_type": dict(SEED_QUESTION_TYPES), "questions": questions})


# ---- ScienceQA ------------------------------------------------------------------------------

SQA_IMAGE_TYPES = ("color", "shape", "count", "position", "size")
SQA_HINTS = ("", "", "Look at the shapes in the picture.", "Select the best answer.")


def _sqa_text(b: Bench) -> tuple[QA, str]:
    """A text-only problem: the context holds the fact the question asks about."""
    color, shape, n = b.rng.choice(COLOR_NAMES), b.rng.choice(SHAPES), b.rng.randint(1, 4)
    if b.rng.random() < 0.5:
        hint = f"There is {article(color)} {color} {shape} in the box."
        return QA("text", f"What color is the {shape} in the box?", color, "", COLOR_NAMES), hint
    things = shape if n == 1 else PLURALS[shape]
    hint = f"The box holds {number_word(n)} {things}."
    return QA("text", f"How many {PLURALS[shape]} are in the box?", str(n), "",
              tuple(str(i) for i in range(1, 5))), hint


def write_sqa(b: Bench, n_problems: int) -> None:
    problems, conversations, pids = {}, [], []
    made = 0
    while made < n_problems:
        has_image = b.rng.random() < 0.75
        if has_image:
            scene = b.source.draw(word=False)
            qa = ask(scene, b.rng, b.rng.choice(SQA_IMAGE_TYPES))
            if qa is None:
                continue
            hint = b.rng.choice(SQA_HINTS)
        else:
            qa, hint = _sqa_text(b)
        made += 1
        pid = str(made)
        options, letter = with_options(qa, b.rng, b.rng.randint(2, 4))
        if has_image:
            b.image(scene, f"images/test/{pid}/image.png")
        problems[pid] = {"question": qa.question, "choices": options,
                         "answer": options.index(qa.answer), "hint": hint,
                         "image": "image.png" if has_image else None, "task": "closed choice",
                         "grade": "grade1", "subject": "natural science", "topic": "shapes",
                         "category": qa.qtype, "skill": qa.qtype, "lecture": "", "solution": "",
                         "split": "test"}
        human = ("<image>\n" if has_image else "") + (f"Context: {hint}\n" if hint else "") + \
            f"{qa.question}\n{format_options(options)}"
        item = {"id": pid, "conversations": [{"from": "human", "value": human},
                                             {"from": "gpt", "value": letter}]}
        if has_image:
            item = {"id": pid, "image": f"{pid}/image.png", "conversations": item["conversations"]}
        conversations.append(item)
        pids.append(pid)
        b.typed(pid, qa.qtype)
    b.json("llava_test_CQM-A.json", conversations, indent=2)
    b.json("problems.json", problems)
    b.json("pid_splits.json", {"train": [], "val": [], "test": pids, "trainval": [],
                               "minitrain": [], "minival": [], "minitest": pids})
