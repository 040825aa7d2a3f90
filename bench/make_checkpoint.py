"""Random-weight LLaVA-1.5 checkpoints in the layout of the official Hugging Face repositories, for
benchmarks at the real sizes (load time, memory, generation speed). Never run by the test suite:
`tests/test_make_checkpoint.py` writes the few-MB `tiny` shape instead.

    .venv/bin/python bench/make_checkpoint.py --shape 7b|13b|tiny --out DIR [--seed 0]

writes
- `DIR/llava-v1.5-7b/` (`-13b`, `-tiny`), as `liuhaotian/llava-v1.5-7b`: `config.json`
  (`LlavaLlamaForCausalLM`, `model_type: "llava"`, `mm_vision_tower` = the absolute path of the CLIP
  directory below, so it loads offline), `generation_config.json`, float16 `pytorch_model-0000k-of-
  0000n.bin` shards (zip format, what `torch.save` writes but for its random serialization id; 2 for
  7b, 3 for 13b, cut as transformers' `save_pretrained` cuts at its default 10 GB) with
  `pytorch_model.bin.index.json`, and the slow LlamaTokenizer files: `tokenizer.model` (a
  SentencePiece BPE with exactly the config's vocabulary size, trained here on the text of Python's
  standard library), `tokenizer_config.json` and `special_tokens_map.json`. As in the released
  checkpoints, the shards hold no copy of the CLIP weights (`model.vision_tower.*`; see
  docs/official-behaviour.md, 'Vision tower').
- `DIR/clip-vit-large-patch14-336/` (`clip-tiny/`), as `openai/clip-vit-large-patch14-336`: a
  `CLIPModel` `config.json` (ViT-L/14 at 336 px, quick_gelu), the official old-style
  `preprocessor_config.json`, and `pytorch_model.bin` with every `CLIPModel` tensor (vision and text
  towers, projections, `logit_scale`, the `position_ids` buffers) in float16 (the official file is
  float32, 1.7 GB).

Weights: N(0, 0.02) matrices, with 0.02 / sqrt(2 * layers) for the projections that write into the
residual stream (o_proj, down_proj, CLIP out_proj and fc2) so that float16 activations stay small
through all layers (16 tokens through the 7b LLM in float16: residual rms 1.7 and max 7.7 after
layer 32, logits std 1.3); ones for norm weights, zeros for biases. One `torch.Generator` seeded by --seed
draws every tensor in file order, so a seed always gives the same files (on one torch version).
Tensors are generated one at a time straight into each shard, so memory stays near the largest
tensor (the 32000 x 4096 embedding, 250 MiB) whatever the model size.

Measured on the 2-core dev box (torch 2.13 CPU, shared disk), `--shape 7b`: 115 s wall (`/usr/bin/time
-v`: tokenizer 3 s, then weights at ~130 MB/s, bound by the disk at 66% CPU), peak RSS 585 MiB;
14.4 GB on disk: shards of 9.98 GB and 3.54 GB (index total_size 13,518,790,656) and a 0.86 GB CLIP
file. 13b (not run): shards of 9.95, 9.90 and 6.24 GB (26.1 GB), the same CLIP.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import pickle
import shutil
import sys
import sysconfig
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

INIT_STD = 0.02
SHARD_BYTES = 10 * 10**9  # transformers' default `max_shard_size="10GB"` (decimal units)
SHARD_NAME = "pytorch_model-{:05d}-of-{:05d}.bin"
INDEX_NAME = "pytorch_model.bin.index.json"
# storage class `torch.save` names in the pickle for each dtype we write
STORAGE_TYPES = {torch.float16: torch.HalfStorage, torch.float32: torch.FloatStorage,
                 torch.int64: torch.LongStorage}
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# ----------------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class ClipShape:
    """A `CLIPModel`: vision tower (what LLaVA uses), text tower and projections."""

    dir_name: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    image_size: int
    patch_size: int
    projection_dim: int
    text_hidden_size: int
    text_intermediate_size: int
    text_num_hidden_layers: int
    text_num_attention_heads: int
    text_vocab_size: int
    text_max_position_embeddings: int

    @property
    def num_positions(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1


@dataclass(frozen=True)
class Shape:
    """One LLaVA-1.5 size: the Vicuna-v1.5 LLM, the CLIP it reads, how the shards are cut, and how
    much standard-library text trains its tokenizer (enough for `vocab_size` BPE pieces)."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    clip: ClipShape
    max_shard_bytes: int = SHARD_BYTES
    tokenizer_corpus_chars: int = 8 * 2**20

    @property
    def dir_name(self) -> str:
        return f"llava-v1.5-{self.name}"


