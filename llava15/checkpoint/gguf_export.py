"""Write a LLaVA-1.5 checkpoint as the two GGUF files llama.cpp and ollama run.

* The language model as llama.cpp's `llama` architecture: its hyperparameter keys, tensor names
  (`token_embd`, `blk.N.attn_q` ... `output`), q/k rows permuted into llama.cpp's interleaved
  rotary layout (the inverse of `checkpoint.gguf.unpermute_rotary`), and the SentencePiece
  vocabulary (pieces, scores, types, special ids, the chat template) in its metadata.
* The `mmproj` file as llama.cpp's `clip` architecture with the LLaVA projector: the vision
  hyperparameters, image mean and std, the tower's layers up to the one LLaVA reads
  (`mm_vision_select_layer`, written as `clip.vision.feature_layer`), `v.*` tower tensors and
  `mm.0` / `mm.2` for the two-layer MLP projector. The post-layernorm is not used by LLaVA and
  not written.

Tensors are converted and written one at a time (`gguf.GGUFWriter`'s streaming calls), so the
peak memory is the loaded model plus one tensor. 2-D weights are float16 or `q8_0`; norms,
biases and embeddings of the tower's class token stay float32, as llama.cpp's converters write them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llava15.config import LlavaConfig
from llava15.data.conversation import get_template

OUTTYPES = ("f16", "q8_0")
LEGACY_KEY = "llava15.tokenizer.legacy"
SPM_TYPES = {"normal": 1, "unknown": 2, "control": 3, "user_defined": 4, "unused": 5, "byte": 6}


class GGUFExportError(ValueError):
    """The checkpoint cannot be expressed in llama.cpp's LLaVA-1.5 files (the message says why)."""


@dataclass(frozen=True)
class GGUFPair:
    llm: Path
    mmproj: Path


@dataclass(frozen=True)
class Tensor:
    """One tensor to write: its GGUF name, numpy shape, and how to make its float32 data."""
    name: str
    shape: tuple[int, ...]
    make: Callable[[], np.ndarray]
    quantizable: bool  # 2-D weights: f16 or q8_0; everything else float32


