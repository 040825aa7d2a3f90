"""Checkpoints in and out: official LLaVA (full, projector-only, LoRA), llava-hf (old and new
nesting) and our own, read into `llava15.model.llava.Llava`; llava-hf and official projector files
written out. Nothing is ever downloaded: a model is a local directory."""

from llava15.checkpoint.configs import ConfigInfo, read_llava_config
from llava15.checkpoint.load import LoadedCheckpoint, detect_layout, load_llava
from llava15.checkpoint.save import save_llava_hf, save_official_projector

__all__ = ["ConfigInfo", "LoadedCheckpoint", "detect_layout", "load_llava", "read_llava_config",
           "save_llava_hf", "save_official_projector"]
