"""Text-only conversations (the ShareGPT share of the mixture): facts about the world's words.

They keep the LLM's language ability exercised during stage 2 and appear in `train_text.txt`.
"""

from __future__ import annotations

import random

from llava15.world.synth.vocab import COLOR_NAMES, PLURALS, SHAPES, SIDES, WORDS, number_word


def _sides(rng: random.Random) -> tuple[str, str]:
    shape = rng.choice(SHAPES)
    n = SIDES[shape]
    answer = f"A {shape} has no sides." if n == 0 else f"A {shape} has {n} sides."
    return f"How many sides does a {shape} have?", answer


def _spell(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(WORDS)
    return f"Spell the word {word}.", f"The word {word} is spelled {', '.join(word)}."


def _next_number(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(0, 8)
    return (f"What number comes after {number_word(n)}?",
            f"The number after {number_word(n)} is {number_word(n + 1)}.")


def _add(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(1, 4), rng.randint(1, 4)
    return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."


def _kind_of(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(COLOR_NAMES + SHAPES)
    kind = "color" if word in COLOR_NAMES else "shape"
    return f"Is {word} a color or a shape?", f"{word.capitalize()} is a {kind}."


def _plural(rng: random.Random) -> tuple[str, str]:
    shape = rng.choice(SHAPES)
    return (f"What is the plural of {shape}?",
            f"The plural of {shape} is {PLURALS[shape]}.")


TOPICS = (_sides, _spell, _next_number, _add, _kind_of, _plural)


def text_conversation(rng: random.Random) -> list[tuple[str, str]]:
    """1-3 (question, answer) turns on distinct topics."""
    topics = rng.sample(TOPICS, rng.randint(1, 3))
    return [topic(rng) for topic in topics]
