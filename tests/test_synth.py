"""`llava15 synth`: determinism, official file formats, answers consistent with the pixels."""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llava15.world.synth import synthesize
from llava15.world.synth import prompts as P
from llava15.world.synth.draw import render
from llava15.world.synth.language import INVENTORY_PAIRS, inventory, refer
from llava15.world.synth.questions import ask
from llava15.world.synth.scene import GRID, RADIUS, place, random_scene
from llava15.world.synth.vocab import BACKGROUNDS, COLORS, WORDS

LETTERS = "ABCD"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    synthesize(out, seed=0, scale="small")
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def pixel(image: Image.Image, x: float, y: float) -> tuple[int, int, int]:
    """RGB at normalised (x, y)."""
    w, h = image.size
    return image.convert("RGB").getpixel((min(int(x * w), w - 1), min(int(y * h), h - 1)))


def close(rgb, ref, tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, ref))


# ---- determinism and the output directory ------------------------------------------------------

def test_same_seed_gives_byte_identical_files(world, tmp_path):
    synthesize(tmp_path / "again", seed=0, scale="small")
    assert tree(world) == tree(tmp_path / "again")


def test_files_do_not_depend_on_the_string_hash_seed(world, tmp_path):
    """Set iteration order changes with PYTHONHASHSEED; the output must not."""
    import os

    code = "import sys; from llava15.world.synth import synthesize; " \
           "synthesize(sys.argv[1], seed=0, scale='small')"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "hashed")], check=True, env=env)
    assert tree(world) == tree(tmp_path / "hashed")


def test_another_seed_gives_other_data(world, tmp_path):
    synthesize(tmp_path / "other", seed=1, scale="small")
    other = (tmp_path / "other" / "pretrain.json").read_bytes()
    assert (world / "pretrain.json").read_bytes() != other


