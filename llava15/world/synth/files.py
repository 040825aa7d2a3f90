"""Deterministic file writing under one output directory, with a record of what was written.

JSON is written with keys in insertion order and `ensure_ascii=False` (UTF-8), so the
same data gives the same bytes. `Writer.counts` maps every written path (relative, POSIX) to its
number of records (rows, list items, images = 1), which becomes the manifest.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path

from llava15.world.synth.draw import encode, render, save
from llava15.world.synth.scene import Scene, random_scene


def rng_for(seed: int, *names: str) -> random.Random:
    """An independent random stream per (seed, purpose): adding a stream never shifts another.
    String seeds are hashed with SHA-512 by `random`, independent of PYTHONHASHSEED."""
    return random.Random(f"{seed}/" + "/".join(names))


class Writer:
    def __init__(self, root: Path, image_size: int):
        self.root = root
        self.image_size = image_size
        self.counts: dict[str, int] = {}

    def _path(self, rel: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def image(self, scene: Scene, rel: str) -> None:
        """Render `scene` at the writer's size to `rel` (format from the extension)."""
        save(render(scene, self.image_size), self._path(rel))
        self.counts[rel] = 1

    def image_bytes(self, scene: Scene, fmt: str = "png") -> bytes:
        return encode(render(scene, self.image_size), fmt)

    def json(self, rel: str, obj, indent: int | None = None) -> None:
        self._path(rel).write_text(json.dumps(obj, ensure_ascii=False, indent=indent) + "\n",
                                   encoding="utf-8")
        self.counts[rel] = len(obj)

    def jsonl(self, rel: str, rows: Iterable[dict]) -> None:
        lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in rows]
        self._path(rel).write_text("".join(lines), encoding="utf-8")
        self.counts[rel] = len(lines)

    def text(self, rel: str, text: str, records: int) -> None:
        self._path(rel).write_text(text, encoding="utf-8")
        self.counts[rel] = records


class SceneSource:
    """Draws scenes for one purpose, never repeating a scene already used anywhere (`seen` is
    shared between sources so held-out images never equal a training image)."""

    def __init__(self, rng: random.Random, seen: set[str], words: tuple[str, ...]):
        self.rng = rng
        self.seen = seen
        self.words = words

    def draw(self, **kwargs) -> Scene:
        for _ in range(1000):
            scene = random_scene(self.rng, words=self.words, **kwargs)
            key = scene.key()
            if key not in self.seen:
                self.seen.add(key)
                return scene
        raise RuntimeError("could not draw a new distinct scene in 1000 tries")
