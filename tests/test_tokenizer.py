"""Tokenizers against the official stack's slow LlamaTokenizer (goldens from make_text_golden.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llava15.config import IGNORE_INDEX
from llava15.data.tokenizer import (HFTokenizer, SentencePieceTokenizer, expand_image_tokens, load_tokenizer,
                                    save_tokenizer, tokenizer_image_token)

GOLDEN = Path(__file__).parent / "golden"
TOKENIZER_DIR = GOLDEN / "tokenizer"
LEGACY = [True, False]


def golden(legacy: bool) -> dict:
    name = f"tokenizer_legacy_{'true' if legacy else 'false'}.json"
    return json.loads((GOLDEN / "text" / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=LEGACY, ids=["legacy", "non_legacy"])
def case(request):
    return load_tokenizer(TOKENIZER_DIR, legacy=request.param), golden(request.param)


def test_special_ids_and_size(case):
    tok, g = case
    assert isinstance(tok, SentencePieceTokenizer)
    assert (tok.vocab_size, tok.legacy, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == \
        (g["vocab_size"], g["legacy"], g["bos"], g["eos"], g["pad"])


def test_encode_matches_slow_llama_tokenizer(case):
    tok, g = case
    for r in g["encode"]:
        assert tok.encode(r["text"]) == r["ids"], r["text"]
        assert tok.encode(r["text"], add_bos=False) == r["ids_no_bos"], r["text"]
        assert tok.convert_ids_to_tokens(r["ids"]) == r["tokens"], r["text"]


def test_decode_matches_slow_llama_tokenizer(case):
    tok, g = case
    for r in g["decode"]:
        assert tok.decode(r["ids"], skip_special_tokens=True) == r["skip"] == r["batch_skip"], r["ids"]
        assert tok.decode(r["ids"], skip_special_tokens=False) == r["keep"], r["ids"]
        for k, text in enumerate(r.get("prefixes", [])):  # what streaming sees
            assert tok.decode(r["ids"][:k]) == text, r["ids"][:k]


def test_tokenizer_image_token_matches_mm_utils(case):
    tok, g = case
    for r in g["image_token"]:
        assert tokenizer_image_token(r["prompt"], tok) == r["ids"], r["prompt"]


def test_legacy_flag_changes_text_after_eos():
    # Independent check of the rule itself: only non-legacy drops the dummy "▁" after </s>.
    a, b = (load_tokenizer(TOKENIZER_DIR, legacy=x) for x in LEGACY)
    assert a.encode("x</s>USER") != b.encode("x</s>USER")
    assert a.convert_ids_to_tokens(a.encode("</s>USER", add_bos=False))[:2] == ["</s>", "▁"]


def test_continuation_concatenates_to_whole_string(case):
    tok, _ = case
    text = "A chat. USER: What colour? ASSISTANT: The star is red.</s>USER: 12 dots? ASSISTANT: 3</s>"
    cuts = [text.index(" The"), text.index("USER: 12"), text.index(" 3</s>")]
    pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
    ids = tok.encode(pieces[0])
    for k, piece in enumerate(pieces[1:], start=1):
        if pieces[k - 1].endswith("</s>"):  # after an added token: encode with it, drop it
            ids += tok.encode("</s>" + piece, continuation=True)[1:]
        else:
            ids += tok.encode(piece, continuation=True)
    assert ids == tok.encode(text)


@pytest.mark.parametrize("legacy", LEGACY, ids=["legacy", "non_legacy"])
def test_llava_hf_layout_added_tokens(tmp_path, legacy):
    g = golden(legacy)["llava_hf"]
    save_tokenizer(load_tokenizer(TOKENIZER_DIR), tmp_path, extra_added_tokens=g["added"])
    tok = load_tokenizer(tmp_path, legacy=legacy)
    assert {k: tok.added_tokens[k] for k in g["added"]} == g["added"]
    assert (tok.vocab_size, tok.pad_token_id) == (g["vocab_size"], g["pad"])
    for r in g["encode"]:
        assert tok.encode(r["text"]) == r["ids"], r["text"]
    for r in g["decode"]:
        assert tok.decode(r["ids"]) == r["skip"], r["ids"]
        assert tok.decode(r["ids"], skip_special_tokens=False) == r["keep"], r["ids"]


def test_saved_llava_hf_layout_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    save_tokenizer(load_tokenizer(TOKENIZER_DIR), tmp_path, extra_added_tokens={"<image>": 512, "<pad>": 513})
    ours = load_tokenizer(tmp_path)
    for use_fast in (False, True):
        theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path), use_fast=use_fast)
        assert theirs.convert_tokens_to_ids(["<image>", "<pad>"]) == [512, 513]
        assert (len(theirs), theirs.pad_token_id) == (514, 513)
        assert theirs("USER: <image>\nWhat is it?").input_ids == ours.encode("USER: <image>\nWhat is it?")


def test_save_rejects_clashing_ids(tmp_path):
    tok = load_tokenizer(TOKENIZER_DIR)
    with pytest.raises(ValueError, match="already used"):
        save_tokenizer(tok, tmp_path, extra_added_tokens={"<image>": 5})
    with pytest.raises(ValueError, match="without gaps"):
        save_tokenizer(tok, tmp_path, extra_added_tokens={"<image>": 600})


def test_hf_tokenizer_json(tmp_path):
    transformers = pytest.importorskip("transformers")
    fast = transformers.AutoTokenizer.from_pretrained(str(TOKENIZER_DIR), use_fast=True, legacy=True)
    fast.save_pretrained(str(tmp_path))
    (tmp_path / "tokenizer.model").unlink()
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, HFTokenizer) and not tok.supports_continuation
    assert (tok.bos_token_id, tok.eos_token_id, tok.vocab_size) == (1, 2, len(fast))
    for text in ["hello world", "USER: What colour is it? ASSISTANT: 12 red stars.</s>", "line\nbreak"]:
        assert tok.encode(text) == fast(text).input_ids
        assert tok.encode(text, add_bos=False) == fast(text, add_special_tokens=False).input_ids
        ids = fast(text).input_ids
        assert tok.decode(ids) == fast.decode(ids, skip_special_tokens=True)


def test_missing_files_error_names_directory_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.model and tokenizer\.json") as err:
        load_tokenizer(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_bad_config_error_names_file_and_key(tmp_path):
    shutil.copyfile(TOKENIZER_DIR / "tokenizer.model", tmp_path / "tokenizer.model")
    (tmp_path / "tokenizer_config.json").write_text('{"bos_token": 3}')
    with pytest.raises(ValueError, match="tokenizer_config.json: bos_token"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"bos_token": ')
    with pytest.raises(ValueError, match="tokenizer_config.json: invalid JSON at line 1"):
        load_tokenizer(tmp_path)


def test_expand_image_tokens():
    ids, labels = expand_image_tokens([1, -200, 5, -200, 6], [IGNORE_INDEX, IGNORE_INDEX, 5, IGNORE_INDEX, 6], -200, 3)
    assert ids == [1, -200, -200, -200, 5, -200, -200, -200, 6]
    assert labels == [IGNORE_INDEX] * 4 + [5] + [IGNORE_INDEX] * 3 + [6]
    assert expand_image_tokens([1, 2], None, -200, 4) == ([1, 2], None)
    with pytest.raises(ValueError, match="length"):
        expand_image_tokens([1, 2], [1], -200, 4)


def test_decode_rejects_ids_outside_vocabulary():
    tok = load_tokenizer(TOKENIZER_DIR)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([1, -200, 5])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([512])


@pytest.mark.parametrize("legacy", LEGACY, ids=["legacy", "non_legacy"])
def test_decode_clean_up_tokenization_spaces(tmp_path, legacy):
    for name in ("tokenizer.model", "special_tokens_map.json"):
        shutil.copyfile(TOKENIZER_DIR / name, tmp_path / name)
    config = json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text(encoding="utf-8"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "clean_up_tokenization_spaces": True}))
    tok = load_tokenizer(tmp_path, legacy=legacy)
    for r in golden(legacy)["decode_cleanup"]:
        assert tok.decode(r["ids"]) == r["skip"], r["ids"]


def test_added_token_splitter_rules():
    # The rules of PreTrainedTokenizer.tokenize, written out: leftmost-longest match, lstrip/rstrip.
    from llava15.data.tokenizer_files import AddedToken, AddedTokenSplitter
    img, im, eat = AddedToken("<image>", 5), AddedToken("<im", 6), AddedToken("<e>", 7, lstrip=True, rstrip=True)
    splitter = AddedTokenSplitter({t.content: t for t in (img, im, eat)})
    assert splitter.split("a<image>b<imx") == ["a", img, "b", im, "x"]
    assert splitter.split("a  <e>  b") == ["a", eat, "b"]
    assert splitter.split(" <e> ") == [eat]
    assert splitter.split("") == [] and AddedTokenSplitter({}).split("ab") == ["ab"]
