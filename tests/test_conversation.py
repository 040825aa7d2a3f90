"""Prompt templates against the official `conv.get_prompt()` (goldens from make_text_golden.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llava15.data.conversation import (TEMPLATES, build_question_prompt, get_template,
                                       preprocess_multimodal, render_prompt)

GOLDEN = json.loads((Path(__file__).parent / "golden" / "text" / "prompts.json").read_text(encoding="utf-8"))
OFFICIAL_KEY = {"chatml": "chatml_direct"}
# Templates the official LLaVA-1.5 code does not have (no golden): checked elsewhere.
NOT_OFFICIAL = {"smollm2"}  # test_smollm2_renders_chatml_blocks; tests/test_smol.py (its chat template)


def _template(official_key: str):
    return get_template(official_key)


@pytest.mark.parametrize("record", GOLDEN["render"], ids=lambda r: f"{r['template']}-{r['case']}")
def test_render_prompt_matches_official(record):
    template = _template(record["template"])
    messages = [tuple(m) for m in record["messages"]]
    assert template.stop_str == record["stop_str"]
    if "error" in record:
        with pytest.raises(ValueError):
            render_prompt(template, messages)
    else:
        assert render_prompt(template, messages) == record["prompt"]


@pytest.mark.parametrize("record", GOLDEN["question"],
                         ids=lambda r: f"{r['template']}-{r['with_image']}-{r['question'][:6]}")
def test_build_question_prompt_matches_model_vqa_loader(record):
    template = _template(record["template"])
    assert build_question_prompt(template, record["question"], record["with_image"]) == record["prompt"]


def test_every_template_is_covered_by_goldens():
    covered = {r["template"] for r in GOLDEN["render"]}
    assert {OFFICIAL_KEY.get(k, k) for k in TEMPLATES if k not in NOT_OFFICIAL} <= covered
    assert TEMPLATES["chatml"].system == TEMPLATES["chatml_direct"].system
    assert TEMPLATES["v1"].system == TEMPLATES["vicuna_v1"].system != TEMPLATES["llava_v1"].system


def test_smollm2_renders_chatml_blocks():
    # LLaVA-NeXT's CHATML rule written out by hand (SmolLM2's own chat template renders the same:
    # tests/test_smol.py checks it against the packaged model's template).
    template = get_template("smollm2")
    system = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    assert render_prompt(template, [("user", "<image>\nHi?"), ("assistant", "Yes."), ("user", "And?"),
                                    ("assistant", None)]) == (
        system + "<|im_start|>user\n<image>\nHi?<|im_end|>\n<|im_start|>assistant\nYes.<|im_end|>\n"
        "<|im_start|>user\nAnd?<|im_end|>\n<|im_start|>assistant\n")
    assert build_question_prompt(template, "Q", True) == (
        system + "<|im_start|>user\n<image>\nQ<|im_end|>\n<|im_start|>assistant\n")
    assert template.stop_str == "<|im_end|>"


def test_unknown_template_names_known_ones():
    with pytest.raises(KeyError, match="vicuna_v1"):
        get_template("vicuna_v2")


def test_roles_must_alternate():
    with pytest.raises(ValueError, match="message 1"):
        render_prompt(get_template("vicuna_v1"), [("user", "a"), ("user", "b")])
    with pytest.raises(ValueError, match="message 0"):
        render_prompt(get_template("vicuna_v1"), [("assistant", "a")])


def test_preprocess_multimodal_moves_image_to_front_without_mutation():
    # Independent reference: the rule of docs/official-behaviour.md, 'Where the image goes in a
    # turn', written out by hand.
    record = [{"from": "human", "value": " Look:\n<image> what? <image>"}, {"from": "gpt", "value": "x <image>"}]
    before = json.dumps(record)
    out = preprocess_multimodal(record)
    assert json.dumps(record) == before
    assert out == [{"from": "human", "value": "<image>\nLook:\n what?"}, {"from": "gpt", "value": "<image>\nx"}]
    with pytest.raises(ValueError, match=r"conversations\[0\]"):
        preprocess_multimodal([{"from": "human", "value": None}])
