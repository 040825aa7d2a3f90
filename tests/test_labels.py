"""Training ids and labels against the official preprocess functions (goldens from make_text_golden.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from llava15.config import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava15.data.conversation import get_template, preprocess_multimodal
from llava15.data.labels import encode_conversation
from llava15.data.tokenizer import load_tokenizer

GOLDEN = Path(__file__).parent / "golden"
TOKENIZERS = {legacy: load_tokenizer(GOLDEN / "tokenizer", legacy=legacy) for legacy in (True, False)}
RECORDS = [(legacy, r) for legacy in (True, False) for r in json.loads(
    (GOLDEN / "text" / f"labels_legacy_{'true' if legacy else 'false'}.json").read_text(encoding="utf-8"))]


def _id(item) -> str:
    legacy, r = item
    return f"{'legacy' if legacy else 'non_legacy'}-{r['version']}-{r['name']}"


@pytest.mark.parametrize("item", RECORDS, ids=[_id(x) for x in RECORDS])
def test_matches_official_preprocess(item):
    legacy, r = item
    conversations = copy.deepcopy(r["conversations"])
    sample = encode_conversation(conversations, TOKENIZERS[legacy], get_template(r["version"]),
                                 r["has_image"], r["model_max_length"])
    assert conversations == r["conversations"]  # not mutated
    assert sample.input_ids == r["input_ids"]
    assert sample.labels == r["labels"]
    assert sample.mismatch == r["mismatch"]
    if r["has_image"]:
        assert preprocess_multimodal(r["conversations"]) == r["after_multimodal"]
        assert sample.input_ids.count(IMAGE_TOKEN_INDEX) == sum(
            "<image>" in t["value"] for t in r["after_multimodal"])


@pytest.mark.parametrize("item", [x for x in RECORDS if x[1]["version"] in ("v1", "llava_llama_2", "plain")],
                         ids=lambda x: _id(x))
def test_segment_labels_agree_with_official_unless_masked(item):
    # Independent construction: each reply tokenized on its own as a continuation. It must equal
    # the official arithmetic wherever the official code kept the sample and did not stop early.
    legacy, r = item
    sample = encode_conversation(r["conversations"], TOKENIZERS[legacy], get_template(r["version"]),
                                 r["has_image"], r["model_max_length"])
    stops_early = r["version"] == "v1" and r["name"] == "assistant_in_human_turn"
    assert sample.segments_agree == (not r["mismatch"] and not stops_early)


def test_targets_are_the_replies():
    # docs/official-behaviour.md, 'Label masks', checked by decoding: the trained tokens are the
    # replies and </s>.
    tok = TOKENIZERS[False]
    conv = [{"from": "human", "value": "<image>\nWhat colour is the star?"}, {"from": "gpt", "value": "It is red."},
            {"from": "human", "value": "And the circle?"}, {"from": "gpt", "value": "Blue."}]
    sample = encode_conversation(conv, tok, get_template("vicuna_v1"), has_image=True)
    trained = [i for i, label in zip(sample.input_ids, sample.labels) if label != IGNORE_INDEX]
    # each reply keeps its leading "▁" (stripped only at the start of the decoded text)
    assert tok.decode(trained, skip_special_tokens=False) == "It is red.</s> Blue.</s>"
    assert not sample.mismatch and len(sample.labels) == len(sample.input_ids)


def test_released_stack_without_head_fix_flags_non_legacy_multi_turn():
    conv = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."},
            {"from": "human", "value": "Colour?"}, {"from": "gpt", "value": "Red."}]
    template = get_template("vicuna_v1")
    assert not encode_conversation(conv, TOKENIZERS[False], template, False).mismatch
    assert encode_conversation(conv, TOKENIZERS[False], template, False, head_fix=False).mismatch
    assert not encode_conversation(conv, TOKENIZERS[True], template, False, head_fix=False).mismatch


def test_bad_records_raise_clear_errors():
    tok, template = TOKENIZERS[True], get_template("vicuna_v1")
    with pytest.raises(ValueError, match="empty"):
        encode_conversation([], tok, template, False)
    with pytest.raises(ValueError, match=r"conversations\[1\]"):
        encode_conversation([{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}], tok, template, False)
    with pytest.raises(ValueError, match="alternate"):
        encode_conversation([{"from": "human", "value": "a"}, {"from": "human", "value": "b"}], tok, template, False)
    with pytest.raises(ValueError, match="PLAIN"):
        encode_conversation([{"from": "human", "value": "no image"}, {"from": "gpt", "value": "b"}],
                            tok, get_template("plain"), False)


def test_chatml_template_needs_a_chatml_tokenizer():
    # The smollm2 template's labels (LLaVA-NeXT's preprocess_qwen) are checked with the real
    # SmolLM2 tokenizer in tests/test_smol.py; a tokenizer without the chatml tokens is refused.
    conv = [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Yes."}]
    with pytest.raises(ValueError, match=r"<\|im_start\|> and <\|im_end\|>"):
        encode_conversation(conv, TOKENIZERS[True], get_template("smollm2"), has_image=False)
