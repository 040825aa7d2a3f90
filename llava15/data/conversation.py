"""Prompt templates of the official LLaVA code (`llava/conversation.py`), as frozen data.

Layer 1, standard library only. A `Template` holds the same fields as the official
`Conversation` (system, roles, sep_style, sep, sep2); `render_prompt` reproduces
`Conversation.get_prompt()` byte for byte for the separator styles LLaVA-1.5 uses:

- TWO (`vicuna_v1`, `v1`, `llava_v1`): ``system + sep``, then ``role + ": " + text`` closed by
  `sep` after user turns and `sep2` (``</s>``) after assistant turns; a pending turn is ``role + ":"``.
- PLAIN (`plain`, `v0_plain`): the texts glued to their separators, no system, no roles.
- LLAMA_2 (`llava_llama_2`, `mistral_instruct`): ``[INST] ... [/INST]`` wrapping.
- MPT (`chatml`, the official `chatml_direct`): ``<|im_start|>`` roles closed by ``<|im_end|>``.
- CHATML (LLaVA-NeXT's style, `smollm2`): ``system + sep + "\n"``, then ``role + "\n" + text +
  sep + "\n"``; a pending turn is ``role + "\n"``. Unlike MPT each block ends with a newline,
  as chat models such as Qwen and SmolLM2 were trained (their own chat templates).

Messages are ``(role, text)`` pairs with role ``"user"`` or ``"assistant"``, alternating and
starting with the user. A falsy assistant text (None, as for generation, or "") renders as the
official code renders a pending turn.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_IMAGE_TOKEN = "<image>"  # also in llava15.config; repeated so this module stays stdlib-only

SEP_TWO, SEP_PLAIN, SEP_LLAMA_2, SEP_MPT, SEP_CHATML = "TWO", "PLAIN", "LLAMA_2", "MPT", "CHATML"
SEPARATOR_STYLES = (SEP_TWO, SEP_PLAIN, SEP_LLAMA_2, SEP_MPT, SEP_CHATML)
ROLES = ("user", "assistant")


@dataclass(frozen=True)
class Template:
    """One official conversation template (fields as in `llava.conversation.Conversation`).

    `roles` are the official role strings (``("USER", "ASSISTANT")`` for Vicuna); `version`
    is the official version tag that decides which `preprocess_*` the training code uses.
    """

    name: str
    system: str
    roles: tuple[str, str]
    sep_style: str
    sep: str
    sep2: str | None = None
    version: str = ""

    def __post_init__(self) -> None:
        if self.sep_style not in SEPARATOR_STYLES:
            raise ValueError(f"template {self.name!r}: unknown sep_style {self.sep_style!r}, "
                             f"expected one of {SEPARATOR_STYLES}")

    @property
    def stop_str(self) -> str | None:
        """The string that ends an assistant turn (official: sep2 for TWO, else sep)."""
        return self.sep2 if self.sep_style == SEP_TWO else self.sep


_VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                  "The assistant gives helpful, detailed, and polite answers to the user's questions.")
_LLAVA_V1_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                    "The assistant gives helpful, detailed, and polite answers to the human's questions.")
_LLAVA_LLAMA_2_SYSTEM = ("You are a helpful language and vision assistant. "
                         "You are able to understand the visual content that the user provides, "
                         "and assist the user with a variety of tasks using natural language.")
_CHATML_ROLES = ("<|im_start|>user\n", "<|im_start|>assistant\n")
# SmolLM2-Instruct's default system message (its chat template adds it when none is given).
_SMOLLM2_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"


def _vicuna(name: str, system: str) -> Template:
    return Template(name, system, ("USER", "ASSISTANT"), SEP_TWO, " ", "</s>", "v1")


def _plain(name: str) -> Template:
    return Template(name, "", ("", ""), SEP_PLAIN, "\n", None, "Unknown")


# Official keys → templates (`llava.conversation.conv_templates`). "chatml" is the official
# "chatml_direct" (also registered under that name).
TEMPLATES: dict[str, Template] = {
    "vicuna_v1": _vicuna("vicuna_v1", _VICUNA_SYSTEM),
    "v1": _vicuna("v1", _VICUNA_SYSTEM),
    "llava_v1": _vicuna("llava_v1", _LLAVA_V1_SYSTEM),
    "plain": _plain("plain"),
    "v0_plain": _plain("v0_plain"),
    "llava_llama_2": Template("llava_llama_2", _LLAVA_LLAMA_2_SYSTEM, ("USER", "ASSISTANT"),
                              SEP_LLAMA_2, "<s>", "</s>", "llama_v2"),
    "mistral_instruct": Template("mistral_instruct", "", ("USER", "ASSISTANT"),
                                 SEP_LLAMA_2, "", "</s>", "llama_v2"),
    "chatml": Template("chatml", "<|im_start|>system\nAnswer the questions.", _CHATML_ROLES,
                       SEP_MPT, "<|im_end|>", None, "mpt"),
    "chatml_direct": Template("chatml_direct", "<|im_start|>system\nAnswer the questions.",
                              _CHATML_ROLES, SEP_MPT, "<|im_end|>", None, "mpt"),
    # LLaVA-NeXT's `qwen_1_5` layout (CHATML, version "qwen": trained by `preprocess_qwen`) with
    # SmolLM2's system message: byte for byte what SmolLM2's own chat template renders.
    "smollm2": Template("smollm2", _SMOLLM2_SYSTEM, ("<|im_start|>user", "<|im_start|>assistant"),
                        SEP_CHATML, "<|im_end|>", None, "qwen"),
}


def get_template(name: str) -> Template:
    """The template registered under `name`; KeyError listing the known names otherwise."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise KeyError(f"unknown conversation template {name!r}; known: {sorted(TEMPLATES)}") from None


