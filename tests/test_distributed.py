"""Two processes on gloo (FSDP2, or DDP with the shared-prefix pass) give the losses and the
weights of one process at the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_train_world import make_backbones, make_data

REPO = Path(__file__).resolve().parents[1]
RUNNER = ("import argparse, sys\nfrom llava15.cli import train as t\n"
          "p = argparse.ArgumentParser(); t.add_arguments(p)\nsys.exit(t.run(p.parse_args(sys.argv[1:])))\n")


ANYRES = ("--image_aspect_ratio=anyres", "--image_grid_pinpoints=[(56,28),(28,56),(56,56)]",
          "--mm_patch_merge_type=spatial_unpad", "--model-max-length=256")


def arguments(root: Path, out: Path, stage: str, packing: bool, rule: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [f"--stage={stage}", f"--llm={root / 'llm'}", f"--vision-tower={root / 'clip'}",
            f"--data.path={root / ('pretrain.json' if stage == 'pretrain' else 'finetune.json')}",
            f"--image-folder={root / 'images'}", "--data.num_workers=0", "--model-max-length=96",
            "--stage.global_batch_size=8", "--micro_batch_size=4", "--stage.lr=2e-3", "--stage.epochs=2",
            "--save_steps=1000", "--seed=5", f"--packing={str(packing).lower()}",
            f"--loss_normalization={rule}", f"--out={out}", *extra]


def run_in_process(args: list[str]) -> None:
    """The one-process reference, through the same CLI parsing (no process start-up to pay)."""
    import argparse

    from llava15.cli import train as train_cli
    from llava15.train.config import TrainConfig
    from llava15.train.distributed import Runtime
    from llava15.train.loop import train
    from llava15.train.overrides import apply_overrides

    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    values = {k: v for k, v in vars(parser.parse_args(args)).items() if k not in ("config_file", "threads")}
    train(apply_overrides(TrainConfig(), values), Runtime())


def launch_two(root: Path, args: list[str]) -> None:
    runner = root / "runner.py"
    runner.write_text(RUNNER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(runner),
           *args, "--threads=1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]


def losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


DDP_SHARED_PREFIX = ("--strategy=ddp", "--shared_prefix=true", "--gradient_checkpointing=false")


@pytest.mark.parametrize("stage,packing,rule,extra", [("finetune", False, "mean_per_microbatch", ()),
                                                      ("pretrain", True, "token_weighted", ()),
                                                      ("finetune", True, "mean_per_microbatch", ANYRES),
                                                      ("finetune", False, "mean_per_microbatch",
                                                       DDP_SHARED_PREFIX),
                                                      ("pretrain", True, "token_weighted", ("--strategy=ddp",))],
                         ids=["finetune", "pretrain-packed", "anyres-finetune-packed",
                              "ddp-finetune-shared-prefix", "ddp-pretrain-packed"])
def test_two_processes_match_one(tmp_path, stage, packing, rule, extra):
    """AnyRes: per-image views and sizes through packing and FSDP2; micro-batches without an image
    still give `image_newline` its (zero) gradient on every process."""
    make_backbones(tmp_path)
    make_data(tmp_path, n_images=12, n_text=4)
    run_in_process(arguments(tmp_path, tmp_path / "one", stage, packing, rule, extra))
    launch_two(tmp_path, arguments(tmp_path, tmp_path / "two", stage, packing, rule, extra))
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 4  # 16 or 12 samples, 8 a step, 2 epochs
    assert max(abs(a - b) for a, b in zip(one, two)) < 1e-5, (one, two)
    final = max((tmp_path / "one").glob("checkpoint-*")).name
    a = load_file(str(tmp_path / "one" / final / "trainable.safetensors"))
    b = load_file(str(tmp_path / "two" / final / "trainable.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