def permute_rotary(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """HF's half-split rotary rows -> llama.cpp's interleaved pairs, per head."""
    rows = weight.shape[0]
    return (weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def check_exportable(config: LlavaConfig) -> None:
    """Refuse what llama.cpp's LLaVA-1.5 path cannot run, naming the setting."""
    problems = []
    if config.mm_projector_type != "mlp2x_gelu":
        problems.append(f"mm_projector_type {config.mm_projector_type!r} (llama.cpp's 'mlp' "
                        "projector is the two-layer GELU MLP, mlp2x_gelu)")
    if config.image_aspect_ratio not in ("pad", "square") or config.image_grid_pinpoints:
        problems.append(f"image_aspect_ratio {config.image_aspect_ratio!r} (only LLaVA-1.5's single view)")
    if config.mm_vision_select_feature != "patch" or not config.vision.use_cls_token:
        problems.append("the tower's patch features after a class token are what llama.cpp reads")
    if config.text.attention_bias or config.text.qkv_bias:
        problems.append("attention biases in the language model")
    if config.text.hidden_act != "silu":
        problems.append(f"language-model activation {config.text.hidden_act!r} (llama uses silu)")
    if config.vision.hidden_act not in ("quick_gelu", "gelu"):
        problems.append(f"tower activation {config.vision.hidden_act!r}")
    if problems:
        raise GGUFExportError("cannot export to llama.cpp's LLaVA-1.5 GGUF: " + "; ".join(problems))


def feature_layer(config: LlavaConfig) -> int:
    """The tower block whose output LLaVA reads, counted as llama.cpp counts (0 = embeddings)."""
    n = config.vision.num_hidden_layers
    layer = config.mm_vision_select_layer
    return layer if layer >= 0 else n + layer + 1


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy()


def llm_tensors(state: dict[str, torch.Tensor], config: LlavaConfig) -> list[Tensor]:
    text = config.text
    out = []

    def add(name: str, key: str, transform=None) -> None:
        t = state[key]
        make = (lambda t=t: transform(_array(t))) if transform else (lambda t=t: _array(t))
        out.append(Tensor(name, tuple(t.shape), make, t.dim() == 2))

    add("token_embd.weight", "language_model.model.embed_tokens.weight")
    for i in range(text.num_hidden_layers):
        p = f"language_model.model.layers.{i}."
        add(f"blk.{i}.attn_norm.weight", p + "input_layernorm.weight")
        add(f"blk.{i}.attn_q.weight", p + "self_attn.q_proj.weight",
            lambda w: permute_rotary(w, text.num_attention_heads))
        add(f"blk.{i}.attn_k.weight", p + "self_attn.k_proj.weight",
            lambda w: permute_rotary(w, text.num_key_value_heads))
        add(f"blk.{i}.attn_v.weight", p + "self_attn.v_proj.weight")
        add(f"blk.{i}.attn_output.weight", p + "self_attn.o_proj.weight")
        add(f"blk.{i}.ffn_norm.weight", p + "post_attention_layernorm.weight")
        add(f"blk.{i}.ffn_gate.weight", p + "mlp.gate_proj.weight")
        add(f"blk.{i}.ffn_up.weight", p + "mlp.up_proj.weight")
        add(f"blk.{i}.ffn_down.weight", p + "mlp.down_proj.weight")
    add("output_norm.weight", "language_model.model.norm.weight")
    if not text.tie_word_embeddings:
        add("output.weight", "language_model.lm_head.weight")
    return out


def mmproj_tensors(state: dict[str, torch.Tensor], config: LlavaConfig) -> list[Tensor]:
    out = []

    def add(name: str, key: str, quantizable: bool | None = None) -> None:
        t = state[key]
        out.append(Tensor(name, tuple(t.shape), lambda t=t: _array(t),
                          t.dim() >= 2 if quantizable is None else quantizable))

    v = "vision_tower.vision_model."
    add("v.class_embd", v + "embeddings.class_embedding")
    add("v.patch_embd.weight", v + "embeddings.patch_embedding.weight", False)
    add("v.position_embd.weight", v + "embeddings.position_embedding.weight", False)
    add("v.pre_ln.weight", v + "pre_layrnorm.weight")
    add("v.pre_ln.bias", v + "pre_layrnorm.bias")
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.out_proj": "attn_out", "layer_norm1": "ln1", "layer_norm2": "ln2",
             "mlp.fc1": "ffn_up", "mlp.fc2": "ffn_down"}
    for i in range(feature_layer(config)):
        for ours, theirs in names.items():
            for kind in ("weight", "bias"):
                add(f"v.blk.{i}.{theirs}.{kind}", f"{v}encoder.layers.{i}.{ours}.{kind}")
    for ours, theirs in (("linear_1", "mm.0"), ("linear_2", "mm.2")):
        for kind in ("weight", "bias"):
            add(f"{theirs}.{kind}", f"multi_modal_projector.{ours}.{kind}")
    return out


def tensor_type(tensor: Tensor, outtype: str):
    """The GGML type a tensor is written in: float32 for norms, biases and the tower's
    embeddings; q8_0 for 2-D weights whose rows are whole blocks of 32 (llama.cpp's own
    quantizer leaves the others in float16); float16 otherwise."""
    from gguf import GGMLQuantizationType

    if not tensor.quantizable:
        return GGMLQuantizationType.F32
    if outtype == "q8_0" and tensor.shape[-1] % 32 == 0:
        return GGMLQuantizationType.Q8_0
    return GGMLQuantizationType.F16


def encode(tensor: Tensor, qtype) -> np.ndarray:
    """The tensor's data in GGML type `qtype`."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    data = np.ascontiguousarray(tensor.make())
    if qtype == GGMLQuantizationType.Q8_0:
        return quantize(data, qtype)
    return data.astype(np.float16 if qtype == GGMLQuantizationType.F16 else np.float32, copy=False)


def write_gguf(path: Path, arch: str, metadata: Callable[["object"], None], tensors: list[Tensor],
               outtype: str, progress=None) -> Path:
    """Stream `tensors` into `path`: tensor infos first (sizes computed, nothing converted), then
    each tensor converted, written and dropped in turn."""
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.constants import GGML_QUANT_SIZES

    writer = GGUFWriter(str(path), arch)
    metadata(writer)
    types = []
    for t in tensors:
        qtype = tensor_type(t, outtype)
        block, size = GGML_QUANT_SIZES[qtype]
        nbytes = int(np.prod(t.shape)) // block * size
        writer.add_tensor_info(t.name, t.shape, np.float16 if qtype == GGMLQuantizationType.F16
                               else np.float32, nbytes, raw_dtype=qtype)
        types.append(qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t, qtype in zip(tensors, types):
        writer.write_tensor_data(encode(t, qtype))
        if progress is not None:
            progress.update(1)
    writer.close()
    return path


def spm_vocabulary(tokenizer_dir: Path, vocab_size: int) -> tuple[list[str], list[float], list[int]]:
    """Pieces, scores and GGUF token types of the SentencePiece model, the tokenizer's added
    tokens (`<image>`, `<pad>` of llava-hf) as user-defined, and `[PADn]` fillers up to the
    embedding's row count (llava-hf pads it to a multiple of 64)."""
    import sentencepiece as spm

    model = tokenizer_dir / "tokenizer.model"
    if not model.is_file():
        raise GGUFExportError(f"{model}: not found; the GGUF export writes the SentencePiece "
                              "vocabulary of LLaMA/Vicuna models (tokenizer.model)")
    sp = spm.SentencePieceProcessor(model_file=str(model))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        kind = ("unknown" if sp.is_unknown(i) else "control" if sp.is_control(i)
                else "unused" if sp.is_unused(i) else "byte" if sp.is_byte(i) else "normal")
        types.append(SPM_TYPES[kind])
    added = _added_tokens(tokenizer_dir)
    for index in sorted(added):
        if index < len(tokens):
            continue
        if index != len(tokens):
            raise GGUFExportError(f"{tokenizer_dir}: added token id {index} leaves a gap after "
                                  f"{len(tokens)} tokens")
        tokens.append(added[index])
        scores.append(-1000.0)
        types.append(SPM_TYPES["user_defined"])
    if len(tokens) > vocab_size:
        raise GGUFExportError(f"{tokenizer_dir}: {len(tokens)} tokens but the embedding has "
                              f"{vocab_size} rows")
    for i in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{i}]")
        scores.append(-1000.0)
        types.append(SPM_TYPES["unused"])
    return tokens, scores, types


