"""llava15: a faithful, fast and complete implementation of LLaVA-1.5 in plain PyTorch.

Public API (re-exports only; importing this package imports nothing heavy).
"""

from llava15.config import LlavaConfig, TextConfig, VisionConfig

__all__ = ["LlavaConfig", "TextConfig", "VisionConfig", "load"]


def load(path: str, **kwargs):
    """Load a checkpoint directory (official, LoRA, projector-only or llava-hf layout) as an Engine."""
    from llava15.infer.engine import load_engine

    return load_engine(path, **kwargs)
