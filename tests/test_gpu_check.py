"""`bench/gpu_check.sh --cpu-dry-run`: every check of the GPU check runs at tiny shapes on the CPU
and prints one table with a row per check and no error; and a check that raises becomes an
`error:` row while the others go on."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bench_scripts import load_bench

REPO = Path(__file__).resolve().parents[1]
# the row labels the table must hold (first word of the check column)
EXPECTED = ("1a", "1b", "1c", "2a", "2b", "2c", "3a", "3b", "4")


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Markdown table rows by their label: [name, result, target, status]."""
    rows = {}
    for line in stdout.splitlines():
        if not line.startswith("| ") or line.startswith(("| check ", "| ---")):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows[cells[0].split()[0]] = cells
    return rows


@pytest.fixture(scope="module")
def bench():
    return load_bench("gpu_check")


def test_cpu_dry_run_prints_a_row_per_check_without_errors():
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}  # the script picks .venv/bin/python
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu-dry-run"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = table_rows(done.stdout)
    assert sorted(rows) == sorted(EXPECTED), done.stdout
    for label, (name, result, target, status) in rows.items():
        assert status in ("pass", "ok", "not run"), (label, result, status)
        assert not result.startswith("error"), (label, result)
    assert rows["3b"][3] == "not run" and "PlacementError" in rows["3b"][1]  # the CPU refuses 4-bit
    assert rows["1c"][3] == rows["4"][3] == "pass"
    assert "- bitsandbytes:" in done.stdout and "- torch " in done.stdout


def test_a_failing_check_becomes_an_error_row(bench, capsys):
    def check(setup):
        yield bench.Row("9a first", "1.0", "-", "pass")
        raise RuntimeError("out of memory\nsecond line")

    rows = bench.run_check("9 broken", check, setup=None)
    assert [r.status for r in rows] == ["pass", "error"]
    assert rows[1].result == "error: RuntimeError: out of memory"
    assert "Traceback" in capsys.readouterr().err
    table = bench.markdown(rows)
    assert table.count("\n") == 3 and "| 9 broken | error: RuntimeError: out of memory | - | error |" in table
    assert table_rows(table)["9"][3] == "error"


def test_markdown_escapes_pipes(bench):
    table = bench.markdown([bench.Row("1a x", "max |logit| 3", "<= 1e-04", "pass")])
    assert table_rows(table)["1a"] == ["1a x", "max \\|logit\\| 3", "<= 1e-04", "pass"]