def _added_tokens(tokenizer_dir: Path) -> dict[int, str]:
    added: dict[int, str] = {}
    config = tokenizer_dir / "tokenizer_config.json"
    if config.is_file():
        for index, entry in json.loads(config.read_text()).get("added_tokens_decoder", {}).items():
            added[int(index)] = entry["content"]
    extra = tokenizer_dir / "added_tokens.json"
    if extra.is_file():
        added.update({int(i): t for t, i in json.loads(extra.read_text()).items()})
    return added


def chat_template(conv_mode: str) -> str | None:
    """A Jinja chat template rendering the conversation template `conv_mode` as the official
    `conv.get_prompt()` does ("SYSTEM USER: q ASSISTANT: a</s>USER: ..."), so llama.cpp's and
    ollama's chat endpoints build the official prompt; None for templates of other styles."""
    from llava15.data.conversation import SEP_TWO

    t = get_template(conv_mode)
    if t.sep_style != SEP_TWO:
        return None
    return ("{%- set roles = " + json.dumps(list(t.roles)) + " -%}"
            "{%- set seps = " + json.dumps([t.sep, t.sep2]) + " -%}"
            "{{ " + json.dumps(t.system) + " }}{{ seps[0] }}"
            "{%- for m in messages if m['role'] != 'system' -%}"
            "{%- if m['role'] == 'user' -%}{{ roles[0] }}: {{ m['content'] }}{{ seps[0] }}"
            "{%- else -%}{{ roles[1] }}: {{ m['content'] }}{{ seps[1] }}{%- endif -%}"
            "{%- endfor -%}{%- if add_generation_prompt -%}{{ roles[1] }}:{%- endif -%}")


def load_dtype(model: str | Path, model_base: str | Path | None) -> str:
    """float32 when the checkpoint fits in memory as float32 (norms, biases and the tower's
    embeddings are written as float32: they keep every bit), else float16, so that a 7B export
    peaks near its float16 size. The size is judged from the weight files, as if stored in
    float16 (the official checkpoints are)."""
    from llava15.checkpoint.placement import available_memory

    stored = sum(f.stat().st_size for folder in (model, model_base) if folder is not None
                 for f in Path(folder).rglob("*") if f.suffix in (".bin", ".safetensors"))
    return "float32" if 2 * stored * 1.1 < available_memory(torch.device("cpu")) else "float16"


