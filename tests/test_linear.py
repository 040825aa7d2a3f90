"""`llava15.model.linear`: the few-rows form gives `F.linear`'s numbers wherever it serves,
and steps aside where it must (gradients, many rows, small weights, other dtypes, wrapped
Linears)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llava15.model.linear import FEW_ROWS, MIN_WEIGHT, apply_linear, linear

IN = 256
BIG = MIN_WEIGHT // IN  # out_features of the smallest weight that takes the fast form


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def bmm_calls(monkeypatch):
    """Counts torch.bmm calls, to tell which form ran."""
    calls = []
    real = torch.bmm

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "bmm", counting)
    return calls


@pytest.mark.parametrize("out_features", [BIG, BIG + 2, BIG + 1])  # 4, 2 and 1 row blocks
@pytest.mark.parametrize("rows", [1, 3, 8, FEW_ROWS])
def test_few_rows_form_matches_f_linear(out_features, rows, threads, bmm_calls):
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(out_features + rows)
    weight = torch.randn(out_features, IN, generator=g)
    bias = torch.randn(out_features, generator=g)
    x = torch.randn(rows, IN, generator=g)
    with torch.inference_mode():
        for b in (None, bias):
            got = linear(x, weight, b)
            torch.testing.assert_close(got, F.linear(x, weight, b), rtol=1e-5, atol=1e-4)
            assert got.shape == (rows, out_features) and got.is_contiguous()
    assert len(bmm_calls) == 2  # the fast form ran, both times


def test_leading_dimensions_are_kept(threads, bmm_calls):
    torch.set_num_threads(2)
    weight, x = torch.randn(BIG, IN), torch.randn(2, 3, IN)
    with torch.no_grad():
        got = linear(x, weight)
    assert bmm_calls and got.shape == (2, 3, BIG)
    torch.testing.assert_close(got, F.linear(x, weight), rtol=1e-5, atol=1e-4)


def test_gradients_flow_as_through_f_linear(bmm_calls):
    weight = torch.randn(BIG, IN, requires_grad=True)
    x = torch.randn(4, IN, requires_grad=True)
    linear(x, weight).square().sum().backward()
    ours = (x.grad.clone(), weight.grad.clone())
    x.grad, weight.grad = None, None
    F.linear(x, weight).square().sum().backward()
    assert not bmm_calls
    assert torch.equal(ours[0], x.grad) and torch.equal(ours[1], weight.grad)


def test_other_cases_take_f_linear_exactly(threads, bmm_calls):
    torch.set_num_threads(2)
    weight = torch.randn(BIG, IN)
    x = torch.randn(3, IN)
    with torch.no_grad():
        many = torch.randn(FEW_ROWS + 1, IN)
        assert torch.equal(linear(many, weight), F.linear(many, weight))
        column_major = weight.t().contiguous().t()
        assert torch.equal(linear(x, column_major), F.linear(x, column_major))
        small = weight[: BIG - 4]
        assert torch.equal(linear(x, small), F.linear(x, small))
        assert torch.equal(linear(x.double(), weight.double()), F.linear(x.double(), weight.double()))
        assert linear(torch.randn(0, IN), weight).shape == (0, BIG)
        torch.set_num_threads(1)  # one thread: the form loses there
        assert torch.equal(linear(x, weight), F.linear(x, weight))
    assert not bmm_calls


def test_apply_linear_leaves_wrapped_linears_to_their_own_forward(threads, bmm_calls):
    torch.set_num_threads(2)
    class Scaled(nn.Linear):  # e.g. an adapter that adds to the plain product
        def forward(self, x):
            return 2 * super().forward(x)

    torch.manual_seed(0)
    plain, scaled = nn.Linear(IN, BIG), Scaled(IN, BIG)
    scaled.load_state_dict(plain.state_dict())
    x = torch.randn(3, IN)
    with torch.no_grad():
        expected = F.linear(x, plain.weight, plain.bias)
        torch.testing.assert_close(apply_linear(plain, x), expected, rtol=1e-5, atol=1e-4)
        assert len(bmm_calls) == 1
        torch.testing.assert_close(apply_linear(scaled, x), 2 * expected, rtol=1e-5, atol=1e-4)
