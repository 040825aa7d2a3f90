"""Training configuration: official presets, dotted typed overrides, the CLI, JSON round trips."""

from __future__ import annotations

import argparse

import pytest
import torch

from llava15.cli import train as train_cli
from llava15.train.config import FINETUNE, FINETUNE_LORA, PRETRAIN, TrainConfig, from_dict, load_json, save_json, to_dict
from llava15.train.overrides import apply_overrides
from llava15.train.schedule import cosine_with_warmup, warmup_steps


def test_presets_carry_the_official_hyperparameters():
    assert (PRETRAIN.lr, PRETRAIN.global_batch_size, PRETRAIN.epochs, PRETRAIN.weight_decay) == (1e-3, 256, 1, 0.0)
    assert PRETRAIN.trainable == ("projector",) and PRETRAIN.template == "plain"
    assert PRETRAIN.image_aspect_ratio == "square" and not PRETRAIN.group_by_modality_length
    assert (FINETUNE.lr, FINETUNE.global_batch_size, FINETUNE.template) == (2e-5, 128, "vicuna_v1")
    assert FINETUNE.trainable == ("projector", "language_model") and FINETUNE.image_aspect_ratio == "pad"
    assert FINETUNE.group_by_modality_length and FINETUNE.warmup_ratio == 0.03 and FINETUNE.max_grad_norm == 1.0
    assert (FINETUNE_LORA.lora_r, FINETUNE_LORA.lora_alpha, FINETUNE_LORA.lr, FINETUNE_LORA.projector_lr) == (128, 256, 2e-4, 2e-5)


def test_global_batch_is_kept_across_process_counts():
    config = TrainConfig(stage=FINETUNE)  # micro-batch 16
    assert [config.accumulation_steps(w) for w in (1, 2, 8)] == [8, 4, 1]
    # docs/official-behaviour.md, 'Hyperparameters': ceil(665298 / 128) steps, 156 of warm-up
    assert config.total_steps(665298) == 5198
    assert warmup_steps(config.total_steps(665298), 0.03) == 156
    assert TrainConfig(stage=PRETRAIN).total_steps(558128) == 2181
    with pytest.raises(ValueError, match="not a multiple"):
        TrainConfig(stage=FINETUNE, micro_batch_size=3).accumulation_steps(1)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    assert cosine_with_warmup(0, 100, 3) == 0.0 and cosine_with_warmup(3, 100, 3) == 1.0
    assert cosine_with_warmup(2, 100, 3) == pytest.approx(2 / 3)
    assert cosine_with_warmup(100, 100, 3) == pytest.approx(0.0, abs=1e-12)
    assert cosine_with_warmup(3 + 97 // 2, 100, 3) == pytest.approx(0.5, abs=0.02)


def test_overrides_pick_a_preset_then_refine_it_whatever_the_order():
    config = apply_overrides(TrainConfig(), {"stage.lr": "2e-4", "stage": "pretrain", "packing": "true",
                                             "stage.trainable": "projector,vision_tower", "micro_batch_size": "4",
                                             "stage.projector_lr": "none", "data.subsample": "0.5"})
    assert config.stage.name == "pretrain" and config.stage.lr == 2e-4 and config.stage.global_batch_size == 256
    assert config.stage.trainable == ("projector", "vision_tower") and config.packing is True
    assert config.micro_batch_size == 4 and config.stage.projector_lr is None and config.data.subsample == 0.5
    for bad, message in [({"stage.lrr": "1"}, "unknown config key --stage.lrr"), ({"packing": "yes"}, "true' or 'false"),
                         ({"seed": "x"}, "expected int"), ({"stage": "stage3"}, "unknown preset")]:
        with pytest.raises(ValueError, match=message):
            apply_overrides(TrainConfig(), bad)


def test_config_round_trips_through_json(tmp_path):
    config = apply_overrides(TrainConfig(), {"stage": "finetune_lora", "data.path": "x.json", "max_steps": "7"})
    save_json(config, tmp_path / "c.json")
    assert load_json(tmp_path / "c.json") == config
    assert from_dict(TrainConfig, to_dict(config)) == config
    with pytest.raises(ValueError, match="unknown keys"):
        from_dict(TrainConfig, {**to_dict(config), "lr": 1})


def test_the_cli_parses_dotted_keys_aliases_and_bare_booleans(tmp_path):
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["--stage=pretrain", "--stage.lr", "2e-4", "--vision-tower", "clip", "--llm=llm",
                              "--image-folder=imgs", "--data-path=d.json", "--packing", "--resume=false"])
    values = {k: v for k, v in vars(args).items() if k not in ("config_file", "threads")}
    config = apply_overrides(TrainConfig(), values)
    assert (config.stage.name, config.stage.lr, config.vision_tower, config.llm) == ("pretrain", 2e-4, "clip", "llm")
    assert (config.data.image_folder, config.data.path, config.packing, config.resume) == ("imgs", "d.json", True, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["--stage.l=1"])  # no abbreviations: a misspelt key fails
    with pytest.raises(SystemExit):
        parser.parse_args(["--nonsense=1"])


