"""The paper's response-format prompts and the instruction lists, exact strings.

Suffixes are appended to a question after a newline, as in `llava_v1_5_mix665k.json` and the
official evaluation question files (docs/official-behaviour.md, 'Response-format prompts';
docs/benchmarks.md, 'Response-format suffixes').
"""

from __future__ import annotations

IMAGE = "<image>"
SHORT_ANSWER = "Answer the question using a single word or phrase."
MULTIPLE_CHOICE = "Answer with the option's letter from the given choices directly."
MULTIPLE_CHOICE_CN = "请直接回答选项字母。"
VIZWIZ = ("When the provided information is insufficient, respond with 'Unanswerable'.\n"
          "Answer the question using a single word or phrase.")
MME_YES_NO = " Please answer yes or no."   # MME's own suffix, replaced by SHORT_ANSWER in llava_mme
TEXTCAPS = "Provide a one-sentence caption for the provided image."
REGION_DESCRIBE = "Please provide a short description for this region: "
REGION_GROUND = "Please provide the bounding box coordinate of the region this sentence describes: "

# Stage 1: brief-description instructions (a few from LLaVA's list; the human turn is discarded
# by the `plain` template, but the tokenizer sees them).
BRIEF_INSTRUCTIONS: tuple[str, ...] = (
    "Describe the image concisely.",
    "Provide a brief description of the given image.",
    "Give a short and clear explanation of the subsequent image.",
    "Summarize the visual content of the image.",
)

# LLaVA-Instruct 'detail' instructions (a few from LLaVA's list).
DETAIL_INSTRUCTIONS: tuple[str, ...] = (
    "Describe the following image in detail.",
    "Provide a detailed description of the given image.",
    "Explain the visual content of the image in great detail.",
)

# Object inventories: (key attribute, value attribute) -> instruction. See `language.inventory`.
INVENTORY: dict[tuple[str, str], str] = {
    ("shape", "color"): "List the objects by shape, each shape followed by its color.",
    ("color", "shape"): "List the objects by color, each color followed by its shape.",
    ("shape", "size"): "List the objects by shape, each shape followed by its size.",
    ("shape", "place"): "List the objects by shape, each shape followed by its place.",
}

OVERVIEW_QUESTIONS: tuple[str, ...] = (
    "What objects can you see in the image?",
    "What is in this image?",
)


def with_suffix(question: str, suffix: str) -> str:
    return f"{question}\n{suffix}"


def ocr_prompt(question: str, tokens: list[str]) -> str:
    """The TextVQA 3-line prompt: question, OCR tokens, short-answer suffix."""
    return f"{question}\nReference OCR token: {', '.join(tokens)}\n{SHORT_ANSWER}"
