"""Chinese multiple-choice questions (MMBench-CN, and a small share of the stage-2 mixture).

Only three types, with one fixed template each, so the Chinese vocabulary stays tiny.
"""

from __future__ import annotations

import random

from llava15.world.synth.questions import QA
from llava15.world.synth.scene import Scene
from llava15.world.synth.vocab import CN, COLOR_NAMES, SHAPES

CN_TYPES: tuple[str, ...] = ("color", "shape", "position")


def _unique(scene: Scene, attr: str) -> list:
    values = [getattr(o, attr) for o in scene.objects]
    return [o for o in scene.objects if values.count(getattr(o, attr)) == 1]


def ask_cn(scene: Scene, rng: random.Random, qtype: str) -> QA | None:
    """A Chinese question whose answer and choices are Chinese words (None if unsupported)."""
    if qtype == "color":
        objs = _unique(scene, "shape")
        if not objs:
            return None
        o = rng.choice(objs)
        return QA("color", f"图中的{CN[o.shape]}是什么颜色？", CN[o.color], "",
                  tuple(CN[c] for c in COLOR_NAMES))
    if qtype == "shape":
        objs = _unique(scene, "color")
        if not objs:
            return None
        o = rng.choice(objs)
        return QA("shape", f"图中{CN[o.color]}的物体是什么形状？", CN[o.shape], "",
                  tuple(CN[s] for s in SHAPES))
    if qtype == "position":
        objs = [o for o in _unique(scene, "shape") if o.col != 1]
        if not objs:
            return None
        o = rng.choice(objs)
        side = "left" if o.col == 0 else "right"
        return QA("position", f"图中的{CN[o.shape]}在左边还是右边？", CN[side], "",
                  (CN["left"], CN["right"]))
    raise KeyError(f"unknown Chinese question type {qtype!r}; known: {', '.join(CN_TYPES)}")
