"""A random scene: objects on a 3x3 grid, an optional rendered word, optional small details.

Geometry is in normalised image units (0..1), so one scene renders at any resolution. A scene is a
frozen value: the same seed gives the same scene, and two scenes compare equal iff they draw the
same picture (used to keep held-out images out of training).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from types import MappingProxyType

from llava15.world.synth.vocab import BACKGROUND_NAMES, COLOR_NAMES, COLUMNS, ROWS, SHAPES, SIZES

GRID = 3
CELL = 1.0 / GRID
# Half-extents: a large object fills most of its cell, a small one about half of it. The jitter
# keeps neighbours apart (max extent 0.14 + 0.02 < half a cell).
RADIUS = MappingProxyType({"large": (0.12, 0.14), "small": (0.07, 0.08)})
JITTER = 0.02
WORD_HEIGHT = 0.17    # font size of the rendered word, in image heights (fits the middle cell)
DOT_RADIUS = 0.025    # the small detail: 5 pixels across at 96x96, legible at 336x336
MAX_COUNT = 4         # counts asked about are 1..4


def place(row: int, col: int) -> str:
    """The words for a grid cell: 'top left', 'top', 'center', 'right', ..."""
    r, c = ROWS[row], COLUMNS[col]
    if r == "middle" and c == "middle":
        return "center"
    if r == "middle":
        return c
    if c == "middle":
        return r
    return f"{r} {c}"


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    size: str                 # "small" | "large"
    row: int                  # 0..2, top to bottom
    col: int                  # 0..2, left to right
    cx: float                 # centre, normalised
    cy: float
    r: float                  # half-extent of the bounding square, normalised
    dot: str | None = None    # colour of a small dot drawn inside (large objects only)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x1, y1, x2, y2) normalised: the drawn shape touches all four sides."""
        return (self.cx - self.r, self.cy - self.r, self.cx + self.r, self.cy + self.r)

    @property
    def dot_center(self) -> tuple[float, float]:
        """Below the centre, so the centre pixel always shows the object's own colour."""
        return (self.cx, self.cy + 0.5 * self.r)

    @property
    def place(self) -> str:
        """'top left', 'top', 'center', ... from the grid cell."""
        return place(self.row, self.col)


@dataclass(frozen=True)
class Word:
    text: str
    color: str
    row: int                  # 0 (top) or 2 (bottom): a word keeps its row free of objects
    cx: float
    cy: float


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[Obj, ...]
    word: Word | None = None

    def key(self) -> str:
        """A canonical string: equal keys draw equal images."""
        return repr(asdict(self))

    def count(self, shape: str) -> int:
        return sum(o.shape == shape for o in self.objects)


def _cells(rng: random.Random, word_row: int | None) -> list[tuple[int, int]]:
    cells = [(r, c) for r in range(GRID) for c in range(GRID) if r != word_row]
    rng.shuffle(cells)
    return cells


def _obj(rng: random.Random, shape: str, color: str, cell: tuple[int, int], dot_prob: float) -> Obj:
    size = rng.choice(SIZES)
    row, col = cell
    cx = (col + 0.5) * CELL + rng.uniform(-JITTER, JITTER)
    cy = (row + 0.5) * CELL + rng.uniform(-JITTER, JITTER)
    r = rng.uniform(*RADIUS[size])
    dot = None
    if size == "large" and rng.random() < dot_prob:
        dot = rng.choice([c for c in COLOR_NAMES if c != color])
    return Obj(shape, color, size, row, col, round(cx, 4), round(cy, 4), round(r, 4), dot)


def random_scene(rng: random.Random, *, word: bool | None = None, word_prob: float = 0.35,
                 dot_prob: float = 0.3, words: tuple[str, ...] = ()) -> Scene:
    """Draw one scene.

    One shape is the "main group" with a count of 1..4 (uniform), so every count is asked about
    equally often; 0..2 distractors of other shapes follow. The main group shares one colour half
    of the time. `word` forces (True) or forbids (False) a rendered word; None draws it with
    `word_prob`. `words` is the vocabulary of rendered words (required when a word is drawn).
    """
    background = rng.choice(BACKGROUND_NAMES)
    has_word = (rng.random() < word_prob) if word is None else word
    word_row = rng.choice((0, GRID - 1)) if has_word else None
    cells = _cells(rng, word_row)
    main = rng.choice(SHAPES)
    n_main = rng.randint(1, MAX_COUNT)
    n_other = min(rng.randint(0, 2), len(cells) - n_main)
    same_color = rng.random() < 0.5
    main_color = rng.choice(COLOR_NAMES)
    objects = []
    for i in range(n_main):
        color = main_color if same_color else rng.choice(COLOR_NAMES)
        objects.append(_obj(rng, main, color, cells[i], dot_prob))
    others = [s for s in SHAPES if s != main]
    for i in range(n_other):
        objects.append(_obj(rng, rng.choice(others), rng.choice(COLOR_NAMES), cells[n_main + i],
                            dot_prob))
    objects.sort(key=lambda o: (o.row, o.col))  # reading order: captions list objects this way
    text = None
    if has_word:
        if not words:
            raise ValueError("random_scene: a word was requested but `words` is empty")
        cx = 0.5 + rng.uniform(-JITTER, JITTER)  # in the middle cell, like an object
        text = Word(rng.choice(words), rng.choice(COLOR_NAMES), word_row, round(cx, 4),
                    (word_row + 0.5) * CELL)
    return Scene(background, tuple(objects), text)
