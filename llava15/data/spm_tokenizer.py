"""`SentencePieceTokenizer`: the slow `LlamaTokenizer` of transformers 4.37 over `sentencepiece`.

The official LLaVA stack tokenizes with `AutoTokenizer.from_pretrained(..., use_fast=False)`,
i.e. the slow `LlamaTokenizer`. Its rules, reproduced here (goldens: tests/test_tokenizer.py):

- Added tokens (`<s>`, `</s>`, `<unk>`, llava-hf's `<image>`, ...) are cut out of the text first.
- `legacy=True`: every remaining chunk is encoded by SentencePiece with its dummy prefix, so a
  chunk right after `</s>` starts with `▁` as if it began the text.
- `legacy=False`: SentencePiece runs *without* the dummy prefix; instead one `▁` is prepended to
  the whole text (any `▁` in the text becoming a space). A chunk that starts with a space is
  encoded as `"<unk>" + chunk` and the pieces of `"<unk>"` dropped (SentencePiece would
  otherwise treat the leading space differently). A lone leading `▁` before a special token is
  dropped.
- BOS / EOS per `add_bos_token` / `add_eos_token` of `tokenizer_config.json`.
"""

from __future__ import annotations

from pathlib import Path

from llava15.data.tokenizer_files import (AddedToken, AddedTokenSplitter, SpecialTokenIds,
                                          TokenizerSettings, clean_up_tokenization, read_settings)

SPIECE_UNDERLINE = "\u2581"
# A serialized `NormalizerSpec{add_dummy_prefix: false}` as ModelProto field 3. Protobuf merges a
# repeated embedded message field, so appending it equals transformers' `MergeFrom` edit
# without needing the protobuf package.
_NO_DUMMY_PREFIX = b"\x1a\x02\x18\x00"


