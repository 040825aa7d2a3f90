"""Checkpoints: a run killed with SIGKILL and resumed ends bitwise equal to an uninterrupted run;
a crash while saving leaves the last good checkpoint usable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from llava15.train.state import checkpoints, latest_checkpoint, prune
from test_train_world import make_backbones, make_data

RUNNER = ("import argparse, sys\nfrom llava15.cli import train as t\n"
          "p = argparse.ArgumentParser(); t.add_arguments(p)\nsys.exit(t.run(p.parse_args(sys.argv[1:])))")
REPO = Path(__file__).resolve().parents[1]


def command(root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", RUNNER, "--stage=finetune", f"--llm={root / 'llm'}",
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
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(tmp_path, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (killed / "checkpoint-8").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert latest_checkpoint(killed) is not None and not (killed / "checkpoint-20").exists()
    resumed = run(command(tmp_path, killed, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = run(command(tmp_path, tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    a = load_file(str(killed / "checkpoint-20" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "straight" / "checkpoint-20" / "trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    oa = torch.load(killed / "checkpoint-20" / "optimizer.pt", weights_only=True)["state"]
    ob = torch.load(tmp_path / "straight" / "checkpoint-20" / "optimizer.pt", weights_only=True)["state"]
    assert all(torch.equal(oa[k]["exp_avg_sq"], ob[k]["exp_avg_sq"]) for k in oa)
    rows = lambda d: {r["step"]: r["loss"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())}
    assert rows(killed) == rows(tmp_path / "straight")


def test_resume_refuses_to_overwrite_and_a_partial_save_is_ignored(tmp_path):
    for step in (4, 8):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / ".tmp-checkpoint-12").mkdir()  # a crash while saving step 12
    (tmp_path / "checkpoint-16").mkdir()  # no trainer_state.json: not complete
    assert latest_checkpoint(tmp_path).name == "checkpoint-8"
    prune(tmp_path, 1)
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint-8"]