CLIP_L_336 = ClipShape("clip-vit-large-patch14-336", hidden_size=1024, intermediate_size=4096,
                       num_hidden_layers=24, num_attention_heads=16, image_size=336, patch_size=14,
                       projection_dim=768, text_hidden_size=768, text_intermediate_size=3072,
                       text_num_hidden_layers=12, text_num_attention_heads=12, text_vocab_size=49408,
                       text_max_position_embeddings=77)
CLIP_TINY = ClipShape("clip-tiny", hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, image_size=28, patch_size=14, projection_dim=16,
                      text_hidden_size=32, text_intermediate_size=64, text_num_hidden_layers=2,
                      text_num_attention_heads=4, text_vocab_size=1000, text_max_position_embeddings=77)
SHAPES = {
    "7b": Shape("7b", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                max_position_embeddings=4096, clip=CLIP_L_336),
    "13b": Shape("13b", hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                 num_attention_heads=40, num_key_value_heads=40, vocab_size=32000,
                 max_position_embeddings=4096, clip=CLIP_L_336),
    # Two shards as 7b's, from a limit below its ~0.4 MB of weights; vocabulary of 512 pieces.
    "tiny": Shape("tiny", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, vocab_size=512,
                  max_position_embeddings=4096, clip=CLIP_TINY, max_shard_bytes=200_000,
                  tokenizer_corpus_chars=256 * 2**10),
}


