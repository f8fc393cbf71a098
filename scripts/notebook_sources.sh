#!/usr/bin/env bash
# Edit the notebooks as plain Python files (jupytext "percent" format), then write them back as
# clean notebooks: no outputs, no execution counts, cell ids kept, the python3 kernel.
#
#   bash scripts/notebook_sources.sh export [DIR]   # notebooks/*.ipynb -> DIR/*.py (default nbsrc/)
#   bash scripts/notebook_sources.sh import FILE.py...  # each FILE.py -> notebooks/FILE.ipynb
#
# The .py files are a working copy (nbsrc/ is git-ignored); the notebooks stay the source of truth.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
mode=${1:-}
shift || true
case "$mode" in
  export)
    dir=${1:-nbsrc}
    mkdir -p "$dir"
    for nb in notebooks/*.ipynb; do
      "$PY" -m jupytext --quiet --to py:percent -o "$dir/$(basename "${nb%.ipynb}").py" "$nb"
    done
    echo "wrote $(ls "$dir"/*.py | wc -l) files to $dir/"
    ;;
  import)
    [ $# -gt 0 ] || { echo "usage: $0 import FILE.py..." >&2; exit 2; }
    for f in "$@"; do
      nb="notebooks/$(basename "${f%.py}").ipynb"
      "$PY" -m jupytext --quiet --update --to ipynb --set-kernel python3 -o "$nb" "$f"
      "$PY" - "$nb" <<'PY'
import sys

import nbformat

path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
nb.metadata.pop("jupytext", None)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
for cell in nb.cells:
    cell.metadata.pop("lines_to_next_cell", None)
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
nbformat.write(nb, path)
PY
      echo "$f -> $nb"
    done
    ;;
  *)
    echo "usage: $0 export [DIR] | import FILE.py..." >&2
    exit 2
    ;;
esac
