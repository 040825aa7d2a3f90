"""AnyRes / HD in training: per-image views and sizes through the data, the loss against
`transformers`' LlavaNext on the same weights, packing, bad input, the run's config, and a short
run whose output answers through `llava15.load`."""

from __future__ import annotations

import argparse
import functools
import json

import pytest
import torch

import llava15
from llava15.cli import train as train_cli
from llava15.config import IMAGE_TOKEN_INDEX, LlavaConfig
from llava15.data.dataset import LazySupervisedDataset, collate
from llava15.data.image import ImageProcessorConfig
from llava15.data.packing import collate_packed
from llava15.data.tokenizer import load_tokenizer
from llava15.model.anyres import image_token_count
from llava15.model.llava import Llava
from llava15.train.config import TrainConfig
from llava15.train.distributed import Runtime
from llava15.train.init import match_image_newline, with_image_layout
from llava15.train.loop import train
from llava15.train.objective import Objective
from llava15.train.overrides import apply_overrides
from test_train import config_for, losses
from test_train_world import TEXT, TOKENIZER, VISION, draw, make_backbones, make_data

PINPOINTS = ((56, 28), (28, 56), (56, 56), (84, 28))  # test_anyres.build_pair's, tile 28
IMAGE_TOKEN = 512  # the llava-hf `<image>` id just past the tiny tokenizer's 512 pieces
SIZES = {"wide.png": (40, 20), "tall.png": (20, 45), "square.png": (30, 30)}  # 2x1, 1x2, 2x2 grids
ANYRES = LlavaConfig(vision=VISION, text=TEXT, image_aspect_ratio="anyres", image_grid_pinpoints=PINPOINTS,
                     mm_patch_merge_type="spatial_unpad")
RECORDS = [
    {"id": "w", "image": "wide.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat color is the shape?"}, {"from": "gpt", "value": "It is red."}]},
    {"id": "t", "conversations": [
        {"from": "human", "value": "What is 2 plus 3?"}, {"from": "gpt", "value": "2 plus 3 is 5."}]},
    {"id": "h", "image": "tall.png", "conversations": [
        {"from": "human", "value": "What shape is it?\n<image>"}, {"from": "gpt", "value": "A blue circle."},
        {"from": "human", "value": "Is it big?"}, {"from": "gpt", "value": "No."}]},
    {"id": "s", "image": "square.png", "conversations": [
        {"from": "human", "value": "<image>\nDescribe it."}, {"from": "gpt", "value": "A green square."}]},
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("anyres_images")
    for (name, size), color in zip(SIZES.items(), ("red", "blue", "green")):
        draw(root / name, color, "circle" if name == "tall.png" else "square", size)
    return root


def anyres_dataset(config: LlavaConfig, folder, records=RECORDS, **kw) -> LazySupervisedDataset:
    args = dict(tokenizer=load_tokenizer(TOKENIZER), template="vicuna_v1", image_folder=folder,
                image_config=ImageProcessorConfig(shortest_edge=28, crop_size=(28, 28)),
                image_aspect_ratio="anyres", model_max_length=512, image_token_index=config.image_token_index,
                num_image_tokens=config.num_image_tokens, image_grid_pinpoints=config.image_grid_pinpoints,
                image_token_count=functools.partial(image_token_count, config))
    return LazySupervisedDataset(records, **{**args, **kw})


def test_samples_carry_views_and_sizes_and_each_image_its_own_token_count(folder):
    ds = anyres_dataset(ANYRES, folder)
    samples = [ds[i] for i in range(len(ds))]
    counts = [int((s.input_ids == IMAGE_TOKEN_INDEX).sum()) for s in samples]
    assert counts == [52, 0, 56, 88]  # 16 global + unpadded rows x (columns + newline)
    assert counts == [image_token_count(ANYRES, SIZES[r["image"]]) if "image" in r else 0 for r in RECORDS]
    assert [None if s.pixel_values is None else tuple(s.pixel_values.shape) for s in samples] == \
        [(3, 3, 28, 28), None, (3, 3, 28, 28), (5, 3, 28, 28)]
    batch = collate(samples)
    assert batch.image_sizes == [(40, 20), (20, 45), (30, 30)]
    assert [v.shape[0] for v in batch.pixel_values] == [3, 3, 5]
    moved = batch.to("cpu")
    assert isinstance(moved.pixel_values, list) and moved.image_sizes == batch.image_sizes
    assert (batch.labels[batch.input_ids == IMAGE_TOKEN_INDEX] == -100).all()


