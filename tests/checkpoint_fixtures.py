"""Helpers shared by the checkpoint tests: the golden fixtures of `tests/golden/checkpoints/`
(made by the official code, see `tests/golden/make_checkpoint_golden.py`) and an independent
greedy loop."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

GOLDEN = Path(__file__).resolve().parent / "golden" / "checkpoints"
# name -> model_base (relative to GOLDEN)
CHECKPOINTS = {"llava-tiny-full": None, "llava-tiny-mha-linear": None,
               "llava-tiny-projector": "base_llm", "llava-tiny-lora": "base_llm"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread; with several OpenMP threads on a shared 2-core box,
    spinning threads made the many small ops of a greedy loop 5x slower. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def golden_outputs(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "outputs" / f"{name}.safetensors"))


def expand(input_ids: torch.Tensor, image_token_index: int, n: int) -> torch.Tensor:
    """Official ids (one -200 per image) -> ids with `n` copies of `image_token_index` per image."""
    out = []
    for i in input_ids.tolist():
        out += [image_token_index] * n if i == -200 else [i]
    return torch.tensor([out])


def logits_of(model, config, golden: dict[str, torch.Tensor]) -> torch.Tensor:
    ids = expand(golden["input_ids"][0], config.image_token_index, config.num_image_tokens)
    with torch.no_grad():
        return model(ids, golden["pixel_values"]).logits


def assert_close_relative(ours: torch.Tensor, reference: torch.Tensor, rtol: float = 1e-4) -> None:
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    error = float((ours - reference).abs().max() / reference.abs().max())
    assert error < rtol, f"max error {error:.3g} relative to the largest logit"


def greedy(model, config, golden: dict[str, torch.Tensor], steps: int, vocab: int) -> list[int]:
    """Full-recompute greedy decoding over the first `vocab` rows, stopping at EOS like `generate`."""
    ids = expand(golden["input_ids"][0], config.image_token_index, config.num_image_tokens)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(ids, golden["pixel_values"]).logits[0, -1, :vocab]
            token = int(logits.argmax())
            new.append(token)
            if token == config.text.eos_token_id:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return new


def copy_checkpoint(name: str, root: Path) -> Path:
    """Copy a golden checkpoint and the CLIP directory beside it (its `../clip` still resolves)."""
    if not (root / "clip").exists():
        shutil.copytree(GOLDEN / "clip", root / "clip")
    shutil.copytree(GOLDEN / name, root / name)
    return root / name
