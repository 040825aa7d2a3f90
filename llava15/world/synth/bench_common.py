"""What every held-out benchmark writer shares: its directory, scene source, and type sidecar.

Each benchmark writes its files in the official layout under `eval/<official dir>/`, plus a
sidecar `types.json` mapping str(question_id) -> the world's question type (color, count, ...), so
a demo can report accuracy per type.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from llava15.world.synth.files import SceneSource, Writer
from llava15.world.synth.scene import Scene


@dataclass
class Bench:
    writer: Writer
    source: SceneSource
    rng: random.Random
    root: str                                   # "eval/<official dir>"
    types: dict[str, str] = field(default_factory=dict)
    asked: Counter = field(default_factory=Counter)   # question type -> questions (not ids)

    def image(self, scene: Scene, rel: str) -> None:
        self.writer.image(scene, f"{self.root}/{rel}")

    def image_bytes(self, scene: Scene) -> bytes:
        return self.writer.image_bytes(scene, "png")

    def json(self, rel: str, obj, indent: int | None = None) -> None:
        self.writer.json(f"{self.root}/{rel}", obj, indent)

    def jsonl(self, rel: str, rows: list[dict]) -> None:
        self.writer.jsonl(f"{self.root}/{rel}", rows)

    def text(self, rel: str, text: str, records: int) -> None:
        self.writer.text(f"{self.root}/{rel}", text, records)

    def typed(self, question_id, qtype: str) -> None:
        """Record one question's type. MME's two questions of an image share one id (the image
        path, as officially), so a repeated id is allowed with the same type."""
        key = str(question_id)
        if key in self.types and self.types[key] != qtype:
            raise ValueError(f"{self.root}: question id {key} typed twice "
                             f"({self.types[key]} and {qtype})")
        self.types[key] = qtype
        self.asked[qtype] += 1

    def finish(self) -> dict:
        """Write types.json; return this benchmark's manifest entry."""
        self.json("types.json", self.types, indent=1)
        return {"dir": self.root, "questions": sum(self.asked.values()),
                "types": dict(sorted(self.asked.items()))}
