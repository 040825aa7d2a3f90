"""Read the two GGUF files llama.cpp and ollama run (a `llama` language model and a `clip` mmproj
with the LLaVA projector) as a LLaVA-1.5 checkpoint.

The pair becomes a `LlavaConfig`, two `WeightFile`s that present the tensors under our names
(dequantized from any GGML type the `gguf` package reads, q/k rows put back in HF's rotary
layout), the image preprocessing of the mmproj file, and a SentencePiece `tokenizer.model`
rebuilt from the vocabulary in the language model's metadata (written once into a cache
folder, since every tokenizer of ours is loaded from a directory).

What llama.cpp computes is what the pair describes: the tower runs up to its feature layer
(`clip.vision.feature_layer`; without it, as llama.cpp does, `block_count - 1` layers), and the
tower's post-layernorm, which LLaVA never applies, is not in the file (identity here).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llava15.checkpoint.files import TensorInfo, WeightFile, drop_range
from llava15.checkpoint.gguf import hf_name, unpermute_rotary
from llava15.config import LlavaConfig, TextConfig, VisionConfig
from llava15.data.image import ImageProcessorConfig

# GGUF token types 1-6 (normal, unknown, control, user-defined, unused, byte) are SentencePiece's
# piece types by number; anything else is read as a normal piece.
PIECE_TYPES = range(1, 7)
_TOWER = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
          "attn_out": "self_attn.out_proj", "ln1": "layer_norm1", "ln2": "layer_norm2",
          "ffn_up": "mlp.fc1", "ffn_down": "mlp.fc2"}
_TOWER_TOP = {"v.class_embd": "embeddings.class_embedding",
              "v.patch_embd.weight": "embeddings.patch_embedding.weight",
              "v.position_embd.weight": "embeddings.position_embedding.weight",
              "v.pre_ln.weight": "pre_layrnorm.weight", "v.pre_ln.bias": "pre_layrnorm.bias"}


@dataclass(frozen=True)
class GGUFPairFiles:
    llm: Path
    mmproj: Path


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _require(reader, path: Path, key: str):
    value = _field(reader, key)
    if value is None:
        raise ValueError(f"{path}: GGUF key {key!r} is missing")
    return value


def architecture(path: Path) -> str | None:
    from gguf import GGUFReader

    return _field(GGUFReader(str(path)), "general.architecture")


def find_pair(path: str | Path, mmproj: str | Path | None = None) -> GGUFPairFiles:
    """The (language model, mmproj) files: `path` is the language model's .gguf (its mmproj is
    `mmproj`, or the one `clip` file beside it) or a folder holding exactly one of each."""
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.gguf"))
    elif path.is_file():
        candidates = [path] + sorted(p for p in path.parent.glob("*.gguf") if p != path)
    else:
        raise FileNotFoundError(f"{path}: no such GGUF file or folder")
    kinds = {p: architecture(p) for p in candidates}
    llms = [p for p in ([path] if path.is_file() else candidates) if kinds[p] != "clip"]
    projs = [Path(mmproj)] if mmproj is not None else [p for p in candidates if kinds[p] == "clip"]
    if path.is_file() and kinds[path] == "clip":
        raise ValueError(f"{path}: this is an mmproj file (general.architecture 'clip'); pass the "
                         "language model's .gguf (or their folder)")
    if len(llms) != 1:
        raise ValueError(f"{path}: expected one language-model .gguf, found "
                         f"{[p.name for p in llms] or 'none'}")
    if len(projs) != 1:
        raise ValueError(f"{path}: expected one mmproj .gguf (general.architecture 'clip') beside "
                         f"the language model, found {[p.name for p in projs] or 'none'}")
    return GGUFPairFiles(llms[0], projs[0])


def is_gguf(path: str | Path) -> bool:
    """Whether `path` names a GGUF language model or a folder of GGUF files (and no checkpoint)."""
    path = Path(path)
    if path.is_file():
        return path.suffix == ".gguf"
    return path.is_dir() and any(path.glob("*.gguf")) and not any(
        (path / name).exists() for name in ("config.json", "model.safetensors", "pytorch_model.bin"))


def read_pair_config(llm, mm, files: GGUFPairFiles) -> LlavaConfig:
    """The LlavaConfig the two files describe; refuses what is not a LLaVA-1.5 pair, naming the
    file and the key."""
    arch = _field(llm, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{files.llm}: general.architecture is {arch!r}; only 'llama' language "
                         "models are supported")
    if _field(mm, "general.architecture") != "clip" or not _field(mm, "clip.has_llava_projector", False):
        raise ValueError(f"{files.mmproj}: not a LLaVA mmproj file (general.architecture 'clip' with "
                         "clip.has_llava_projector true)")
    projector = _field(mm, "clip.projector_type", "mlp")
    if projector != "mlp":
        raise ValueError(f"{files.mmproj}: clip.projector_type {projector!r}; only LLaVA-1.5's "
                         "'mlp' projector is supported")
    names = {t.name for t in mm.tensors}
    if "mm.2.weight" not in names:
        raise ValueError(f"{files.mmproj}: tensor 'mm.2.weight' is missing (LLaVA-1.5's projector "
                         "has two layers, mm.0 and mm.2)")
    hidden = int(_require(llm, files.llm, "llama.embedding_length"))
    projected = next(t for t in mm.tensors if t.name == "mm.2.weight").shape
    if int(projected[1]) != hidden:  # GGUF shapes are reversed: ne[1] is the output width
        raise ValueError(f"{files.mmproj}: the projector writes {int(projected[1])}-wide "
                         f"embeddings but {files.llm} has llama.embedding_length {hidden}")
    heads = int(_require(llm, files.llm, "llama.attention.head_count"))
    head_dim = int(_field(llm, "llama.rope.dimension_count", hidden // heads))
    vocab = len(_require(llm, files.llm, "tokenizer.ggml.tokens"))
    llm_names = {t.name for t in llm.tensors}
    text = TextConfig(
        vocab_size=vocab, hidden_size=hidden,
        intermediate_size=int(_require(llm, files.llm, "llama.feed_forward_length")),
        num_hidden_layers=int(_require(llm, files.llm, "llama.block_count")),
        num_attention_heads=heads,
        num_key_value_heads=int(_field(llm, "llama.attention.head_count_kv", heads)),
        head_dim_override=head_dim if head_dim != hidden // heads else None,
        max_position_embeddings=int(_field(llm, "llama.context_length", 2048)),
        rms_norm_eps=float(_field(llm, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(_field(llm, "llama.rope.freq_base", 10000.0)),
        tie_word_embeddings="output.weight" not in llm_names,
        bos_token_id=int(_field(llm, "tokenizer.ggml.bos_token_id", 1)),
        eos_token_id=int(_field(llm, "tokenizer.ggml.eos_token_id", 2)),
        pad_token_id=int(_field(llm, "tokenizer.ggml.padding_token_id", 0)))
    blocks = int(_require(mm, files.mmproj, "clip.vision.block_count"))
    feature = _field(mm, "clip.vision.feature_layer")
    select = int(max(feature)) if feature else blocks - 1
    if select > blocks:
        raise ValueError(f"{files.mmproj}: clip.vision.feature_layer {select} is beyond "
                         f"clip.vision.block_count {blocks}")
    vision = VisionConfig(
        hidden_size=int(_require(mm, files.mmproj, "clip.vision.embedding_length")),
        intermediate_size=int(_require(mm, files.mmproj, "clip.vision.feed_forward_length")),
        num_hidden_layers=select,
        num_attention_heads=int(_require(mm, files.mmproj, "clip.vision.attention.head_count")),
        image_size=int(_require(mm, files.mmproj, "clip.vision.image_size")),
        patch_size=int(_require(mm, files.mmproj, "clip.vision.patch_size")),
        layer_norm_eps=float(_field(mm, "clip.vision.attention.layer_norm_epsilon", 1e-5)),
        hidden_act="gelu" if _field(mm, "clip.use_gelu", False) else "quick_gelu")
    mean, std = _image_stats(mm)
    return LlavaConfig(vision=vision, text=text, mm_projector_type="mlp2x_gelu",
                       mm_vision_select_layer=select, image_aspect_ratio="pad",
                       image_mean=mean, image_std=std, conv_mode="vicuna_v1")


def _image_stats(mm) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = _field(mm, "clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073])
    std = _field(mm, "clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711])
    return tuple(float(x) for x in mean), tuple(float(x) for x in std)


class GGUFTensors(WeightFile):
    """One GGUF file's tensors under our names, dequantized to float32 on read. `extra` holds
    tensors the file does not carry but the model has (the unused post-layernorm)."""

    def __init__(self, path: Path, reader, rename, heads: dict[str, int],
                 extra: dict[str, torch.Tensor] | None = None) -> None:
        self.path = path
        self._tensors = {}
        for t in reader.tensors:
            ours = rename(t.name)
            if ours is not None:
                self._tensors[ours] = t
        self._heads = heads
        self._extra = dict(extra or {})
        self.infos = {k: TensorInfo(tuple(int(x) for x in reversed(t.shape)), torch.float32)
                      for k, t in self._tensors.items()}
        self.infos.update({k: TensorInfo(tuple(v.shape), v.dtype) for k, v in self._extra.items()})

    def read_into(self, key: str, out: torch.Tensor) -> None:
        from gguf.quants import dequantize

        if key in self._extra:
            out.copy_(self._extra[key])
            return
        t = self._tensors[key]
        try:
            array = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        except NotImplementedError as e:
            raise ValueError(f"{self.path}: tensor {t.name!r} has GGML type {t.tensor_type.name}, "
                             f"which cannot be dequantized here ({e})") from None
        array = array.reshape(self.infos[key].shape)
        for suffix, heads in self._heads.items():
            if key.endswith(suffix):
                array = unpermute_rotary(array, heads)
        out.copy_(torch.from_numpy(np.require(array, requirements=["C", "W"])))
        # the reader maps the file read-only: hand the tensor's pages back once copied, so the
        # file does not stay resident beside the weights it was read into
        drop_range(t.data.ctypes.data, t.data.nbytes)


def llm_key(name: str) -> str:
    return "language_model." + hf_name(name)


def mmproj_key(name: str) -> str | None:
    v = "vision_tower.vision_model."
    if name in _TOWER_TOP:
        return v + _TOWER_TOP[name]
    if name.startswith("mm."):
        index, kind = name[3:].split(".", 1)
        layer = {"0": "linear_1", "2": "linear_2"}.get(index)
        if layer is None:
            raise KeyError(f"projector tensor {name!r} is not part of LLaVA-1.5's MLP (mm.0, mm.2)")
        return f"multi_modal_projector.{layer}.{kind}"
    parts = name.split(".")
    if len(parts) == 5 and parts[:2] == ["v", "blk"] and parts[3] in _TOWER:
        return f"{v}encoder.layers.{parts[2]}.{_TOWER[parts[3]]}.{parts[4]}"
    if name.startswith(("v.post_ln.", "v.image_newline")):
        return None  # LLaVA-1.5 reads the tower before its post-layernorm
    raise KeyError(f"mmproj tensor {name!r} has no LLaVA-1.5 counterpart")


def open_pair(files: GGUFPairFiles) -> tuple[LlavaConfig, list[WeightFile]]:
    """The config and the two weight files of a GGUF pair (tower layers past the feature layer
    are not in the model, so their tensors, if present, are left out)."""
    from gguf import GGUFReader

    llm, mm = GGUFReader(str(files.llm)), GGUFReader(str(files.mmproj))
    config = read_pair_config(llm, mm, files)
    layers = config.vision.num_hidden_layers

    def tower(name: str) -> str | None:
        key = mmproj_key(name)
        if key is not None and ".encoder.layers." in key and int(key.split(".")[4]) >= layers:
            return None
        return key

    width = config.vision.hidden_size
    identity = {"vision_tower.vision_model.post_layernorm.weight": torch.ones(width),
                "vision_tower.vision_model.post_layernorm.bias": torch.zeros(width)}
    heads = {"q_proj.weight": config.text.num_attention_heads,
             "k_proj.weight": config.text.num_key_value_heads}
    return config, [GGUFTensors(files.llm, llm, llm_key, heads),
                    GGUFTensors(files.mmproj, mm, tower, {}, identity)]


def image_processor(config: LlavaConfig) -> ImageProcessorConfig:
    size = config.vision.image_size
    return ImageProcessorConfig(shortest_edge=size, crop_size=(size, size),
                                image_mean=config.image_mean, image_std=config.image_std)


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llava15" / "gguf"


def tokenizer_dir(files: GGUFPairFiles, root: Path | None = None) -> Path:
    """A folder with `tokenizer.model` (and its config) rebuilt from the language model's
    vocabulary, made once per file (keyed by path, size and modification time)."""
    from gguf import GGUFReader

    stat = files.llm.stat()
    key = hashlib.sha1(f"{files.llm.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    out = (root or cache_root()) / key[:16]
    if (out / "tokenizer.model").is_file() and (out / "tokenizer_config.json").is_file():
        return out
    reader = GGUFReader(str(files.llm))
    model = _field(reader, "tokenizer.ggml.model")
    if model != "llama":
        raise ValueError(f"{files.llm}: tokenizer.ggml.model {model!r}; only SentencePiece ('llama') "
                         "vocabularies are supported for LLaVA-1.5")
    out.mkdir(parents=True, exist_ok=True)
    tokens = _field(reader, "tokenizer.ggml.tokens")
    scores = _field(reader, "tokenizer.ggml.scores") or [0.0] * len(tokens)
    types = _field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
    tmp = out / "tokenizer.model.tmp"
    tmp.write_bytes(spm_model(tokens, scores, types, _field(reader, "tokenizer.ggml.add_space_prefix", True),
                              int(_field(reader, "tokenizer.ggml.bos_token_id", 1)),
                              int(_field(reader, "tokenizer.ggml.eos_token_id", 2))))
    tmp.replace(out / "tokenizer.model")
    special = {name: tokens[int(_field(reader, f"tokenizer.ggml.{name}_token_id", default))]
               for name, default in (("bos", 1), ("eos", 2), ("unknown", 0))}
    config = {"add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token", True)),
              "add_eos_token": bool(_field(reader, "tokenizer.ggml.add_eos_token", False)),
              "bos_token": special["bos"], "eos_token": special["eos"], "unk_token": special["unknown"],
              "added_tokens_decoder": {
                  str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": types[i] == 3}
                  for i, t in enumerate(tokens) if types[i] in (3, 4) or i == 0},
              # LLaVA-1.5's tokenizers are non-legacy; files we wrote say which they were
              "legacy": bool(_field(reader, "llava15.tokenizer.legacy", False)),
              "model_max_length": int(_field(reader, "llama.context_length", 2048)),
              "tokenizer_class": "LlamaTokenizer"}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    return out


def spm_model(tokens: list[str], scores: list[float], types: list[int], add_space_prefix: bool,
              bos_id: int = 1, eos_id: int = 2) -> bytes:
    """A SentencePiece BPE model proto with these pieces: BPE merges follow piece scores, so the
    encoding is the original model's; normalization as LLaMA's (identity, dummy prefix)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    for token, score, kind in zip(tokens, scores, types):
        piece = proto.pieces.add()
        piece.piece, piece.score = token, float(score)
        piece.type = int(kind) if int(kind) in PIECE_TYPES else 1
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.vocab_size = len(tokens)
    proto.trainer_spec.byte_fallback = any(int(k) == 6 for k in types)
    unk = next((i for i, k in enumerate(types) if int(k) == 2), 0)
    proto.trainer_spec.unk_id = unk
    proto.trainer_spec.bos_id = bos_id
    proto.trainer_spec.eos_id = eos_id
    proto.trainer_spec.pad_id = -1
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = bool(add_space_prefix)
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    return proto.SerializeToString()
