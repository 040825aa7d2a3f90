"""The shared-prefix training pass gives the plain pass's loss and gradients, on fewer positions."""

import itertools

import pytest
import torch

from llava15.config import IGNORE_INDEX, tiny
from llava15.data.dataset import Sample, collate
from llava15.model.calls import cut_by_length
from llava15.train.config import TrainConfig
from llava15.train.objective import Objective
from llava15.train.shared_prefix import shared_prefix_length
from random_llava import random_llava


def rows_with_a_system_prompt(config, lengths, prompt=7, with_image=True, seed=0):
    """Samples that start with the same `prompt` tokens, then an image (when asked) and their own
    tokens; the targets are the second half of each row's own tokens."""
    g = torch.Generator().manual_seed(seed)
    system = torch.randint(3, config.text.vocab_size, (prompt,), generator=g)
    samples = []
    for i, n in enumerate(lengths):
        own = torch.randint(3, config.text.vocab_size, (n,), generator=g)
        k = config.num_image_tokens if with_image else 0
        ids = torch.cat([system, torch.full((k,), config.image_token_index), own])
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[prompt + k + n // 2:] = ids[prompt + k + n // 2:]
        pixels = torch.randn(3, config.vision.image_size, config.vision.image_size, generator=g) if k else None
        samples.append(Sample(i, ids, labels, pixels))
    return samples


def loss_and_grads(objective, batch, shared):
    objective.shared_prefix = shared
    objective.zero_grad()
    loss = objective(batch.input_ids, batch.labels, batch.attention_mask, pixel_values=batch.pixel_values)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("with_image", [True, False])
def test_shared_prefix_gives_the_plain_loss_and_gradients(with_image):
    config = tiny()
    objective = Objective(random_llava(config, scale=0.05)).train()
    batch = collate(rows_with_a_system_prompt(config, [3, 17, 5, 30, 29, 8, 12, 2], with_image=with_image))
    plain_loss, plain = loss_and_grads(objective, batch, False)
    shared_loss, shared = loss_and_grads(objective, batch, True)
    assert torch.allclose(shared_loss, plain_loss, rtol=1e-5)
    assert plain.keys() == shared.keys() and len(plain) > 10
    for name in plain:  # float summation order differs: compare at each tensor's scale (a key
        # bias's gradient is zero in exact arithmetic, float noise here: hence the floor)
        scale = max(float(plain[name].abs().max()), 1e-4)
        assert (shared[name] - plain[name]).abs().max() <= 1e-5 * scale, name


def test_no_common_prefix_still_gives_the_plain_loss():
    config = tiny()
    objective = Objective(random_llava(config, scale=0.05)).train()
    batch = collate(rows_with_a_system_prompt(config, [4, 9, 6], prompt=0, with_image=False))
    assert shared_prefix_length(batch.input_ids, batch.labels, batch.attention_mask.sum(1),
                                config.image_token_index) == 0
    plain_loss, _ = loss_and_grads(objective, batch, False)
    shared_loss, _ = loss_and_grads(objective, batch, True)
    assert torch.allclose(shared_loss, plain_loss, rtol=1e-5)


def test_prefix_stops_at_a_difference_an_image_a_target_and_the_shortest_row():
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [5, 6, 7, 8, 4, 10]])
    ignored = torch.full_like(ids, IGNORE_INDEX)
    full = torch.tensor([6, 6])
    assert shared_prefix_length(ids, ignored, full, image_token_index=-200) == 4  # row 1 differs at 4
    image = ids.clone()
    image[:, 2] = -200
    assert shared_prefix_length(image, ignored, full, image_token_index=-200) == 2
    targeted = ignored.clone()
    targeted[1, 3] = 8  # predicted by position 2, which must then run with its row
    assert shared_prefix_length(ids, targeted, full, image_token_index=-200) == 2
    assert shared_prefix_length(ids, ignored, torch.tensor([3, 6]), image_token_index=-200) == 2


def test_left_padding_is_refused():
    config = tiny()
    objective = Objective(random_llava(config, scale=0.05)).train()
    batch = collate(rows_with_a_system_prompt(config, [3, 8], with_image=False))
    objective.shared_prefix = True
    with pytest.raises(ValueError, match="right-padded"):
        objective(batch.input_ids, batch.labels, batch.attention_mask.flip(1))


def brute_force_cost(lengths, call_cost):
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    best = float("inf")
    for k in range(len(order)):
        for cuts in itertools.combinations(range(1, len(order)), k):
            bounds = [0, *cuts, len(order)]
            best = min(best, sum(call_cost + (b - a) * lengths[order[a]] for a, b in zip(bounds, bounds[1:])))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_cut_by_length_finds_the_cheapest_cut_and_keeps_every_row_once(seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 120, (8,), generator=g).tolist()
    calls = cut_by_length(lengths, call_cost=64)
    assert sorted(i for call in calls for i in call) == list(range(8))
    cost = sum(64 + len(call) * max(lengths[i] for i in call) for call in calls)
    assert cost == brute_force_cost(lengths, 64)


def test_shared_prefix_refuses_packing_and_gradient_checkpointing():
    base = dict(llm="llm", vision_tower="clip", shared_prefix=True)
    with pytest.raises(ValueError, match="shared_prefix"):
        TrainConfig(**base, packing=True, gradient_checkpointing=False).validate()
    with pytest.raises(ValueError, match="shared_prefix"):
        TrainConfig(**base, gradient_checkpointing=True).validate()
    TrainConfig(**base, gradient_checkpointing=False).validate()


def test_the_shared_pass_computes_fewer_positions_on_template_like_rows():
    """What makes it faster: count the positions the decoder's layers see in each pass."""
    config = tiny()
    model = random_llava(config, scale=0.05)
    objective = Objective(model).train()
    batch = collate(rows_with_a_system_prompt(config, [3, 40, 5, 38, 6, 4], prompt=20))
    seen = []
    hook = model.language_model.model.layers[0].register_forward_hook(
        lambda module, args, out: seen.append(args[0].shape[0] * args[0].shape[1]))
    try:
        loss_and_grads(objective, batch, False)
        plain = sum(seen)
        seen.clear()
        loss_and_grads(objective, batch, True)
    finally:
        hook.remove()
    assert plain == batch.input_ids.numel()
    assert sum(seen) < 0.6 * plain
