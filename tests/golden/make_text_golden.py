"""Golden data for the text side of the data layer, made with the official LLaVA code.

Run from the repository root with the official-code venv (llava-torch 1.2.2.post1,
transformers 4.37.2, tokenizers 0.15.1, sentencepiece 0.1.99):

    /work/official/venv/bin/python tests/golden/make_text_golden.py

It writes `tests/golden/text/*.json`:
- `prompts.json`: `llava.conversation.conv_templates[key].get_prompt()` for message lists,
  and the prompt `llava/eval/model_vqa_loader.py` builds for a question.
- `tokenizer_legacy_{true,false}.json`: the slow `LlamaTokenizer` (`AutoTokenizer.from_pretrained(
  tests/golden/tokenizer, use_fast=False, legacy=...)`): `tokenizer(text).input_ids`, ids without
  special tokens, `convert_ids_to_tokens`, `decode(..., skip_special_tokens=...)`,
  `llava.mm_utils.tokenizer_image_token`, and the same with `<image>`/`<pad>` added as the
  llava-hf conversion adds them.
- `labels_legacy_{true,false}.json`: `llava.train.train.preprocess_multimodal` (when the record
  has an image) then `llava.train.train.preprocess` with `conversation_lib.default_conversation`
  and `tokenizer.pad_token` set as `train.py` sets them, plus whether the official code printed
  "tokenization mismatch".
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKENIZER_DIR = HERE / "tokenizer"
OUT = HERE / "text"

TEMPLATE_KEYS = ["vicuna_v1", "v1", "llava_v1", "plain", "v0_plain", "llava_llama_2",
                 "mistral_instruct", "chatml_direct"]

MESSAGE_CASES = {
    "one_turn_generation": [("user", "<image>\nWhat colour is the star?"), ("assistant", None)],
    "one_turn_answered": [("user", "What colour is the star?"), ("assistant", "Red.")],
    "two_turns_generation": [("user", "<image>\nWhat is this?"), ("assistant", "A red star."),
                             ("user", "How many points?"), ("assistant", None)],
    "two_turns_answered": [("user", "Hi there"), ("assistant", " 12 dots "),
                           ("user", "Sure?\n"), ("assistant", "Yes.")],
}

QUESTIONS = ["What colour is the circle?\nAnswer the question using a single word or phrase.",
             "  How many stars are there? "]

TRICKY_TEXTS = [
    "", " ", "  ", "hello", " hello", "hello ", "  two spaces", "line\nbreak", "\nstarts with newline",
    "ends with newline\n", "digits 12345 and 3.14", "There are 120 dots.", "a</s>b", "a </s> b",
    "</s>USER: hi", "USER: What colour?", "ASSISTANT: ", "x<s>y", "<unk>", "héllo wörld — ok",
    "日本語 ✓ emoji 😀", "tab\tseparated", "▁already▁escaped", "What is <image> here?", "USER:\n\n",
    "A chat between a curious human and an artificial intelligence assistant. USER: Hi ASSISTANT:",
]

IMAGE_PROMPTS = [
    "<image>", "<image>\nWhat is this?", "USER: <image>\nWhat colour? ASSISTANT:",
    "What is here?\n<image>", "a <image> b <image> c", "<image><image>", "no image at all",
]

DECODE_IDS = [
    [1, 2, 0], [], [1], [2], [29], [1, 100, 200, 300, 2], [3 + 0x0A, 3 + ord("a")], [3 + 0xC3, 3 + 0xA9],
    [3 + 0xC3], [3 + 0xE6, 3 + 0x97, 3 + 0xA5], [100, 2, 101, 1, 102],
]

LONG, SHORT = 2048, 64  # model_max_length: the official default, and one that truncates
LABEL_CASES = [
    ("single_turn", True, LONG, [{"from": "human", "value": "<image>\nWhat colour is the star?"},
                           {"from": "gpt", "value": "The star is red."}]),
    ("multi_turn_3", True, LONG, [{"from": "human", "value": "What colour is the star?\n<image>"},
                            {"from": "gpt", "value": "The star is red."},
                            {"from": "human", "value": "How many points does it have?"},
                            {"from": "gpt", "value": "It has 5 points."},
                            {"from": "human", "value": "Where is it?"},
                            {"from": "gpt", "value": "In the top left corner."}]),
    ("text_only", False, LONG, [{"from": "human", "value": "Tell me a colour."},
                          {"from": "gpt", "value": "Blue."},
                          {"from": "human", "value": "Another one?"},
                          {"from": "gpt", "value": "Green, then 42."}]),
    ("image_at_end", True, LONG, [{"from": "human", "value": "What shape is shown?\n<image>"},
                            {"from": "gpt", "value": "A circle."}]),
    ("image_in_later_turn", True, LONG, [{"from": "human", "value": "Hello"},
                                   {"from": "gpt", "value": "Hi."},
                                   {"from": "human", "value": "Now look: <image> what is it?"},
                                   {"from": "gpt", "value": "A square."}]),
    ("digit_answer", True, LONG, [{"from": "human", "value": "<image>\nHow many dots?"},
                            {"from": "gpt", "value": "3"}]),
    ("assistant_in_human_turn", True, LONG, [{"from": "human", "value": "<image>\nSay ASSISTANT: hi ASSISTANT: ok"},
                                       {"from": "gpt", "value": "Hi."}]),
    ("first_turn_gpt", True, LONG, [{"from": "gpt", "value": "I am ready."},
                              {"from": "human", "value": "<image>\nWhat colour is it?"},
                              {"from": "gpt", "value": "It is green."}]),
    ("first_turn_gpt_text_only", False, LONG, [{"from": "gpt", "value": "I am ready."},
                                         {"from": "human", "value": "Name a shape."},
                                         {"from": "gpt", "value": "A star."}]),
    ("newline_answer", False, LONG, [{"from": "human", "value": "List two colours."},
                               {"from": "gpt", "value": "\nred\nblue"}]),
    ("truncated_text_only", False, SHORT, [
        {"from": "human", "value": "Describe the picture in great detail, please. " * 3},
        {"from": "gpt", "value": "There is a red circle, a blue square and a green star. " * 3},
        {"from": "human", "value": "And then?"},
        {"from": "gpt", "value": "Nothing else."}]),
    ("truncated_mid_answer", False, SHORT, [
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "There is a red circle, a blue square and a green star. " * 3}]),
    ("long_image_sample", True, SHORT, [
        {"from": "human", "value": "<image>\nDescribe the picture in great detail, please. " * 2},
        {"from": "gpt", "value": "There is a red circle, a blue square and a green star. " * 3}]),
]
CAPTIONS = ["a red circle on a white background", "3 blue stars", " leading space", "two\nlines"]
VERSIONS_FOR_LABELS = ["v1", "llava_llama_2", "mistral_instruct", "chatml_direct"]


def load(legacy: bool, model_max_length: int = LONG):
    """The tokenizer as `train.py` builds it for a v1 run (slow, right padding, pad = unk)."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR), use_fast=False, legacy=legacy,
                                        model_max_length=model_max_length, padding_side="right")
    tok.pad_token = tok.unk_token
    return tok


