"""The high-resolution question set: details that a one-tile view cannot resolve.

An HD image is four ordinary scenes, each drawn at the tower's own resolution and pasted as the
quadrants of one image twice that size, on a background of fine checks: one-pixel squares of two
complementary colours (blue and yellow, green and purple, or black and white). Questions ask
what needs full resolution: the word written in one quadrant ("the top left part"), the shape of
an object there, how many objects of a shape it holds, and the two colours of the checks. The
base model sees the whole image resized to the tower's input, so each quadrant at half
resolution (words about 8 pixels high) and the checks averaged to the same gray whatever their
colours; LLaVA-1.5-HD / AnyRes with a 2x2 grid encodes each quadrant as a tile at full
resolution, plus the downsampled global view.

`synthesize_hd(out_dir)` writes, deterministically for a seed:
- `images/hd/*.png`: the HD images (training and held-out, never the same scene twice);
- `hd_finetune.json`: short-answer training conversations in the `llava_v1_5_mix665k.json`
  format (two or three questions an image, with the response-format prompt);
- `hd_eval.jsonl`: held-out questions in the `model_vqa_loader` format (`question_id`, `image`,
  `text`) plus `answer` and `type`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

from PIL import Image, ImageChops

from llava15.world.synth import prompts as P
from llava15.world.synth.draw import render, save
from llava15.world.synth.files import SceneSource, rng_for
from llava15.world.synth.language import refer
from llava15.world.synth.scene import Scene
from llava15.world.synth.vocab import BACKGROUNDS, PLURALS, WORDS

QUADRANTS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
HD_TYPES: tuple[str, ...] = ("hd_ocr", "hd_shape", "hd_count", "hd_texture")
# Complementary pairs: each pair's mean is the same gray, so a 2x downsample erases the colours.
CHECKS = MappingProxyType({
    "blue and yellow": ((0, 0, 255), (255, 255, 0)),
    "green and purple": ((0, 255, 0), (255, 0, 255)),
    "black and white": ((0, 0, 0), (255, 255, 255)),
})
TEXTURES: tuple[str, ...] = tuple(CHECKS)

QA = tuple[str, str, str]  # (question without suffix, answer, type)


def compose(scenes: tuple[Scene, Scene, Scene, Scene], tile: int, texture: str | None = None,
            ) -> Image.Image:
    """The four scenes as the quadrants (in `QUADRANTS` order) of a `2*tile` square image, their
    background pixels woven in `texture` (None: left plain)."""
    image = Image.new("RGB", (2 * tile, 2 * tile))
    for i, scene in enumerate(scenes):
        part = render(scene, tile)
        if texture is not None:
            part = weave(part, BACKGROUNDS[scene.background], texture)
        image.paste(part, ((i % 2) * tile, (i // 2) * tile))
    return image


def weave(image: Image.Image, background: tuple[int, int, int], texture: str) -> Image.Image:
    """`image` with its pixels of colour `background` replaced by one-pixel checks of the two
    colours `CHECKS[texture]`. Every pair has the same mean, so a 2x downsample (a mean over
    2x2 blocks) leaves the same gray for all three: only full resolution tells them apart."""
    if texture not in CHECKS:
        raise ValueError(f"unknown texture {texture!r}; choose from {', '.join(CHECKS)}")
    first, second = (bytes(c) for c in CHECKS[texture])
    width, height = image.size
    rows = [(first + second) * (width // 2) + first * (width % 2),
            (second + first) * (width // 2) + second * (width % 2)]
    pattern = Image.frombytes("RGB", image.size, b"".join(rows[y % 2] for y in range(height)))
    plain = ImageChops.difference(image, Image.new("RGB", image.size, background)).convert("L")
    mask = plain.point(lambda v: 255 if v == 0 else 0)  # exactly the background colour
    return Image.composite(pattern, image, mask)


def ask_word(scene: Scene, where: str, texture: str, rng: random.Random) -> QA | None:
    if scene.word is None:
        return None
    return (f"What word is written in the {where} part of the image?", scene.word.text, "hd_ocr")


def ask_shape(scene: Scene, where: str, texture: str, rng: random.Random) -> QA | None:
    objects = list(scene.objects)
    rng.shuffle(objects)
    for obj in objects:
        ref = refer(scene, obj, frozenset({"shape"}))
        if ref is not None:
            return (f"What shape is the {ref} in the {where} part of the image?", obj.shape,
                    "hd_shape")
    return None


def ask_count(scene: Scene, where: str, texture: str, rng: random.Random) -> QA | None:
    shape = rng.choice(sorted({o.shape for o in scene.objects}))
    return (f"How many {PLURALS[shape]} are in the {where} part of the image?",
            str(scene.count(shape)), "hd_count")


def ask_texture(scene: Scene, where: str, texture: str, rng: random.Random) -> QA | None:
    # The whole background is checked alike: the question needs no quadrant, only resolution;
    # the answer is in the world's colour words.
    return ("Which two colors make up the fine checks of the background?", texture, "hd_texture")


ASKERS: tuple[Callable[[Scene, str, str, random.Random], QA | None], ...] = (
    ask_word, ask_shape, ask_count, ask_texture)


def questions_for(scenes: tuple[Scene, ...], texture: str, rng: random.Random, n: int) -> list[QA]:
    """Up to `n` questions of distinct text about random quadrants, types in rotation."""
    out: list[QA] = []
    for attempt in range(4 * n):
        if len(out) == n:
            break
        quadrant = rng.randrange(4)
        qa = ASKERS[(len(out) + attempt) % len(ASKERS)](scenes[quadrant], QUADRANTS[quadrant],
                                                         texture, rng)
        if qa is not None and all(qa[0] != o[0] for o in out):
            out.append(qa)
    return out


def _scenes(source: SceneSource) -> tuple[Scene, Scene, Scene, Scene]:
    # Two quadrants carry a word, so every image can be asked to read one.
    return tuple(source.draw(word=i < 2) for i in range(4))  # type: ignore[return-value]


def _draw(source: SceneSource, rng: random.Random, tile: int, path: Path) -> tuple[tuple[Scene, ...], str]:
    """A new HD image (four scenes, a texture) saved at `path`; its scenes and texture."""
    scenes, texture = _scenes(source), rng.choice(TEXTURES)
    save(compose(scenes, tile, texture), path)
    return scenes, texture


def synthesize_hd(out_dir: str | Path, *, seed: int = 0, train_images: int = 600,
                  eval_images: int = 100, tile: int = 96) -> dict:
    """Write the HD set under `out_dir` (see the module docstring); returns its manifest."""
    out = Path(out_dir)
    seen: set[str] = set()
    manifest: dict = {"tile": tile, "image_size": 2 * tile, "types": list(HD_TYPES),
                      "textures": list(TEXTURES)}
    train, rng = [], rng_for(seed, "hd", "train")
    source = SceneSource(rng, seen, WORDS)
    for i in range(train_images):
        image = f"hd/train_{i:05d}.png"
        scenes, texture = _draw(source, rng, tile, out / "images" / image)
        conversations = []
        for k, (question, answer, _) in enumerate(questions_for(scenes, texture, rng,
                                                                rng.choice((2, 3)))):
            human = P.with_suffix(question, P.SHORT_ANSWER)
            conversations += [{"from": "human", "value": f"{P.IMAGE}\n{human}" if k == 0 else human},
                              {"from": "gpt", "value": answer}]
        train.append({"id": f"hd{i:05d}", "image": image, "conversations": conversations})
    (out / "hd_finetune.json").write_text(json.dumps(train, indent=1) + "\n")
    rows, rng = [], rng_for(seed, "hd", "eval")
    source = SceneSource(rng, seen, WORDS)
    for i in range(eval_images):
        image = f"hd/eval_{i:05d}.png"
        scenes, texture = _draw(source, rng, tile, out / "images" / image)
        for question, answer, qtype in questions_for(scenes, texture, rng, 3):
            rows.append({"question_id": len(rows), "image": image,
                         "text": P.with_suffix(question, P.SHORT_ANSWER),
                         "answer": answer, "type": qtype})
    (out / "hd_eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest.update(train_samples=len(train), eval_questions=len(rows))
    return manifest
