"""Suite-wide rule: under CI=true a skipped test fails the run.

A missing dependency (transformers, gguf, playwright, a browser) would otherwise turn the tests
that need it into skips, and the run would pass while checking less. Elsewhere skips only show,
with their reasons (`-ra`)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def smoke_demo(tmp_path_factory):
    """The smoke demo, trained once per session: `(out, results)`. Tests only read it."""
    from llava15.world.demo import run_demo, smoke_config

    out = tmp_path_factory.mktemp("smoke-demo")
    return out, run_demo(smoke_config(str(out)), show_progress=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and exitstatus == pytest.ExitCode.OK:
        if reporter is not None:
            reporter.write_line(f"CI=true: {len(skipped)} skipped test(s) fail the run:", red=True)
            for report in skipped:
                reporter.write_line(f"  {report.nodeid}: {report.longrepr}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
