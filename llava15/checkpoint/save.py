"""Write checkpoints: the llava-hf layout (safetensors) and the official `mm_projector.bin`.

The llava-hf directory holds `model.safetensors` (or shards `model-0000i-of-0000N.safetensors` with
`model.safetensors.index.json` above `max_shard_bytes`) under the hub ("old") names, a `config.json`
that transformers' `LlavaForConditionalGeneration.from_pretrained` reads, the tokenizer with
`<image>` and `<pad>`, `preprocessor_config.json` and `generation_config.json`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import save_file

from llava15.checkpoint.configs import llava_hf_config_dict
from llava15.checkpoint.layouts import official_projector_name
from llava15.config import LlavaConfig
from llava15.data.image import ImageProcessorConfig
from llava15.data.tokenizer import load_tokenizer, save_tokenizer
from llava15.model.llava import Llava

EMBED = "language_model.model.embed_tokens.weight"
LM_HEAD = "language_model.lm_head.weight"
PROJECTOR = "multi_modal_projector."
DEFAULT_MAX_SHARD_BYTES = 5 * 2**30  # transformers' default max_shard_size ("5GB")

log = logging.getLogger(__name__)


def grown_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """`weight` (V, D) with rows V..rows-1 appended, each equal to the mean of the original rows.

    Deterministic, unlike the official conversion's samples around the mean. On lm_head the new
    rows' logit is the mean of the original logits, so a new token can never win the argmax
    (unless all logits tie): greedy outputs on the original vocabulary are unchanged.
    """
    if rows <= weight.shape[0]:
        return weight
    mean = weight.float().mean(0, keepdim=True).to(weight.dtype)
    return torch.cat([weight, mean.expand(rows - weight.shape[0], -1)])


def save_llava_hf(model: Llava, config: LlavaConfig, tokenizer_dir: str | Path,
                  image_processor: ImageProcessorConfig, out_dir: str | Path, *,
                  max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> None:
    """Write `model` as a llava-hf checkpoint in `out_dir` (created), loadable by our `load_llava`
    and by transformers' `LlavaForConditionalGeneration`.

    An official-style model (`config.image_token_index` < 0, the -200 sentinel) gets the
    llava-hf vocabulary, as the official conversion script makes it: `<image>` and `<pad>` are
    added to the tokenizer at ids len(tokenizer) and len(tokenizer)+1, and embed_tokens / lm_head
    grow to the next multiple of 64 rows, the new rows filled with the mean of the existing rows of
    the same matrix (see `grown_rows`); the original rows, hence their logits, are untouched.
    A llava-hf-style model (a real `<image>` id) keeps its vocabulary and tokenizer as they are.
    transformers can load only `mlp2x_gelu` projectors (a warning is logged for other types).
    """
    if config.mm_projector_type != "mlp2x_gelu":
        log.warning("mm_projector_type %r: llava15 reads this checkpoint back, but transformers' "
                    "LlavaForConditionalGeneration only has an mlp2x_gelu projector", config.mm_projector_type)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(tokenizer_dir)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    rows = state[EMBED].shape[0]
    if config.image_token_index < 0:
        image_id, pad_id = tokenizer.vocab_size, tokenizer.vocab_size + 1
        rows = max(rows, -(-(pad_id + 1) // 64) * 64)
        save_tokenizer(tokenizer, out, extra_added_tokens={"<image>": image_id, "<pad>": pad_id})
        for key in (EMBED, LM_HEAD):
            if key in state:
                state[key] = grown_rows(state[key], rows)
    else:
        image_id = config.image_token_index
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else config.text.pad_token_id
        save_tokenizer(tokenizer, out)
    write_safetensors(state, out, max_shard_bytes)
    hf_config = llava_hf_config_dict(config, rows, image_id, pad_id)
    (out / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    generation = {"bos_token_id": config.text.bos_token_id, "eos_token_id": config.text.eos_token_id,
                  "pad_token_id": pad_id}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(json.dumps(image_processor.to_dict(), indent=2) + "\n")


def write_safetensors(state: dict[str, torch.Tensor], out: Path, max_shard_bytes: int) -> None:
    """One `model.safetensors`, or shards of at most `max_shard_bytes` (a bigger tensor gets a shard
    of its own) with a `model.safetensors.index.json`, as transformers writes them."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor.contiguous()
        size += nbytes
    for old in out.glob("model*.safetensors*"):  # no stale shards from an earlier save
        old.unlink()
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def save_official_projector(model: Llava, out_dir: str | Path) -> Path:
    """Write `out_dir/mm_projector.bin` with the official keys (`model.mm_projector.0.weight`, ...,
    or `model.mm_projector.weight` for a `linear` projector), as the official stage-1 save does.
    Returns the file's path."""
    projector_type = model.config.mm_projector_type
    state = {official_projector_name(k, projector_type): v.detach().cpu().clone()
             for k, v in model.state_dict().items() if k.startswith(PROJECTOR)}
    if not state:
        raise ValueError(f"the model has no projector weights (mm_projector_type {projector_type!r})")
    path = Path(out_dir) / "mm_projector.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
