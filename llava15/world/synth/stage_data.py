"""Training data: stage-1 captions (`pretrain.json`) and the stage-2 mixture (`finetune.json`).

Formats follow `blip_laion_cc_sbu_558k.json` and `llava_v1_5_mix665k.json`
(docs/official-behaviour.md, 'Training data files'):
`[{"id", "image"?, "conversations": [{"from": "human"|"gpt", "value"}...]}]`, `<image>` in the
first human turn only, several QA pairs of one image merged into one multi-turn sample with the
response-format suffix on every human turn.
"""

from __future__ import annotations

import random
from collections import Counter
from types import MappingProxyType

from llava15.world.synth import prompts as P
from llava15.world.synth.chinese import CN_TYPES, ask_cn
from llava15.world.synth.language import (INVENTORY_PAIRS, box_text, caption, describe, inventory,
                                          refer, region_phrase, scene_text)
from llava15.world.synth.questions import (QUESTION_TYPES, ask, ask_some, format_options,
                                           with_options)
from llava15.world.synth.scene import Scene
from llava15.world.synth.text_only import text_conversation
from llava15.world.synth.vocab import WORDS

Turns = list[tuple[str, str, str]]  # (human, gpt, question type) per round

# Stage-2 sample kinds and their shares of the image samples. "unanswerable" (VizWiz) and "cn"
# (MMBench-CN) are not in the official mixture; they are added in small shares so the tiny
# model can learn those two response formats at all. Short-answer VQA has over half the
# samples: the loss is a mean over answer tokens, and one detailed description (about 100
# tokens) or box (about 25) outweighs dozens of one-word answers, the rounds that teach the
# model to find the object a question names. "inventory" ("circle red, square blue") is not in
# the official mixture either: it gives the one-step look-ups that this 2-layer LLM needs
# thousands of before it answers questions about the objects (experiments/binding_toy/NOTES.md,
# experiments/lookup_stage2/NOTES.md). At a quarter of the image samples they raise the demo's
# accuracy; the long kinds were cut to make room.
MIXTURE: tuple[tuple[str, float], ...] = (
    ("vqa", 0.55), ("mc", 0.05), ("conv", 0.04), ("detail", 0.02), ("ocr", 0.04),
    ("region", 0.02), ("unanswerable", 0.02), ("cn", 0.01), ("inventory", 0.25),
)
MC_TYPES: tuple[str, ...] = ("color", "shape", "count", "position", "size", "ocr", "detail")


def turns_to_conversations(turns: Turns, image_first: bool | None) -> list[dict]:
    """Official conversation list; `<image>` goes before (True) or after (False) the first
    human text, or nowhere (None: text-only)."""
    out = []
    for i, (human, gpt, _) in enumerate(turns):
        if i == 0 and image_first is not None:
            human = f"{P.IMAGE}\n{human}" if image_first else f"{human}\n{P.IMAGE}"
        out += [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]
    return out


def pretrain_record(index: int, image: str, scene: Scene, rng: random.Random) -> dict:
    instruction = rng.choice(P.BRIEF_INSTRUCTIONS)
    turns = [(instruction, caption(scene), "caption")]
    return {"id": f"{index:09d}", "image": image,
            "conversations": turns_to_conversations(turns, image_first=rng.random() < 0.5)}


def _vqa(scene: Scene, rng: random.Random) -> Turns:
    qas = ask_some(scene, rng, QUESTION_TYPES, rng.randint(2, 4))
    return [(P.with_suffix(qa.question, P.SHORT_ANSWER), qa.answer, qa.qtype) for qa in qas]


def _mc(scene: Scene, rng: random.Random) -> Turns:
    turns = []
    for qa in ask_some(scene, rng, MC_TYPES, rng.randint(1, 2)):
        options, letter = with_options(qa, rng)
        turns.append((f"{qa.question}\n{format_options(options)}\n{P.MULTIPLE_CHOICE}", letter,
                      qa.qtype))
    return turns


def _conv(scene: Scene, rng: random.Random) -> Turns:
    overview = caption(scene)
    turns = [(rng.choice(P.OVERVIEW_QUESTIONS), f"The image shows {overview}.", "description")]
    for qa in ask_some(scene, rng, QUESTION_TYPES, rng.randint(1, 2)):
        turns.append((qa.question, qa.full, qa.qtype))
    return turns


def _detail(scene: Scene, rng: random.Random) -> Turns:
    return [(rng.choice(P.DETAIL_INSTRUCTIONS), describe(scene), "description")]


def _inventory(scene: Scene, rng: random.Random) -> Turns:
    """One object inventory: by shape (each followed by its colour, size or place) or by colour."""
    key, value = rng.choice(INVENTORY_PAIRS)
    answer = inventory(scene, key, value, rng)
    return [(P.INVENTORY[key, value], answer, "inventory")] if answer else []


def ocr_tokens(scene: Scene, rng: random.Random) -> list[str]:
    """Reference OCR tokens: the rendered word, sometimes with a false detection beside it, so
    the answer must still be read from the image."""
    tokens = [scene.word.text] if scene.word is not None else []
    if rng.random() < 0.5:
        tokens.append(rng.choice([w for w in WORDS if w not in tokens]))
        rng.shuffle(tokens)
    return tokens


