"""Short-answer benchmarks with annotations: VQAv2, GQA, VizWiz, TextVQA (docs/benchmarks.md,
'VQAv2', 'GQA', 'VizWiz' and 'TextVQA').

Question files carry the response-format suffix in `text`, as the official LLaVA files do.
"""

from __future__ import annotations

from types import MappingProxyType

from llava15.world.synth import prompts as P
from llava15.world.synth.bench_common import Bench
from llava15.world.synth.questions import QA, UNANSWERABLE, ask, ask_some
from llava15.world.synth.stage_data import ocr_tokens

VQA_TYPES = ("color", "shape", "count", "position", "size", "existence", "relation", "detail",
             "ocr", "scene")
VQA_QUESTION_TYPE = MappingProxyType({
    "color": "what color is the", "shape": "what shape is the", "count": "how many",
    "position": "is the", "size": "is the", "existence": "is there a", "relation": "is the",
    "ocr": "what", "detail": "what color is the", "scene": "what color is the",
    "unanswerable": "what"})


def answer_type(qa: QA) -> str:
    if qa.qtype == "unanswerable":
        return "unanswerable"
    return {"existence": "yes/no", "relation": "yes/no", "count": "number"}.get(qa.qtype, "other")


def ten_answers(qa: QA, b: Bench) -> list[str]:
    """Ten annotators' answers (lower case, like the released annotations): unanimous, except
    that one annotator now and then gives another answer (the majority still scores 1.0)."""
    answer = qa.answer.lower()
    answers = [answer] * 10
    others = [c.lower() for c in qa.choices if c.lower() != answer]
    if others and b.rng.random() < 0.2:
        answers[b.rng.randrange(10)] = b.rng.choice(others)
    return answers


def write_vqav2(b: Bench, n_images: int) -> None:
    questions, rows, annotations = [], [], []
    for i in range(n_images):
        scene = b.source.draw()
        image_id = i + 1
        image = f"COCO_test2015_{image_id:012d}.jpg"
        b.image(scene, f"test2015/{image}")
        for k, qa in enumerate(ask_some(scene, b.rng, VQA_TYPES, 3)):
            qid = image_id * 1000 + k
            rows.append({"question_id": qid, "image": image,
                         "text": P.with_suffix(qa.question, P.SHORT_ANSWER), "category": "default"})
            questions.append({"image_id": image_id, "question": qa.question, "question_id": qid})
            answers = ten_answers(qa, b)
            annotations.append({
                "question_id": qid, "image_id": image_id,
                "question_type": VQA_QUESTION_TYPE[qa.qtype], "answer_type": answer_type(qa),
                "multiple_choice_answer": qa.answer.lower(),
                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                            for j, a in enumerate(answers)]})
            b.typed(qid, qa.qtype)
    b.jsonl("llava_vqav2_mscoco_test-dev2015.jsonl", rows)
    # The full test2015 list (what the submission converter iterates); here test-dev is all of it.
    b.jsonl("llava_vqav2_mscoco_test2015.jsonl", rows)
    header = {"info": {"description": "llava15 synthetic world"}, "license": {},
              "data_subtype": "test-dev2015"}
    # Real test-dev has no public answers; the world's are written under the official val2014
    # file names and formats, which is where local scoring (vqaEval.py's rule) looks for them.
    b.json("v2_OpenEnded_mscoco_val2014_questions.json",
           {**header, "task_type": "Open-Ended", "data_type": "mscoco", "questions": questions})
    b.json("v2_mscoco_val2014_annotations.json",
           {**header, "data_type": "mscoco", "annotations": annotations})


GQA_TYPES = ("color", "shape", "position", "size", "existence", "relation")
# world type -> GQA (structural, semantic, detailed) types
GQA_STRUCT = MappingProxyType({
    "color": ("query", "attr", "queryAttr"), "shape": ("query", "cat", "categoryThis"),
    "position": ("choose", "rel", "positionChoose"), "size": ("choose", "attr", "chooseAttr"),
    "existence": ("verify", "obj", "existAttr"), "relation": ("verify", "rel", "relVerify")})


