"""The offline demo's short version, as CI runs it: every stage completes, losses fall, the
model beats the blind baseline, the report files exist, and a re-run resumes."""

from __future__ import annotations

import json
import math

import pytest

from llava15.world.demo import done_marker, run_demo, smoke_config


@pytest.fixture(scope="module")
def demo(smoke_demo):
    return smoke_demo


def losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


def test_every_stage_completes_and_losses_fall(demo):
    out, _ = demo
    for stage in ("synth", "stage0", "pretrain", "finetune", "evaluate"):
        assert done_marker(out, stage).exists(), stage
    for stage in ("pretrain", "finetune"):
        curve = losses(out / stage)
        k = max(1, len(curve) // 4)
        assert sum(curve[-k:]) / k < sum(curve[:k]) / k, (stage, curve)


def test_model_beats_the_blind_baseline(demo):
    """By a margin (the smoke run gains about 0.11 overall, 0.6 on the background colour, which
    only the image tells), not by a rounding: a model that ignored its image would fail both."""
    _, results = demo
    model, blind = results["accuracy"]["model"], results["accuracy"]["blind"]
    assert model["overall"] >= blind["overall"] + 0.05, (model, blind)
    assert model["per_type"]["scene"] >= blind["per_type"]["scene"] + 0.3, (model, blind)


def test_report_files_and_resume(demo):
    out, results = demo
    saved = json.loads((out / "results.json").read_text())
    assert saved["accuracy"] == json.loads(json.dumps(results["accuracy"]))
    assert (out / "accuracy.png").stat().st_size > 0
    stages = ("synth", "stage0", "pretrain", "finetune", "evaluate")
    assert set(saved["seconds_per_stage"]) == set(stages)
    stamps = {s: done_marker(out, s).stat().st_mtime_ns for s in stages}
    again = run_demo(smoke_config(str(out)), show_progress=False)  # every stage already done
    assert again["accuracy"] == results["accuracy"]
    assert stamps == {s: done_marker(out, s).stat().st_mtime_ns for s in stages}


def test_hd_comparison_trains_both_variants_and_resumes(demo):
    from llava15.world.hd import HDConfig, run_hd

    out, _ = demo
    cfg = HDConfig(demo_out=str(out), train_images=24, eval_images=6, epochs=1, batch=8)
    report = run_hd(cfg)
    base, hd = report["accuracy"]["base"], report["accuracy"]["hd"]
    rows = (out / "hd" / "data" / "hd_eval.jsonl").read_text().splitlines()
    assert sum(base["count_per_type"].values()) == sum(hd["count_per_type"].values()) == len(rows)
    # 2x2 full-resolution tiles plus the global view: five times the base model's tokens
    tokens = (cfg.tile() // smoke_config(str(out)).stage0.vision.patch_size) ** 2
    assert (base["image_tokens"], hd["image_tokens"]) == (tokens, 5 * tokens)
    saved = json.loads((out / "hd" / "hd_results.json").read_text())
    assert saved["accuracy"] == json.loads(json.dumps(report["accuracy"]))
    assert run_hd(cfg)["accuracy"] == report["accuracy"]  # every stage already done


def test_lookup_bench_trains_stage2_on_the_demo_and_probes(demo, tmp_path):
    """`experiments/lookup_stage2/lookup_stage2.py` end to end on the smoke demo's backbones, a few
    steps (here, not beside the script, because it needs this module's trained demo)."""
    from bench_scripts import load_script

    bench = load_script("experiments/lookup_stage2/lookup_stage2.py")
    out, _ = demo
    assert bench.make_dataset(tmp_path / "data", 24, one_hop_share=0.5) > 0
    bench.train_stage2(out, tmp_path / "data", tmp_path / "run", batch_size=8)
    curve = losses(tmp_path / "run")
    assert curve and all(math.isfinite(x) for x in curve)
    accuracy = bench.probe(tmp_path / "run", scenes=8)
    assert set(accuracy) == {"one_step", "two_step"}
    assert all(0.0 <= a <= 1.0 for a in accuracy.values())


def test_planned_steps_fit_the_time_left():
    from llava15.world.demo import planned_steps

    assert planned_steps(100.0, 0.5, 60, 6.0) == 200             # what fits
    assert planned_steps(1000.0, 0.5, 60, 6.0) == 360            # at most 6 epochs
    assert planned_steps(-5.0, 0.5, 60, 6.0) == 15               # at least a quarter epoch
    assert planned_steps(7.9, 0.5, 60, 6.0) == 15 and planned_steps(8.0, 0.5, 60, 6.0) == 16


def test_time_budget_plans_stage2_and_keeps_the_plan(demo, tmp_path):
    """Stage 2 on the smoke demo's world and stage 1 under a budget: the plan (measured step
    time, steps, epochs) is in results.json, stage 2 runs exactly the planned steps with its
    schedule ending there, and a re-run keeps the plan instead of making a new one."""
    import dataclasses

    from llava15.world.demo import run_demo

    out, _ = demo
    budget = dataclasses.replace(smoke_config(str(tmp_path / "budget")), shared_from=str(out),
                                 reuse_pretrain=True, minutes=0.9, max_finetune_epochs=2.0)
    results = run_demo(budget, show_progress=False)
    plan = results["plan"]
    assert plan["budget_s"] == 54.0 and plan["step_s"] > 0 and plan["steps_per_epoch"] > 0
    assert plan["steps_per_epoch"] / 4 <= plan["steps"] <= 2 * plan["steps_per_epoch"]
    rows = [json.loads(x) for x in (tmp_path / "budget" / "finetune" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == plan["steps"] and rows[-1]["step"] == plan["steps"]
    assert rows[-1]["lr"] < 0.05 * max(r["lr"] for r in rows)  # the cosine ends at the planned step
    assert not (tmp_path / "budget" / "finetune-warmup").exists()
    again = run_demo(budget, show_progress=False)
    assert again["plan"] == plan and again["accuracy"] == json.loads(json.dumps(results["accuracy"]))
