"""`experiments/binding_toy/binding_toy.py`: its questions name the object they ask about, and its
loop runs."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

from tests.bench_scripts import load_script


@pytest.fixture(scope="module")
def toy():
    return load_script(Path(__file__).with_name("binding_toy.py"))


def test_the_answer_is_the_colour_of_the_object_the_question_names(toy):
    """Decode each image token back to its attributes (noise is 0.1 of unit-variance vectors):
    the cell holding the named shape holds the answer's colour; a one-hop question ends at
    that shape, a two-hop one at ASSIST, both as long as each other."""
    torch.manual_seed(0)
    rng = random.Random(1)
    n_attr = toy.COLORS + toy.SHAPES + 3 + 3 + 1
    attributes = torch.randn(n_attr, 128)
    suffix = [toy.FILLER + i for i in range(5)]
    lengths = set()
    for i in range(200):
        one_hop = i % 2 == 0
        sample = toy.draw_sample(rng, attributes, one_hop, 0, suffix)
        shape = sample.words[-1] if one_hop else sample.words[sample.words.index(toy.QMARK) - 1]
        assert toy.COLORS <= shape < toy.COLORS + toy.SHAPES
        assert sample.words[-1] == (shape if one_hop else toy.ASSIST)
        lengths.add(len(sample.words))
        # least-squares read-out of each cell's attribute weights
        weights = torch.linalg.lstsq(attributes.T, sample.image.T).solution.T  # (9, n_attr)
        cells = [c for c in range(9) if weights[c, shape] > 0.5]
        assert len(cells) == 1, f"sample {i}: shape {shape} in cells {cells}"
        assert weights[cells[0], :toy.COLORS].argmax().item() == sample.answer
    assert len(lengths) == 1


def test_a_short_run_reports_both_accuracies(toy):
    rows = toy.run(steps=20, one_hop_share=0.5, prefix=4, suffix=3, every=10, log=lambda _: None)
    assert [r["step"] for r in rows] == [10, 20]
    for row in rows:
        assert math.isfinite(row["loss"])
        assert 0.0 <= row["two_hop"] <= 1.0 and 0.0 <= row["one_hop"] <= 1.0
