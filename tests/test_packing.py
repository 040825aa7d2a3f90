"""Packed and unpacked micro-batches give the same loss and the same gradients."""

import pytest
import torch

from llava15.config import IGNORE_INDEX, tiny
from llava15.data.dataset import Sample, collate
from llava15.data.packing import collate_packed, pack_rows, packed_mask_and_positions
from llava15.model.llava import Llava
from llava15.train.objective import Objective


def make_samples(config, lengths, with_image, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i, (n, image) in enumerate(zip(lengths, with_image)):
        ids = torch.randint(3, config.text.vocab_size, (n,), generator=g)
        labels = ids.clone()
        labels[: n // 3] = IGNORE_INDEX  # a prompt without loss
        pixels = None
        if image:
            k = config.num_image_tokens
            ids[1:1 + k] = config.image_token_index
            labels[1:1 + k] = IGNORE_INDEX
            pixels = torch.randn(3, config.vision.image_size, config.vision.image_size, generator=g)
        samples.append(Sample(i, ids, labels, pixels))
    return samples


def loss_and_grads(objective, batch):
    objective.zero_grad()
    loss = objective(batch.input_ids, batch.labels, batch.attention_mask, batch.position_ids, batch.pixel_values)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}


def test_pack_rows_places_every_sample_once_within_capacity():
    lengths = [50, 7, 33, 90, 12, 61, 5, 40]
    rows = pack_rows(lengths, 100)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 100 for row in rows)
    assert rows == [[3, 1], [5, 2, 6], [0, 7], [4]]  # first-fit decreasing, deterministic
    assert pack_rows([150, 10], 100) == [[0], [1]]  # too long: a row of its own


def test_packed_mask_never_crosses_a_sample_and_positions_restart():
    mask, positions = packed_mask_and_positions([[3, 2]], 6)
    m = mask[0, 0]
    assert positions[0].tolist() == [0, 1, 2, 0, 1, 0]
    assert m[4].tolist() == [False, False, False, True, True, False]  # second sample sees itself only
    assert m[2].tolist() == [True, True, True, False, False, False]
    assert m[5].tolist() == [False] * 5 + [True]  # padding sees only itself (no empty row)


@pytest.mark.parametrize("capacity", [64, 1000])
def test_packed_equals_unpacked_loss_and_gradients(capacity):
    torch.manual_seed(0)
    config = tiny()
    objective = Objective(Llava(config))
    lengths = [40, 9, 25, 33, 12, 20]
    samples = make_samples(config, lengths, [True, False, True, False, False, True])
    plain, packed = collate(samples), collate_packed(samples, capacity=capacity)
    assert packed.input_ids.shape[0] < plain.input_ids.shape[0]
    assert packed.input_ids.numel() < plain.input_ids.numel()
    assert packed.num_targets == plain.num_targets and packed.num_tokens == plain.num_tokens == sum(lengths)
    loss_a, grads_a = loss_and_grads(objective, plain)
    loss_b, grads_b = loss_and_grads(objective, packed)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-5)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)


def test_packing_drops_fully_masked_and_skipped_samples_and_counts_them():
    config = tiny()
    samples = make_samples(config, [10, 12, 8], [False, False, False])
    samples[1].labels[:] = IGNORE_INDEX
    empty = torch.zeros(0, dtype=torch.long)
    samples.append(Sample(3, empty, empty, skipped="image missing"))
    for batch in (collate(samples), collate_packed(samples, capacity=64)):
        assert batch.indices == [0, 2] or sorted(batch.indices) == [0, 2]
        assert batch.fully_masked == [1] and batch.skipped == [(3, "image missing")]
