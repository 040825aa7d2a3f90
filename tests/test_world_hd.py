"""The high-resolution question set: four scenes as the quadrants of one image, questions about
one quadrant whose answers are read off that quadrant's scene."""

from __future__ import annotations

import json

from PIL import Image

from llava15.world.synth.draw import render
from llava15.world.synth.hd import HD_TYPES, QUADRANTS, TEXTURES, compose, synthesize_hd, weave
from llava15.world.synth.vocab import BACKGROUNDS, SHAPES, WORDS


def test_quadrants_are_the_scenes_at_full_resolution():
    import random

    from llava15.world.synth.scene import random_scene

    rng = random.Random(0)
    scenes = tuple(random_scene(rng, words=WORDS) for _ in range(4))
    image = compose(scenes, 64)
    assert image.size == (128, 128)
    for i, scene in enumerate(scenes):
        box = ((i % 2) * 64, (i // 2) * 64, (i % 2) * 64 + 64, (i // 2) * 64 + 64)
        assert image.crop(box).tobytes() == render(scene, 64).tobytes(), QUADRANTS[i]


def test_files_answers_and_determinism(tmp_path):
    manifest = synthesize_hd(tmp_path / "a", seed=3, train_images=12, eval_images=6)
    synthesize_hd(tmp_path / "b", seed=3, train_images=12, eval_images=6)
    a, b = tmp_path / "a", tmp_path / "b"
    for name in ("hd_finetune.json", "hd_eval.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    train = json.loads((a / "hd_finetune.json").read_text())
    rows = [json.loads(line) for line in (a / "hd_eval.jsonl").read_text().splitlines()]
    assert len(train) == 12 and manifest["eval_questions"] == len(rows) > 0
    assert {r["image"] for r in rows}.isdisjoint({t["image"] for t in train})
    assert train[0]["conversations"][0]["value"].startswith("<image>\n")
    for r in rows:
        assert r["type"] in HD_TYPES
        assert r["text"].endswith("\nAnswer the question using a single word or phrase.")
        assert r["type"] == "hd_texture" or any(f"the {q} part" in r["text"] for q in QUADRANTS)
        valid = {"hd_ocr": set(WORDS), "hd_shape": set(SHAPES), "hd_count": {"1", "2", "3", "4"},
                 "hd_texture": set(TEXTURES)}
        assert r["answer"] in valid[r["type"]], r
        assert Image.open(a / "images" / r["image"]).size == (2 * manifest["tile"],) * 2


def test_textures_differ_at_full_resolution_and_vanish_at_half():
    """The checks are a detail only full resolution shows: on a plain background the three
    colour pairs are different pictures, and their 2x2 block means (a 2x downsample) are equal."""
    for name, colour in BACKGROUNDS.items():
        plain = Image.new("RGB", (64, 64), colour)
        woven = {t: weave(plain, colour, t) for t in TEXTURES}
        assert len({im.tobytes() for im in woven.values()}) == 3, name
        assert all(len(im.getcolors()) == 2 for im in woven.values()), name  # two colours each
        assert len({im.reduce(2).tobytes() for im in woven.values()}) == 1, name
    checks = woven["black and white"].getpixel
    assert checks((0, 0)) == checks((1, 1)) != checks((1, 0)) == checks((0, 1))  # one-pixel checks


def test_texture_covers_the_background_and_leaves_the_scene():
    import random

    from llava15.world.synth.scene import random_scene

    scene = random_scene(random.Random(1), words=WORDS)
    drawn = render(scene, 64)
    woven = weave(drawn, BACKGROUNDS[scene.background], "blue and yellow")
    background = BACKGROUNDS[scene.background]
    def pixels(im):
        data = im.tobytes()
        return [tuple(data[i:i + 3]) for i in range(0, len(data), 3)]

    for before, after in zip(pixels(drawn), pixels(woven)):
        assert (after != before) if before == background else (after == before)
