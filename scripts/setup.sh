#!/usr/bin/env bash
# Create (or reuse) .venv with the pinned CPU environment and quagmire installed in editable mode.
# Idempotent: a second run with unchanged requirements does nothing and takes a second.
# Needs only Python 3.11 with pip and venv; set PYTHON=/path/to/python3.11 to choose the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: Python 3.11 is required (found $("$PYTHON" --version 2>&1) at $PYTHON); set PYTHON=..." >&2
  exit 1
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "setup: $PYTHON lacks venv/ensurepip (on Debian/Ubuntu: apt-get install python3.11-venv)" >&2
  exit 1
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing pinned requirements into .venv (first run: about 2 minutes)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi
