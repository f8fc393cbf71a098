#!/usr/bin/env python
"""Check a built book's headline numbers against their floors (results/ci_floors.csv).

    .venv/bin/python scripts/check_floors.py                 # the ci book in outputs/ci
    .venv/bin/python scripts/check_floors.py --output-dir outputs/ci --floors results/ci_floors.csv

Prints one line per floor (failures first) and exits 1 when any floor fails or its headline is
missing, 2 on a bad argument. CI runs it right after building the ``ci`` book; the floors and the
reference numbers they were set from are in ``results/ci_floors.csv`` (see
``spinelib.paper.floors``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output-dir", default=str(REPO / "outputs" / "ci"),
                    help="the build's output folder, holding headlines/<page>.csv (default: outputs/ci)")
    ap.add_argument("--floors", default=str(REPO / "results" / "ci_floors.csv"),
                    help="the floors table (default: results/ci_floors.csv)")
    args = ap.parse_args(argv)
    if not (Path(args.output_dir) / "headlines").is_dir():
        print(f"error: {args.output_dir} holds no headlines/ folder: build the book first "
              "(bash scripts/build_book.sh ci)", file=sys.stderr)
        return 2
    from spinelib.paper import floors

    try:
        checked = floors.check_build(args.output_dir, args.floors)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(floors.floors_report(checked))
    return 0 if checked["holds"].all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
