#!/usr/bin/env bash
# Build the whole book on the embedded synthetic default:
#   environment -> synthetic dataset -> every notebook executed by papermill (two at a time,
#   SPINELIB_BOOK_JOBS=1 for one after another) -> Jupyter Book HTML.
# Usage: bash scripts/build_book.sh [profile]     (profile: tiny | ci | paper; default ci)
# Result: _build/html/index.html ; executed notebooks in _build/src/notebooks/
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-${SPINELIB_PROFILE:-ci}}
bash scripts/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1  # figures: spinelib.book draws them inline
start=$(date +%s)
.venv/bin/python -m spinelib.book --profile "$PROFILE" --jobs "${SPINELIB_BOOK_JOBS:-2}"  # two pages at a time
echo "[book] built in $(( $(date +%s) - start )) s: _build/html/index.html"
