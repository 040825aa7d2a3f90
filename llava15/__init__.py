"""llava15: a faithful, fast and complete implementation of LLaVA-1.5 in plain PyTorch.

Public API (re-exports only; importing this package imports nothing heavy).
"""

from llava15.config import LlavaConfig, TextConfig, VisionConfig

__all__ = ["LlavaConfig", "TextConfig", "VisionConfig", "load"]


def load(path: str, **kwargs):
    """Load a checkpoint directory (official, LoRA, projector-only or llava-hf layout) as an Engine.

    Keywords as `llava15.infer.engine.load_engine`: `model_base`, `vision_tower`, `conv_mode`,
    `device` ("cpu", "cuda", "cuda:N", "auto"), `dtype` ("float32", "float16", "bfloat16"),
    `load_8bit`, `load_4bit`, and `mmproj` for a GGUF language model (llama.cpp / ollama files;
    `path` may also be a folder holding the pair)."""
    from llava15.infer.engine import load_engine

    return load_engine(path, **kwargs)
