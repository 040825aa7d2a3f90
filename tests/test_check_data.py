"""`llava15 check-data`: exact counts on a file holding each kind of problem, the exit status
around --max-bad-fraction, errors naming the line, the histogram PNG, and the summary `train`
prints before its first step."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llava15.cli import main
from llava15.data.check import check_dataset, merge_checks
from test_train_world import make_backbones, make_data

REPO = Path(__file__).resolve().parents[1]
H = lambda text: {"from": "human", "value": text}  # noqa: E731
G = lambda text: {"from": "gpt", "value": text}  # noqa: E731
RECORDS = [
    {"id": "img-ok", "image": "000.png", "conversations": [H("<image>\nWhat color is it?"), G("Red.")]},
    {"id": "text-ok", "conversations": [H("What is 2 plus 2?"), G("4.")]},
    {"id": "mismatch", "conversations": [H("Say ASSISTANT: hello"), G("hello")]},
    {"id": "missing", "image": "nope.png", "conversations": [H("<image>\nWhat?"), G("Blue.")]},
    {"id": "gpt-first", "conversations": [G("Hi."), H("What is 3?"), G("Three.")]},
    {"id": "long-answer", "conversations": [H("Count."), G("one two three four " * 60)]},
    {"id": "long-question", "conversations": [H("word " * 200), G("yes")]},
    {"id": "rejected", "conversations": [H("hi"), G("a"), G("b")]},
    {"id": "corrupt", "image": "corrupt.png", "conversations": [H("<image>\nWhat?"), G("Green.")]},
    {"id": "lost-image", "image": "001.png", "conversations": [G("<image>\nHi"), H("Color?"), G("Red.")]},
    {"id": "no-placeholder", "image": "002.png", "conversations": [H("What color?"), G("Red.")]},
]
BAD_FRACTION = 7 / 11


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    llm, clip = make_backbones(root)
    images, _, finetune = make_data(root, n_images=4, n_text=2)
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    data = root / "problems.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    flags = [f"--llm={llm}", f"--vision-tower={clip}", f"--image-folder={images}", "--model-max-length=128",
             "--data.num_workers=0"]
    return {"root": root, "data": data, "flags": flags, "finetune": finetune, "images": images}


def dataset_of(world, path: Path, **overrides: str):
    """The dataset `train` would build for `path` (through `check-data`'s weight-free model side)."""
    from argparse import Namespace

    from llava15.cli.check_data import model_side
    from llava15.cli.train import config_from
    from llava15.train.loop import build_dataset

    args = {"llm": str(world["root"] / "llm"), "vision_tower": str(world["root"] / "clip"),
            "data.path": str(path), "data.image_folder": str(world["images"]), "data.model_max_length": "128",
            **overrides}
    config = config_from(Namespace(config_file=None, **args))
    return build_dataset(config, model_side(config))


@pytest.mark.parametrize("source", ["backbones", "model"])
def test_the_weight_free_model_side_equals_what_training_builds(world, source):
    from argparse import Namespace

    from llava15.cli.check_data import model_side
    from llava15.cli.train import config_from
    from llava15.train.init import build_initial

    golden = REPO / "tests" / "golden" / "checkpoints" / "llava-tiny-full"
    models = {"backbones": {"llm": str(world["root"] / "llm"), "vision_tower": str(world["root"] / "clip")},
              "model": {"model": str(golden)}}
    anyres = {"stage.image_aspect_ratio": "anyres", "image_grid_pinpoints": "[(56,28),(28,56),(56,56)]",
              "mm_patch_merge_type": "spatial_unpad"} if source == "backbones" else {}
    config = config_from(Namespace(config_file=None, **models[source], **anyres))
    ours, theirs = model_side(config), build_initial(config)
    assert ours.model is None
    assert (ours.config, ours.tokenizer_dir, ours.image_config) == (theirs.config, theirs.tokenizer_dir,
                                                                   theirs.image_config)


def test_each_kind_of_problem_is_counted_once_with_its_record(world):
    check = check_dataset(dataset_of(world, world["data"]), progress=False)
    counts = {name: getattr(check, name) for name in (
        "samples", "with_image", "text_only", "images_found", "images_missing", "images_unreadable",
        "images_cut", "rejected", "mismatched", "fully_masked", "truncated", "first_turn_gpt", "bad")}
    assert counts == {"samples": 11, "with_image": 5, "text_only": 6, "images_found": 4, "images_missing": 1,
                      "images_unreadable": 1, "images_cut": 2, "rejected": 1, "mismatched": 1,
                      "fully_masked": 1, "truncated": 2, "first_turn_gpt": 2, "bad": 7}
    ids = {name: [e.id for e in found] for name, found in check.examples.items()}
    assert ids == {"mismatched": ["mismatch"], "images_missing": ["missing"], "images_unreadable": ["corrupt"],
                   "images_cut": ["lost-image", "no-placeholder"], "rejected": ["rejected"],
                   "fully_masked": ["long-question"], "truncated": ["long-answer", "long-question"],
                   "first_turn_gpt": ["gpt-first", "lost-image"]}
    assert check.examples["mismatched"][0].reason == "conversations[0] (human) contains 'ASSISTANT'"
    assert check.examples["mismatched"][0].index == 2
    assert "turns must alternate" in check.examples["rejected"][0].reason
    assert "no <image> placeholder left" in check.examples["images_cut"][1].reason
    # the uncut lengths of the 8 tokenized records: the long ones beyond the 128-token limit
    assert len(check.lengths) == 8 and sorted(check.lengths)[-2] > 128 and max(check.lengths) > 200
    low, median, p95, high = check.length_stats()
    assert low == min(check.lengths) and high == p95 == max(check.lengths) and low < median < 128


def test_shares_of_the_data_merge_into_the_whole_check(world):
    """What several training processes do: each checks every second record, the checks merge
    into the one-process summary (counts, lengths, examples of every kind)."""
    dataset = dataset_of(world, world["data"])
    whole = check_dataset(dataset, progress=False)
    shares = [check_dataset(dataset, progress=False, indices=range(r, len(dataset), 2)) for r in (0, 1)]
    assert sum(s.samples for s in shares) == whole.samples and all(s.samples for s in shares)
    merged = merge_checks(shares)
    assert merged.format() != shares[0].format()
    for name in ("samples", "with_image", "images_missing", "mismatched", "fully_masked", "truncated",
                 "first_turn_gpt", "rejected"):
        assert getattr(merged, name) == getattr(whole, name), name
    assert sorted(merged.lengths) == sorted(whole.lengths)
    assert set(merged.examples) == set(whole.examples)
    assert merged.length_stats() == whole.length_stats() and merged.bad == whole.bad


def test_a_wrong_template_shows_as_every_sample_mismatched(world):
    """The official failure a wrong --version gives: every sample masked, training on nothing."""
    right = check_dataset(dataset_of(world, world["finetune"], **{"data.model_max_length": "2048"}), progress=False)
    assert right.bad == 0 and right.samples == 6 and "mismatched" not in right.format()
    wrong = check_dataset(dataset_of(world, world["finetune"], **{"data.model_max_length": "2048",
                                                                   "stage.template": "chatml"}), progress=False)
    assert wrong.mismatched == wrong.bad == 6 == len(wrong.lengths)
    assert wrong.format(compact=True).endswith("do the template and tokenizer fit this data?")


@pytest.mark.parametrize("threshold,status", [(BAD_FRACTION - 0.001, 1), (BAD_FRACTION, 0)])
def test_exit_status_is_1_only_above_the_bad_fraction(world, capsys, threshold, status):
    assert main(["check-data", f"--data-path={world['data']}", *world["flags"],
                 f"--max-bad-fraction={threshold}"]) == status
    out = capsys.readouterr().out
    assert "problems, not trained on: 7 (63.64%)" in out
    assert "tokenization mismatch (every label masked): record 2 (id 'mismatch')" in out
    assert ("FAIL: 7 of 11" in out) == (status == 1)


def test_bad_input_is_named_with_its_file_and_line(world, tmp_path, capsys):
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(RECORDS[0]) + "\n" + json.dumps(RECORDS[1]) + "\n{not json\n")
    assert main(["check-data", f"--data-path={broken}", *world["flags"]]) == 2
    assert f"{broken}: line 3 is not JSON" in capsys.readouterr().err
    no_turns = tmp_path / "no_turns.json"
    no_turns.write_text(json.dumps([RECORDS[1], {"id": "x", "image": "000.png"}]))
    assert main(["check-data", f"--data-path={no_turns}", *world["flags"]]) == 2
    assert f"{no_turns}: record 1 (id 'x'): 'conversations' must be a non-empty list" in capsys.readouterr().err
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps([RECORDS[1]])[:-5])
    assert main(["check-data", f"--data-path={cut}", *world["flags"]]) == 2
    err = capsys.readouterr().err
    assert f"{cut}: line 1 column " in err and "is not JSON: Unterminated string" in err
    assert main(["check-data", f"--data-path={tmp_path / 'absent.json'}", *world["flags"]]) == 2
    assert "absent.json does not exist" in capsys.readouterr().err


