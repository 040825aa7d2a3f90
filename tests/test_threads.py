"""The command line's thread choice: the cores this process may use, idle threads that spin briefly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from llava15.cli import threads


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    return monkeypatch


def test_affinity_smaller_than_the_machine_sets_the_count(clean_env):
    clean_env.setattr(threads.os, "sched_getaffinity", lambda pid: {3})
    clean_env.setattr(threads.os, "cpu_count", lambda: 8)
    assert threads.configure_threads(None) == 1
    assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["GOMP_SPINCOUNT"] == "1000"


def test_whole_machine_leaves_torchs_default(clean_env):
    clean_env.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    clean_env.setattr(threads.os, "cpu_count", lambda: 4)
    assert threads.configure_threads(None) is None
    assert "OMP_NUM_THREADS" not in os.environ and os.environ["GOMP_SPINCOUNT"] == "1000"


def test_user_choices_win(clean_env):
    clean_env.setenv("OMP_WAIT_POLICY", "ACTIVE")
    clean_env.setenv("OMP_NUM_THREADS", "3")
    clean_env.setattr(threads.os, "sched_getaffinity", lambda pid: {0})
    assert threads.configure_threads(None) is None
    assert os.environ["OMP_NUM_THREADS"] == "3" and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert "GOMP_SPINCOUNT" not in os.environ  # the user's policy is not second-guessed
    assert threads.configure_threads(2) == 2 and os.environ["OMP_NUM_THREADS"] == "2"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")
def test_a_process_pinned_to_one_core_runs_one_torch_thread():
    code = ("import os; from llava15.cli.threads import configure_threads; configure_threads(None); "
            "import torch; print(torch.get_num_threads(), os.environ['GOMP_SPINCOUNT'])")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, preexec_fn=lambda: os.sched_setaffinity(0, {0})).stdout
    assert out.split() == ["1", "1000"]