def prompts() -> dict:
    from llava import conversation as conversation_lib
    out = {"render": [], "question": []}
    for key in TEMPLATE_KEYS:
        for case, messages in MESSAGE_CASES.items():
            conv = conversation_lib.conv_templates[key].copy()
            for role, text in messages:
                conv.append_message(conv.roles[0 if role == "user" else 1], text)
            record = {"template": key, "case": case, "messages": messages,
                      "stop_str": conv.sep2 if conv.sep_style == conversation_lib.SeparatorStyle.TWO else conv.sep}
            try:
                record["prompt"] = conv.get_prompt()
            except TypeError as e:  # PLAIN has sep2=None: an answered assistant turn cannot render
                record["error"] = repr(e)
            out["render"].append(record)
        for q in QUESTIONS:
            for with_image in (True, False):
                # model_vqa_loader.py (mm_use_im_start_end false); text-only: no image token.
                qs = "<image>" + "\n" + q if with_image else q
                conv = conversation_lib.conv_templates[key].copy()
                conv.append_message(conv.roles[0], qs)
                conv.append_message(conv.roles[1], None)
                out["question"].append({"template": key, "question": q, "with_image": with_image,
                                        "prompt": conv.get_prompt()})
    return out


def tokenizer_cases(tok) -> dict:
    from llava.mm_utils import tokenizer_image_token
    enc = [{"text": t, "ids": tok(t).input_ids, "ids_no_bos": tok(t, add_special_tokens=False).input_ids,
            "tokens": tok.convert_ids_to_tokens(tok(t).input_ids)} for t in TRICKY_TEXTS]
    dec = [{"ids": ids, "skip": tok.decode(ids, skip_special_tokens=True),
            "keep": tok.decode(ids, skip_special_tokens=False),
            "batch_skip": tok.batch_decode([ids], skip_special_tokens=True)[0]} for ids in DECODE_IDS]
    # Round trips of real encodings (what streaming decode sees), prefixes included.
    for t in TRICKY_TEXTS[3:12]:
        ids = tok(t).input_ids
        dec.append({"ids": ids, "skip": tok.decode(ids, skip_special_tokens=True),
                    "keep": tok.decode(ids, skip_special_tokens=False),
                    "batch_skip": tok.batch_decode([ids], skip_special_tokens=True)[0],
                    "prefixes": [tok.decode(ids[:k], skip_special_tokens=True) for k in range(len(ids) + 1)]})
    img = [{"prompt": p, "ids": tokenizer_image_token(p, tok)} for p in IMAGE_PROMPTS]
    # With clean_up_tokenization_spaces=true in tokenizer_config.json.
    cleanup = [{"ids": tok(t).input_ids, "skip": tok.decode(tok(t).input_ids, skip_special_tokens=True,
                                                           clean_up_tokenization_spaces=True)}
               for t in ["Hi , it 's red . Yes !", "I do n't know ' ok ' ?", "we 're , they 've"]]
    return {"vocab_size": len(tok), "legacy": tok.legacy, "bos": tok.bos_token_id, "eos": tok.eos_token_id,
            "pad": tok.pad_token_id, "encode": enc, "decode": dec, "image_token": img,
            "decode_cleanup": cleanup}


