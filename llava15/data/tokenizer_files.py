"""Reading a Hugging Face tokenizer directory's JSON files, and splitting text on added tokens.

Layer 1, standard library only. `read_settings` gathers what the slow `LlamaTokenizer` of
transformers 4.37 (the official LLaVA stack) takes from `tokenizer_config.json`,
`special_tokens_map.json` and `added_tokens.json`; `AddedTokenSplitter` is its
`PreTrainedTokenizer.tokenize` splitting (added tokens are cut out before SentencePiece runs,
with their `lstrip`/`rstrip` flags).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
# `PreTrainedTokenizerBase.clean_up_tokenization`, applied when clean_up_tokenization_spaces is set.
_CLEANUPS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def clean_up_tokenization(text: str) -> str:
    """Remove the spaces before punctuation and English contractions (transformers' clean-up)."""
    for old, new in _CLEANUPS:
        text = text.replace(old, new)
    return text


@dataclass(frozen=True)
class AddedToken:
    """A token matched in the text before SentencePiece (flags as in `tokenizers.AddedToken`)."""

    content: str
    id: int
    special: bool = True
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False


@dataclass(frozen=True)
class TokenizerSettings:
    """The settings of one tokenizer directory (defaults: the slow `LlamaTokenizer`'s).

    `added` lists tokens with known ids (from `added_tokens_decoder` / `added_tokens.json`);
    special tokens named only by string get their id from the vocabulary when loaded.
    """

    add_bos_token: bool = True
    add_eos_token: bool = False
    legacy: bool = True  # LlamaTokenizer: legacy=None means legacy behaviour
    bos_token: str | None = "<s>"
    eos_token: str | None = "</s>"
    unk_token: str | None = "<unk>"
    pad_token: str | None = None
    additional_special_tokens: tuple[str, ...] = ()
    clean_up_tokenization_spaces: bool = False
    added: tuple[AddedToken, ...] = field(default_factory=tuple)
    config: dict = field(default_factory=dict, compare=False)  # tokenizer_config.json as read

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """`all_special_tokens`: bos, eos, unk, pad and the additional special tokens."""
        named = [getattr(self, k) for k in SPECIAL_KEYS]
        return tuple(dict.fromkeys(t for t in [*named, *self.additional_special_tokens] if t))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _token_text(value, where: str) -> str | None:
    """A special token entry: a string, an AddedToken dict with "content", or null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise ValueError(f"{where}: expected a string or an object with 'content', got {value!r}")


def read_settings(directory: Path) -> TokenizerSettings:
    """Settings from the JSON files in `directory` (each file optional).

    tokenizer_config.json wins over special_tokens_map.json, as in `from_pretrained`.
    Raises ValueError naming the file and key for malformed entries.
    """
    cfg_path, map_path = directory / "tokenizer_config.json", directory / "special_tokens_map.json"
    config = _read_json(cfg_path) if cfg_path.is_file() else {}
    special_map = _read_json(map_path) if map_path.is_file() else {}
    kwargs: dict = {}
    for key in SPECIAL_KEYS:
        if config.get(key) is not None:
            kwargs[key] = _token_text(config[key], f"{cfg_path}: {key}")
        elif key in special_map:
            kwargs[key] = _token_text(special_map[key], f"{map_path}: {key}")
    extra = config.get("additional_special_tokens") or special_map.get("additional_special_tokens") or []
    kwargs["additional_special_tokens"] = tuple(
        _token_text(t, f"{directory}: additional_special_tokens[{i}]") for i, t in enumerate(extra))
    for key in ("add_bos_token", "add_eos_token", "clean_up_tokenization_spaces"):
        if key in config:
            kwargs[key] = bool(config[key])
    if config.get("legacy") is not None:
        kwargs["legacy"] = bool(config["legacy"])
    added: dict[int, AddedToken] = {}
    for key, entry in (config.get("added_tokens_decoder") or {}).items():
        where = f"{cfg_path}: added_tokens_decoder[{key!r}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("content"), str) or not str(key).isdigit():
            raise ValueError(f"{where}: expected an integer key and an object with 'content'")
        added[int(key)] = AddedToken(entry["content"], int(key), bool(entry.get("special", False)),
                                     bool(entry.get("lstrip", False)), bool(entry.get("rstrip", False)),
                                     bool(entry.get("single_word", False)))
    legacy_added = directory / "added_tokens.json"
    if legacy_added.is_file():
        for content, idx in _read_json(legacy_added).items():
            if not isinstance(idx, int):
                raise ValueError(f"{legacy_added}: id of {content!r} must be an integer, got {idx!r}")
            # Old-format entries are plain added tokens unless named as special tokens.
            named = {kwargs.get(k) for k in SPECIAL_KEYS} | set(kwargs["additional_special_tokens"])
            added.setdefault(idx, AddedToken(content, idx, special=content in named))
    return TokenizerSettings(**kwargs, added=tuple(added[i] for i in sorted(added)), config=config)


class SpecialTokenIds:
    """The special-token ids both tokenizer classes expose, from `settings` and their `_id`."""

    settings: TokenizerSettings

    def _id(self, token: str | None) -> int | None:
        raise NotImplementedError

    @property
    def bos_token_id(self) -> int | None:
        return self._id(self.settings.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self.settings.eos_token)

    @property
    def unk_token_id(self) -> int | None:
        return self._id(self.settings.unk_token)

    @property
    def pad_token_id(self) -> int | None:
        """The configured pad token, else unk (the official v1 training sets pad = unk)."""
        pad = self._id(self.settings.pad_token)
        return self.unk_token_id if pad is None else pad


class AddedTokenSplitter:
    """Cuts text into plain chunks and the added tokens it contains.

    As `PreTrainedTokenizer.tokenize` (its trie): the leftmost match wins, the longest token at
    that position first; `rstrip` eats whitespace on the token's right, `lstrip` on its left;
    empty chunks are dropped. The pattern is compiled once, so splitting is cheap.
    """

    def __init__(self, tokens: dict[str, AddedToken]) -> None:
        self.tokens = dict(tokens)
        alternatives = sorted(self.tokens, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, alternatives))) if alternatives else None

    def split(self, text: str) -> list[str | AddedToken]:
        if self._pattern is None or not text:
            return [text] if text else []
        parts: list[str | AddedToken] = []
        start = 0
        for match in self._pattern.finditer(text):
            parts += [text[start:match.start()], self.tokens[match.group()]]
            start = match.end()
        parts.append(text[start:])
        for k, part in enumerate(parts):
            if isinstance(part, AddedToken):
                if part.rstrip and k + 1 < len(parts) and isinstance(parts[k + 1], str):
                    parts[k + 1] = parts[k + 1].lstrip()
                if part.lstrip and k > 0 and isinstance(parts[k - 1], str):
                    parts[k - 1] = parts[k - 1].rstrip()
        return [p for p in parts if not isinstance(p, str) or p]
