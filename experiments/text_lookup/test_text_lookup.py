"""`experiments/text_lookup/text_lookup.py`: answer spans in the stage-0 corpus, question types,
scoring."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from llava15.data.tokenizer import load_tokenizer
from llava15.world.stage0 import train_tokenizer
from llava15.world.synth.questions import QUESTION_TYPES, ask
from llava15.world.synth.scene import random_scene
from llava15.world.synth.stage_data import finetune_record, paragraph
from llava15.world.synth.vocab import WORDS
from tests.bench_scripts import load_script

lookup = load_script(Path(__file__).with_name("text_lookup.py"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(paragraph, record) of 30 short-answer samples and a tokenizer trained on them."""
    pairs = []
    for i in range(30):
        scene = random_scene(random.Random(i), word=i % 3 == 0, words=WORDS)
        record, _ = finetune_record(i, f"{i}.png", "vqa", scene, random.Random(100 + i))
        pairs.append((paragraph(record, scene), record))
    tmp = tmp_path_factory.mktemp("text_lookup")
    (tmp / "text.txt").write_text("\n\n".join(p for p, _ in pairs))
    return pairs, load_tokenizer(train_tokenizer(tmp / "text.txt", tmp / "tok", 500))


def test_every_generated_question_gets_its_own_type():
    seen = set()
    for seed in range(300):
        scene = random_scene(random.Random(seed), word=seed % 2 == 0, words=WORDS)
        for qtype in QUESTION_TYPES:
            qa = ask(scene, random.Random(seed), qtype)
            if qa is not None:
                assert lookup.question_type(qa.question) == qtype, qa.question
                seen.add(qtype)
    assert seen == set(QUESTION_TYPES)


def test_spans_hold_exactly_each_answer(corpus):
    pairs, tokenizer = corpus
    n, stage2_like = 0, 0
    for text, record in pairs:
        ids, answers = lookup.answer_spans(text, record, tokenizer)
        gpt = [t["value"] for t in record["conversations"] if t["from"] == "gpt"]
        assert len(answers) == len(gpt)
        for answer, value in zip(answers, gpt):
            assert tokenizer.decode(ids[answer.start:answer.end]) == value
            assert answer.qtype in QUESTION_TYPES
            n += 1
            stage2_like += answer.stage2_like
    assert n > 50
    assert stage2_like < n  # an answer that begins a line loses the space stage 2 puts before it


def test_a_paragraph_of_another_record_is_refused(corpus):
    pairs, tokenizer = corpus
    with pytest.raises(ValueError, match="record 000000001"):
        lookup.answer_spans(pairs[0][0], pairs[1][1], tokenizer)


class _Oracle:
    """An 'LLM' whose argmax is the given next ids, except at the positions in `wrong`."""

    def __init__(self, ids: list[int], wrong: set[int], vocab: int) -> None:
        self.ids, self.wrong, self.vocab = ids, wrong, vocab
        self.model = self
        self.embed_tokens = lambda x: x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        nxt = self.ids[1:] + [0]
        logits = torch.zeros(1, len(self.ids), self.vocab)
        for i, t in enumerate(nxt):
            logits[0, i, (t + 1) % self.vocab if i in self.wrong else t] = 1.0
        return logits


def test_an_answer_counts_only_when_all_its_tokens_are_predicted(corpus):
    pairs, tokenizer = corpus
    text, record = next((t, r) for t, r in pairs
                        if any(a.end - a.start > 1 for a in lookup.answer_spans(t, r, tokenizer)[1]))
    ids, answers = lookup.answer_spans(text, record, tokenizer)
    assert lookup.score(_Oracle(ids, set(), tokenizer.vocab_size), ids, answers) == [True] * len(answers)
    long = next(k for k, a in enumerate(answers) if a.end - a.start > 1)
    miss = {answers[long].end - 2}  # the position that predicts the answer's last token
    scored = lookup.score(_Oracle(ids, miss, tokenizer.vocab_size), ids, answers)
    assert scored == [k != long for k in range(len(answers))]
