"""LoRA fine-tuning: only adapters and the projector change; merging gives base + (alpha/r) B A."""

from __future__ import annotations

import copy

import pytest
import torch

from llava15.train.config import TrainConfig
from llava15.train.distributed import Runtime
from llava15.train.init import build_initial
from llava15.train.lora import merge_lora
from llava15.train.loop import train
from llava15.train.overrides import apply_overrides
from test_train_world import make_backbones, make_data

pytest.importorskip("peft")


def test_lora_trains_adapters_and_projector_only_and_merges(tmp_path):
    llm, clip = make_backbones(tmp_path)
    images, _, finetune = make_data(tmp_path, n_images=12, n_text=4)
    config = apply_overrides(TrainConfig(), {
        "stage": "finetune_lora", "stage.lora_r": "4", "stage.lora_alpha": "8", "stage.lr": "1e-2",
        "stage.projector_lr": "1e-3", "stage.global_batch_size": "8", "micro_batch_size": "4",
        "stage.epochs": "2", "llm": str(llm), "vision_tower": str(clip), "data.path": str(finetune),
        "data.image_folder": str(images), "data.num_workers": "0", "data.model_max_length": "96",
        "out": str(tmp_path / "run"), "seed": "0"})
    before = build_initial(config).model.state_dict()
    trained = train(config, Runtime())
    after = trained.model.state_dict()
    lora = {k for k in after if "lora_" in k}
    assert lora and {k.split(".")[-3] for k in lora} == {"lora_A", "lora_B"}
    assert {k.rsplit(".", 4)[-4] for k in lora} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not any("vision_tower" in k for k in lora)  # CLIP's q/k/v get no adapters
    assert all(not torch.equal(after[k], torch.zeros_like(after[k])) for k in lora if "lora_B" in k)
    for k, v in before.items():
        name = k if k in after else k.replace(".weight", ".base_layer.weight")  # wrapped by LoRA
        changed = not torch.equal(v, after[name])
        assert changed == k.startswith("multi_modal_projector."), k
    merged = copy.deepcopy(trained.model)
    assert merge_lora(merged) == 2 * 7
    layer = trained.model.language_model.model.layers[1].mlp.down_proj
    expected = layer.base_layer.weight + (8 / 4) * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    torch.testing.assert_close(merged.language_model.model.layers[1].mlp.down_proj.weight, expected)
    assert isinstance(merged.language_model.model.layers[1].mlp.down_proj, torch.nn.Linear)
    ids = torch.tensor([[1, 20, 30, 40]])
    trained.model.eval()
    torch.testing.assert_close(merged.eval()(ids).logits, trained.model(ids).logits, rtol=1e-4, atol=1e-5)
    assert trained.state.step == 4
