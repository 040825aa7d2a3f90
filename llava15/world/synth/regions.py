"""Region descriptions (Visual Genome style) for stage 0: one phrase per grid cell of a scene.

Image-level captions leave a tiny contrastive tower free to ignore shape: colour, count and
background already tell a batch's captions apart (a linear probe on its patch tokens found
shape at 0.43 against colour at 0.99). Describing every cell on its own, the empty ones
included, makes each part of the image answer for what it shows.
"""

from __future__ import annotations

from llava15.world.synth.language import region_phrase
from llava15.world.synth.scene import CELL, GRID, Scene, place


def cell_regions(scene: Scene) -> list[dict]:
    """Every grid cell in reading order as {"bbox": [x1, y1, x2, y2] (normalised), "phrase"}.

    An object's cell names it ('large red circle with a blue dot'), the word's cell the word
    ('the word cat in red'), any other cell the background; each phrase ends with its place.
    """
    what: dict[tuple[int, int], str] = {}
    for obj in scene.objects:
        dot = f" with a {obj.dot} dot" if obj.dot else ""
        what[obj.row, obj.col] = region_phrase(obj) + dot
    if scene.word is not None:  # drawn in the middle cell of its row
        what[scene.word.row, GRID // 2] = f"the word {scene.word.text} in {scene.word.color}"
    regions = []
    for row in range(GRID):
        for col in range(GRID):
            phrase = what.get((row, col), f"{scene.background} background")
            bbox = [round(col * CELL, 4), round(row * CELL, 4), round((col + 1) * CELL, 4),
                    round((row + 1) * CELL, 4)]
            regions.append({"bbox": bbox, "phrase": f"{phrase} at the {place(row, col)}"})
    return regions
