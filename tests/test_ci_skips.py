"""Under CI=true a skipped test fails the run; elsewhere it does not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def run(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess:
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\ndef test_runs():\n    assert True\n\n"
        "@pytest.mark.skip(reason='a missing dependency')\ndef test_skipped():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_skip_fails_the_run_under_ci(tmp_path):
    done = run(tmp_path, ci=True)
    assert done.returncode == 1, done.stdout
    assert "1 skipped test(s) fail the run" in done.stdout and "a missing dependency" in done.stdout


def test_a_skip_passes_elsewhere(tmp_path):
    done = run(tmp_path, ci=False)
    assert done.returncode == 0, done.stdout
