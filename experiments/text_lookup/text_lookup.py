"""Can the stage-0 LLM look things up in text? Its answers to the stage-2 questions, read after
the scene written out in words, exactly as its pretraining corpus shows them.

Stage 0 pretrains the tiny LLM on `train_text.txt`: each training record's scene in words, then
its turns, one a line (`stage_data.paragraph`). If the LLM learns there to answer "What color is
the circle?" from the scene before it, stage 2 only has to teach it to read the scene from image
tokens instead. This script scores that text look-up per question type on the stage-2 records'
paragraphs: an answer counts when every one of its tokens is the LLM's argmax given the
paragraph before it (teacher-forced).

It also counts the answers whose tokens in the corpus differ from their tokens in a stage-2
prompt (" ASSISTANT: red"): an answer that begins a line has no space before it, and the
tokenizer splits such a word into pieces ("t", "riangle") that no stage-2 answer uses.

The measurements and what they answer are in `experiments/text_lookup/NOTES.md`.

    .venv/bin/python experiments/text_lookup/text_lookup.py demo-out [--records 600]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from llava15.data.tokenizer import Tokenizer
from llava15.world.synth import prompts as P

# Question type from the question's words (the templates of `synth.questions`), first match wins.
TYPE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("detail", r"\bdot on\b"), ("scene", r"\bbackground\b"), ("color", r"\bcolor\b"),
    ("shape", r"\bshape\b"), ("count", r"^How many\b"),
    ("position", r"left or on the right|top or at the bottom"), ("size", r"small or large"),
    ("relation", r"to the left of the|\babove the\b"), ("existence", r"^Is there\b"),
    ("ocr", r"\bword\b|\btext\b"),
)


def question_type(question: str) -> str:
    """The synth question type of `question` (its first line), or "other"."""
    first = question.split("\n", 1)[0]
    for name, pattern in TYPE_PATTERNS:
        if re.search(pattern, first):
            return name
    return "other"


@dataclass(frozen=True)
class Answer:
    qtype: str
    start: int   # first answer token in the paragraph's ids
    end: int     # one past its last token
    stage2_like: bool  # its tokens equal those of the answer after " ASSISTANT: "


def answer_spans(paragraph: str, record: dict, tokenizer: Tokenizer) -> tuple[list[int], list[Answer]]:
    """The paragraph's token ids and each short answer's span in them.

    The paragraph must be `stage_data.paragraph(record, scene)`: the scene line, then each
    turn's text without `<image>`. Raises ValueError when it is not (the corpus and the records
    are out of step), or when the answer's tokens do not start a token (a merge across the line
    break), so that no answer is scored on the wrong tokens."""
    values = [turn["value"].replace(P.IMAGE, "").strip() for turn in record["conversations"]]
    lines = paragraph.split("\n", 1)
    if len(lines) < 2 or "\n".join(values) != lines[1]:
        raise ValueError(f"record {record.get('id')}: its paragraph is not its scene and turns")
    ids = tokenizer.encode(paragraph)
    marker = tokenizer.encode("ASSISTANT:")[1:]
    answers = []
    for k in range(1, len(values), 2):
        prefix = "\n".join([lines[0]] + values[:k]) + "\n"
        before, upto = tokenizer.encode(prefix), tokenizer.encode(prefix + values[k])
        if upto[:len(before)] != before or ids[:len(upto)] != upto:
            raise ValueError(f"record {record.get('id')}: answer {values[k]!r} merges with the text before it")
        chat = tokenizer.encode("ASSISTANT: " + values[k])[1 + len(marker):]
        answers.append(Answer(question_type(values[k - 1]), len(before), len(upto),
                              chat == upto[len(before):]))
    return ids, answers


def score(model, ids: list[int], answers: list[Answer]) -> list[bool]:
    """Per answer: is every token the argmax of the LLM given the tokens before it."""
    with torch.no_grad():
        x = torch.tensor([ids])
        predicted = model(model.model.embed_tokens(x)).argmax(-1)[0].tolist()
    return [all(predicted[j - 1] == ids[j] for j in range(a.start, a.end)) for a in answers]


def short_answer_records(data: Path, limit: int) -> list[tuple[str, dict]]:
    """(paragraph, record) of the last `limit` stage-2 image records whose first question takes
    the short-answer suffix (no OCR tokens, no 'Unanswerable' instruction)."""
    paragraphs = (data / "train_text.txt").read_text(encoding="utf-8").rstrip("\n").split("\n\n")
    pretrain = json.loads((data / "pretrain.json").read_text())
    finetune = json.loads((data / "finetune.json").read_text())
    if len(paragraphs) != len(pretrain) + len(finetune):
        raise ValueError(f"{data / 'train_text.txt'}: {len(paragraphs)} paragraphs for "
                         f"{len(pretrain)} + {len(finetune)} records")
    chosen = []
    for text, record in zip(paragraphs[len(pretrain):], finetune):
        first = record["conversations"][0]["value"]
        if "image" in record and first.endswith(P.SHORT_ANSWER) and "Reference OCR" not in first \
                and "Unanswerable" not in first:
            chosen.append((text, record))
    return chosen[-limit:]


def main() -> None:
    from tqdm import tqdm

    from llava15.checkpoint.configs import read_json, text_config_from
    from llava15.data.tokenizer import load_tokenizer
    from llava15.model.llama import LanguageModel
    from llava15.train.init import read_weights

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo", type=Path, help="a demo's --out directory")
    parser.add_argument("--records", type=int, default=600)
    args = parser.parse_args()
    llm_dir = args.demo / "backbones" / "llm"
    config = text_config_from(read_json(llm_dir / "config.json"), str(llm_dir))
    model = LanguageModel(config)
    model.load_state_dict(read_weights(llm_dir))
    model.eval()
    tokenizer = load_tokenizer(llm_dir)
    chosen = short_answer_records(args.demo / "data", args.records)
    if not chosen:
        raise SystemExit(f"{args.demo / 'data'}: no short-answer stage-2 records to score")
    right, total, stage2_like = Counter(), Counter(), 0
    for text, record in tqdm(chosen, unit="record"):
        ids, answers = answer_spans(text, record, tokenizer)
        if len(ids) > config.max_position_embeddings:
            raise SystemExit(f"record {record.get('id')}: {len(ids)} tokens, more than the LLM's "
                             f"{config.max_position_embeddings} positions")
        for answer, ok in zip(answers, score(model, ids, answers)):
            right[answer.qtype] += ok
            total[answer.qtype] += 1
            stage2_like += answer.stage2_like
    print(f"{'type':10s} {'n':>5s}  accuracy")
    for name in sorted(total):
        print(f"{name:10s} {total[name]:5d}  {right[name] / total[name]:.3f}")
    n = sum(total.values())
    print(f"{'overall':10s} {n:5d}  {sum(right.values()) / n:.3f}")
    print(f"answers tokenized as in a stage-2 prompt: {stage2_like} of {n}")


if __name__ == "__main__":
    main()
