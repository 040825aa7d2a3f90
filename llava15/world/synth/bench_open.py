"""Free-form benchmarks judged by a model: LLaVA-Bench (in-the-wild) and MM-Vet
(docs/benchmarks.md, 'LLaVA-Bench (in-the-wild)' and 'MM-Vet'). Reference answers come from the
scene, in the style of the judges' references."""

from __future__ import annotations

from llava15.world.synth.bench_common import Bench
from llava15.world.synth.language import caption, describe
from llava15.world.synth.questions import ask, ask_some
from llava15.world.synth.scene import Scene
from llava15.world.synth.vocab import PLURALS, SIDES, number_word
from llava15.world.synth.prompts import DETAIL_INSTRUCTIONS

CONV_TYPES = ("color", "shape", "count", "position", "size", "ocr", "detail")


def _complex(scene: Scene, b: Bench) -> tuple[str, str]:
    shape = b.rng.choice(sorted({o.shape for o in scene.objects}))
    total, k = len(scene.objects), scene.count(shape)
    left = total - k
    q = f"How many objects would be left if all the {PLURALS[shape]} were removed? Explain."
    a = (f"There are {number_word(total)} objects in the image and {number_word(k)} of them "
         f"{'is a' if k == 1 else 'are'} {shape if k == 1 else PLURALS[shape]}. "
         f"Removing them would leave {number_word(left)} {'object' if left == 1 else 'objects'}.")
    return q, a


def write_llavabench(b: Bench, n_images: int) -> None:
    questions, contexts, references = [], [], []
    qid = 0
    for i in range(n_images):
        scene = b.source.draw()
        image = f"{i + 1:03d}.jpg"
        b.image(scene, f"images/{image}")
        contexts.append({"id": f"{i + 1:03d}", "image": image, "caption": describe(scene)})
        items = [(qa.question, qa.full, "conv", qa.qtype)
                 for qa in ask_some(scene, b.rng, CONV_TYPES, 1 + (i % 3 == 0))]
        if i % 2 == 0:
            items.append((b.rng.choice(DETAIL_INSTRUCTIONS), describe(scene), "detail",
                          "description"))
        else:
            q, a = _complex(scene, b)
            items.append((q, a, "complex", "reasoning"))
        for q, a, category, qtype in items:
            questions.append({"question_id": qid, "image": image, "text": q, "category": category})
            references.append({"question_id": qid, "prompt": q, "text": a,
                               "answer_id": f"{b.rng.getrandbits(64):016x}",
                               "model_id": "gpt-4-0314", "metadata": {}})
            b.typed(qid, qtype)
            qid += 1
    b.jsonl("questions.jsonl", questions)
    b.jsonl("context.jsonl", contexts)
    b.jsonl("answers_gpt4.jsonl", references)


def _mmvet_item(scene: Scene, b: Bench) -> tuple[str, str, list[str], str] | None:
    """(question, answer with <OR>/<AND>, capabilities, world type) or None."""
    kind = b.rng.choice(("rec", "ocr", "spat", "math", "know", "gen"))
    if kind == "rec":
        qa = ask_some(scene, b.rng, ("color", "shape"), 1)
        return (qa[0].question, qa[0].answer, ["rec"], qa[0].qtype) if qa else None
    if kind == "ocr":
        qa = ask(scene, b.rng, "ocr")
        return (qa.question, qa.answer, ["ocr"], "ocr") if qa else None
    if kind == "spat":
        qa = ask_some(scene, b.rng, ("position", "relation"), 1)
        return (qa[0].question, qa[0].answer, ["rec", "spat"], qa[0].qtype) if qa else None
    if kind == "math":
        n = len(scene.objects)
        return ("How many objects are there in total?", f"{n}<OR>{number_word(n)}",
                ["rec", "math"], "count")
    if kind == "know":
        o = b.rng.choice(scene.objects)
        ref = f"{o.color} {o.shape}"
        if sum(x.color == o.color and x.shape == o.shape for x in scene.objects) != 1:
            return None
        n = SIDES[o.shape]
        return (f"How many sides does the shape of the {o.color} object have?"
                if sum(x.color == o.color for x in scene.objects) == 1 else
                f"How many sides does the {ref} have?", f"{n}<OR>{number_word(n)}",
                ["rec", "know"], "shape")
    return ("Write a short caption for this image.", caption(scene), ["rec", "gen"], "description")


def write_mmvet(b: Bench, n_questions: int) -> None:
    rows, release = [], {}
    qid = 0
    while qid < n_questions:
        scene = b.source.draw()
        item = _mmvet_item(scene, b)
        if item is None:
            continue
        question, answer, capability, qtype = item
        image = f"v1_{qid}.png"
        b.image(scene, f"images/{image}")
        release[f"v1_{qid}"] = {"imagename": image, "capability": capability,
                                "question": question, "answer": answer}
        rows.append({"question_id": qid, "image": image, "text": question, "category": "default"})
        b.typed(qid, qtype)
        qid += 1
    b.jsonl("llava-mm-vet.jsonl", rows)
    b.json("mm-vet.json", release, indent=2)
