"""`experiments/world_probe/world_probe.py`: its labels come from the region phrases, and its
variance share is the between-class share."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from llava15.world.synth.regions import cell_regions
from llava15.world.synth.scene import random_scene
from llava15.world.synth.vocab import COLOR_NAMES, SHAPES, SIZES, WORDS
from tests.bench_scripts import load_script


@pytest.fixture(scope="module")
def world_probe():
    return load_script(Path(__file__).with_name("world_probe.py"))


def test_labels_are_read_off_the_region_phrases(world_probe):
    """Each token is labelled from `regions.json` phrases: its cell, and the shape, colour and
    size of the object (or the word) drawn there, as the scene has them."""
    rng = random.Random(3)
    scenes = [random_scene(rng, words=WORDS, dot_prob=0.5) for _ in range(30)]
    labels = world_probe.cell_labels([{"image": f"{i}.png", "regions": cell_regions(s)}
                                      for i, s in enumerate(scenes)])
    assert len(labels["column"]) == len(labels["row"]) == 9 * len(scenes)
    expected = {"shape": [], "colour": [], "size": [], "word": []}
    for i, scene in enumerate(scenes):
        for obj in sorted(scene.objects, key=lambda o: (o.row, o.col)):
            k = 3 * obj.row + obj.col
            expected["shape"].append((i, k, SHAPES.index(obj.shape)))
            expected["colour"].append((i, k, COLOR_NAMES.index(obj.color)))
            expected["size"].append((i, k, SIZES.index(obj.size)))
        if scene.word is not None:
            expected["word"].append((i, 3 * scene.word.row + 1, WORDS.index(scene.word.text)))
    assert expected["word"] and all(labels[name] == expected[name] for name in expected)
    with pytest.raises(ValueError, match=r"record 0 \(0\.png\): expected 9 cells, got 1"):
        world_probe.cell_labels([{"image": "0.png", "regions": cell_regions(scenes[0])[:1]}])


def test_variance_share_is_the_between_class_share(world_probe):
    """1 when rows sit on their class means, 0 when the class means coincide, and the textbook
    ratio in between (class means +-1 on one axis plus unit noise on another: 1 / (1 + 1))."""
    y = torch.tensor([0, 1] * 50)
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    assert world_probe.variance_share(means[y], y) == pytest.approx(1.0)
    noise = torch.stack([torch.zeros(100), torch.tensor([1.0, 1.0, -1.0, -1.0] * 25)], 1)
    assert world_probe.variance_share(noise, y) == pytest.approx(0.0)
    assert world_probe.variance_share(means[y] + noise, y) == pytest.approx(0.5)
