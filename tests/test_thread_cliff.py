"""`bench/thread_cliff.py` measures a training step in a fresh process, alone and beside a busy one."""

from __future__ import annotations

from bench_scripts import load_bench


def test_one_step_alone_and_beside_a_busy_process():
    bench = load_bench("thread_cliff")
    alone = bench.measure({"OMP_NUM_THREADS": "1"}, 1, busy=False, use_cli_default=False)
    assert alone["threads"] == 1 and alone["ms"] > 0
    cli = bench.measure({}, 1, busy=True, use_cli_default=True)  # the competitor is killed after
    assert cli["ms"] > 0 and cli["threads"] >= 1
