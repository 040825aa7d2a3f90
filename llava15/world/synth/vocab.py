"""The world's deliberately small vocabulary: colours, shapes, sizes, positions, words.

A tiny tokenizer and a ~1M-parameter LLM are trained on text built from these lists, so they
stay short. Everything here is a constant (tuples and read-only mappings).
"""

from __future__ import annotations

from types import MappingProxyType

# Object colours (name -> RGB). Picked far apart so a small vision tower separates them.
COLORS = MappingProxyType({
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 200, 0),
    "purple": (140, 40, 170),
    "orange": (245, 130, 20),
})
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

# Backgrounds: neutral tones, so every object colour stays visible on every background.
BACKGROUNDS = MappingProxyType({
    "white": (250, 250, 250),
    "gray": (128, 128, 128),
    "black": (15, 15, 15),
})
BACKGROUND_NAMES: tuple[str, ...] = tuple(BACKGROUNDS)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
PLURALS = MappingProxyType({"circle": "circles", "square": "squares", "triangle": "triangles",
                            "diamond": "diamonds", "cross": "crosses"})
SIDES = MappingProxyType({"circle": 0, "square": 4, "triangle": 3, "diamond": 4, "cross": 12})

SIZES: tuple[str, ...] = ("small", "large")

# 3x3 grid: column and row words. "middle" cells are never asked about (ambiguous).
COLUMNS: tuple[str, ...] = ("left", "middle", "right")
ROWS: tuple[str, ...] = ("top", "middle", "bottom")

# Rendered words (OCR): short, distinct, not colliding with any other vocabulary word.
WORDS: tuple[str, ...] = ("cat", "dog", "sun", "car", "hat", "cup", "box", "bus", "pen", "key")

# Up to twelve: a cross has 12 sides (MM-Vet's "How many sides does the cross have?").
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven",
                                 "eight", "nine", "ten", "eleven", "twelve")

# MMBench-CN: the Chinese names of the words that appear in its options and questions.
CN = MappingProxyType({
    "red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色",
    "orange": "橙色", "circle": "圆形", "square": "正方形", "triangle": "三角形",
    "diamond": "菱形", "cross": "十字形", "left": "左边", "right": "右边", "top": "上边",
    "bottom": "下边", "small": "小", "large": "大",
})


def plural(shape: str, n: int) -> str:
    """'circle' for n == 1, else its plural."""
    return shape if n == 1 else PLURALS[shape]


def number_word(n: int) -> str:
    if not 0 <= n < len(NUMBER_WORDS):
        raise ValueError(f"no number word for {n}: the world spells 0..{len(NUMBER_WORDS) - 1}")
    return NUMBER_WORDS[n]
