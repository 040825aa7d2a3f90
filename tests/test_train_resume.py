"""Checkpoints: a run killed with SIGKILL and resumed ends bitwise equal to an uninterrupted run;
a crash while saving leaves the last good checkpoint usable; a run without --resume refuses to
write into a directory that holds checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llava15.train.config import TrainConfig
from llava15.train.distributed import Runtime
from llava15.train.loop import train
from llava15.train.state import checkpoints, latest_checkpoint, prune
from test_train_world import make_backbones, make_data

RUNNER = ("import argparse, sys\nfrom llava15.cli import train as t\n"
          "p = argparse.ArgumentParser(); t.add_arguments(p)\nsys.exit(t.run(p.parse_args(sys.argv[1:])))")
# The same, but the process kills itself with SIGKILL while saving checkpoint-12: its files are
# written to `.tmp-checkpoint-12`, which `save_checkpoint` syncs (`state.sync_tree`, looked up at
# each call) before renaming it. So the kill lands at the same point every time, however fast the
# machine: steps 9 to 12 done and logged, checkpoint-12 not published.
KILLED_SAVING_12 = ("import os, signal\nfrom llava15.train import state\nsync = state.sync_tree\n"
                    "def sync_then_die(path, *args, **kwargs):\n    sync(path, *args, **kwargs)\n"
                    "    if path.name == '.tmp-checkpoint-12':\n        os.kill(os.getpid(), signal.SIGKILL)\n"
                    "state.sync_tree = sync_then_die\n" + RUNNER)
REPO = Path(__file__).resolve().parents[1]


def command(root: Path, out: Path, *extra: str, runner: str = RUNNER) -> list[str]:
    return [sys.executable, "-c", runner, "--stage=finetune", f"--llm={root / 'llm'}",
            f"--vision-tower={root / 'clip'}", f"--data.path={root / 'finetune.json'}",
            f"--image-folder={root / 'images'}", "--data.num_workers=0", "--model-max-length=96",
            "--stage.global_batch_size=8", "--micro_batch_size=4", "--stage.lr=1e-3", "--stage.epochs=5",
            "--save_steps=4", "--save_total_limit=2", "--seed=3", "--threads=1", f"--out={out}", *extra]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_sigkill_and_resume_end_bitwise_equal(tmp_path):
    make_backbones(tmp_path)
    make_data(tmp_path)
    killed = tmp_path / "killed"
    died = run(command(tmp_path, killed, runner=KILLED_SAVING_12))
    assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
    assert [p.name for p in checkpoints(killed)] == ["checkpoint-4", "checkpoint-8"]
    assert (killed / ".tmp-checkpoint-12" / "trainer_state.json").is_file()  # written, never published
    resumed = run(command(tmp_path, killed, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = run(command(tmp_path, tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    a = load_file(str(killed / "checkpoint-20" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "straight" / "checkpoint-20" / "trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    oa = torch.load(killed / "checkpoint-20" / "optimizer.pt", weights_only=True)["state"]
    ob = torch.load(tmp_path / "straight" / "checkpoint-20" / "optimizer.pt", weights_only=True)["state"]
    assert oa.keys() == ob.keys() and all(torch.equal(oa[k]["exp_avg_sq"], ob[k]["exp_avg_sq"]) for k in oa)
    rows = lambda d: [(r["step"], r["loss"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]
    want = dict(rows(tmp_path / "straight"))
    assert sorted(want) == list(range(1, 21))
    # steps 1-12 of the killed run, then 9-20 again after the resume: each as in the straight run
    assert [step for step, _ in rows(killed)] == [*range(1, 13), *range(9, 21)]
    assert all(loss == want[step] for step, loss in rows(killed))


def refusal(out: Path, resume: bool = False) -> BaseException:
    """What `train` raises for a run into `out`; its model paths do not exist, so a run that
    gets past the check of `out` fails on them instead (before anything is written)."""
    config = TrainConfig(llm=str(out / "no-llm"), vision_tower=str(out / "no-clip"), out=str(out),
                         resume=resume)
    with pytest.raises(Exception) as error:
        train(config, Runtime())
    return error.value


def test_resume_refuses_to_overwrite_and_a_partial_save_is_ignored(tmp_path):
    (tmp_path / ".tmp-checkpoint-12").mkdir()  # a crash while saving step 12
    (tmp_path / "checkpoint-16").mkdir()  # no trainer_state.json: not complete
    assert latest_checkpoint(tmp_path) is None
    assert "no-llm" in str(refusal(tmp_path))  # nothing complete to overwrite: on to the model
    for step in (4, 8):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path).name == "checkpoint-8"
    before = sorted(p.name for p in tmp_path.iterdir())
    error = refusal(tmp_path)
    assert isinstance(error, FileExistsError), repr(error)
    assert "already holds checkpoints" in str(error) and "--resume" in str(error), str(error)
    assert "no-llm" in str(refusal(tmp_path, resume=True))  # --resume goes on to the model
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written or removed
    prune(tmp_path, 1)
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint-8"]