def write_gqa(b: Bench, n_images: int) -> None:
    rows, questions = [], {}
    for i in range(n_images):
        scene = b.source.draw(word=False)
        image_id = f"n{100000 + i}"
        b.image(scene, f"data/images/{image_id}.jpg")
        for k, qa in enumerate(ask_some(scene, b.rng, GQA_TYPES, 2)):
            qid = str(201000000 + i * 10 + k)
            structural, semantic, detailed = GQA_STRUCT[qa.qtype]
            rows.append({"question_id": qid, "image": f"{image_id}.jpg",
                         "text": P.with_suffix(qa.question, P.SHORT_ANSWER), "category": "default"})
            questions[qid] = {
                "semantic": [], "entailed": [], "equivalent": [qid], "question": qa.question,
                "imageId": image_id, "isBalanced": True, "groups": {"global": None, "local": None},
                "answer": qa.answer.lower(), "semanticStr": "", "annotations":
                {"answer": {}, "question": {}, "fullAnswer": {}}, "types":
                {"structural": structural, "semantic": semantic, "detailed": detailed},
                "fullAnswer": qa.full}
            b.typed(qid, qa.qtype)
    b.jsonl("llava_gqa_testdev_balanced.jsonl", rows)
    b.json("data/testdev_balanced_questions.json", questions)


def write_vizwiz(b: Bench, n_questions: int) -> None:
    rows, test, annotations = [], [], []
    for qid in range(n_questions):
        scene = b.source.draw()
        image = f"VizWiz_test_{qid:08d}.jpg"
        b.image(scene, f"test/{image}")
        if b.rng.random() < 0.25:
            qa = ask(scene, b.rng, "unanswerable")
        else:
            qa = ask_some(scene, b.rng, ("color", "count", "shape", "ocr", "scene"), 1)[0]
        answers = [UNANSWERABLE] * 10 if qa.qtype == "unanswerable" else ten_answers(qa, b)
        rows.append({"question_id": qid, "image": image,
                     "text": P.with_suffix(qa.question, P.VIZWIZ), "category": "default"})
        test.append({"image": image, "question": qa.question})
        annotations.append({"image": image, "question": qa.question,
                            "answers": [{"answer": a, "answer_confidence": "yes"} for a in answers],
                            "answer_type": answer_type(qa),
                            "answerable": int(qa.qtype != "unanswerable")})
        b.typed(qid, qa.qtype)
    b.jsonl("llava_test.jsonl", rows)
    b.json("test.json", test)
    # Not released for the real test split; written in the val.json format for local scoring.
    b.json("test_annotations.json", annotations)


def write_textvqa(b: Bench, n_questions: int) -> None:
    """One question per image: the official question file uses the image id as question_id."""
    rows, data, used = [], [], set()
    for i in range(n_questions):
        scene = b.source.draw(word=True)
        image_id = f"{b.rng.getrandbits(64):016x}"
        if image_id in used:
            raise RuntimeError(f"TextVQA image id collision: {image_id}")
        used.add(image_id)
        b.image(scene, f"train_images/{image_id}.jpg")
        qa = ask(scene, b.rng, "ocr")
        question = qa.question.lower()
        rows.append({"question_id": image_id, "image": f"{image_id}.jpg",
                     "text": P.ocr_prompt(question, ocr_tokens(scene, b.rng)),
                     "category": "default"})
        size = b.writer.image_size
        data.append({"question": question, "image_id": image_id, "image_classes": [],
                     "flickr_original_url": "", "flickr_300k_url": "", "image_width": size,
                     "image_height": size, "answers": ten_answers(qa, b),
                     "question_tokens": question.rstrip("?").split(), "question_id": 34602 + i,
                     "set_name": "val"})
        b.typed(image_id, qa.qtype)
    b.jsonl("llava_textvqa_val_v051_ocr.jsonl", rows)
    b.json("TextVQA_0.5.1_val.json", {"dataset_type": "val", "dataset_name": "textvqa",
                                      "dataset_version": "0.5.1", "data": data})
