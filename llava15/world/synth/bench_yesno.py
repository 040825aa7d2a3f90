"""Yes/no benchmarks: POPE (three negative-sampling splits) and MME (14 categories, question
pairs per image) in their official layouts (docs/benchmarks.md, 'POPE' and 'MME')."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from types import MappingProxyType

from llava15.world.synth import prompts as P
from llava15.world.synth.bench_common import Bench
from llava15.world.synth.language import refer
from llava15.world.synth.scene import MAX_COUNT, Scene
from llava15.world.synth.vocab import BACKGROUND_NAMES, COLOR_NAMES, PLURALS, SHAPES, WORDS

POPE_SPLITS = ("random", "popular", "adversarial")


def _pope_negatives(split: str, present: list[str], k: int, freq: Counter, cooc: Counter,
                    rng: random.Random) -> list[str]:
    """POPE's three ways to pick absent objects: uniformly, the most frequent in the data set,
    or those that co-occur most with the present ones."""
    absent = [s for s in SHAPES if s not in present]
    if split == "random":
        return rng.sample(absent, k)
    if split == "popular":
        return sorted(absent, key=lambda s: (-freq[s], s))[:k]
    score = {s: sum(cooc[tuple(sorted((s, p)))] for p in present) for s in absent}
    return sorted(absent, key=lambda s: (-score[s], s))[:k]


def write_pope(b: Bench, n_images: int) -> None:
    scenes = [b.source.draw(word=False) for _ in range(n_images)]
    images = [f"COCO_val2014_{i + 1:012d}.jpg" for i in range(n_images)]
    for scene, image in zip(scenes, images):
        b.image(scene, f"val2014/{image}")
    shapes_of = [sorted({o.shape for o in s.objects}) for s in scenes]
    freq = Counter(s for shapes in shapes_of for s in shapes)
    cooc = Counter(tuple(sorted((a, c))) for shapes in shapes_of for a in shapes for c in shapes
                   if a < c)
    rows, qid = [], 0
    for split in POPE_SPLITS:
        labels = []
        for shapes, image in zip(shapes_of, images):
            k = min(len(shapes), len(SHAPES) - len(shapes))
            yes = b.rng.sample(shapes, k)
            no = _pope_negatives(split, shapes, k, freq, cooc, b.rng)
            for shape, label in [(s, "yes") for s in yes] + [(s, "no") for s in no]:
                labels.append({"question_id": len(labels) + 1, "image": image,
                               "text": f"Is there a {shape} in the image?", "label": label})
        b.jsonl(f"coco/coco_pope_{split}.json", labels)
        for line in labels:
            qid += 1
            rows.append({"question_id": qid, "image": line["image"],
                         "text": P.with_suffix(line["text"], P.SHORT_ANSWER), "category": split})
            b.typed(qid, "existence")
    b.jsonl("llava_pope_test.jsonl", rows)


# ---- MME ------------------------------------------------------------------------------------

Pair = tuple[str, str]  # (question whose answer is Yes, question whose answer is No)


def _other(rng: random.Random, pool, value):
    return rng.choice([v for v in pool if v != value])


def _mme_existence(s: Scene, rng: random.Random) -> Pair | None:
    present = sorted({o.shape for o in s.objects})
    absent = [x for x in SHAPES if x not in present]
    return (f"Is there a {rng.choice(present)} in this image?",
            f"Is there a {rng.choice(absent)} in this image?")


def _mme_count(s: Scene, rng: random.Random) -> Pair | None:
    shape = rng.choice(sorted({o.shape for o in s.objects}))
    n = s.count(shape)
    wrong = _other(rng, range(1, MAX_COUNT + 1), n)
    return (f"Are there {n} {PLURALS[shape]} in this image?" if n > 1 else
            f"Is there only one {shape} in this image?",
            f"Are there {wrong} {PLURALS[shape]} in this image?")


def _mme_position(s: Scene, rng: random.Random) -> Pair | None:
    for o in rng.sample(s.objects, len(s.objects)):
        ref = refer(s, o)
        if ref is not None and o.col != 1:
            side, other = ("left", "right") if o.col == 0 else ("right", "left")
            return (f"Is the {ref} on the {side} of the image?",
                    f"Is the {ref} on the {other} of the image?")
    return None


def _mme_color(s: Scene, rng: random.Random) -> Pair | None:
    for o in rng.sample(s.objects, len(s.objects)):
        ref = refer(s, o, frozenset({"color"}))
        if ref is not None:
            wrong = _other(rng, COLOR_NAMES, o.color)
            return (f"Is the {ref} {o.color}?", f"Is the {ref} {wrong}?")
    return None


def _mme_ocr(s: Scene, rng: random.Random) -> Pair | None:
    w = s.word.text
    wrong = _other(rng, WORDS, w)
    return (f'Is the word in the image "{w}"?', f'Is the word in the image "{wrong}"?')


def _mme_poster(s: Scene, rng: random.Random) -> Pair | None:
    w = s.word.text
    wrong = _other(rng, WORDS, w)
    return (f"Does this image show the word {w}?", f"Does this image show the word {wrong}?")


def _mme_detail(s: Scene, rng: random.Random) -> Pair | None:
    for o in rng.sample(s.objects, len(s.objects)):
        ref = refer(s, o)
        if o.dot is not None and ref is not None:
            return (f"Is the dot on the {ref} {o.dot}?",
                    f"Is the dot on the {ref} {_other(rng, COLOR_NAMES, o.dot)}?")
    return None


def _mme_scene(s: Scene, rng: random.Random) -> Pair | None:
    return (f"Is the background of this image {s.background}?",
            f"Is the background of this image {_other(rng, BACKGROUND_NAMES, s.background)}?")


def _mme_shape(s: Scene, rng: random.Random) -> Pair | None:
    for o in rng.sample(s.objects, len(s.objects)):
        ref = refer(s, o, frozenset({"shape"}))
        if ref is not None:
            return (f"Is the {ref} a {o.shape}?", f"Is the {ref} a {_other(rng, SHAPES, o.shape)}?")
    return None


def _mme_size(s: Scene, rng: random.Random) -> Pair | None:
    for o in rng.sample(s.objects, len(s.objects)):
        ref = refer(s, o, frozenset({"size"}))
        if ref is not None:
            other = "small" if o.size == "large" else "large"
            return (f"Is the {ref} {o.size}?", f"Is the {ref} {other}?")
    return None


def _mme_relation(s: Scene, rng: random.Random) -> Pair | None:
    named = [(o, refer(s, o)) for o in s.objects]
    named = [(o, r) for o, r in named if r is not None]
    for a, ra in named:
        for c, rc in named:
            if a.col < c.col:
                return (f"Is the {ra} to the left of the {rc}?",
                        f"Is the {rc} to the left of the {ra}?")
    return None


def _mme_total(s: Scene, rng: random.Random) -> Pair | None:
    n = len(s.objects)
    wrong = _other(rng, range(1, 7), n)
    return (f"Is the total number of objects in this image {n}?",
            f"Is the total number of objects in this image {wrong}?")


def _mme_word_color(s: Scene, rng: random.Random) -> Pair | None:
    c = s.word.color
    return (f"Is the word in this image written in {c}?",
            f"Is the word in this image written in {_other(rng, COLOR_NAMES, c)}?")


def _mme_first_letter(s: Scene, rng: random.Random) -> Pair | None:
    first = s.word.text[0]
    wrong = _other(rng, sorted({w[0] for w in WORDS}), first)
    return (f'Does the word in this image start with the letter "{first}"?',
            f'Does the word in this image start with the letter "{wrong}"?')


# category -> (world question type, pair generator, needs a word, layout with images/ folder, ext)
MME_CATEGORIES: MappingProxyType[str, tuple[str, Callable, bool, bool, str]] = MappingProxyType({
    "existence": ("existence", _mme_existence, False, False, "jpg"),
    "count": ("count", _mme_count, False, False, "jpg"),
    "position": ("position", _mme_position, False, False, "jpg"),
    "color": ("color", _mme_color, False, False, "jpg"),
    "posters": ("ocr", _mme_poster, True, True, "jpg"),
    "celebrity": ("detail", _mme_detail, False, True, "jpg"),
    "scene": ("scene", _mme_scene, False, True, "jpg"),
    "landmark": ("shape", _mme_shape, False, True, "jpg"),
    "artwork": ("size", _mme_size, False, True, "jpg"),
    "OCR": ("ocr", _mme_ocr, True, False, "jpg"),
    "commonsense_reasoning": ("relation", _mme_relation, False, False, "png"),
    "numerical_calculation": ("count", _mme_total, False, False, "png"),
    "text_translation": ("ocr", _mme_word_color, True, False, "png"),
    "code_reasoning": ("ocr", _mme_first_letter, True, False, "png"),
})


def write_mme(b: Bench, n_per_category: int) -> None:
    """Per category: images and `<stem>.txt` files of two lines `<question> Please answer yes or
    no.\\t<Yes|No>`; `llava_mme.jsonl` with the suffix swapped for the short-answer one."""
    rows = []
    release = "MME_Benchmark_release_version"
    for category, (qtype, make, needs_word, nested, ext) in MME_CATEGORIES.items():
        stem_no = 0
        while stem_no < n_per_category:
            scene = b.source.draw(word=True if needs_word else None,
                                  dot_prob=0.9 if qtype == "detail" else 0.3)
            pair = make(scene, b.rng)
            if pair is None:
                continue
            stem_no += 1
            stem = f"{stem_no:04d}"
            image = f"{category}/images/{stem}.{ext}" if nested else f"{category}/{stem}.{ext}"
            txt = (f"{category}/questions_answers_YN/{stem}.txt" if nested
                   else f"{category}/{stem}.txt")
            b.image(scene, f"{release}/{image}")
            lines = [(pair[0], "Yes"), (pair[1], "No")]
            b.rng.shuffle(lines)
            b.text(f"{release}/{txt}", "".join(f"{q}{P.MME_YES_NO}\t{a}\n" for q, a in lines), 2)
            for q, _ in lines:
                rows.append({"question_id": image, "image": image,
                             "text": P.with_suffix(q, P.SHORT_ANSWER), "category": category})
                b.typed(image, qtype)
    b.jsonl("llava_mme.jsonl", rows)
