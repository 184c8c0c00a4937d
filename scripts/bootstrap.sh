#!/usr/bin/env bash
# Set up everything chemlatent needs on a fresh machine, idempotently:
# a virtual environment in .venv, the CPU build of PyTorch, the project with its test extras,
# and Debian's Chromium for the browser tests (when run as root on Debian/Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# torch first, pinned: any other torch install pulls gigabytes of CUDA packages
python -c "import torch" 2>/dev/null || python -m pip install --quiet torch==2.13.0
python -m pip install --quiet -e ".[test]"
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "bootstrap: could not install chromium; browser tests will fail" >&2
  else
    echo "bootstrap: chromium not found; install Debian's chromium for the browser tests" >&2
  fi
fi
echo "bootstrap: ready (.venv)"