def added_token_cases(legacy: bool) -> dict:
    """The llava-hf layout: `<image>` and `<pad>` appended after the SentencePiece vocabulary."""
    from transformers import AddedToken
    tok = load(legacy)
    tok.add_tokens(AddedToken("<image>", special=True, normalized=False), special_tokens=True)
    tok.add_special_tokens({"pad_token": "<pad>"})
    texts = ["<image>", "USER: <image>\nWhat is it? ASSISTANT:", "a<image>b", "a <image> b", "<pad>x", "<image><image>"]
    n = len(tok) - 2
    ids_list = [[1, n, 100, 2], [n, n + 1, 100], [100, n, 101], [n + 1], [1, 100, n + 1, 2]]
    return {"added": {"<image>": tok.convert_tokens_to_ids("<image>"), "<pad>": tok.convert_tokens_to_ids("<pad>")},
            "vocab_size": len(tok), "pad": tok.pad_token_id,
            "encode": [{"text": t, "ids": tok(t).input_ids} for t in texts],
            "decode": [{"ids": ids, "skip": tok.decode(ids, skip_special_tokens=True),
                        "keep": tok.decode(ids, skip_special_tokens=False)} for ids in ids_list]}


def label_cases(legacy: bool) -> list[dict]:
    from llava import conversation as conversation_lib
    from llava.train import train
    out = []
    data_args = train.DataArguments(is_multimodal=True)
    data_args.mm_use_im_start_end = False  # set by train.py from model_args
    cases = [(v, *case) for v in VERSIONS_FOR_LABELS for case in LABEL_CASES]
    cases += [("plain", f"caption_{i}", True, LONG, [{"from": "human", "value": "<image>\nDescribe."},
                                               {"from": "gpt", "value": c}]) for i, c in enumerate(CAPTIONS)]
    for version, name, has_image, max_length, conversations in cases:
        conversation_lib.default_conversation = conversation_lib.conv_templates[version]
        tok = load(legacy, max_length)
        sources = [copy.deepcopy(conversations)]
        if has_image:
            sources = train.preprocess_multimodal(sources, data_args)
        after_multimodal = copy.deepcopy(sources[0])  # preprocess_plain edits it in place
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                result = train.preprocess(sources, tok, has_image=has_image)
        except AssertionError as e:  # e.g. roles that do not alternate
            out.append({"version": version, "name": name, "has_image": has_image, "conversations": conversations,
                        "model_max_length": max_length, "error": repr(e)})
            continue
        out.append({"version": version, "name": name, "has_image": has_image, "conversations": conversations,
                    "model_max_length": max_length,
                    "after_multimodal": after_multimodal,
                    "input_ids": [int(x) for x in result["input_ids"][0]],
                    "labels": [int(x) for x in result["labels"][0]],
                    "mismatch": "tokenization mismatch" in buf.getvalue()})
    return out


def dump(name: str, obj: dict | list) -> None:
    """JSON with one record per line: small files and readable diffs."""
    def block(value) -> str:
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return "[\n" + ",\n".join(json.dumps(v, ensure_ascii=False) for v in value) + "\n]"
        return json.dumps(value, ensure_ascii=False)
    if isinstance(obj, dict):
        text = "{\n" + ",\n".join(f"{json.dumps(k)}: {block(v)}" for k, v in obj.items()) + "\n}"
    else:
        text = block(obj)
    (OUT / name).write_text(text + "\n", encoding="utf-8")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    dump("prompts.json", prompts())
    for legacy in (True, False):
        tag = "true" if legacy else "false"
        data = tokenizer_cases(load(legacy))
        data["llava_hf"] = added_token_cases(legacy)
        dump(f"tokenizer_legacy_{tag}.json", data)
        dump(f"labels_legacy_{tag}.json", label_cases(legacy))
    print("wrote", sorted(p.name for p in OUT.iterdir()), file=sys.stderr)


if __name__ == "__main__":
    main()
