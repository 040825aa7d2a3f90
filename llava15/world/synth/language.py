"""Words about a scene: referring expressions, captions, detailed descriptions, region phrases.

Every sentence is built from templates over the small vocabulary in `vocab.py`.
"""

from __future__ import annotations

import random
from collections import Counter

from llava15.world.synth.scene import Obj, Scene
from llava15.world.synth.vocab import number_word, plural

# Attribute combinations tried in order, shortest first, to name one object uniquely.
_REF_FORMS: tuple[tuple[str, ...], ...] = (
    ("shape",), ("color", "shape"), ("size", "shape"), ("size", "color", "shape"),
    ("color",), ("size",), ("size", "color"),
)


def _phrase(obj: Obj, attrs: tuple[str, ...]) -> str:
    words = [getattr(obj, a) for a in ("size", "color", "shape") if a in attrs]
    if "shape" not in attrs:
        words.append("object")
    return " ".join(words)


def refer(scene: Scene, obj: Obj, exclude: frozenset[str] = frozenset()) -> str | None:
    """The shortest phrase ('circle', 'red circle', 'small blue object', ...) that names `obj`
    and no other object, without using the attributes in `exclude`; None if there is none."""
    for attrs in _REF_FORMS:
        if exclude & set(attrs):
            continue
        if sum(all(getattr(o, a) == getattr(obj, a) for a in attrs) for o in scene.objects) == 1:
            return _phrase(obj, attrs)
    return None


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _count_phrase(n: int, words: str) -> str:
    return f"{article(words) if n == 1 else number_word(n)} {words}"


def groups(scene: Scene) -> list[tuple[int, str, str]]:
    """(count, color, shape) groups in reading order of their first member."""
    counts = Counter((o.color, o.shape) for o in scene.objects)
    seen, out = set(), []
    for o in scene.objects:
        if (o.color, o.shape) not in seen:
            seen.add((o.color, o.shape))
            out.append((counts[o.color, o.shape], o.color, o.shape))
    return out


def join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def caption(scene: Scene) -> str:
    """A brief BLIP-style caption (stage 1): lower case, one line, no final period."""
    parts = [_count_phrase(n, f"{c} {plural(s, n)}") for n, c, s in groups(scene)]
    text = f"{join(parts)} on a {scene.background} background"
    if scene.word is not None:
        text += f" with the word {scene.word.text}"
    return text


def object_sentence(obj: Obj) -> str:
    where = "in the center" if obj.place == "center" else f"at the {obj.place}"
    return f"There is a {obj.size} {obj.color} {obj.shape} {where}."


def describe(scene: Scene) -> str:
    """A detailed description (LLaVA 'detail' style): several full sentences."""
    n = len(scene.objects)
    things = "object" if n == 1 else "objects"
    sentences = [f"The image shows {_count_phrase(n, things)} on a "
                 f"{scene.background} background."]
    for obj in scene.objects:
        sentences.append(object_sentence(obj))
        if obj.dot is not None:
            sentences.append(f"The {region_phrase(obj)} has a small {obj.dot} dot on it.")
    if scene.word is not None:
        where = "top" if scene.word.row == 0 else "bottom"
        sentences.append(f"The word {scene.word.text} is written in {scene.word.color} "
                         f"at the {where}.")
    return " ".join(sentences)


def scene_text(scene: Scene) -> str:
    """The whole scene in words, for the LLM's text corpus: the caption's counts, then every
    object with its size, colour, place and dot, and the word."""
    return f"Picture: {caption(scene)}. {describe(scene)}"


def region_phrase(obj: Obj) -> str:
    """A short RefCOCO-style expression: 'large red circle'."""
    return f"{obj.size} {obj.color} {obj.shape}"


def box_text(obj: Obj) -> str:
    """'[x1, y1, x2, y2]' with 2 decimals, normalised to the (already square) image."""
    return "[" + ", ".join(f"{min(max(v, 0.0), 1.0):.2f}" for v in obj.box) + "]"


# (key, value) attributes of the object inventories (stage_data's `inventory` kind).
INVENTORY_PAIRS: tuple[tuple[str, str], ...] = (("shape", "color"), ("color", "shape"), ("shape", "size"),
                                                 ("shape", "place"))


def inventory(scene: Scene, key: str, value: str, rng: random.Random) -> str:
    """'circle red, square blue': each object whose `key` attribute is unique in the scene, in
    random order, its key word directly followed by its `value` word(s) ('square top left' for a
    place; '' if no object qualifies).

    The value word comes right after the word that names the object, so predicting it is a
    single look-up in the image tokens. A 2-layer LLM learns such one-step look-ups within a few
    hundred steps, and with them the two-step ones that questions need ('What color is the
    circle?', answered after the whole prompt): without them it does not learn the second
    (experiments/binding_toy/NOTES.md). The size and place inventories widen the demo's gap to
    the blind model more than they move its overall accuracy, though the demo still answers them
    near chance (README.md, 'The offline demo')."""
    keys = Counter(getattr(o, key) for o in scene.objects)
    items = [f"{getattr(o, key)} {getattr(o, value)}" for o in scene.objects if keys[getattr(o, key)] == 1]
    rng.shuffle(items)
    return ", ".join(items)
