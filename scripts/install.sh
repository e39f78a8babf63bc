#!/usr/bin/env bash
# Install ltbench into .venv from nothing: Debian data package (when root), venv, torch pair, package.
# Usage: scripts/install.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_PAIR=${LTBENCH_TORCH_PAIR:-"torch==2.14.1 torchvision==0.29.1"}  # the pair that installs on our CPU machines

if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${LTBENCH_DATA:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian package dataset-fashion-mnist (the embedded default data)"
    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
  else
    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' (Debian/Ubuntu)," >&2
    echo "or put the four IDX files in \$LTBENCH_DATA/fashion-mnist." >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q $TORCH_PAIR
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install -q -e ".[dev]"
else
  .venv/bin/python -m pip install -q -e .
fi
echo "ltbench installed in .venv"
