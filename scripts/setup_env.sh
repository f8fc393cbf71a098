#!/usr/bin/env bash
# Create the project's virtual environment (.venv) if missing and install pinned dependencies.
# Idempotent: reinstalls only when requirements.lock or pyproject.toml changed.
# Usage: bash scripts/setup_env.sh [--browser]   (--browser also installs Debian's chromium for page tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${SPINELIB_VENV:-.venv}
stamp="$VENV/.spinelib-installed"
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing pinned packages from requirements.lock (about 1-2 minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -m pip install -q -r requirements.lock 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -m pip install -q --no-deps -e . 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -c "import spinelib, tensorflow, papermill, jupyter_book" >/dev/null 2>&1 \
    || { echo "[setup] install failed: spinelib/tensorflow/papermill/jupyter_book do not import"; exit 1; }
  echo "$want" > "$stamp"
else
  echo "[setup] $VENV is up to date"
fi
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "[setup] installing Debian chromium for the browser checks"
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "[setup] could not install chromium"
fi
# MathJax for the rendered book, served from the book itself (readers may be offline).
if [ ! -f "$VENV/mathjax/node_modules/mathjax/es5/tex-mml-chtml.js" ]; then
  echo "[setup] installing MathJax 3.2.2 from the npm registry for the offline book"
  npm install --no-save --no-audit --no-fund --silent --prefix "$VENV/mathjax" mathjax@3.2.2 >/dev/null \
    || echo "[setup] could not install MathJax: formulas in the book will not render offline"
fi
