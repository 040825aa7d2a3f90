"""Key tables: every layout's weight names -> ours (which are llava-hf's "old" hub names).

A table is an ordered list of (regex, replacement) rules; the first rule that matches a key
decides: the replacement (a `re.sub` template or function) gives our name, and None drops the key
(a buffer or a weight the official loader ignores too). A key no rule matches is unknown, and the
loader reports it. Our names:

    vision_tower.vision_model.*                   (HF CLIPVisionModel names)
    multi_modal_projector.linear_{1..N}.{weight,bias}
    language_model.model.{embed_tokens,layers.{i}.*,norm}.*   language_model.lm_head.weight
    image_newline                                  (AnyRes `spatial_unpad` only)
"""

from __future__ import annotations

import re
from typing import Callable

Replacement = str | Callable[[re.Match], str] | None
Rules = tuple[tuple[re.Pattern, Replacement], ...]


def _rules(*pairs: tuple[str, Replacement]) -> Rules:
    return tuple((re.compile(pattern), replacement) for pattern, replacement in pairs)


def _sequential_to_linear(match: re.Match) -> str:
    """`nn.Sequential` index 0, 2, 4 ... (GELUs sit between) -> linear_1, linear_2, linear_3 ..."""
    index = int(match.group(1))
    if index % 2:
        raise KeyError(f"mm_projector.{index} is a GELU position and holds no weights")
    return f"multi_modal_projector.linear_{index // 2 + 1}.{match.group(2)}"


_BUFFERS = (
    (r"\.rotary_emb\.inv_freq$", None),  # saved by transformers < 4.31; recomputed, never loaded
    (r"\.position_ids$", None),  # CLIP's position-id buffer in older checkpoints
)

# Official `LlavaLlamaForCausalLM` (and a plain `LlamaForCausalLM` base LLM) -> ours.
OFFICIAL = _rules(
    *_BUFFERS,
    (r"^model\.vision_tower\.", None),  # never loaded officially: CLIP comes from its own directory
    (r"^model\.vision_resampler\.", None),  # unused leftovers of the internal code
    (r"^model\.mm_projector\.(weight|bias)$", r"multi_modal_projector.linear_1.\1"),  # `linear`
    (r"^model\.mm_projector\.(\d+)\.(weight|bias)$", _sequential_to_linear),  # `mlp{N}x_gelu`
    (r"^model\.image_newline$", "image_newline"),
    (r"^model\.", "language_model.model."),
    (r"^lm_head\.", "language_model.lm_head."),
)
# `image_newline` exists only for AnyRes `unpad` models; flat models ignore it, as officially.
OFFICIAL_FLAT = _rules((r"^model\.image_newline$", None)) + OFFICIAL

# A CLIPVisionModel or full CLIPModel directory (vision keys are `vision_model.*` in both) -> ours.
CLIP = _rules(
    *_BUFFERS,
    (r"^(text_model\.|text_projection\.|visual_projection\.|logit_scale$)", None),  # CLIPModel's rest
    (r"^vision_model\.", "vision_tower.vision_model."),
)

# llava-hf hub files ("old" nesting, ours) and transformers >= 4.52 in-memory names ("new").
HF_OLD = _rules(
    *_BUFFERS,
    (r"^(language_model\.|vision_tower\.|multi_modal_projector\.|image_newline$)", r"\1"),
)
HF_NEW = _rules(
    *_BUFFERS,
    (r"^model\.language_model\.", "language_model.model."),
    (r"^model\.vision_tower\.", "vision_tower."),
    (r"^model\.multi_modal_projector\.", "multi_modal_projector."),
    (r"^model\.image_newline$", "image_newline"),
    (r"^lm_head\.", "language_model.lm_head."),
)


def rename(key: str, rules: Rules) -> str | None:
    """Our name for `key` (None: dropped on purpose). Raises KeyError when no rule matches."""
    for pattern, replacement in rules:
        if pattern.search(key):
            return None if replacement is None else pattern.sub(replacement, key, count=1)
    raise KeyError(key)


def hf_layout_of(keys: list[str]) -> Rules:
    """The llava-hf nesting a set of keys uses: "new" if any key is under `model.language_model.`."""
    return HF_NEW if any(k.startswith("model.language_model.") for k in keys) else HF_OLD


def official_projector_name(key: str, projector_type: str) -> str:
    """Ours -> official for the projector: `multi_modal_projector.linear_k.leaf` ->
    `model.mm_projector.{2(k-1)}.leaf`, or `model.mm_projector.leaf` for the `linear` type (a bare
    nn.Linear, not a Sequential)."""
    match = re.fullmatch(r"multi_modal_projector\.linear_(\d+)\.(weight|bias)", key)
    if match is None:
        raise KeyError(f"{key!r} is not a projector weight")
    k, leaf = int(match.group(1)), match.group(2)
    if projector_type == "linear":
        return f"model.mm_projector.{leaf}"
    return f"model.mm_projector.{2 * (k - 1)}.{leaf}"
