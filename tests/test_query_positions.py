"""The decoder's last layer at selected positions gives the full pass's states and gradients there,
and the training objective built on it gives the loss of full logits at every labelled position."""

import pytest
import torch
import torch.nn.functional as F

from llava15.config import IGNORE_INDEX, tiny
from llava15.model.llama import KVCache, attention_bias, query_positions
from llava15.train.objective import Objective
from random_llava import random_llava


def test_query_positions_lists_each_rows_kept_positions_in_order():
    keep = torch.tensor([[False, True, False, True, True],
                         [True, False, False, False, False],
                         [False, False, False, False, False]])
    queries, valid = query_positions(keep)
    assert queries.shape == (3, 3)
    assert queries[0].tolist() == [1, 3, 4] and queries[1, 0] == 0
    assert valid.tolist() == [[True] * 3, [True, False, False], [False] * 3]
    states = torch.arange(15).view(3, 5)
    assert torch.equal(states.gather(1, queries)[valid], states[keep])


def states_and_grads(language_model, x, mask, positions, keep, selected, cache_for=None):
    """States at `keep` (full pass then indexing, or the last layer at those positions only) and
    the gradients of a fixed random function of them."""
    language_model.zero_grad()
    x = x.clone().requires_grad_(True)
    cache = cache_for() if cache_for else None
    if selected:
        queries, valid = query_positions(keep)
        states = language_model.hidden_states(x, mask, positions, cache, queries)[valid]
    else:
        states = language_model.hidden_states(x, mask, positions, cache)[keep]
    weights = torch.randn(states.shape, generator=torch.Generator().manual_seed(1))
    (states * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in language_model.named_parameters() if p.grad is not None}
    return states.detach(), x.grad, grads


def assert_close(a, b, scale_floor=1e-4):
    assert a.shape == b.shape
    if not b.numel():
        return
    scale = max(float(b.abs().max()), scale_floor)
    assert (a - b).abs().max() <= 1e-5 * scale


@pytest.mark.parametrize("case", ["causal", "padded", "cached", "packed", "nothing kept"])
def test_last_layer_at_selected_positions_matches_the_full_pass(case):
    config = tiny()
    language_model = random_llava(config, scale=0.05).language_model.train()
    g = torch.Generator().manual_seed(0)
    b, t, d = 3, 11, config.text.hidden_size
    x = torch.randn(b, t, d, generator=g)
    keep = torch.rand(b, t, generator=g) < 0.3
    keep[0, :] = False  # a row without any kept position
    keep[1, -1] = True
    positions = torch.arange(t).expand(b, t)
    mask, cache_for = None, None
    if case == "nothing kept":  # a micro-batch without targets (FSDP runs every unit anyway)
        keep = torch.zeros_like(keep)
    if case == "padded":
        lengths = torch.tensor([11, 7, 4])
        padding = torch.arange(t)[None] < lengths[:, None]
        mask, keep = attention_bias(padding, t), keep & padding
    elif case == "cached":  # 5 positions already in the cache, as the shared prefix leaves them
        past = torch.randn(b, 5, d, generator=g)

        def filled_cache():
            cache = KVCache.allocate(config.text, b, 5 + t, torch.float32)
            language_model.hidden_states(past, None, torch.arange(5).expand(b, 5), cache)
            cache.length = 5
            return cache
        cache_for = filled_cache
        mask = attention_bias(torch.ones(b, 5 + t, dtype=torch.bool), t)
        positions = positions + 5
    elif case == "packed":  # two samples per row: block-diagonal mask, positions restart
        segment = (torch.arange(t) >= 6).long()
        same = segment[:, None] == segment[None, :]
        causal = torch.arange(t)[None, :] <= torch.arange(t)[:, None]
        mask = (same & causal)[None, None].expand(b, 1, t, t)
        positions = torch.where(segment.bool(), torch.arange(t) - 6, torch.arange(t)).expand(b, t)
    full = states_and_grads(language_model, x, mask, positions, keep, False, cache_for)
    selected = states_and_grads(language_model, x, mask, positions, keep, True, cache_for)
    assert full[0].shape[0] == int(keep.sum()) and (int(keep.sum()) > 0) == (case != "nothing kept")
    assert_close(selected[0], full[0])
    assert_close(selected[1], full[1])
    assert full[2].keys() == selected[2].keys() and len(full[2]) > 10
    for name in full[2]:
        assert_close(selected[2][name], full[2][name])


@pytest.mark.parametrize("at_targets", [True, False])
@pytest.mark.parametrize("shared_prefix", [False, True])
def test_objective_equals_full_logits_at_every_labelled_position(shared_prefix, at_targets):
    """The reference: the model's ordinary forward (all layers at all positions, logits
    everywhere), cross-entropy over the labelled positions."""
    config = tiny()
    llava = random_llava(config, scale=0.05).train()
    g = torch.Generator().manual_seed(2)
    b, t = 4, 23
    system = torch.randint(3, config.text.vocab_size, (6,), generator=g)
    ids = torch.cat([system.expand(b, 6), torch.randint(3, config.text.vocab_size, (b, t - 6),
                                                        generator=g)], 1)
    lengths = torch.tensor([23, 15, 19, 9])
    attention_mask = torch.arange(t)[None] < lengths[:, None]
    labels = torch.where(attention_mask & (torch.rand(b, t, generator=g) < 0.4), ids,
                         torch.full_like(ids, IGNORE_INDEX))
    labels[:, :7] = IGNORE_INDEX
    objective = Objective(llava)
    objective.shared_prefix = shared_prefix
    objective.last_layer_at_targets = at_targets
    loss = objective(ids, labels, attention_mask.long())
    loss.backward()
    ours = {n: p.grad.clone() for n, p in llava.named_parameters() if p.grad is not None}
    llava.zero_grad()
    logits = llava.language_model(llava.language_model.model.embed_tokens(ids),
                                  attention_mask.long())
    reference = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                ignore_index=IGNORE_INDEX, reduction="sum")
    reference.backward()
    assert torch.allclose(loss, reference, rtol=1e-5)
    for name, grad in ours.items():
        assert_close(grad, llava.get_parameter(name).grad)