def export_gguf(model: str | Path, out_dir: str | Path, *, model_base: str | Path | None = None,
                outtype: str = "f16", name: str | None = None, progress=None) -> GGUFPair:
    """Write `<name>.gguf` (the language model) and `mmproj-<name>.gguf` (tower + projector)
    for the checkpoint at `model` (any layout `load_llava` reads) into `out_dir`."""
    from llava15.checkpoint.load import load_llava
    from llava15.checkpoint.placement import PlacementRequest
    from llava15.data.tokenizer import load_tokenizer

    if outtype not in OUTTYPES:
        raise GGUFExportError(f"--outtype {outtype!r}: expected one of {', '.join(OUTTYPES)}")
    loaded = load_llava(model, model_base=model_base,
                        placement=PlacementRequest(device="cpu", dtype=load_dtype(model, model_base)))
    config = loaded.config
    check_exportable(config)
    name = name or Path(model).name
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = loaded.model.state_dict()
    tokens, scores, types = spm_vocabulary(loaded.tokenizer_dir, config.text.vocab_size)
    legacy = bool(load_tokenizer(loaded.tokenizer_dir).legacy)
    file_type = 1 if outtype == "f16" else 7  # llama.cpp's MOSTLY_F16 / MOSTLY_Q8_0
    text, vision = config.text, config.vision

    def llm_metadata(w) -> None:
        w.add_name(name)
        w.add_file_type(file_type)
        w.add_context_length(config.max_sequence_length)
        w.add_embedding_length(text.hidden_size)
        w.add_block_count(text.num_hidden_layers)
        w.add_feed_forward_length(text.intermediate_size)
        w.add_head_count(text.num_attention_heads)
        w.add_head_count_kv(text.num_key_value_heads)
        head_dim = text.head_dim_override or text.hidden_size // text.num_attention_heads
        w.add_rope_dimension_count(head_dim)
        if text.head_dim_override:
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
        w.add_layer_norm_rms_eps(text.rms_norm_eps)
        w.add_rope_freq_base(text.rope_theta)
        w.add_vocab_size(text.vocab_size)
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(text.bos_token_id)
        w.add_eos_token_id(text.eos_token_id)
        w.add_unk_token_id(0)
        w.add_pad_token_id(text.pad_token_id)
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
        # transformers' `legacy` switch (how text right after a special token is split) has no
        # llama.cpp key; kept under our own so that our reader tokenizes as the source did
        w.add_bool(LEGACY_KEY, legacy)
        template = chat_template(config.conv_mode)
        if template is not None:
            w.add_chat_template(template)

    def mmproj_metadata(w) -> None:
        w.add_name(f"mmproj-{name}")
        w.add_description("LLaVA-1.5 vision tower (CLIP) and projector")
        w.add_file_type(file_type)
        w.add_bool("clip.has_text_encoder", False)
        w.add_bool("clip.has_vision_encoder", True)
        w.add_bool("clip.has_llava_projector", True)
        w.add_string("clip.projector_type", "mlp")
        w.add_uint32("clip.vision.image_size", vision.image_size)
        w.add_uint32("clip.vision.patch_size", vision.patch_size)
        w.add_uint32("clip.vision.embedding_length", vision.hidden_size)
        w.add_uint32("clip.vision.feed_forward_length", vision.intermediate_size)
        w.add_uint32("clip.vision.projection_dim", text.hidden_size)
        w.add_uint32("clip.vision.attention.head_count", vision.num_attention_heads)
        w.add_float32("clip.vision.attention.layer_norm_epsilon", vision.layer_norm_eps)
        w.add_uint32("clip.vision.block_count", feature_layer(config))
        w.add_array("clip.vision.feature_layer", [feature_layer(config)])
        w.add_array("clip.vision.image_mean", [float(x) for x in loaded.image_processor.image_mean])
        w.add_array("clip.vision.image_std", [float(x) for x in loaded.image_processor.image_std])
        w.add_bool("clip.use_gelu", vision.hidden_act == "gelu")

    llm, proj = llm_tensors(state, config), mmproj_tensors(state, config)
    bar = progress(total=len(llm) + len(proj)) if progress else None
    pair = GGUFPair(write_gguf(out / f"{name}.gguf", "llama", llm_metadata, llm, outtype, bar),
                    write_gguf(out / f"mmproj-{name}.gguf", "clip", mmproj_metadata, proj, outtype, bar))
    if bar is not None:
        bar.close()
    return pair