def test_refuses_a_directory_with_files_unless_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path))):
        synthesize(tmp_path, scale="small")
    synthesize(tmp_path, scale="small", overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only synth's own outputs are replaced
    assert (tmp_path / "manifest.json").exists()


def test_rejects_unknown_scale_and_tiny_images(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        synthesize(tmp_path / "a", scale="huge")
    with pytest.raises(ValueError, match="image_size"):
        synthesize(tmp_path / "b", scale="small", image_size=8)


def test_package_imports_no_torch():
    code = "import sys, llava15.world.synth; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- training files ----------------------------------------------------------------------------

def test_pretrain_json_is_in_the_558k_format(world):
    records = json.loads((world / "pretrain.json").read_text())
    assert len(records) == 160
    places = Counter()
    for r in records:
        assert set(r) == {"id", "image", "conversations"}
        human, gpt = r["conversations"]
        assert human["from"] == "human" and gpt["from"] == "gpt"
        assert human["value"].count(P.IMAGE) == 1 and P.IMAGE not in gpt["value"]
        places[human["value"].startswith(P.IMAGE + "\n")] += 1
        assert human["value"].replace(P.IMAGE, "").strip() in P.BRIEF_INSTRUCTIONS
        assert (world / "images" / r["image"]).is_file()
    assert places[True] and places[False]  # `<image>` both before and after the instruction


def test_finetune_json_is_in_the_665k_format(world):
    records = json.loads((world / "finetune.json").read_text())
    text_only = [r for r in records if "image" not in r]
    assert text_only and len(text_only) < len(records)
    seen = Counter()
    for r in records:
        turns = r["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2), r["id"]
        for i, t in enumerate(turns):
            expected = 1 if (i == 0 and "image" in r) else 0
            assert t["value"].count(P.IMAGE) == expected, r["id"]
        if "image" in r:
            assert (world / "images" / r["image"]).is_file()
        humans = [t["value"] for t in turns[::2]]
        answers = [t["value"] for t in turns[1::2]]
        first = humans[0]
        if P.SHORT_ANSWER in first and P.VIZWIZ not in first and "Reference OCR" not in first:
            seen["vqa"] += 1
            assert all(h.endswith("\n" + P.SHORT_ANSWER) for h in humans), r["id"]
            assert all(len(a.split()) == 1 for a in answers), r["id"]
        if P.MULTIPLE_CHOICE in humans[0]:
            seen["mc"] += 1
            for h, a in zip(humans, answers):
                options = re.findall(r"^([A-D])\. ", h, flags=re.M)
                assert options == list(LETTERS[:len(options)]) and a in options, r["id"]
        if humans[0].replace(P.IMAGE, "").strip().startswith((P.REGION_GROUND.strip(), P.REGION_DESCRIBE.strip())):
            seen["region"] += 1
        if P.MULTIPLE_CHOICE_CN in humans[0]:
            seen["cn"] += 1
        if P.VIZWIZ in humans[0]:
            seen["vizwiz"] += 1
        if any(instruction in humans[0] for instruction in P.INVENTORY.values()):
            seen["inventory"] += 1
            # 'circle red, square top left': a key word, then its value word(s) (a place has two)
            assert len(turns) == 2 and re.fullmatch(r"\w+ \w+( \w+)?(, \w+ \w+( \w+)?)*", answers[0]), r["id"]
    assert all(seen[k] > 0 for k in ("vqa", "mc", "region", "cn", "vizwiz", "inventory")), seen


def test_region_boxes_match_the_drawn_colour(world):
    """Grounding answers `[x1, y1, x2, y2]` (2 decimals, in [0,1]) point at an object whose
    centre pixel has the colour named in the expression."""
    checked = 0
    for r in json.loads((world / "finetune.json").read_text()):
        turns = r["conversations"]
        for human, gpt in zip(turns[::2], turns[1::2]):
            h = human["value"].replace(P.IMAGE, "").strip()
            if h.startswith(P.REGION_GROUND):
                phrase, box = h[len(P.REGION_GROUND):].rstrip("."), gpt["value"]
            elif h.startswith(P.REGION_DESCRIBE):
                phrase, box = gpt["value"], h[len(P.REGION_DESCRIBE):]
            else:
                continue
            assert re.fullmatch(r"\[(\d\.\d\d, ){3}\d\.\d\d\]", box), box
            x1, y1, x2, y2 = json.loads(box)
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
            color = phrase.split()[1]
            image = Image.open(world / "images" / r["image"])
            center = pixel(image, (x1 + x2) / 2, (y1 + y2) / 2)
            assert close(center, COLORS[color], tol=2), (r["id"], phrase)
            checked += 1
    assert checked >= 3  # the small world holds one or two region samples (2% of the mixture)


def test_regions_describe_every_cell_of_each_pretraining_image(world):
    """`regions.json`: per pretraining image (same order), the 9 grid cells; an object cell's
    phrase names the colour at its centre pixel, an empty cell's the background colour there."""
    pretrain = json.loads((world / "pretrain.json").read_text())
    regions = json.loads((world / "regions.json").read_text())
    assert [r["image"] for r in regions] == [r["image"] for r in pretrain]
    kinds = Counter()
    for record in regions:
        image = Image.open(world / "images" / record["image"])
        assert len(record["regions"]) == 9
        for region in record["regions"]:
            x1, y1, x2, y2 = region["bbox"]
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
            words = region["phrase"].split(" at the ")[0].split()
            centre = pixel(image, (x1 + x2) / 2, (y1 + y2) / 2)
            if words[-1] == "background":
                assert close(centre, BACKGROUNDS[words[0]], tol=2), (record["image"], region)
                kinds["empty"] += 1
            elif words[:2] == ["the", "word"]:
                kinds["word"] += 1
            else:
                assert words[1] in COLORS and close(centre, COLORS[words[1]], tol=2), region
                kinds["object"] += 1
    assert all(kinds[k] > 0 for k in ("empty", "word", "object")), kinds


def test_train_text_has_one_paragraph_per_conversation(world):
    text = (world / "train_text.txt").read_text(encoding="utf-8")
    paragraphs = text.rstrip("\n").split("\n\n")
    n = len(json.loads((world / "pretrain.json").read_text())) + \
        len(json.loads((world / "finetune.json").read_text()))
    assert len(paragraphs) == n and P.IMAGE not in text


# ---- answers consistent with the pixels ----------------------------------------------------------

def _resolve(scene, ref: str, exclude: frozenset[str]):
    matches = [o for o in scene.objects if refer(scene, o, exclude) == ref]
    assert len(matches) == 1, ref
    return matches[0]


@pytest.mark.parametrize("size", [64, 200])
def test_colour_position_detail_answers_read_back_from_pixels(size):
    rng = random.Random(7)
    checked = Counter()
    for _ in range(60):
        scene = random_scene(rng, words=WORDS, dot_prob=0.6)
        image = render(scene, size)
        qa = ask(scene, rng, "color")
        if qa is not None:
            ref = re.fullmatch(r"What (?:color is|is the color of) the (.+)\?",
                               qa.question).group(1)
            obj = _resolve(scene, ref, frozenset({"color"}))
            assert pixel(image, obj.cx, obj.cy) == COLORS[qa.answer]
            checked["color"] += 1
        qa = ask(scene, rng, "position")
        if qa is not None:
            ref = re.fullmatch(r"Is the (.+) (?:on the left|at the top) or .*",
                               qa.question).group(1)
            obj = _resolve(scene, ref, frozenset())
            assert pixel(image, obj.cx, obj.cy) == COLORS[obj.color]
            coord = obj.cx if qa.answer in ("left", "right") else obj.cy
            assert (coord < 0.5) == (qa.answer in ("left", "top"))
            checked["position"] += 1
        if size >= 200:  # the dot is a detail: a pixel or two at 64x64
            qa = ask(scene, rng, "detail")
            if qa is not None:
                ref = qa.question.removeprefix("What color is the dot on the ").rstrip("?")
                obj = _resolve(scene, ref, frozenset())
                assert pixel(image, *obj.dot_center) == COLORS[qa.answer]
                checked["detail"] += 1
        qa = ask(scene, rng, "scene")
        background = np.all(np.asarray(image) == BACKGROUNDS[qa.answer], axis=-1).mean()
        assert background > 0.4
    assert checked["color"] > 20 and checked["position"] > 20
    assert size < 200 or checked["detail"] > 5


@pytest.mark.parametrize("key, value", INVENTORY_PAIRS)
def test_inventory_names_each_object_unique_by_its_key_with_its_drawn_value(key, value):
    """'circle red, square top left': every pair is an object of the scene, drawn with that value
    (its colour at its centre pixel, a radius in that size's range, its centre in that cell);
    every object whose key is unique in its scene is listed once, and no other."""
    rng = random.Random(3)
    listed = 0
    for _ in range(40):
        scene = random_scene(rng, words=WORDS, dot_prob=0.6)
        image = render(scene, 96)
        pairs = [item.split(" ", 1) for item in inventory(scene, key, value, rng).split(", ") if item]
        keys = Counter(getattr(o, key) for o in scene.objects)
        unique = {getattr(o, key): o for o in scene.objects if keys[getattr(o, key)] == 1}
        assert sorted(k for k, _ in pairs) == sorted(unique)
        for k, v in pairs:
            obj = unique[k]
            assert getattr(obj, value) == v
            assert pixel(image, obj.cx, obj.cy) == COLORS[obj.color]
            assert RADIUS[obj.size][0] <= obj.r <= RADIUS[obj.size][1]
            assert place(int(obj.cy * GRID), int(obj.cx * GRID)) == obj.place
        listed += len(pairs)
    assert listed > 40


def test_count_answers_match_connected_shapes():
    """Count answers equal the number of separate blobs of the asked shape's pixels (objects
    never touch); checked on same-coloured main groups."""
    rng = random.Random(3)
    checked = 0
    for _ in range(80):
        scene = random_scene(rng, words=WORDS, word=False, dot_prob=0.0)
        qa = ask(scene, rng, "count")
        shape = next(s for s in {o.shape for o in scene.objects} if s + "s" in qa.question
                     or s + "es" in qa.question)
        colors = {o.color for o in scene.objects if o.shape == shape}
        if len(colors) != 1 or any(o.color in colors for o in scene.objects if o.shape != shape):
            continue
        mask = np.all(np.asarray(render(scene, 64)) == COLORS[colors.pop()], axis=-1)
        assert _blobs(mask) == int(qa.answer)
        checked += 1
    assert checked > 10


def _blobs(mask: np.ndarray) -> int:
    seen = np.zeros_like(mask)
    count = 0
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        count += 1
        stack = [(y, x)]
        while stack:
            cy, cx = stack.pop()
            inside = 0 <= cy < mask.shape[0] and 0 <= cx < mask.shape[1]
            if inside and mask[cy, cx] and not seen[cy, cx]:
                seen[cy, cx] = True
                stack += [(cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)]
    return count


def test_cli_writes_the_world_and_refuses_a_used_directory(tmp_path, capsys, caplog):
    import argparse

    from llava15.cli import synth as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--scale", "small", "--image-size", "32"])
    assert cli.run(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pretrain"] == 160 and set(summary["benchmarks"]) >= {"pope", "mme", "sqa"}
    assert Image.open(tmp_path / "images" / "pretrain" / "000000.png").size == (32, 32)
    assert cli.run(args) == 2
    assert "--overwrite" in caplog.text and str(tmp_path) in caplog.text
    args.overwrite = True
    assert cli.run(args) == 0


def test_every_count_the_world_asks_about_has_a_number_word():
    """MM-Vet asks how many sides a shape has (a cross has 12), so every side count must spell;
    beyond the list is a clear error."""
    from llava15.world.synth.vocab import NUMBER_WORDS, SIDES, number_word

    assert [number_word(SIDES[s]) for s in ("circle", "triangle", "square", "cross")] == \
        ["zero", "three", "four", "twelve"]
    with pytest.raises(ValueError, match="no number word for 13"):
        number_word(len(NUMBER_WORDS))