# ---------------------------------------------------------------------------------- tensors


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a weight file: `fill` is "normal" (N(0, std)), "constant" (`value`) or
    "positions" (the `arange` position-id buffer of old CLIP files)."""

    name: str
    shape: tuple[int, ...]
    fill: str
    std: float = 0.0
    value: float = 0.0
    dtype: torch.dtype = torch.float16

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * torch.empty((), dtype=self.dtype).element_size()


def _normal(name: str, *shape: int, std: float = INIT_STD) -> TensorSpec:
    return TensorSpec(name, tuple(shape), "normal", std=std)


def _constant(name: str, *shape: int, value: float) -> TensorSpec:
    return TensorSpec(name, tuple(shape), "constant", value=value)


def _linear(name: str, out_features: int, in_features: int, bias: bool, std: float = INIT_STD) -> list[TensorSpec]:
    specs = [_normal(f"{name}.weight", out_features, in_features, std=std)]
    return specs + [_constant(f"{name}.bias", out_features, value=0.0)] if bias else specs


def _layer_norm(name: str, width: int) -> list[TensorSpec]:
    return [_constant(f"{name}.weight", width, value=1.0), _constant(f"{name}.bias", width, value=0.0)]


def residual_std(num_layers: int) -> float:
    """Std of the projections that add into the residual stream (GPT-2's scaled init), so that
    the 2 x `num_layers` additions together grow the stream about as much as one unscaled one."""
    return INIT_STD / math.sqrt(2 * num_layers)


def llava_tensors(shape: Shape) -> list[TensorSpec]:
    """The official `LlavaLlamaForCausalLM` state dict (names as our `layouts.OFFICIAL` reads them),
    in its order: embeddings, decoder layers, final norm, `mm_projector` (mlp2x_gelu: Linear, GELU,
    Linear), lm_head. The vision tower is not in it (`delay_load`), as in the released files."""
    h, i, n = shape.hidden_size, shape.intermediate_size, shape.num_hidden_layers
    kv = h // shape.num_attention_heads * shape.num_key_value_heads
    out_std = residual_std(n)
    specs = [_normal("model.embed_tokens.weight", shape.vocab_size, h)]
    for k in range(n):
        p = f"model.layers.{k}"
        specs += [_normal(f"{p}.self_attn.q_proj.weight", h, h), _normal(f"{p}.self_attn.k_proj.weight", kv, h),
                  _normal(f"{p}.self_attn.v_proj.weight", kv, h),
                  _normal(f"{p}.self_attn.o_proj.weight", h, h, std=out_std),
                  _normal(f"{p}.mlp.gate_proj.weight", i, h), _normal(f"{p}.mlp.up_proj.weight", i, h),
                  _normal(f"{p}.mlp.down_proj.weight", h, i, std=out_std),
                  _constant(f"{p}.input_layernorm.weight", h, value=1.0),
                  _constant(f"{p}.post_attention_layernorm.weight", h, value=1.0)]
    specs.append(_constant("model.norm.weight", h, value=1.0))
    specs += _linear("model.mm_projector.0", h, shape.clip.hidden_size, bias=True)
    specs += _linear("model.mm_projector.2", h, h, bias=True)
    specs.append(_normal("lm_head.weight", shape.vocab_size, h))
    return specs


def _clip_encoder(prefix: str, width: int, inner: int, layers: int) -> list[TensorSpec]:
    specs: list[TensorSpec] = []
    out_std = residual_std(layers)
    for k in range(layers):
        p = f"{prefix}.encoder.layers.{k}"
        for proj in ("k_proj", "v_proj", "q_proj"):  # CLIPAttention's order
            specs += _linear(f"{p}.self_attn.{proj}", width, width, bias=True)
        specs += _linear(f"{p}.self_attn.out_proj", width, width, bias=True, std=out_std)
        specs += _layer_norm(f"{p}.layer_norm1", width)
        specs += _linear(f"{p}.mlp.fc1", inner, width, bias=True)
        specs += _linear(f"{p}.mlp.fc2", width, inner, bias=True, std=out_std)
        specs += _layer_norm(f"{p}.layer_norm2", width)
    return specs


def clip_tensors(clip: ClipShape) -> list[TensorSpec]:
    """A transformers `CLIPModel` state dict as the old hub files store it (position-id buffers
    included; our loader drops them and everything outside `vision_model.*`)."""
    t, v = clip.text_hidden_size, clip.hidden_size
    specs = [TensorSpec("text_model.embeddings.position_ids", (1, clip.text_max_position_embeddings),
                        "positions", dtype=torch.int64),
             _normal("text_model.embeddings.token_embedding.weight", clip.text_vocab_size, t),
             _normal("text_model.embeddings.position_embedding.weight", clip.text_max_position_embeddings, t)]
    specs += _clip_encoder("text_model", t, clip.text_intermediate_size, clip.text_num_hidden_layers)
    specs += _layer_norm("text_model.final_layer_norm", t)
    specs += [_normal("vision_model.embeddings.class_embedding", v),
              TensorSpec("vision_model.embeddings.position_ids", (1, clip.num_positions), "positions",
                         dtype=torch.int64),
              _normal("vision_model.embeddings.patch_embedding.weight", v, 3, clip.patch_size, clip.patch_size),
              _normal("vision_model.embeddings.position_embedding.weight", clip.num_positions, v)]
    specs += _layer_norm("vision_model.pre_layrnorm", v)  # sic: transformers' spelling
    specs += _clip_encoder("vision_model", v, clip.intermediate_size, clip.num_hidden_layers)
    specs += _layer_norm("vision_model.post_layernorm", v)
    specs += [_normal("visual_projection.weight", clip.projection_dim, v),
              _normal("text_projection.weight", clip.projection_dim, t),
              _constant("logit_scale", value=math.log(1 / 0.07))]
    return specs


def plan_shards(specs: list[TensorSpec], max_shard_bytes: int) -> list[list[TensorSpec]]:
    """transformers' `shard_checkpoint`: in state-dict order, a tensor that would take the current
    shard past `max_shard_bytes` starts a new one (a shard is never left empty)."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        if shards[-1] and size + spec.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += spec.nbytes
    return shards


def materialize(spec: TensorSpec, generator: torch.Generator) -> torch.Tensor:
    """The tensor `spec` describes; normal fills draw from `generator`, the others do not."""
    if spec.fill == "normal":
        # Drawn in float16 directly: no float32 copy of the largest tensors.
        return torch.empty(spec.shape, dtype=spec.dtype).normal_(0.0, spec.std, generator=generator)
    if spec.fill == "constant":
        return torch.full(spec.shape, spec.value, dtype=spec.dtype)
    if spec.fill == "positions":
        return torch.arange(spec.shape[-1], dtype=spec.dtype).expand(spec.shape).contiguous()
    raise ValueError(f"{spec.name}: unknown fill {spec.fill!r}")


# ------------------------------------------------------------------------ streamed torch.save


class _StorageRef:
    """Stands for storage `key` in the pickle; `_Pickler.persistent_id` writes it as torch does."""

    def __init__(self, key: str, spec: TensorSpec) -> None:
        self.key, self.spec = key, spec


class _TensorRef:
    """Pickles as a contiguous CPU tensor over a whole storage, as `Tensor.__reduce_ex__` does."""

    def __init__(self, storage: _StorageRef) -> None:
        self.storage = storage

    def __reduce_ex__(self, protocol: int):
        shape = self.storage.spec.shape
        stride = tuple(math.prod(shape[d + 1:]) for d in range(len(shape)))
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, 0, shape, stride, False, OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: object):
        if isinstance(obj, _StorageRef):
            spec = obj.spec
            return ("storage", STORAGE_TYPES[spec.dtype], obj.key, "cpu", spec.numel)
        return None