class SentencePieceTokenizer(SpecialTokenIds):
    """A LLaMA-style `tokenizer.model` directory, tokenized as the slow `LlamaTokenizer` does.

    `legacy` overrides `tokenizer_config.json`'s value (as `from_pretrained(legacy=...)` does).
    """

    def __init__(self, path: str | Path, legacy: bool | None = None) -> None:
        import sentencepiece as spm  # heavy import kept out of module import time

        path = Path(path)
        self.directory = path if path.is_dir() else path.parent
        model_file = path / "tokenizer.model" if path.is_dir() else path
        if not model_file.is_file():
            raise FileNotFoundError(f"{model_file}: SentencePiece model not found")
        proto = model_file.read_bytes()
        self.settings: TokenizerSettings = read_settings(self.directory)
        self.legacy = self.settings.legacy if legacy is None else legacy
        # `_sp_prefix`: the model as stored (dummy prefix on for LLaMA); `_sp_plain`: without it.
        self._sp_prefix = spm.SentencePieceProcessor(model_proto=proto)
        self._sp_plain = spm.SentencePieceProcessor(model_proto=proto + _NO_DUMMY_PREFIX)
        self._sp = self._sp_prefix if self.legacy else self._sp_plain  # the official `sp_model`
        self._init_vocab()

    def _init_vocab(self) -> None:
        s, sp = self.settings, self._sp
        n = sp.get_piece_size()
        self.added_tokens: dict[str, int] = {t.content: t.id for t in s.added}
        for name in s.special_tokens:  # special tokens named only by string are added tokens too
            if name not in self.added_tokens:
                idx = sp.piece_to_id(name)
                if sp.id_to_piece(idx) != name:
                    raise ValueError(f"{self.directory}: special token {name!r} is neither in "
                                     "added_tokens_decoder nor in the SentencePiece vocabulary")
                self.added_tokens[name] = idx
        flags = {t.content: t for t in s.added}
        self._added = {c: flags.get(c, AddedToken(c, i)) for c, i in self.added_tokens.items()}
        if any(t.single_word for t in self._added.values()):
            raise NotImplementedError(f"{self.directory}: added tokens with single_word=true are not supported")
        self._splitter = AddedTokenSplitter(self._added)
        self._id_to_added = {i: c for c, i in self.added_tokens.items()}
        self._special_ids = {self.added_tokens[t] for t in s.special_tokens}
        # `legacy_added_tokens` of `_decode`: added tokens that are not special (plus additional
        # special tokens beyond the vocabulary) are decoded as separate sub-texts.
        self._separate = ({c for c in self.added_tokens if c not in s.special_tokens}
                          | {t for t in s.additional_special_tokens if self.added_tokens[t] >= n})
        self._n_pieces = n
        self.vocab_size = len({*map(sp.id_to_piece, range(n)), *self.added_tokens})
        self._unk_len = len(self._sp_plain.encode(s.unk_token or "")) if s.unk_token else 0
        space = sp.piece_to_id(SPIECE_UNDERLINE)
        self._space_id = space if sp.id_to_piece(space) == SPIECE_UNDERLINE else None

    # -- ids of special tokens -------------------------------------------------------------
    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.added_tokens.get(token)

    # -- encoding ----------------------------------------------------------------------------
    supports_continuation = True

    def encode(self, text: str, add_bos: bool = True, continuation: bool = False) -> list[int]:
        """`tokenizer(text).input_ids` (`add_bos=False`: `add_special_tokens=False`).

        `continuation=True` encodes text that continues a longer string at a whitespace
        boundary (no BOS, no dummy / `▁` prefix): concatenating such encodings of segments
        equals encoding the whole string, which is how labels are built segment by segment.
        """
        ids = self._tokenize(text, continuation)
        if add_bos and not continuation:
            if self.settings.add_bos_token and self.bos_token_id is not None:
                ids = [self.bos_token_id, *ids]
            if self.settings.add_eos_token and self.eos_token_id is not None:
                ids.append(self.eos_token_id)
        return ids

    def _tokenize(self, text: str, continuation: bool) -> list[int]:
        if not self.legacy and text:
            text = text.replace(SPIECE_UNDERLINE, " ")
            if not continuation:
                text = SPIECE_UNDERLINE + text
        parts = self._splitter.split(text)
        ids: list[int] = []
        for k, part in enumerate(parts):
            if isinstance(part, AddedToken):
                ids.append(part.id)
            else:
                ids += self._encode_chunk(part, continuation and k == 0)
        # Official: drop tokens[0] when it is "▁" and tokens[1] a special token, which happens
        # exactly when the text starts with a special token (the first chunk is the "▁" added above).
        if (not self.legacy and not continuation and len(parts) > 1 and parts[0] == SPIECE_UNDERLINE
                and isinstance(parts[1], AddedToken) and parts[1].content in self.settings.special_tokens
                and ids[0] == self._space_id):
            ids = ids[1:]
        return ids

    def _encode_chunk(self, chunk: str, mid_string: bool) -> list[int]:
        """One chunk between added tokens (`LlamaTokenizer._tokenize`)."""
        if mid_string:  # inside a longer chunk: SentencePiece sees no start of text here
            return self._sp_plain.encode(chunk)
        if self.legacy or not chunk.startswith((SPIECE_UNDERLINE, " ")):
            return self._sp.encode(chunk)
        ids = self._sp_plain.encode(self.settings.unk_token + chunk)
        return ids[self._unk_len:] if len(ids) >= self._unk_len else ids

    # -- decoding ----------------------------------------------------------------------------
    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        """Piece strings (added tokens by their content). ValueError for ids outside the vocabulary."""
        out = []
        for i in ids:
            token = self._id_to_added.get(i)
            if token is None:
                if not 0 <= i < self._n_pieces:
                    raise ValueError(f"token id {i} is outside the vocabulary of {self.directory} "
                                     f"({self._n_pieces} pieces, added ids {sorted(self._id_to_added)})")
                token = self._sp.id_to_piece(i)
            out.append(token)
        return out

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        """`tokenizer.decode(ids, skip_special_tokens=...)` of the slow tokenizer (4.37)."""
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special_ids]
        sub_texts, current = [], []
        for token in self.convert_ids_to_tokens(ids):
            if token in self._separate:
                if current:
                    text = self._tokens_to_string(current)
                    if text:
                        sub_texts.append(text)
                    current = []
                sub_texts.append(token)
            else:
                current.append(token)
        if current:
            sub_texts.append(self._tokens_to_string(current))
        # `_decode`'s spaces_between_special_tokens defaults to True (the init value is unused).
        text = " ".join(sub_texts)
        if self.settings.clean_up_tokenization_spaces:
            text = clean_up_tokenization(text)
        return text

    def _tokens_to_string(self, tokens: list[str]) -> str:
        """`LlamaTokenizer.convert_tokens_to_string`."""
        if tokens[0].startswith(SPIECE_UNDERLINE):
            tokens = [tokens[0][1:], *tokens[1:]]
        specials = self.settings.special_tokens
        out, current, prev_is_special = "", [], False
        for i, token in enumerate(tokens):
            if token in specials:
                if not prev_is_special and i != 0 and self.legacy:
                    out += " "
                out += self._sp.decode_pieces(current) + token
                prev_is_special, current = True, []
            else:
                current.append(token)
                prev_is_special = False
        return out + self._sp.decode_pieces(current)


def is_sentencepiece_dir(directory: Path) -> bool:
    return (directory / "tokenizer.model").is_file()


__all__ = ["SentencePieceTokenizer", "SPIECE_UNDERLINE", "is_sentencepiece_dir"]
