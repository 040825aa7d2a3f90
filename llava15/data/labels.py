"""Input ids and training labels of one conversation record, as the official training code makes them.

`encode_conversation` equals the official `preprocess_multimodal` (records with an image) then
`preprocess` (`llava/train/train.py`) for one record: `preprocess_plain` for PLAIN templates,
`preprocess_v1` for TWO (version "v1"), `preprocess_llama_2` for LLAMA_2 and `preprocess_mpt`
for MPT; CHATML templates (version "qwen") follow LLaVA-NeXT's `preprocess_qwen` (`_encode_chatml`).
Ids keep one `IMAGE_TOKEN_INDEX` sentinel per image (see `expand_image_tokens`).

Labels are built twice:
1. segment by segment: each assistant reply (from its leading space through the stop string)
   is tokenized as a continuation of the text before it and marked as target; no rendered
   string is re-tokenized to find spans;
2. with the official length arithmetic (`round_len`, `instruction_len`, `cur_len`), which
   decides the official "tokenization mismatch" (then every label is IGNORE_INDEX).
The official result is what is returned: where the two disagree (a mismatch, a human turn
containing the assistant separator, a tokenizer that cannot encode continuations, ...) the
official labels win and `segments_agree` is False, so such samples can be counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from llava15.config import DEFAULT_IMAGE_TOKEN, IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava15.data.conversation import (SEP_CHATML, SEP_LLAMA_2, SEP_MPT, SEP_PLAIN, SEP_TWO, Template,
                                       preprocess_multimodal, render_prompt)
from llava15.data.tokenizer import Tokenizer, tokenizer_image_token

SPEAKERS = {"human": "user", "gpt": "assistant"}


@dataclass
class EncodedSample:
    """One record's `input_ids` and `labels` (same length; IGNORE_INDEX where not trained).

    `mismatch`: the official code masked the whole sample ("tokenization mismatch").
    `segments_agree`: the segment-wise labels equal the official ones.
    """

    input_ids: list[int]
    labels: list[int]
    mismatch: bool
    segments_agree: bool = True


def _messages(conversations: list[dict]) -> list[tuple[str, str]]:
    """Official role handling: drop a leading gpt turn, then roles must alternate."""
    if not conversations:
        raise ValueError("conversations is empty")
    for i, turn in enumerate(conversations):
        if turn.get("from") not in SPEAKERS or not isinstance(turn.get("value"), str):
            raise ValueError(f"conversations[{i}]: expected 'from' in {sorted(SPEAKERS)} and a string "
                             f"'value', got {turn!r}")
    turns = conversations[1:] if conversations[0]["from"] != "human" else conversations
    messages = [(SPEAKERS[t["from"]], t["value"]) for t in turns]
    for j, (role, _) in enumerate(messages):
        if role != ("user", "assistant")[j % 2]:
            raise ValueError(f"conversations: turn {j} (after dropping a leading gpt turn) is from "
                             f"{role!r}; turns must alternate human/gpt")
    return messages


def encode_conversation(conversations: list[dict], tokenizer: Tokenizer, template: Template, has_image: bool,
                        model_max_length: int = 2048, head_fix: bool = True) -> EncodedSample:
    """The official training ids and labels of one record's `conversations`.

    `head_fix`: apply HEAD's correction for non-legacy tokenizers with tokenizers >= 0.14 (the
    official stack used for our goldens); False reproduces the released checkpoints' stack.
    Text-only samples are truncated to `model_max_length` (as officially); image samples not.
    Raises ValueError for records the official code rejects (bad roles, PLAIN without image).
    """
    if model_max_length < 1:
        raise ValueError(f"model_max_length must be positive, got {model_max_length}")
    if has_image:
        conversations = preprocess_multimodal(conversations)
    if template.sep_style == SEP_PLAIN:
        return _encode_plain(conversations, tokenizer, template)
    if template.sep_style == SEP_CHATML:
        return _encode_chatml(conversations, tokenizer, template, has_image, model_max_length)
    if template.sep_style == SEP_TWO and not template.version.startswith("v1"):
        raise ValueError(f"template {template.name!r}: only version v1 TWO templates are supported")
    messages = _messages(conversations)
    prompt = render_prompt(template, messages)
    tok: Callable[[str], list[int]]
    if has_image:
        tok = lambda text: tokenizer_image_token(text, tokenizer)  # noqa: E731
        input_ids = tok(prompt)  # image samples are not truncated here (as officially)
    else:
        tok = tokenizer.encode
        input_ids = tok(prompt)[:model_max_length]  # tokenizer(..., max_length, truncation=True)
    labels, mismatch = _official_labels(prompt, input_ids, tok, tokenizer, template, model_max_length, head_fix)
    seg_ids, seg_labels = _segment_labels(template, messages, tokenizer, has_image)
    if not has_image:
        seg_ids, seg_labels = seg_ids[:model_max_length], seg_labels[:model_max_length]
    agree = seg_ids == input_ids and seg_labels == labels
    # Where they disagree the official labels are kept: they are what the official model trained on.
    return EncodedSample(input_ids, labels, mismatch, agree)


def _encode_plain(conversations: list[dict], tokenizer: Tokenizer, template: Template) -> EncodedSample:
    """`preprocess_plain`: "<image>" + caption + sep; BOS and the sentinel are masked."""
    if len(conversations) != 2 or DEFAULT_IMAGE_TOKEN not in str(conversations[0].get("value")):
        raise ValueError(f"template {template.name!r}: a PLAIN record needs exactly two turns with "
                         f"{DEFAULT_IMAGE_TOKEN!r} in the first, got {conversations!r}")
    input_ids = tokenizer_image_token(DEFAULT_IMAGE_TOKEN + conversations[1]["value"] + template.sep, tokenizer)
    n_masked = len(tokenizer_image_token(DEFAULT_IMAGE_TOKEN, tokenizer))
    labels = [IGNORE_INDEX] * min(n_masked, len(input_ids)) + input_ids[n_masked:]
    return EncodedSample(input_ids, labels, False, True)


def _encode_chatml(conversations: list[dict], tokenizer: Tokenizer, template: Template, has_image: bool,
                   model_max_length: int) -> EncodedSample:
    """LLaVA-NeXT's `preprocess_qwen` for one record (no length arithmetic, so no mismatch).

    Each block (the system message, then each turn as ``role + "\n" + text + sep + "\n"``) is
    tokenized on its own without special tokens, as `apply_chat_template` does per message; an
    image sample's `<image>` splits the text as the added special token does there (one
    sentinel, nothing around it dropped). Assistant blocks are targets, header included; then
    every newline, `<|im_start|>` and `<|im_end|>` token is a target wherever it stands (the
    official `unmask_tokens_idx`, whose 198 is Qwen's newline id). The system message is the
    template's (`preprocess_qwen`'s default equals `qwen_1_5`'s). `segments_agree` is True:
    this path has no second construction to compare with.
    """
    im_start, im_end = (tokenizer.added_tokens.get(t) for t in ("<|im_start|>", "<|im_end|>"))
    if im_start is None or im_end is None:
        raise ValueError(f"template {template.name!r} needs <|im_start|> and <|im_end|> as added tokens; "
                         f"the tokenizer in {tokenizer.directory} does not have both")
    unmasked = {im_start, im_end, *tokenizer.encode("\n", add_bos=False)}

    def block(text: str) -> list[int]:
        chunks = text.split(DEFAULT_IMAGE_TOKEN) if has_image else [text]
        ids = tokenizer.encode(chunks[0], add_bos=False)
        for chunk in chunks[1:]:
            ids += [IMAGE_TOKEN_INDEX, *tokenizer.encode(chunk, add_bos=False)]
        return ids

    input_ids = block(template.system + template.sep + "\n") if template.system else []
    labels = [IGNORE_INDEX] * len(input_ids)
    for j, (role, text) in enumerate(_messages(conversations)):
        ids = block(f"{template.roles[j % 2]}\n{text}{template.sep}\n")
        input_ids += ids
        labels += ids if role == "assistant" else [IGNORE_INDEX] * len(ids)
    labels = [token if token in unmasked else label for token, label in zip(input_ids, labels)]
    if not has_image:  # as the other paths: text-only samples are cut to model_max_length
        input_ids, labels = input_ids[:model_max_length], labels[:model_max_length]
    return EncodedSample(input_ids, labels, False, True)


def _mask(labels: list[int], start: int, stop: int | None = None) -> None:
    """`target[start:stop] = IGNORE_INDEX` with torch/Python slice clipping."""
    stop = len(labels) if stop is None else min(stop, len(labels))
    for k in range(max(start, 0), stop):
        labels[k] = IGNORE_INDEX


def _rounds(prompt: str, template: Template) -> tuple[list[str], str, int, int]:
    """Official split into rounds: (rounds, instruction separator, start cur_len, tokens to subtract)."""
    if template.sep_style == SEP_MPT:
        pieces = prompt.split(template.sep)
        rounds = [template.sep.join(pieces[:3])]  # system + user + gpt
        rounds += [template.sep.join(pieces[k:k + 2]) for k in range(3, len(pieces), 2)]
        return rounds, template.sep + template.roles[1], 0, 1
    sep = "[/INST] " if template.sep_style == SEP_LLAMA_2 else template.sep + template.roles[1] + ": "
    return prompt.split(template.sep2), sep, 1, 2


def _official_labels(prompt: str, input_ids: list[int], tok: Callable[[str], list[int]], tokenizer: Tokenizer,
                     template: Template, model_max_length: int, head_fix: bool) -> tuple[list[int], bool]:
    """The masking loop of `preprocess_v1` / `preprocess_llama_2` / `preprocess_mpt`."""
    labels = list(input_ids)
    # train.py sets pad = unk for every version but v0; -200 sentinels count as tokens.
    total_len = sum(1 for i in input_ids if i != tokenizer.unk_token_id)
    rounds, sep, cur_len, n_extra = _rounds(prompt, template)
    _mask(labels, 0, cur_len)
    for i, rou in enumerate(rounds):
        if rou == "":
            break
        parts = rou.split(sep)
        if len(parts) != 2:  # e.g. a human turn containing " ASSISTANT: ": the loop stops here
            break
        round_len, instruction_len = len(tok(rou)), len(tok(parts[0] + sep)) - n_extra
        if i != 0 and head_fix:
            if template.sep_style == SEP_TWO and not tokenizer.legacy:
                round_len, instruction_len = round_len - 1, instruction_len - 1
            elif template.sep_style == SEP_MPT and tokenizer.legacy:
                round_len, instruction_len = round_len + 1, instruction_len + 1
        _mask(labels, cur_len, cur_len + instruction_len)
        cur_len += round_len
    _mask(labels, cur_len)
    if cur_len < model_max_length and cur_len != total_len:
        return [IGNORE_INDEX] * len(labels), True
    return labels, False


def _segment_labels(template: Template, messages: list[tuple[str, str]], tokenizer: Tokenizer,
                    has_image: bool) -> tuple[list[int], list[int]]:
    """Ids and labels from the rendered segments: each answered assistant turn is a target span."""
    prompt = render_prompt(template, messages)
    cuts, targets = [0], []
    for i, (role, text) in enumerate(messages):
        if role != "assistant" or not text:
            continue
        pending = render_prompt(template, [*messages[:i], ("assistant", None)])
        answered = render_prompt(template, messages[:i + 1])
        if not answered.startswith(pending) or not prompt.startswith(answered):
            return [], []  # not prefix-monotone: no segment view (the official labels are used)
        cuts += [len(pending), len(answered)]
        targets.append(len(pending))
    cuts.append(len(prompt))
    segments = [(prompt[a:b], a in targets) for a, b in zip(cuts, cuts[1:]) if b > a]
    if not tokenizer.supports_continuation:
        return [], []
    ids: list[int] = []
    labels: list[int] = []
    at_chunk_start, previous = True, ""
    for text, is_target in segments:
        chunks = text.split(DEFAULT_IMAGE_TOKEN) if has_image else [text]
        for k, chunk in enumerate(chunks):
            if k > 0:
                ids.append(IMAGE_TOKEN_INDEX)
                labels.append(IGNORE_INDEX)
                at_chunk_start = True
            new = _encode_segment(chunk, tokenizer, at_chunk_start, not ids, previous)
            ids += new
            labels += new if is_target else [IGNORE_INDEX] * len(new)
            at_chunk_start, previous = False, chunk or previous
    return ids, labels


def _encode_segment(text: str, tokenizer: Tokenizer, chunk_start: bool, first: bool, previous: str) -> list[int]:
    """A segment's ids in context: fresh at a chunk start (BOS kept only at the very start, as in
    `tokenizer_image_token`), else a continuation (after an added token: encoded behind it)."""
    if chunk_start:
        ids = tokenizer.encode(text)
        bos = tokenizer.bos_token_id
        return ids if first or not ids or ids[0] != bos else ids[1:]
    if not text:
        return []
    before = next((t for t in tokenizer.added_tokens if previous.endswith(t)), None)
    if before is None:
        return tokenizer.encode(text, continuation=True)
    return tokenizer.encode(before + text, continuation=True)[1:]