def test_validate_names_what_is_missing():
    with pytest.raises(ValueError, match="--model DIR"):
        TrainConfig().validate()
    with pytest.raises(ValueError, match="loss_normalization"):
        TrainConfig(model="m", loss_normalization="mean").validate()
    with pytest.raises(ValueError, match="lora"):
        apply_overrides(TrainConfig(model="m"), {"stage.lora_r": "8"}).validate()


def test_loss_normalisation_rules_are_what_their_names_say():
    from llava15.data.dataset import Batch
    from llava15.train.distributed import Runtime
    from llava15.train.loop import loss_scales

    def batch(targets: int) -> Batch:
        labels = torch.full((1, targets + 1), -100)
        labels[0, 1:] = 7
        return Batch(labels.clone(), labels, torch.ones_like(labels, dtype=torch.bool))

    batches = [batch(3), batch(1), batch(0)]  # the last: every sample dropped
    scales, total = loss_scales(batches, "token_weighted", Runtime())
    assert total == 4 and scales == [1 / 4, 1 / 4, 1 / 4]
    scales, _ = loss_scales(batches, "mean_per_microbatch", Runtime())
    assert scales == [1 / (2 * 3), 1 / (2 * 1), 0.0]  # the mean of the two non-empty micro-batch means


def test_unfreezing_the_vision_tower_gives_it_gradients():
    from llava15.config import tiny
    from llava15.model.llava import Llava
    from llava15.train.objective import Objective
    from llava15.train.stages import apply_stage

    model = Llava(tiny())
    apply_stage(model, apply_overrides(TrainConfig(), {"stage.trainable": "projector,vision_tower"}).stage)
    n = model.config.num_image_tokens
    ids = torch.tensor([[1] + [model.config.image_token_index] * n + [5, 6, 7]])
    loss = Objective(model)(ids, ids.clamp_min(0), torch.ones_like(ids, dtype=torch.bool), None,
                            torch.randn(1, 3, 28, 28))
    loss.backward()
    assert model.vision_tower.vision_model.embeddings.patch_embedding.weight.grad is not None
    assert all(p.grad is None for p in model.language_model.parameters())


def test_optimizer_groups_follow_llava_trainer():
    import dataclasses

    from llava15.config import tiny
    from llava15.model.llava import Llava
    from llava15.train.stages import apply_stage, param_groups

    model = Llava(tiny())
    stage = dataclasses.replace(FINETUNE, projector_lr=1e-3, weight_decay=0.1)
    apply_stage(model, stage)
    groups = [(len(g["params"]), g["lr"], g["weight_decay"]) for g in param_groups(model, stage)]
    # decay / no-decay (biases, RMSNorm weights) x LLM / projector at mm_projector_lr
    assert groups == [(16, 2e-5, 0.1), (5, 2e-5, 0.0), (2, 1e-3, 0.1), (2, 1e-3, 0.0)]
