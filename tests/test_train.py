"""The two-stage recipe on a tiny world: loss falls, the right parameters train, outputs load."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from llava15.train.config import TrainConfig
from llava15.train.distributed import Runtime
from llava15.train.init import build_initial
from llava15.train.loop import train
from llava15.train.overrides import apply_overrides
from test_train_world import make_backbones, make_data


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    llm, clip = make_backbones(root)
    images, pretrain, finetune = make_data(root)
    return {"root": root, "llm": llm, "clip": clip, "images": images, "pretrain": pretrain, "finetune": finetune}


def config_for(world, out, stage, **overrides) -> TrainConfig:
    base = {"stage": stage, "llm": str(world["llm"]), "vision_tower": str(world["clip"]),
            "data.path": str(world[stage.split("_")[0]]), "data.image_folder": str(world["images"]),
            "data.num_workers": "0", "data.model_max_length": "128", "out": str(out),
            "stage.global_batch_size": "8", "micro_batch_size": "4", "stage.warmup_ratio": "0.1",
            "save_steps": "1000", "seed": "0"}
    base.update({k: str(v) for k, v in overrides.items()})
    return apply_overrides(TrainConfig(), base)


def losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def pretrained(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    config = config_for(world, out, "pretrain", **{"stage.lr": 2e-2, "stage.epochs": 6})
    return out, config, train(config, Runtime())


def test_pretrain_loss_falls_and_only_the_projector_changes(pretrained):
    out, config, trained = pretrained
    curve = losses(out)
    assert len(curve) == 18  # 24 samples / 8 per step x 6 epochs
    # a frozen random LLM limits what the projector alone can do: a clear, not a large, drop
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3 - 0.2, curve
    before = build_initial(config).model.state_dict()
    after = trained.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("multi_modal_projector.") for k in changed), sorted(changed)[:5]
    assert len(changed) == len([k for k in before if k.startswith("multi_modal_projector.")])


def test_pretrain_writes_the_projector_alone_in_both_formats(pretrained):
    out, config, trained = pretrained
    ours = load_file(str(out / "projector.safetensors"))
    official = torch.load(out / "mm_projector.bin", weights_only=True)
    assert sorted(official) == ["model.mm_projector.0.bias", "model.mm_projector.0.weight",
                                "model.mm_projector.2.bias", "model.mm_projector.2.weight"]
    assert torch.equal(official["model.mm_projector.2.weight"], ours["multi_modal_projector.linear_2.weight"])
    assert torch.equal(ours["multi_modal_projector.linear_1.weight"],
                       trained.model.multi_modal_projector.linear_1.weight)
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["stage"]["name"] == "pretrain" and saved["stage"]["lr"] == 2e-2
    assert json.loads((out / "config.json").read_text())["image_aspect_ratio"] == "square"
    assert (out / "loss.png").is_file() and (out / "lr.png").is_file()
    checkpoint = out / "checkpoint-18"
    assert (checkpoint / "mm_projector.bin").is_file() and (checkpoint / "train_config.json").is_file()


def test_finetune_from_the_stage1_projector_trains_projector_and_llm(world, pretrained, tmp_path):
    projector = pretrained[0] / "mm_projector.bin"
    config = config_for(world, tmp_path, "finetune", pretrain_mm_mlp_adapter=projector,
                        **{"stage.lr": 2e-3, "stage.epochs": 3})
    initial = build_initial(config)
    assert torch.equal(initial.model.multi_modal_projector.linear_1.weight,
                       load_file(str(pretrained[0] / "projector.safetensors"))["multi_modal_projector.linear_1.weight"])
    trained = train(config, Runtime())
    curve = losses(tmp_path)
    assert len(curve) == 12  # 32 samples / 8 x 3 epochs
    assert sum(curve[-2:]) / 2 < 0.8 * sum(curve[:2]) / 2, curve
    before, after = initial.model.state_dict(), trained.model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"multi_modal_projector", "language_model"}
    assert trained.state.samples == 12 * 8 - 0  # every sample used, none skipped
    assert trained.state.skipped == 0 and trained.state.fully_masked == 0


def test_finetune_output_loads_in_llava15_and_transformers(world, tmp_path):
    config = config_for(world, tmp_path, "finetune", max_steps=2)
    trained = train(config, Runtime())
    from llava15.checkpoint import load_llava

    loaded = load_llava(tmp_path)
    ids = torch.tensor([[1, 40, 50, 60, 70]])
    trained.model.eval()
    expected = trained.model(ids).logits
    torch.testing.assert_close(loaded.model(ids).logits[..., :expected.shape[-1]], expected)
    transformers = pytest.importorskip("transformers")
    hf = transformers.LlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        logits = hf(input_ids=ids).logits
    torch.testing.assert_close(logits[..., :expected.shape[-1]], expected, rtol=1e-4, atol=1e-4)
    assert json.loads((tmp_path / "train_config.json").read_text())["stage"]["name"] == "finetune"


def test_the_start_summary_names_what_trains():
    from llava15.config import tiny
    from llava15.model.llava import Llava
    from llava15.train.config import PRETRAIN
    from llava15.train.stages import apply_stage, summary

    model = Llava(tiny())
    apply_stage(model, PRETRAIN)
    table = summary(model)
    rows = {line.split()[0]: line.split()[-1] for line in table.splitlines()[1:-1]}
    assert rows == {"vision_tower": "frozen", "projector": "trains", "language_model": "frozen"}


def test_finetune_continues_from_a_llava_hf_checkpoint(world, tmp_path):
    """`--model DIR` (official finetune_task.sh): a llava-hf checkpoint with a real `<image>` id."""
    first = config_for(world, tmp_path / "first", "finetune", max_steps=1)
    train(first, Runtime())
    config = config_for(world, tmp_path / "second", "finetune", max_steps=2, **{"data.num_workers": 1})
    config = apply_overrides(config, {"model": str(tmp_path / "first"), "llm": "", "vision_tower": ""})
    initial = build_initial(config)
    assert initial.config.image_token_index >= 0  # llava-hf: the <image> token, not the -200 sentinel
    trained = train(config, Runtime())
    assert trained.state.step == 2 and trained.state.skipped == 0 and trained.state.samples == 16
    assert (tmp_path / "second" / "model.safetensors").is_file() or list((tmp_path / "second").glob("*.safetensors"))


def test_shared_prefix_and_token_cache_train_the_same_steps_and_refuse_several_processes(world, tmp_path):
    """`--shared_prefix` and `--data.cache_text` through the whole loop: the same losses step by step
    (two epochs, so the second reads cached tokens); a multi-process run is refused up front."""
    from llava15.train.loop import prepare

    common = {"stage.epochs": 2, "gradient_checkpointing": "false"}
    plain = config_for(world, tmp_path / "plain", "finetune", **common)
    fast = config_for(world, tmp_path / "fast", "finetune", shared_prefix="true",
                      **{"data.cache_text": "true"}, **common)
    train(plain, Runtime())
    train(fast, Runtime())
    expected, got = losses(tmp_path / "plain"), losses(tmp_path / "fast")
    assert len(expected) == 8 and got == pytest.approx(expected, rel=1e-4)  # 32 samples / 8 x 2
    run = prepare(dataclasses.replace(fast, out=str(tmp_path / "wired")), Runtime())
    assert run.objective.shared_prefix and run.dataset.text_cache is not None  # the flags reach them
    with pytest.raises(ValueError, match="needs --strategy ddp"):
        prepare(config_for(world, tmp_path / "two", "finetune", shared_prefix="true", **common),
                Runtime(world_size=2))