def test_loss_equals_llava_next_on_images_of_different_grids(folder):
    pytest.importorskip("transformers")
    from test_anyres import PINPOINTS as PAIR_PINPOINTS, build_pair

    assert PAIR_PINPOINTS == PINPOINTS
    hf, ours = build_pair(vocab_size=IMAGE_TOKEN + 8, image_token=IMAGE_TOKEN)
    ds = anyres_dataset(ours.config, folder)
    samples = [ds[i] for i in range(len(ds))]
    batch = collate(samples)
    assert len({int((row == IMAGE_TOKEN).sum()) for row in batch.input_ids}) == 4  # 52, 0, 56, 88
    most = max(v.shape[0] for v in batch.pixel_values)  # transformers takes zero-padded 5-D views
    padded = torch.stack([torch.cat([v, v.new_zeros(most - v.shape[0], *v.shape[1:])]) for v in batch.pixel_values])
    sizes = torch.tensor([[h, w] for w, h in batch.image_sizes])  # transformers: (height, width)
    objective = Objective(ours)
    with torch.no_grad():
        expected = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long(), pixel_values=padded,
                      image_sizes=sizes, labels=batch.labels).loss
        got = objective(batch.input_ids, batch.labels, batch.attention_mask, None, batch.pixel_values,
                        batch.image_sizes) / batch.num_targets
        packed = collate_packed(samples, capacity=400)
        got_packed = objective(packed.input_ids, packed.labels, packed.attention_mask, packed.position_ids,
                               packed.pixel_values, packed.image_sizes) / packed.num_targets
    assert packed.input_ids.shape[0] < batch.input_ids.shape[0]  # rows really were shared
    assert abs(float(got) - float(expected)) <= 1e-5 * abs(float(expected))
    assert abs(float(got_packed) - float(expected)) <= 1e-5 * abs(float(expected))


def test_a_grid_beyond_model_max_length_is_skipped_naming_both_lengths(folder):
    full = anyres_dataset(ANYRES, folder)[3]  # the 2x2 grid: 88 image positions
    first = int((full.input_ids == IMAGE_TOKEN_INDEX).nonzero()[0])
    cut = first + 80  # room for part of the image only
    ds = anyres_dataset(ANYRES, folder, model_max_length=cut)
    sample = ds[3]
    assert sample.skipped and f"{len(full.input_ids)} tokens" in sample.skipped
    assert "88" in sample.skipped and f"model_max_length={cut}" in sample.skipped and "'s'" in sample.skipped
    batch = collate([ds[i] for i in range(4)])
    assert [i for i, _ in batch.skipped] == [3] and batch.indices == [0, 1, 2]  # counted, not trained on
    with pytest.raises(ValueError, match=rf"record 3 \(id 's'\): the sample is {len(full.input_ids)} tokens"):
        anyres_dataset(ANYRES, folder, model_max_length=cut, strict=True)[3]


def test_the_run_picks_anyres_the_official_way_and_checks_it():
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["--image_aspect_ratio", "anyres", "--image_grid_pinpoints",
                              "[(56, 28), (28, 56), (56, 56)]", "--mm_patch_merge_type", "spatial_unpad"])
    config = apply_overrides(TrainConfig(), {k: v for k, v in vars(args).items() if k not in ("config_file", "threads")})
    layout = with_image_layout(LlavaConfig(vision=VISION, text=TEXT), config)
    assert (layout.image_aspect_ratio, layout.mm_patch_merge_type) == ("anyres", "spatial_unpad")
    assert layout.image_grid_pinpoints == ((56, 28), (28, 56), (56, 56))
    with pytest.raises(ValueError, match="needs image_grid_pinpoints"):
        with_image_layout(LlavaConfig(vision=VISION, text=TEXT),
                          apply_overrides(TrainConfig(), {"stage.image_aspect_ratio": "anyres"}))
    with pytest.raises(ValueError, match=r"\[\(40, 28\)\] are not grids of the vision tower's 28x28 tiles"):
        with_image_layout(LlavaConfig(vision=VISION, text=TEXT),
                          apply_overrides(config, {"image_grid_pinpoints": "[[56,28],[40,28]]"}))
    with pytest.raises(ValueError, match=r"image_grid_pinpoints='\(1x1\),...,\(2x2\)' is not a list"):
        with_image_layout(LlavaConfig(vision=VISION, text=TEXT),
                          apply_overrides(config, {"image_grid_pinpoints": "(1x1),...,(2x2)"}))
    with pytest.raises(ValueError, match="mm_patch_merge_type must be one of"):
        apply_overrides(config, {"mm_patch_merge_type": "unpad", "model": "m"}).validate()
    # a flat model trained as spatial_unpad gets the official fresh image_newline, and back
    model = Llava(LlavaConfig(vision=VISION, text=TEXT))
    match_image_newline(model, layout, seed=0)
    assert model.image_newline.shape == (TEXT.hidden_size,)
    model.config = layout
    match_image_newline(model, LlavaConfig(vision=VISION, text=TEXT), seed=0)
    assert "image_newline" not in dict(model.named_parameters())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("anyres_world")
    llm, clip = make_backbones(root)
    images, pretrain, finetune = make_data(root)
    return {"root": root, "llm": llm, "clip": clip, "images": images, "pretrain": pretrain, "finetune": finetune}


