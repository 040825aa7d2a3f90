#!/usr/bin/env bash
# Install (if needed) and run the whole test suite on the CPU. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# llama.cpp for the GGUF checks (tests/test_gguf_llamacpp.py, bench/gguf_speed.py): built from
# source with its multimodal library (about 6 minutes on 2 cores), once. Only the tests need it,
# so the demo's install stays fast; a failed build warns here and fails that test module in CI.
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check "llama-cpp-python==0.3.36" \
    || echo "warning: llama-cpp-python did not build; the llama.cpp GGUF checks cannot run" >&2
fi
exec .venv/bin/python -m pytest "$@"
