"""Token ids -> text: stop strings, and text deltas for streaming.

The whole answer is re-decoded at every token (SentencePiece decoding depends on neighbours:
a leading "▁" and byte-fallback pieces), stop strings are cut off, and a delta is held back
while the text ends inside a multi-byte character or with what may be the start of a stop
string. Leading whitespace is held back too, so joined deltas equal the non-streamed answer
(`decode(tokens).strip()`) up to trailing whitespace. Used by the engine and the server.
"""

from __future__ import annotations

from collections.abc import Sequence

from llava15.data.tokenizer import Tokenizer


class StopStrings:
    """Decides when a row's decoded text contains one of its stop strings, and trims it."""

    def __init__(self, tokenizer: Tokenizer, stops: Sequence[Sequence[str]]) -> None:
        self.tokenizer = tokenizer
        self.stops = stops

    def __call__(self, row: int, tokens: list[int]) -> bool:
        if not self.stops[row]:
            return False
        # Only the tail can hold a new match: decode a window wide enough for any stop string.
        window = self.tokenizer.decode(tokens[-(max(len(s) for s in self.stops[row]) + 8):])
        return any(s in window for s in self.stops[row])

    @staticmethod
    def trim(text: str, stops: Sequence[str]) -> str:
        cut = min((text.find(s) for s in stops if s in text), default=-1)
        return text if cut < 0 else text[:cut]


class TextDeltas:
    def __init__(self, tokenizer, stops: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stops = tuple(stops)
        self.tokens: list[int] = []
        self.sent = ""

    def text(self) -> str:
        """The answer so far, stop strings cut off (not stripped)."""
        return StopStrings.trim(self.tokenizer.decode(self.tokens), self.stops)

    def push(self, token: int) -> str:
        """Add a token; return the text that became safe to send ("" if none)."""
        self.tokens.append(token)
        text = self.text().lstrip()
        safe = len(text.rstrip("\ufffd"))
        for stop in self.stops:  # hold back a possible stop-string prefix
            for k in range(min(len(stop) - 1, safe), 0, -1):
                if text[:safe].endswith(stop[:k]):
                    safe -= k
                    break
        return self._advance(text[:safe])

    def finish(self) -> str:
        """The rest of the answer once decoding has ended."""
        return self._advance(self.text().strip())

    def _advance(self, text: str) -> str:
        if len(text) <= len(self.sent):
            return ""
        delta, self.sent = text[len(self.sent):], text
        return delta
