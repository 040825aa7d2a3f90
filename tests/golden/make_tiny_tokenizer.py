"""Train the tiny LLaMA-style SentencePiece tokenizer committed in `tests/golden/tokenizer/`.

Run once, from the repository root, with the official-code venv (sentencepiece 0.1.99,
transformers 4.37.2):

    /work/official/venv/bin/python tests/golden/make_tiny_tokenizer.py

The model mirrors LLaMA's tokenizer settings (BPE, byte fallback, split digits, unk=0, bos=1,
eos=2, dummy prefix, identity normalisation without collapsing whitespace) at vocab_size 512.
It is saved with `LlamaTokenizer.save_pretrained(legacy=False)`, as Vicuna-v1.5 ships it.

The training text is shaped so that, as with LLaMA, "USER" after "</s>" is one piece more
compact than "▁USER" at the start of a standalone round: LLaMA has `USER` as one piece and
` USER` as `▁US ER`. HEAD's `preprocess_v1` subtracts one token per later round for
non-legacy tokenizers on exactly that assumption; a tokenizer that broke it would flag
every multi-turn sample as a tokenization mismatch.
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "grey", "pink", "brown"]
SHAPES = ["circle", "square", "triangle", "star", "rectangle", "diamond", "cross", "heart"]
PLACES = ["left", "right", "top", "bottom", "centre", "middle", "corner"]
SYSTEM_V1 = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
SYSTEM_VICUNA = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


def question(rng: random.Random) -> tuple[str, str]:
    """One question and its answer about a synthetic picture."""
    colour, shape, place = rng.choice(COLOURS), rng.choice(SHAPES), rng.choice(PLACES)
    count = rng.randint(0, 120)
    kind = rng.randrange(6)
    if kind == 0:
        return f"What colour is the {shape}?", f"The {shape} is {colour}."
    if kind == 1:
        return f"How many {shape}s are in the image?", f"There are {count} {shape}s."
    if kind == 2:
        return f"Where is the {colour} {shape}?", f"It is in the {place} of the image."
    if kind == 3:
        return (f"Is there a {colour} {shape} in the picture? Answer yes or no.",
                rng.choice(["Yes", "No"]))
    if kind == 4:
        return ("Describe the image briefly.",
                f"A {colour} {shape} on a {rng.choice(COLOURS)} background, near the {place}.")
    return (f"What number is written below the {shape}?", f"The number is {count}.")


def training_lines(seed: int = 0, n: int = 3000) -> list[str]:
    """Vicuna-style transcripts (later rounds glued to `</s>`) plus captions and plain sentences."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        rounds = [question(rng) for _ in range(rng.randint(2, 6))]
        system = rng.choice([SYSTEM_V1, SYSTEM_VICUNA])
        # "USER" never follows a space here (the first round is glued to the system prompt with
        # "</s>" too), so BPE learns `USER` but never `▁USER`: ` USER` then splits as `▁ USER`.
        text = system + "</s>" + "</s>".join(f"USER: {q} ASSISTANT: {a}" for q, a in rounds) + "</s>"
        lines.append(text)
        colour, shape = rng.choice(COLOURS), rng.choice(SHAPES)
        lines.append(f"a {colour} {shape} with {rng.randint(0, 99)} dots, image {rng.randint(0, 9999)}")
    return lines


def main(out_dir: Path) -> None:
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(training_lines()) + "\n", encoding="utf-8")
        prefix = str(Path(tmp) / "tiny")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=prefix, vocab_size=512, model_type="bpe",
            byte_fallback=True, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            add_dummy_prefix=True, normalization_rule_name="identity",
            remove_extra_whitespaces=False, character_coverage=1.0, num_threads=1,
            hard_vocab_limit=True, minloglevel=2,
        )
        tok = LlamaTokenizer(vocab_file=prefix + ".model", legacy=False)
        out_dir.mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(str(out_dir))
    print("saved", out_dir, "pieces", len(tok))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "tokenizer")
