"""Question generators, one per question type, with ground-truth answers read off the scene.

A generator returns None when the scene cannot support its type (no unique referent, no word,
no dot, ...); callers then try another type or another object. Short answers are single words
(`Yes`/`No` capitalised, everything else lower case, counts as digits).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from llava15.world.synth.language import article, refer
from llava15.world.synth.scene import MAX_COUNT, Obj, Scene
from llava15.world.synth.vocab import (BACKGROUND_NAMES, COLOR_NAMES, PLURALS, SHAPES, SIZES,
                                       WORDS, number_word)

YES, NO = "Yes", "No"
UNANSWERABLE = "unanswerable"
LETTERS = "ABCD"


@dataclass(frozen=True)
class QA:
    qtype: str                      # one of QUESTION_TYPES (or "unanswerable")
    question: str                   # without any response-format suffix
    answer: str                     # the short answer
    full: str                       # the answer as a full sentence (conversations, GQA fullAnswer)
    choices: tuple[str, ...] = ()   # the answer's type-mates, for distractors in multiple choice


def _pick(rng: random.Random, scene: Scene, exclude: frozenset[str],
          need: Callable[[Obj], bool] = lambda o: True) -> tuple[Obj | None, str | None]:
    """A random object satisfying `need` that has a unique name avoiding `exclude`, with that
    name; (None, None) if there is none."""
    candidates = [o for o in scene.objects if need(o)]
    rng.shuffle(candidates)
    for obj in candidates:
        ref = refer(scene, obj, exclude)
        if ref is not None:
            return obj, ref
    return None, None


def ask_color(scene: Scene, rng: random.Random) -> QA | None:
    obj, ref = _pick(rng, scene, frozenset({"color"}))
    if obj is None:
        return None
    q = rng.choice(("What color is the {}?", "What is the color of the {}?")).format(ref)
    return QA("color", q, obj.color, f"The {ref} is {obj.color}.", COLOR_NAMES)


def ask_shape(scene: Scene, rng: random.Random) -> QA | None:
    obj, ref = _pick(rng, scene, frozenset({"shape"}))
    if obj is None:
        return None
    q = rng.choice(("What shape is the {}?", "What is the shape of the {}?")).format(ref)
    return QA("shape", q, obj.shape, f"The {ref} is a {obj.shape}.", SHAPES)


def ask_count(scene: Scene, rng: random.Random) -> QA | None:
    """Mostly about the scene's largest group (whose size is uniform in 1..4), so counts stay
    balanced; otherwise about any shape present (distractors have count 1)."""
    shapes = sorted({o.shape for o in scene.objects})
    if rng.random() < 0.85:
        most = max(scene.count(s) for s in shapes)
        shapes = [s for s in shapes if scene.count(s) == most]
    shape = rng.choice(shapes)
    n = scene.count(shape)
    template = rng.choice(("How many {} are there?", "How many {} are in the image?"))
    q = template.format(PLURALS[shape])
    full = f"There is one {shape}." if n == 1 else f"There are {number_word(n)} {PLURALS[shape]}."
    return QA("count", q, str(n), full, tuple(str(i) for i in range(1, MAX_COUNT + 1)))


def ask_position(scene: Scene, rng: random.Random) -> QA | None:
    obj, ref = _pick(rng, scene, frozenset(), lambda o: o.col != 1 or o.row != 1)
    if obj is None:
        return None
    axes = [a for a, ok in (("lr", obj.col != 1), ("tb", obj.row != 1)) if ok]
    if rng.choice(axes) == "lr":
        side = "left" if obj.col == 0 else "right"
        return QA("position", f"Is the {ref} on the left or on the right?", side,
                  f"The {ref} is on the {side}.", ("left", "right"))
    side = "top" if obj.row == 0 else "bottom"
    return QA("position", f"Is the {ref} at the top or at the bottom?", side,
              f"The {ref} is at the {side}.", ("top", "bottom"))


def ask_size(scene: Scene, rng: random.Random) -> QA | None:
    obj, ref = _pick(rng, scene, frozenset({"size"}))
    if obj is None:
        return None
    return QA("size", f"Is the {ref} small or large?", obj.size, f"The {ref} is {obj.size}.", SIZES)


def ask_existence(scene: Scene, rng: random.Random) -> QA | None:
    """Half of the time about a shape alone (POPE's "Is there a {object} in the image?"),
    otherwise about a coloured shape; the answer is Yes or No with equal odds."""
    if rng.random() < 0.5:
        present_shapes = sorted({o.shape for o in scene.objects})
        yes = rng.random() < 0.5
        shape = rng.choice(present_shapes if yes else
                           [s for s in SHAPES if s not in present_shapes])
        full = f"Yes, there is a {shape}." if yes else f"No, there is no {shape}."
        return QA("existence", f"Is there a {shape} in the image?", YES if yes else NO, full,
                  (YES, NO))
    present = {(o.color, o.shape) for o in scene.objects}
    if rng.random() < 0.5:
        color, shape = rng.choice(sorted(present))
        answer = YES
    else:
        absent = [(c, s) for c in COLOR_NAMES for s in SHAPES if (c, s) not in present]
        color, shape = rng.choice(absent)
        answer = NO
    a = article(color)
    q = f"Is there {a} {color} {shape} in the image?"
    full = (f"Yes, there is {a} {color} {shape}." if answer == YES
            else f"No, there is no {color} {shape}.")
    return QA("existence", q, answer, full, (YES, NO))


def ask_relation(scene: Scene, rng: random.Random) -> QA | None:
    named = [(o, refer(scene, o)) for o in scene.objects]
    named = [(o, r) for o, r in named if r is not None]
    rng.shuffle(named)
    for i, (a, ra) in enumerate(named):
        for b, rb in named[i + 1:]:
            if a.col != b.col and (a.row == b.row or rng.random() < 0.5):
                yes = a.col < b.col
                q, rel = f"Is the {ra} to the left of the {rb}?", "to the left of"
            elif a.row != b.row:
                yes = a.row < b.row
                q, rel = f"Is the {ra} above the {rb}?", "above"
            else:
                continue
            full = (f"Yes, the {ra} is {rel} the {rb}." if yes
                    else f"No, the {ra} is not {rel} the {rb}.")
            return QA("relation", q, YES if yes else NO, full, (YES, NO))
    return None


def ask_ocr(scene: Scene, rng: random.Random) -> QA | None:
    if scene.word is None:
        return None
    q = rng.choice(("What word is written in the image?", "What does the text in the image say?"))
    return QA("ocr", q, scene.word.text, f"The word is {scene.word.text}.", WORDS)


def ask_detail(scene: Scene, rng: random.Random) -> QA | None:
    obj, ref = _pick(rng, scene, frozenset(), lambda o: o.dot is not None)
    if obj is None:
        return None
    return QA("detail", f"What color is the dot on the {ref}?", obj.dot,
              f"The dot on the {ref} is {obj.dot}.", COLOR_NAMES)


def ask_scene(scene: Scene, rng: random.Random) -> QA | None:
    q = rng.choice(("What color is the background?", "What is the color of the background?"))
    return QA("scene", q, scene.background, f"The background is {scene.background}.",
              BACKGROUND_NAMES)


def ask_unanswerable(scene: Scene, rng: random.Random) -> QA | None:
    """VizWiz-style: a question the image cannot answer (an absent shape, a missing word)."""
    absent = [s for s in SHAPES if scene.count(s) == 0]
    if scene.word is None and rng.random() < 0.3:
        return QA("unanswerable", "What word is written in the image?", UNANSWERABLE,
                  "There is no word in the image.", ())
    shape = rng.choice(absent)  # a scene uses at most 3 of the 5 shapes
    return QA("unanswerable", f"What color is the {shape}?", UNANSWERABLE,
              f"There is no {shape} in the image.", ())


GENERATORS: MappingProxyType[str, Callable[[Scene, random.Random], QA | None]] = MappingProxyType({
    "color": ask_color, "shape": ask_shape, "count": ask_count, "position": ask_position,
    "size": ask_size, "existence": ask_existence, "relation": ask_relation, "ocr": ask_ocr,
    "detail": ask_detail, "scene": ask_scene,
})
QUESTION_TYPES: tuple[str, ...] = tuple(GENERATORS)


def ask(scene: Scene, rng: random.Random, qtype: str) -> QA | None:
    if qtype == "unanswerable":
        return ask_unanswerable(scene, rng)
    if qtype not in GENERATORS:
        raise KeyError(f"unknown question type {qtype!r}; known: {', '.join(QUESTION_TYPES)}")
    return GENERATORS[qtype](scene, rng)


def ask_some(scene: Scene, rng: random.Random, types: tuple[str, ...], n: int) -> list[QA]:
    """Up to n questions of distinct text, types drawn from `types` in random order."""
    out: list[QA] = []
    order = list(types)
    rng.shuffle(order)
    for qtype in order * 2:
        if len(out) == n:
            break
        qa = ask(scene, rng, qtype)
        if qa is not None and all(qa.question != o.question for o in out):
            out.append(qa)
    return out


def with_options(qa: QA, rng: random.Random, n_options: int = 4) -> tuple[list[str], str]:
    """Lettered options for a multiple-choice question: the answer and up to n-1 distractors of
    the same type, shuffled. Returns (options, answer letter)."""
    if not qa.choices:
        raise ValueError(f"question {qa.question!r} has no choices for multiple choice")
    distractors = [c for c in qa.choices if c != qa.answer]
    rng.shuffle(distractors)
    options = [qa.answer] + distractors[:n_options - 1]
    rng.shuffle(options)
    return options, LETTERS[options.index(qa.answer)]


def format_options(options: list[str]) -> str:
    """'A. red\\nB. blue' (the official one-per-line layout)."""
    return "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