def _ocr(scene: Scene, rng: random.Random) -> Turns:
    qa = ask(scene, rng, "ocr")
    style = rng.randrange(3)
    if style == 0:   # OCR-VQA
        return [(P.with_suffix(qa.question, P.SHORT_ANSWER), qa.answer, "ocr")]
    if style == 1:   # TextVQA-style prompt with OCR tokens
        return [(P.ocr_prompt(qa.question, ocr_tokens(scene, rng)), qa.answer, "ocr")]
    text = caption(scene)  # TextCaps
    return [(f"{P.TEXTCAPS}\nReference OCR token: {', '.join(ocr_tokens(scene, rng))}",
             text[0].upper() + text[1:] + ".", "caption")]


def _region(scene: Scene, rng: random.Random) -> Turns:
    turns = []
    objs = list(scene.objects)
    rng.shuffle(objs)
    for obj in objs[:rng.randint(1, 3)]:
        unique = refer(scene, obj) is not None and sum(
            region_phrase(o) == region_phrase(obj) for o in scene.objects) == 1
        if unique and rng.random() < 0.5:
            turns.append((f"{P.REGION_GROUND}{region_phrase(obj)}.", box_text(obj), "grounding"))
        else:
            turns.append((f"{P.REGION_DESCRIBE}{box_text(obj)}", region_phrase(obj), "region"))
    return turns


def _unanswerable(scene: Scene, rng: random.Random) -> Turns:
    turns = []
    for _ in range(rng.randint(1, 2)):
        qa = ask(scene, rng, "unanswerable") if rng.random() < 0.5 else \
            ask_some(scene, rng, ("color", "count", "shape"), 1)[0]
        answer = "Unanswerable" if qa.qtype == "unanswerable" else qa.answer
        if all(qa.question not in h for h, _, _ in turns):
            turns.append((P.with_suffix(qa.question, P.VIZWIZ), answer, qa.qtype))
    return turns


def _cn(scene: Scene, rng: random.Random) -> Turns:
    turns = []
    for qtype in rng.sample(CN_TYPES, len(CN_TYPES)):
        qa = ask_cn(scene, rng, qtype)
        if qa is not None:
            options, letter = with_options(qa, rng)
            turns.append((f"{qa.question}\n{format_options(options)}\n{P.MULTIPLE_CHOICE_CN}",
                          letter, qa.qtype))
            break
    return turns


BUILDERS = MappingProxyType({"vqa": _vqa, "mc": _mc, "conv": _conv, "detail": _detail,
                             "ocr": _ocr, "region": _region, "unanswerable": _unanswerable,
                             "cn": _cn, "inventory": _inventory})
# Short-answer, choice and region samples put `<image>` first (as in the 665K json); free-form
# ones put it before or after the text at random, as LLaVA-Instruct does.
IMAGE_FIRST = MappingProxyType({"vqa": True, "mc": True, "ocr": True, "region": True,
                                "unanswerable": True, "cn": True, "inventory": True})


def pick_kind(rng: random.Random, made: Counter, slots_left: int) -> str:
    """A kind drawn by the MIXTURE shares, except that the last slots go to kinds not `made` yet:
    a small world (the smoke test's) still holds every response format at least once."""
    missing = [kind for kind, _ in MIXTURE if not made[kind]]
    if missing and len(missing) >= slots_left:
        return missing[0]
    kinds, weights = zip(*MIXTURE)
    return rng.choices(kinds, weights)[0]


def finetune_record(index: int, image: str, kind: str, scene: Scene,
                    rng: random.Random) -> tuple[dict | None, list[str]]:
    """One stage-2 image sample of `kind` and its rounds' question types; (None, []) if the
    scene supports no question of that kind."""
    turns = BUILDERS[kind](scene, rng)
    if not turns:
        return None, []
    image_first = IMAGE_FIRST.get(kind, rng.random() < 0.5)
    record = {"id": f"{index:09d}", "image": image,
              "conversations": turns_to_conversations(turns, image_first)}
    return record, [t for _, _, t in turns]


def text_record(index: int, rng: random.Random) -> dict:
    """A ShareGPT-like text-only sample: no `image` key."""
    turns = [(q, a, "text") for q, a in text_conversation(rng)]
    return {"id": f"text_{index:06d}", "conversations": turns_to_conversations(turns, None)}


def paragraph(record: dict, scene: Scene | None = None) -> str:
    """A record as plain text for LM pretraining: one turn per line, `<image>` removed, and
    first, when the record has an image, its `scene` written out (`language.scene_text`).

    With the scene in front, the questions after it can be answered from the context: the tiny
    LLM learns to look things up in what it has read, as a real LLM can before LLaVA's stage 1.
    Without it, it could only learn the answers' priors, and stage 2 alone is too short to
    teach a 2-layer model to find the object a question names among the image tokens.
    """
    lines = [scene_text(scene)] if scene is not None else []
    for turn in record["conversations"]:
        value = turn["value"].replace(P.IMAGE, "").strip()
        lines.append(value)
    return "\n".join(lines)