def state_dict_pickle(specs: list[TensorSpec]) -> bytes:
    """The `data.pkl` that `torch.save({name: tensor})` writes for tensors of these specs."""
    buffer = io.BytesIO()
    refs = {spec.name: _TensorRef(_StorageRef(str(k), spec)) for k, spec in enumerate(specs)}
    _Pickler(buffer, protocol=2).dump(refs)  # torch.serialization.DEFAULT_PROTOCOL
    return buffer.getvalue()


def write_state_dict(path: Path, specs: list[TensorSpec], make: Callable[[TensorSpec], torch.Tensor],
                     written: Callable[[int], object] = lambda n: None) -> None:
    """Write the file `torch.save({spec.name: make(spec)}, path)` writes (same records, same bytes
    but for torch's random `.data/serialization_id`), calling `make` one tensor at a time and
    dropping each tensor once written: `torch.save` needs the whole dict in memory, 10 GB for a
    7b shard. Uses torch's own zip writer (`torch._C.PyTorchFileWriter`, as `torch.save` does);
    `tests/test_make_checkpoint.py` checks the result against `torch.save` record by record.
    `written(nbytes)` is called after each tensor. Raises ValueError if a tensor does not match
    its spec."""
    from torch.utils.serialization import config

    alignment = str(config.save.storage_alignment)
    if not str(path).isascii():  # PyTorchFileWriter opens ASCII paths only (torch.save falls back)
        raise ValueError(f"{path}: weight file paths must be ASCII")
    writer = torch._C.PyTorchFileWriter(str(path), torch.serialization.get_crc32_options(),
                                        config.save.storage_alignment)
    data = state_dict_pickle(specs)
    # the records `torch.serialization._save` writes before the tensor data (torch 2.13)
    writer.write_record("data.pkl", data, len(data))
    writer.write_record(".format_version", "1", 1)
    writer.write_record(".storage_alignment", alignment, len(alignment))
    writer.write_record("byteorder", sys.byteorder, len(sys.byteorder))
    for key, spec in enumerate(specs):
        tensor = make(spec)
        if tuple(tensor.shape) != spec.shape or tensor.dtype != spec.dtype or not tensor.is_contiguous():
            raise ValueError(f"{spec.name}: made a {tensor.dtype} tensor of shape {list(tensor.shape)}, "
                             f"expected contiguous {spec.dtype} {list(spec.shape)}")
        writer.write_record(f"data/{key}", tensor.untyped_storage(), spec.nbytes)
        del tensor
        written(spec.nbytes)
    writer.write_end_of_file()


# ------------------------------------------------------------------------------ JSON files


def llava_config(shape: Shape, clip_dir: Path) -> dict:
    """`config.json` of the released llava-v1.5 checkpoints (transformers 4.31), `mm_vision_tower`
    pointing at the local CLIP directory."""
    return {
        "_name_or_path": f"./checkpoints/vicuna-{shape.name}-v1-5",
        "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava",
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
        "hidden_act": "silu", "hidden_size": shape.hidden_size, "intermediate_size": shape.intermediate_size,
        "num_attention_heads": shape.num_attention_heads, "num_hidden_layers": shape.num_hidden_layers,
        "num_key_value_heads": shape.num_key_value_heads,
        "max_position_embeddings": shape.max_position_embeddings, "initializer_range": INIT_STD,
        "pretraining_tp": 1, "rms_norm_eps": 1e-5, "rope_scaling": None, "tie_word_embeddings": False,
        "vocab_size": shape.vocab_size, "torch_dtype": "float16", "transformers_version": "4.31.0",
        "use_cache": True,
        "image_aspect_ratio": "pad", "image_grid_pinpoints": None,
        "mm_hidden_size": shape.clip.hidden_size, "mm_projector_type": "mlp2x_gelu",
        "mm_resampler_type": None, "mm_patch_merge_type": "flat",
        "mm_use_im_patch_token": False, "mm_use_im_start_end": False,
        "mm_vision_select_feature": "patch", "mm_vision_select_layer": -2,
        "mm_vision_tower": str(clip_dir.resolve()),
        "freeze_mm_mlp_adapter": False, "tune_mm_mlp_adapter": False, "tune_mm_vision_resampler": False,
        "unfreeze_mm_vision_tower": False, "use_mm_proj": True,
    }


