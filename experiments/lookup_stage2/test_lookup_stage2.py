"""`experiments/lookup_stage2/lookup_stage2.py`: its records say what the scene shows, in the
official format."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from llava15.world.synth.scene import random_scene
from llava15.world.synth.vocab import WORDS
from tests.bench_scripts import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script(Path(__file__).with_name("lookup_stage2.py"))


def test_records_name_each_object_with_its_own_attribute(bench):
    rng = random.Random(3)
    kinds = {"shape": 0, "color": 0, "question": 0, "none": 0}
    for i in range(400):
        scene = random_scene(rng, words=WORDS)
        record = bench.make_record(i, "x.png", scene, rng, one_hop_share=0.5, two_kinds=True)
        if record is None:
            kinds["none"] += 1
            continue
        human, gpt = (turn["value"] for turn in record["conversations"])
        assert human.startswith("<image>\n") and record["image"] == "x.png"
        by = {o.shape: o for o in scene.objects} | {o.color: o for o in scene.objects}
        if bench.BY_SHAPE in human or bench.BY_COLOR in human:
            key, value = ("shape", "color") if bench.BY_SHAPE in human else ("color", "shape")
            kinds[key] += 1
            items = [item.split(" ") for item in gpt.split(", ")]
            keys = [k for k, _ in items]
            present = [getattr(o, key) for o in scene.objects]
            assert sorted(keys) == sorted(a for a in present if present.count(a) == 1)
            for k, v in items:  # the key is unique in the scene, so `by` finds its object
                assert getattr(by[k], value) == v
        else:
            kinds["question"] += 1
            shape = human.split("What color is the ")[1].split("?")[0]
            assert [o.shape for o in scene.objects].count(shape) == 1
            assert gpt == by[shape].color
            assert human.endswith("\nAnswer the question using a single word or phrase.")
    assert min(kinds.values()) > 0, kinds  # every branch ran, and scenes without a unique shape exist


def test_make_dataset_writes_one_image_per_record(bench, tmp_path):
    n = bench.make_dataset(tmp_path, 30, one_hop_share=0.3, image_size=32)
    records = json.loads((tmp_path / "finetune.json").read_text())
    assert len(records) == n > 0
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(r["image"] for r in records)


class WordEngine:
    """An engine stand-in whose tokens are whitespace-separated words."""

    def encode(self, text: str) -> list[str]:
        return text.split()


def test_encode_continuation_gives_token_boundaries_and_refuses_merges(bench):
    ids, bounds = bench.encode_continuation(WordEngine(), "USER: hi", [" circle red", " square blue"])
    assert ids == ["USER:", "hi", "circle", "red", "square", "blue"]
    assert bounds == [2, 4, 6]
    assert [ids[end - 1] for end in bounds[1:]] == ["red", "blue"]  # each piece's last token
    with pytest.raises(ValueError, match="merges across the end of 'USER: hi red'"):
        bench.encode_continuation(WordEngine(), "USER: hi", [" red", "dish"])  # 'reddish'