def _check_messages(messages: list[tuple[str, str | None]]) -> None:
    for i, (role, _text) in enumerate(messages):
        if role != ROLES[i % 2]:
            raise ValueError(f"message {i}: role {role!r}, expected {ROLES[i % 2]!r} "
                             "(roles must alternate user/assistant, starting with user)")


def render_prompt(template: Template, messages: list[tuple[str, str | None]]) -> str:
    """The official `conv.get_prompt()` after appending `messages` to a copy of `template`.

    Raises ValueError for roles that do not alternate from "user", for a PLAIN template with an
    answered assistant turn (the official code fails there: its sep2 is None), and for a
    LLAMA_2 template whose first message is empty (an official assertion).
    """
    _check_messages(messages)
    turns = [(template.roles[i % 2], text) for i, (_, text) in enumerate(messages)]
    style = template.sep_style
    if style == SEP_TWO:
        seps = (template.sep, template.sep2)
        ret = template.system + seps[0]
        for i, (role, text) in enumerate(turns):
            ret += f"{role}: {text}{seps[i % 2]}" if text else f"{role}:"
        return ret
    if style == SEP_MPT:
        ret = template.system + template.sep
        for role, text in turns:
            ret += f"{role}{text}{template.sep}" if text else role
        return ret
    if style == SEP_CHATML:
        ret = template.system + template.sep + "\n" if template.system else ""
        for role, text in turns:
            ret += f"{role}\n{text}{template.sep}\n" if text else f"{role}\n"
        return ret
    if style == SEP_PLAIN:
        seps = (template.sep, template.sep2)
        ret = template.system
        for i, (_role, text) in enumerate(turns):
            if text:
                if seps[i % 2] is None:
                    raise ValueError(f"template {template.name!r}: PLAIN has no sep2, so an answered "
                                     f"assistant turn (message {i}) cannot be rendered (as officially)")
                ret += text + seps[i % 2]
        return ret
    return _render_llama_2(template, turns)


def _render_llama_2(template: Template, turns: list[tuple[str, str | None]]) -> str:
    if turns and not turns[0][1]:
        raise ValueError(f"template {template.name!r}: the first message must not be empty")
    ret = ""
    for i, (_role, text) in enumerate(turns):
        if not text:
            continue
        if i == 0 and template.system:
            text = f"<<SYS>>\n{template.system}\n<</SYS>>\n\n" + text
        if i % 2 == 0:
            ret += template.sep + f"[INST] {text} [/INST]"
        else:
            ret += " " + text + " " + template.sep2
    # The official code strips the *characters* of sep ("<", "s", ">") from the left.
    return ret.lstrip(template.sep)


def build_question_prompt(template: Template, question: str, with_image: bool) -> str:
    """The prompt `llava/eval/model_vqa_loader.py` builds (mm_use_im_start_end false).

    With an image the question is prefixed by ``"<image>\\n"``; then one user turn and the
    generation prompt of the assistant.
    """
    text = DEFAULT_IMAGE_TOKEN + "\n" + question if with_image else question
    return render_prompt(template, [("user", text), ("assistant", None)])


def preprocess_multimodal(conversations: list[dict]) -> list[dict]:
    """The official `preprocess_multimodal` for one record (mm_use_im_start_end false).

    Every turn whose value contains ``<image>`` has all of them removed, is stripped, and gets
    ``"<image>\\n"`` in front (then stripped again). Returns new dicts; the input is untouched.
    Raises ValueError naming the turn when a value is not a string.
    """
    out = []
    for i, turn in enumerate(conversations):
        value = turn.get("value")
        if not isinstance(value, str):
            raise ValueError(f"conversations[{i}]: 'value' must be a string, got {type(value).__name__}")
        if DEFAULT_IMAGE_TOKEN in value:
            value = (DEFAULT_IMAGE_TOKEN + "\n" + value.replace(DEFAULT_IMAGE_TOKEN, "").strip()).strip()
        out.append({**turn, "value": value})
    return out