GENERATION_CONFIG = {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
                     "transformers_version": "4.31.0"}


def _token(content: str, typed: bool) -> dict:
    entry = {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    return {"__type": "AddedToken", **entry} if typed else entry


# The released files (transformers 4.31): no pad token in the config, while the map keeps the
# `pad_token = unk_token` that training set.
TOKENIZER_CONFIG = {
    "add_bos_token": True, "add_eos_token": False, "bos_token": _token("<s>", True),
    "clean_up_tokenization_spaces": False, "eos_token": _token("</s>", True), "legacy": False,
    "model_max_length": 2048, "pad_token": None, "padding_side": "right", "sp_model_kwargs": {},
    "tokenizer_class": "LlamaTokenizer", "unk_token": _token("<unk>", True),
}
SPECIAL_TOKENS_MAP = {"bos_token": _token("<s>", False), "eos_token": _token("</s>", False),
                      "pad_token": "<unk>", "unk_token": _token("<unk>", False)}


def _clip_tower_config(width: int, inner: int, layers: int, heads: int, projection_dim: int,
                       model_type: str) -> dict:
    return {"model_type": model_type, "hidden_size": width, "intermediate_size": inner,
            "num_hidden_layers": layers, "num_attention_heads": heads, "projection_dim": projection_dim,
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "attention_dropout": 0.0, "dropout": 0.0,
            "initializer_factor": 1.0, "initializer_range": 0.02}


def clip_config(clip: ClipShape) -> dict:
    """A `CLIPModel` `config.json` as `openai/clip-vit-large-patch14-336`'s (its keys that matter;
    the hub file also repeats every default of both towers)."""
    vision = _clip_tower_config(clip.hidden_size, clip.intermediate_size, clip.num_hidden_layers,
                                clip.num_attention_heads, clip.projection_dim, "clip_vision_model")
    vision.update(image_size=clip.image_size, patch_size=clip.patch_size, num_channels=3)
    text = _clip_tower_config(clip.text_hidden_size, clip.text_intermediate_size, clip.text_num_hidden_layers,
                              clip.text_num_attention_heads, clip.projection_dim, "clip_text_model")
    text.update(vocab_size=clip.text_vocab_size, max_position_embeddings=clip.text_max_position_embeddings,
                bos_token_id=0, pad_token_id=1, eos_token_id=2)
    return {"_name_or_path": "openai/clip-vit-large-patch14-336", "architectures": ["CLIPModel"],
            "model_type": "clip", "initializer_factor": 1.0, "logit_scale_init_value": 2.6592,
            "projection_dim": clip.projection_dim, "text_config": text, "vision_config": vision,
            "torch_dtype": "float16", "transformers_version": None}


def preprocessor_config(clip: ClipShape) -> dict:
    """The official CLIP-336 `preprocessor_config.json` (old `CLIPFeatureExtractor` format: int sizes)."""
    return {"crop_size": clip.image_size, "do_center_crop": True, "do_normalize": True, "do_resize": True,
            "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
            "resample": 3, "size": clip.image_size}


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")  # as save_pretrained


# ------------------------------------------------------------------------------- tokenizer


def stdlib_text(max_chars: int) -> str:
    """The first `max_chars` characters of Python's standard-library sources, files in sorted
    order: plenty of distinct words, on every machine, read offline."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts: list[str] = []
    size = 0
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        parts.append(path.read_text(encoding="utf-8", errors="replace"))
        size += len(parts[-1])
        if size >= max_chars:
            break
    return "\n".join(parts)[:max_chars]


def write_tokenizer(directory: Path, vocab_size: int, corpus_chars: int) -> None:
    """`tokenizer.model` with exactly `vocab_size` pieces (LLaMA's settings: BPE, byte fallback,
    split digits, unk 0 / bos 1 / eos 2, through stage 0's `train_tokenizer`), then the released
    checkpoints' `tokenizer_config.json` and `special_tokens_map.json` over stage 0's."""
    import sentencepiece as spm

    from llava15.world.stage0 import train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(stdlib_text(corpus_chars), encoding="utf-8")
        train_tokenizer(corpus, directory, vocab_size)
    pieces = spm.SentencePieceProcessor(model_file=str(directory / "tokenizer.model")).get_piece_size()
    if pieces != vocab_size:  # stage 0 trains with hard_vocab_limit=False: too little text gives fewer
        raise ValueError(f"{directory / 'tokenizer.model'}: {pieces} pieces, not {vocab_size}: "
                         f"raise the shape's tokenizer_corpus_chars ({corpus_chars})")
    write_json(directory / "tokenizer_config.json", TOKENIZER_CONFIG)
    write_json(directory / "special_tokens_map.json", SPECIAL_TOKENS_MAP)


# ---------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class Written:
    """What `write_checkpoint` wrote: the two directories and every file with its size."""

    llava_dir: Path
    clip_dir: Path
    files: tuple[tuple[Path, int], ...]
    seconds: float


def weight_bytes(shape: Shape) -> int:
    return sum(s.nbytes for s in llava_tensors(shape)) + sum(s.nbytes for s in clip_tensors(shape.clip))


def _fresh_dir(path: Path) -> None:
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path}: exists and is not empty (remove it first: files of an "
                              "earlier run must not mix with these)")
    path.mkdir(parents=True, exist_ok=True)


def write_checkpoint(shape: Shape, out: Path, seed: int = 0, progress: bool = True) -> Written:
    """Write `out/<shape.dir_name>/` and `out/<shape.clip.dir_name>/` (module docstring).

    Raises FileExistsError if either directory holds files, OSError if the disk lacks room for
    the weights. The index is written last, so an interrupted run leaves no loadable checkpoint."""
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    llava_dir, clip_dir = out / shape.dir_name, out / shape.clip.dir_name
    total = weight_bytes(shape)
    free = shutil.disk_usage(out).free
    if free < total:
        raise OSError(f"{out}: {free / 1e9:.1f} GB free, the {shape.name} weights need {total / 1e9:.1f} GB")
    _fresh_dir(llava_dir)
    _fresh_dir(clip_dir)

    write_tokenizer(llava_dir, shape.vocab_size, shape.tokenizer_corpus_chars)
    draw = functools.partial(materialize, generator=torch.Generator().manual_seed(seed))
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"weights {shape.name}",
              disable=not progress) as bar:
        write_state_dict(clip_dir / "pytorch_model.bin", clip_tensors(shape.clip), draw, bar.update)
        shards = plan_shards(llava_tensors(shape), shape.max_shard_bytes)
        weight_map = {}
        for k, specs in enumerate(shards, start=1):
            name = SHARD_NAME.format(k, len(shards))
            write_state_dict(llava_dir / name, specs, draw, bar.update)
            weight_map.update(dict.fromkeys((s.name for s in specs), name))

    write_json(clip_dir / "config.json", clip_config(shape.clip))
    write_json(clip_dir / "preprocessor_config.json", preprocessor_config(shape.clip))
    write_json(llava_dir / "config.json", llava_config(shape, clip_dir))
    write_json(llava_dir / "generation_config.json", GENERATION_CONFIG)
    index = {"metadata": {"total_size": sum(s.nbytes for specs in shards for s in specs)},
             "weight_map": weight_map}
    write_json(llava_dir / INDEX_NAME, index)
    files = tuple((p, p.stat().st_size) for d in (llava_dir, clip_dir) for p in sorted(d.iterdir()))
    return Written(llava_dir, clip_dir, files, time.perf_counter() - start)


def _human(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    exponent = min(3, int(math.log(n, 1024)))
    return f"{n / 1024**exponent:.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"


def report_lines(written: Written) -> Iterable[str]:
    for path, size in written.files:
        yield f"{_human(size):>10}  {path}"
    total = sum(size for _, size in written.files)
    yield f"{_human(total):>10}  in all, {written.seconds:.0f} s"


def main(argv: list[str] | None = None) -> Written:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--out", required=True, type=Path, help="parent directory of the two checkpoint directories")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    written = write_checkpoint(SHAPES[args.shape], args.out, args.seed, progress=not args.no_progress)
    for line in report_lines(written):
        print(line)
    return written


if __name__ == "__main__":
    main()
