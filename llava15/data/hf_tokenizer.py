"""`HFTokenizer`: a `tokenizer.json` checkpoint through the `tokenizers` library.

For checkpoints without a SentencePiece `tokenizer.model` (fast-only releases). BOS and EOS
follow `tokenizer_config.json`'s `add_bos_token` / `add_eos_token` when it sets them (as
`LlamaTokenizerFast` rewrites its post-processor from them), else the tokenizer.json
post-processor decides.
"""

from __future__ import annotations

from pathlib import Path

from llava15.data.tokenizer_files import (SpecialTokenIds, TokenizerSettings, clean_up_tokenization,
                                          read_settings)



class HFTokenizer(SpecialTokenIds):
    """A `tokenizer.json` directory (or file). `continuation` encoding is not supported."""

    supports_continuation = False

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer as _Tokenizer  # heavy import kept out of module import

        path = Path(path)
        self.directory = path if path.is_dir() else path.parent
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{file}: tokenizer.json not found")
        try:
            self._tk = _Tokenizer.from_file(str(file))
        except Exception as e:  # the library raises a bare Exception subclass with the parse error
            raise ValueError(f"{file}: cannot be read by the tokenizers library: {e}") from e
        self.settings: TokenizerSettings = read_settings(self.directory)
        self.legacy = self.settings.legacy
        self.added_tokens: dict[str, int] = {t.content: i for i, t in self._tk.get_added_tokens_decoder().items()}
        self.vocab_size = self._tk.get_vocab_size(with_added_tokens=True)

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self._tk.token_to_id(token)

    def encode(self, text: str, add_bos: bool = True, continuation: bool = False) -> list[int]:
        """`tokenizer(text).input_ids`; `add_bos=False` means `add_special_tokens=False`."""
        if continuation:
            raise NotImplementedError(f"{self.directory}: tokenizer.json checkpoints cannot encode "
                                      "continuations; check `supports_continuation` first")
        config = self.settings.config
        if not add_bos or ("add_bos_token" not in config and "add_eos_token" not in config):
            return self._tk.encode(text, add_special_tokens=add_bos).ids
        ids = self._tk.encode(text, add_special_tokens=False).ids
        if self.settings.add_bos_token and self.bos_token_id is not None:
            ids = [self.bos_token_id, *ids]
        if self.settings.add_eos_token and self.eos_token_id is not None:
            ids.append(self.eos_token_id)
        return ids

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self._tk.id_to_token(int(i)) for i in ids]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        """`PreTrainedTokenizerFast.decode`: the library's decode, then optional clean-up."""
        text = self._tk.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        if self.settings.clean_up_tokenization_spaces:
            text = clean_up_tokenization(text)
        return text
