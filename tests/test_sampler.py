"""The modality-grouped length sampler against the official function's orders (golden file)."""

import json
from pathlib import Path

import pytest
import torch

from llava15.data.sampler import (epoch_order, get_length_grouped_indices,
                                  get_modality_length_grouped_indices, micro_batches_for_step,
                                  split_to_even_chunks, subsample_indices)

GOLDEN = json.loads((Path(__file__).parent / "golden" / "sampler" / "orders.json").read_text())


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: f"n{len(c['lengths'])}-B{c['batch_size']}-W{c['world_size']}")
def test_orders_equal_the_official_function(case):
    g = torch.Generator().manual_seed(case["seed"])
    ours = get_modality_length_grouped_indices(case["lengths"], case["batch_size"], case["world_size"], g)
    assert ours == case["modality_grouped"]
    g = torch.Generator().manual_seed(case["seed"])
    plain = get_length_grouped_indices([abs(x) for x in case["lengths"]], case["batch_size"], case["world_size"], g)
    assert plain == case["length_grouped"]


def test_every_full_megabatch_has_one_modality():
    case = GOLDEN["cases"][4]
    lengths, size = case["lengths"], case["batch_size"] * case["world_size"]
    order = epoch_order(lengths, case["seed"], 0, True, case["batch_size"], case["world_size"])
    assert sorted(order) == list(range(len(lengths)))
    megabatches = [order[i:i + size] for i in range(0, len(order), size)][:-2]
    assert all(len({lengths[i] > 0 for i in m}) == 1 for m in megabatches)


def test_split_to_even_chunks_balances_and_round_robins():
    lengths = [10, 9, 8, 7, 2, 1]
    assert split_to_even_chunks([0, 1, 2, 3, 4, 5], lengths, 2) == [[0, 3, 4], [1, 2, 5]]
    assert split_to_even_chunks([0, 1, 2, 3, 4], lengths, 2) == [[0, 2, 4], [1, 3]]


def test_v11_variant_puts_the_mixed_megabatch_first():
    lengths = [5] * 10 + [-5] * 9  # leftovers: 2 mm + 1 lang... with B=2, W=2: 10 % 4 = 2, 9 % 4 = 1
    head = get_modality_length_grouped_indices(lengths, 2, 2, torch.Generator().manual_seed(0))
    v11 = get_modality_length_grouped_indices(lengths, 2, 2, torch.Generator().manual_seed(0), "v1.1")
    assert sorted(head) == sorted(v11) == list(range(19))
    assert head[-3:] == sorted(head[-3:]) and head != v11


def test_micro_batches_are_dealt_round_robin_and_cover_each_step():
    order = list(range(100, 132))
    one = micro_batches_for_step(order, 1, 4, 2, 1, 0)  # 1 process, accumulation 2
    r0 = micro_batches_for_step(order, 1, 4, 1, 2, 0)  # 2 processes, no accumulation
    r1 = micro_batches_for_step(order, 1, 4, 1, 2, 1)
    assert one == r0 + r1 == [[108, 109, 110, 111], [112, 113, 114, 115]]


def test_subsample_is_fixed_by_seed():
    a, b = subsample_indices(1000, 0.25, 3), subsample_indices(1000, 0.25, 3)
    assert a == b and len(a) == 250 and a != subsample_indices(1000, 0.25, 4)
    assert subsample_indices(10, 1.0, 0) == list(range(10))
