"""The official data formats, bad data, truncation and fully masked samples."""

from __future__ import annotations

import json

import pytest
import torch

from llava15.config import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava15.data.dataset import LazySupervisedDataset, collate, load_records, modality_length
from llava15.data.image import ImageProcessorConfig
from llava15.data.tokenizer import load_tokenizer
from test_train_world import TOKENIZER, make_data


def dataset(records, images, **kw):
    args = dict(tokenizer=load_tokenizer(TOKENIZER), template="vicuna_v1", image_folder=images,
                image_config=ImageProcessorConfig(shortest_edge=28, crop_size=(28, 28)),
                image_aspect_ratio="pad", model_max_length=128, image_token_index=IMAGE_TOKEN_INDEX,
                num_image_tokens=16)
    args.update(kw)
    return LazySupervisedDataset(records, **args)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    images, pretrain, finetune = make_data(root, n_images=6, n_text=3)
    return root, images, json.loads(finetune.read_text()), json.loads(pretrain.read_text())


def test_json_and_jsonl_read_alike_and_lengths_follow_the_official_rule(data, tmp_path):
    _, _, records, _ = data
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert load_records(path) == records
    text_only = next(r for r in records if "image" not in r)
    assert modality_length(text_only) == -sum(len(t["value"].split()) for t in text_only["conversations"])
    assert all(modality_length(r) > 0 for r in records if "image" in r)


@pytest.mark.parametrize("record,reason", [
    ({"id": "x"}, "'conversations' must be a non-empty list"),
    ({"id": "x", "conversations": [{"from": "user", "value": "hi"}]}, "conversations[0]"),
    ({"id": "x", "image": ["a.png"], "conversations": [{"from": "human", "value": "hi"}]}, "'image' must be"),
    ([1, 2], "a record must be an object")])
def test_a_malformed_record_stops_with_its_index_and_reason(tmp_path, record, reason):
    good = {"id": "ok", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}
    path = tmp_path / "d.json"
    path.write_text(json.dumps([good, good, record]))
    with pytest.raises(ValueError, match=r"record 2 .*") as e:
        load_records(path)
    assert reason in str(e.value) and str(path) in str(e.value)


def test_image_sample_expands_the_image_and_text_only_has_none(data):
    _, images, records, _ = data
    ds = dataset(records, images)
    for i, record in enumerate(records):
        sample = ds[i]
        n_image = int((sample.input_ids == IMAGE_TOKEN_INDEX).sum())
        assert n_image == (16 if "image" in record else 0)
        assert (sample.pixel_values is not None) == ("image" in record)
        assert sample.num_targets > 0 and not sample.skipped
        assert (sample.labels[sample.input_ids == IMAGE_TOKEN_INDEX] == IGNORE_INDEX).all()
    batch = collate([ds[i] for i in range(len(records))])
    assert batch.pixel_values.shape == (6, 3, 28, 28)
    assert batch.attention_mask.sum(1).tolist() == [len(ds[i].input_ids) for i in range(len(records))]


def test_missing_and_corrupt_images_are_skipped_and_counted_or_stop_with_strict(data, tmp_path):
    _, images, records, _ = data
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    bad = [dict(records[0], image="nope.png"), dict(records[0], id="c", image=str(tmp_path / "corrupt.png")),
           records[1]]
    ds = dataset(bad, images)
    batch = collate([ds[i] for i in range(3)])
    assert batch.indices == [2]
    assert [i for i, _ in batch.skipped] == [0, 1]
    assert "not found" in batch.skipped[0][1] and "corrupt" in batch.skipped[1][1]
    strict = dataset(bad, images, strict=True)
    with pytest.raises(ValueError, match=r"record 1 \(id 'c'\).*corrupt"):
        strict[1]


def test_a_sample_truncated_to_no_targets_is_counted_not_trained_on(data):
    _, images, records, pretrain = data
    ds = dataset(pretrain, images, template="plain", model_max_length=17, image_aspect_ratio="square")
    sample = ds[0]
    assert len(sample.input_ids) == 17 and sample.num_targets == 0  # the image fills the row
    long_enough = dataset(pretrain, images, template="plain", model_max_length=40, image_aspect_ratio="square")
    batch = collate([sample, long_enough[1]])
    assert batch.fully_masked == [0] and batch.indices == [1]
    assert batch.num_targets == long_enough[1].num_targets > 0
    cut = dataset(pretrain, images, template="plain", model_max_length=10, image_aspect_ratio="square")[0]
    assert "cuts through the image" in cut.skipped  # the model could not place a partial image


GOLDEN = __import__("pathlib").Path(__file__).parent / "golden" / "dataset"


def collapse_images(ids: torch.Tensor, labels: torch.Tensor, n: int) -> tuple[list[int], list[int]]:
    """Expanded image positions -> one -200 sentinel each (the official dataset's form)."""
    out_ids, out_labels, k = [], [], 0
    while k < len(ids):
        out_ids.append(int(ids[k]))
        out_labels.append(int(labels[k]))
        k += n if int(ids[k]) == IMAGE_TOKEN_INDEX else 1
    return out_ids, out_labels


@pytest.mark.parametrize("template,aspect", [("plain", "square"), ("vicuna_v1", "pad")])
def test_samples_equal_the_official_lazy_supervised_dataset(template, aspect):
    golden = json.loads((GOLDEN / "samples.json").read_text())
    records = load_records(GOLDEN / "records.json")
    ds = dataset(records, GOLDEN / "images", template=template, image_aspect_ratio=aspect,
                 model_max_length=golden["max_length"])
    cases = [c for c in golden["cases"] if c["template"] == template]
    assert cases
    for case in cases:
        sample = ds[case["index"]]
        ids, labels = collapse_images(sample.input_ids, sample.labels, 16)
        assert ids == case["input_ids"][:len(ids)], case["index"]
        assert labels == case["labels"][:len(ids)], case["index"]
        if case["has_image"]:  # the official dataset leaves image samples to the model's post-splice cut
            assert len(sample.input_ids) == min(len(case["input_ids"]) - 1 + 16, golden["max_length"])
            pixels = sample.pixel_values.double()
            assert float(pixels.sum()) == pytest.approx(case["pixel_sum"], abs=1e-3)
            assert float(pixels.pow(2).sum()) == pytest.approx(case["pixel_sq"], abs=1e-3)
            torch.testing.assert_close(pixels.flatten()[:16].float(), torch.tensor(case["pixel_first"]), atol=1e-5, rtol=0)
        else:
            assert len(ids) == len(case["input_ids"]) and sample.pixel_values is None
        if all(x == IGNORE_INDEX for x in case["labels"]):
            assert sample.num_targets == 0  # counted as fully masked by collate, never trained on


def test_cached_tokens_equal_fresh_ones_and_an_image_lost_later_is_still_skipped(data, tmp_path):
    _, images, records, _ = data
    fresh = dataset(records, images)
    cached = dataset(records, images, cache_text=True)
    for epoch in range(2):
        for i in range(len(records)):
            a, b = fresh[i], cached[i]
            assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
            assert a.mismatch == b.mismatch
    assert sorted(cached.text_cache) == list(range(len(records)))
    # the cache holds tokens, not images: an image that goes missing after epoch 1 is skipped then
    first = next(i for i, r in enumerate(records) if "image" in r)
    (tmp_path / "img.png").write_bytes((images / records[first]["image"]).read_bytes())
    moved = [dict(records[first], image=str(tmp_path / "img.png"))]
    ds = dataset(moved, images, cache_text=True)
    assert not ds[0].skipped
    (tmp_path / "img.png").unlink()
    assert "not found" in ds[0].skipped
