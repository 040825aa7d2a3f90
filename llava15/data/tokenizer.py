"""Tokenizers of LLaVA checkpoints, and the official image-token helpers.

- `Tokenizer`: the protocol the rest of the package codes against.
- `load_tokenizer(directory)`: `SentencePieceTokenizer` for a `tokenizer.model` (the official
  stack's slow `LlamaTokenizer` rules), else `HFTokenizer` for a `tokenizer.json`.
- `save_tokenizer(...)`: copy the files, optionally adding tokens (llava-hf's `<image>`, `<pad>`).
- `tokenizer_image_token(...)`: `llava.mm_utils.tokenizer_image_token` (chunk-wise tokenization
  around `<image>`, one `-200` sentinel per image).
- `expand_image_tokens(...)`: each sentinel → `num_image_tokens` positions (labels ignored).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Protocol

from llava15.config import DEFAULT_IMAGE_TOKEN, IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava15.data.hf_tokenizer import HFTokenizer
from llava15.data.spm_tokenizer import SentencePieceTokenizer

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json")


class Tokenizer(Protocol):
    """What the data layer, the engine and the server need from a tokenizer.

    `encode(text)` equals the official `tokenizer(text).input_ids` (BOS per the checkpoint's
    config; `add_bos=False` is `add_special_tokens=False`). `decode` equals `tokenizer.decode`
    and is cheap (no file I/O), so streaming can decode growing id lists. `vocab_size` is
    `len(tokenizer)`, added tokens included; `added_tokens` maps added-token text to id.
    `continuation=True` (only when `supports_continuation`) encodes text that continues a
    longer string at a whitespace boundary, for segment-wise label construction.
    """

    legacy: bool
    vocab_size: int
    added_tokens: dict[str, int]
    supports_continuation: bool
    directory: Path

    @property
    def bos_token_id(self) -> int | None: ...

    @property
    def eos_token_id(self) -> int | None: ...

    @property
    def unk_token_id(self) -> int | None: ...

    @property
    def pad_token_id(self) -> int | None: ...

    def encode(self, text: str, add_bos: bool = True, continuation: bool = False) -> list[int]: ...

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str: ...

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]: ...


def load_tokenizer(directory: str | Path, legacy: bool | None = None) -> Tokenizer:
    """The tokenizer stored in `directory` (`tokenizer.model` preferred, as the official code
    loads the slow tokenizer). `legacy` overrides the config's value (SentencePiece only).

    Raises FileNotFoundError naming the directory and the files looked for.
    """
    directory = Path(directory)
    if (directory / "tokenizer.model").is_file():
        return SentencePieceTokenizer(directory, legacy=legacy)
    if (directory / "tokenizer.json").is_file():
        return HFTokenizer(directory)
    raise FileNotFoundError(f"{directory}: no tokenizer found (looked for tokenizer.model and tokenizer.json)")


def _added_entry(content: str) -> dict:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True}


def save_tokenizer(tokenizer: Tokenizer, directory: str | Path,
                   extra_added_tokens: dict[str, int] | None = None, pad_token: str | None = "<pad>") -> None:
    """Copy `tokenizer`'s files into `directory`, optionally adding special tokens.

    Extra tokens are written the way transformers 4.37 saves `add_tokens(..., special_tokens=
    True)` + `add_special_tokens({"pad_token": "<pad>"})` (the llava-hf conversion):
    `added_tokens_decoder` entries, `additional_special_tokens`, `added_tokens.json`, and the
    token named `pad_token` (if among the extras) as the pad token. `AutoTokenizer` then loads
    them with these ids. Ids must not clash with existing ones and must follow the vocabulary
    without gaps (transformers requires it).
    """
    src, out = Path(tokenizer.directory), Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).is_file() and (src / name).resolve() != (out / name).resolve():
            shutil.copyfile(src / name, out / name)
    if not extra_added_tokens:
        return
    _check_extra_ids(tokenizer, extra_added_tokens)
    cfg_path = out / "tokenizer_config.json"
    config = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    decoder = config.setdefault("added_tokens_decoder", {})
    for content, idx in tokenizer.added_tokens.items():  # keep existing ones explicit
        decoder.setdefault(str(idx), _added_entry(content))
    specials = [t for t in extra_added_tokens if t != pad_token]
    for content, idx in extra_added_tokens.items():
        decoder[str(idx)] = _added_entry(content)
    config["added_tokens_decoder"] = dict(sorted(decoder.items(), key=lambda kv: int(kv[0])))
    extra = list(config.get("additional_special_tokens") or [])
    config["additional_special_tokens"] = extra + [t for t in specials if t not in extra]
    if pad_token in extra_added_tokens:
        config["pad_token"] = pad_token
    cfg_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    map_path = out / "special_tokens_map.json"
    special_map = json.loads(map_path.read_text(encoding="utf-8")) if map_path.is_file() else {}
    special_map["additional_special_tokens"] = config["additional_special_tokens"]
    if pad_token in extra_added_tokens:
        special_map["pad_token"] = pad_token
    map_path.write_text(json.dumps(special_map, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    added_path = out / "added_tokens.json"
    added = json.loads(added_path.read_text(encoding="utf-8")) if added_path.is_file() else {}
    added.update(extra_added_tokens)
    added_path.write_text(json.dumps(added, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if (out / "tokenizer.json").is_file() and not (out / "tokenizer.model").is_file():
        _add_to_tokenizer_json(out / "tokenizer.json", extra_added_tokens)


def _check_extra_ids(tokenizer: Tokenizer, extra: dict[str, int]) -> None:
    taken = {i: t for t, i in tokenizer.added_tokens.items()}
    new = []
    for content, idx in extra.items():
        if content in tokenizer.added_tokens:
            if tokenizer.added_tokens[content] != idx:
                raise ValueError(f"extra token {content!r}: already present with id {tokenizer.added_tokens[content]}")
            continue
        if idx in taken or idx < tokenizer.vocab_size:
            raise ValueError(f"extra token {content!r}: id {idx} is already used (vocab_size {tokenizer.vocab_size})")
        new.append(idx)
    if sorted(new) != list(range(tokenizer.vocab_size, tokenizer.vocab_size + len(new))):
        raise ValueError(f"extra token ids {sorted(new)} must continue the vocabulary from "
                         f"{tokenizer.vocab_size} without gaps")


def _add_to_tokenizer_json(path: Path, extra: dict[str, int]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    present = {t["content"] for t in data.get("added_tokens", [])}
    for content, idx in extra.items():
        if content not in present:
            data.setdefault("added_tokens", []).append({"id": idx, **_added_entry(content)})
    path.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")


def tokenizer_image_token(prompt: str, tokenizer: Tokenizer,
                          image_token_index: int = IMAGE_TOKEN_INDEX) -> list[int]:
    """`llava.mm_utils.tokenizer_image_token`: tokenize the chunks between `<image>`s separately.

    If the first chunk starts with BOS, BOS is emitted once and dropped from every chunk; one
    `image_token_index` goes between consecutive chunks.
    """
    chunks = [tokenizer.encode(chunk) for chunk in prompt.split(DEFAULT_IMAGE_TOKEN)]
    offset = 1 if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id else 0
    input_ids = chunks[0][:offset]
    for k, chunk in enumerate(chunks):
        if k > 0:
            input_ids.append(image_token_index)
        input_ids += chunk[offset:]
    return input_ids


def expand_image_tokens(input_ids: list[int], labels: list[int] | None, image_token_index: int,
                        num_image_tokens: int) -> tuple[list[int], list[int] | None]:
    """Each `image_token_index` becomes `num_image_tokens` copies; their labels are IGNORE_INDEX.

    This is where the official model splices the image features (576 for ViT-L/14 at 336 px).
    """
    if labels is not None and len(labels) != len(input_ids):
        raise ValueError(f"labels has length {len(labels)}, input_ids {len(input_ids)}")
    if num_image_tokens < 1:
        raise ValueError(f"num_image_tokens must be positive, got {num_image_tokens}")
    ids_out: list[int] = []
    labels_out: list[int] | None = None if labels is None else []
    for k, idx in enumerate(input_ids):
        n = num_image_tokens if idx == image_token_index else 1
        ids_out += [idx] * n
        if labels_out is not None:
            labels_out += [IGNORE_INDEX] * n if idx == image_token_index else [labels[k]]
    return ids_out, labels_out


__all__ = ["Tokenizer", "SentencePieceTokenizer", "HFTokenizer", "load_tokenizer", "save_tokenizer",
           "tokenizer_image_token", "expand_image_tokens", "TOKENIZER_FILES"]