ANYRES_FLAGS = {"stage.image_aspect_ratio": "anyres", "image_grid_pinpoints": "[(56,28),(28,56),(56,56)]",
                "mm_patch_merge_type": "spatial_unpad", "data.model_max_length": 256}


def test_anyres_finetune_learns_and_its_output_answers_through_load(world, tmp_path):
    config = config_for(world, tmp_path, "finetune", **ANYRES_FLAGS, **{"stage.lr": 2e-3, "stage.epochs": 3})
    trained = train(config, Runtime())
    curve = losses(tmp_path)
    assert len(curve) == 12 and sum(curve[-2:]) / 2 < 0.8 * sum(curve[:2]) / 2, curve
    assert trained.state.samples == 96 and trained.state.skipped == 0 and trained.state.fully_masked == 0
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["image_aspect_ratio"] == "anyres" and saved["mm_patch_merge_type"] == "spatial_unpad"
    assert saved["image_grid_pinpoints"] == [[56, 28], [28, 56], [56, 56]]

    engine = llava15.load(str(tmp_path))
    assert engine.config.image_aspect_ratio == "anyres"
    assert engine.config.image_grid_pinpoints == ((56, 28), (28, 56), (56, 56))
    torch.testing.assert_close(engine.model.image_newline, trained.model.image_newline)
    image = world["images"] / "000.png"
    answer = engine.chat([("user", "What color is the shape?")], images=[image], temperature=0, max_new_tokens=6)
    assert isinstance(answer, str)
    # the loaded model computes what the trained one does on an AnyRes prompt
    loaded = engine.load_images([image])[0]
    ids = engine.encode(engine.build_prompt([("user", "<image>\nWhat color is the shape?")]), [loaded.size])
    views = engine.pixel_values([loaded])
    hf_image = engine.config.image_token_index
    ours_ids = torch.tensor([[IMAGE_TOKEN_INDEX if t == hf_image else t for t in ids]])
    trained.model.eval()
    with torch.no_grad():
        expected = trained.model(ours_ids, views, image_sizes=[loaded.size]).logits
        got = engine.model(torch.tensor([ids]), views, image_sizes=[loaded.size]).logits
    torch.testing.assert_close(got[..., :expected.shape[-1]], expected, rtol=1e-4, atol=1e-4)


def test_anyres_pretrain_exports_the_layout_and_the_newline(world, tmp_path):
    config = config_for(world, tmp_path, "pretrain", max_steps=2, **ANYRES_FLAGS)
    trained = train(config, Runtime())
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["image_aspect_ratio"], saved["mm_patch_merge_type"]) == ("anyres", "spatial_unpad")
    official = torch.load(tmp_path / "mm_projector.bin", weights_only=True)
    torch.testing.assert_close(official["model.image_newline"], trained.model.image_newline.detach())
    engine = llava15.load(str(tmp_path), model_base=str(world["llm"]), vision_tower=str(world["clip"]))
    assert engine.config.image_grid_pinpoints == ((56, 28), (28, 56), (56, 56))
    torch.testing.assert_close(engine.model.image_newline, trained.model.image_newline.detach())