def test_plot_writes_a_png_only_when_asked(world, tmp_path, capsys):
    before = set(os.listdir(world["root"]))
    assert main(["check-data", f"--data-path={world['finetune']}", *world["flags"]]) == 0
    assert set(os.listdir(world["root"])) == before and not list(tmp_path.iterdir())
    plot = tmp_path / "lengths.png"
    assert main(["check-data", f"--data-path={world['finetune']}", *world["flags"], f"--plot={plot}"]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 1000
    assert f"token length histogram: {plot}" in capsys.readouterr().out


def test_train_prints_the_summary_before_its_first_step(world, tmp_path, caplog, monkeypatch):
    from llava15.train.config import TrainConfig
    from llava15.train.distributed import Runtime
    from llava15.train.loop import train
    from llava15.train.overrides import apply_overrides

    data = tmp_path / "mixed.json"
    good = json.loads(world["finetune"].read_text())
    data.write_text(json.dumps(good + [RECORDS[2], RECORDS[3]]))
    config = apply_overrides(TrainConfig(), {
        "stage": "finetune", "llm": str(world["root"] / "llm"), "vision_tower": str(world["root"] / "clip"),
        "data.path": str(data), "data.image_folder": str(world["images"]), "data.num_workers": "0",
        "data.model_max_length": "128", "out": str(tmp_path / "run"), "stage.global_batch_size": "8",
        "micro_batch_size": "8", "max_steps": "1", "save_steps": "1000", "gradient_checkpointing": "false"})
    from llava15.train import loop

    seen_before_first_step = []

    def first_step(*args, **kwargs):
        seen_before_first_step.append("data check of" in caplog.text)
        return train_step(*args, **kwargs)

    train_step = loop.train_step
    monkeypatch.setattr(loop, "train_step", first_step)
    with caplog.at_level(logging.INFO, logger="llava15.train"):
        train(config, Runtime())
    assert seen_before_first_step == [True]
    text = caplog.text
    assert f"data check of {data}" in text and "8 samples (template vicuna_v1, model_max_length 128)" in text
    assert "image missing: 1" in text and "tokenization mismatch (every label masked): 1" in text
    assert "problems, not trained on: 2 (25.00%)" in text and "image unreadable" not in text  # compact
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="llava15.train"):
        train(apply_overrides(config, {"data.check": "false", "out": str(tmp_path / "run2")}), Runtime())
    assert "data check of" not in caplog.text and "samples, 1 steps" in caplog.text


def test_the_installed_command_as_a_user_types_it(world):
    exe = Path(sys.executable).parent / "llava15"
    flags = [f.replace("--data.num_workers=0", "--data.num_workers=1") for f in world["flags"]]
    done = subprocess.run([str(exe), "check-data", "--stage", "finetune", "--data-path", str(world["data"]),
                           *flags, "--max-bad-fraction", "0.1"], capture_output=True, text=True, timeout=300,
                          cwd=world["root"])
    assert done.returncode == 1, done.stderr
    assert "11 samples (template vicuna_v1, model_max_length 128): 5 with an image (4 found, 1 missing)" in done.stdout
    assert "rejected (training stops with an error): 1" in done.stdout
    assert "FAIL: 7 of 11 samples train on nothing (0.6364 > --max-bad-fraction 0.1)" in done.stdout
