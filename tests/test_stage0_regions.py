"""Stage 0's region-level contrastive loss: pooling boxes onto patches, and the loss itself."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llava15.world.stage0 import region_loss, region_pooling


def test_cell_boxes_pool_exactly_their_patch_and_pad_the_rest():
    third = 1 / 3
    regions = [
        [([0, 0, third, third], "red circle"), ([2 * third, 2 * third, 1, 1], "gray background")],
        [([0, 0, 1, 1], "red circle")],  # the whole image: every patch, evenly
        [],
    ]
    weights, ids, phrases = region_pooling(regions, grid=3)
    assert weights.shape == (3, 2, 9) and ids.shape == (3, 2)
    assert phrases == ["red circle", "gray background"]
    assert weights[0, 0].tolist() == [1.0] + [0.0] * 8
    assert weights[0, 1].tolist() == [0.0] * 8 + [1.0]
    assert torch.allclose(weights[1, 0], torch.full((9,), 1 / 9))
    assert ids.tolist() == [[0, 1], [0, -1], [-1, -1]]  # the same phrase shares one id
    assert not weights[1, 1].any() and not weights[2].any()


def test_a_box_between_patch_centres_takes_the_nearest_patch():
    weights, _, _ = region_pooling([[([0.9, 0.45, 0.95, 0.5], "dot")]], grid=3)
    assert weights[0, 0].argmax().item() == 5 and weights[0, 0].sum().item() == 1.0  # middle right


def _loss(features, weights, ids, table):
    head = nn.Identity()
    return region_loss(features, weights, ids, lambda used: F.normalize(table[used], dim=-1), head,
                       torch.tensor(10.0))


def test_the_loss_is_low_when_regions_match_their_phrases_and_high_when_swapped():
    table = torch.eye(4)  # phrase embeddings
    features = torch.eye(4)[None, :, :]  # one image, 4 patches; patch k shows phrase k
    weights = torch.eye(4)[None]  # region k = patch k
    ids = torch.tensor([[0, 1, 2, 3]])
    matched, accuracy = _loss(features, weights, ids, table)
    swapped, swapped_accuracy = _loss(features, weights, torch.tensor([[1, 0, 3, 2]]), table)
    assert accuracy == 1.0 and swapped_accuracy == 0.0
    assert matched.item() < 0.01 < 5.0 < swapped.item()


def test_regions_sharing_a_phrase_are_all_its_positives():
    """Two empty cells say 'gray background': neither is a negative of the other's phrase, so
    when both show it, the loss is at its minimum and does not push them apart."""
    table = torch.eye(2)
    ids = torch.tensor([[0, 0, 1]])
    ideal = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]], requires_grad=True)
    _loss(ideal, torch.eye(3)[None], ids, table)[0].backward()
    assert ideal.grad.abs().max().item() < 1e-3
    apart = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]])
    assert _loss(apart, torch.eye(3)[None], ids, table)[0] > _loss(ideal.detach(), torch.eye(3)[None], ids, table)[0]


def test_read_regions_orders_by_image_and_names_the_file_and_record_on_bad_input(tmp_path):
    import json

    import pytest

    from llava15.world.demo import read_regions

    path = tmp_path / "regions.json"
    path.write_text(json.dumps([{"image": "b.png", "regions": [{"bbox": [0, 0, 1, 1], "phrase": "B"}]},
                                {"image": "a.png", "regions": [{"bbox": [0, 0, 1, 1], "phrase": "A"}]}]))
    assert read_regions(path, ["a.png", "b.png"]) == [[([0, 0, 1, 1], "A")], [([0, 0, 1, 1], "B")]]
    with pytest.raises(ValueError, match=r"regions\.json: no regions for 1 pretraining images, e\.g\. c\.png"):
        read_regions(path, ["a.png", "c.png"])
    path.write_text(json.dumps([{"image": "a.png", "regions": [{"bbox": [0, 0, 1, 1]}]}]))
    with pytest.raises(ValueError, match=r"regions\.json: record 0 lacks 'phrase'"):
        read_regions(path, ["a.png"])
    path.write_text('[{"image": "a.png",')
    with pytest.raises(ValueError, match=r"regions\.json: not valid JSON"):
        read_regions(path, ["a.png"])
