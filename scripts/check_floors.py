#!/usr/bin/env python
"""Check a built book's headline numbers against their floors (results/ci_floors.csv), or set them.

    .venv/bin/python scripts/check_floors.py                 # the ci book in outputs/ci
    .venv/bin/python scripts/check_floors.py --output-dir outputs/ci --floors results/ci_floors.csv
    .venv/bin/python scripts/check_floors.py --set           # the floors a whole ci build gives (printed)
    .venv/bin/python scripts/check_floors.py --set --write   # ... written into results/ci_floors.csv

Checking prints one line per floor (failures first) and exits 1 when any floor fails or its headline
is missing, 2 on a bad argument. CI runs it right after building the ``ci`` book; the floors and the
reference numbers they were set from are in ``results/ci_floors.csv`` (see ``spinelib.paper.floors``).

Setting (``--set``) applies ``spinelib.paper.floors.FLOOR_RULES`` (which headlines, and how each floor
follows from the build: its 95 % CI end, or a margin) to a whole ``ci`` build. Run it after a
deliberate change of the book moved its numbers, and commit the table with the change. It only
prints unless ``--write`` is given; it exits 1 when a guarded headline is missing from the build
(``--keep-missing`` keeps such a floor's current row instead).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def set_floors(args, floors, headlines) -> int:
    try:
        keep = floors.read_floors(args.floors) if args.keep_missing and Path(args.floors).is_file() else None
        table = floors.floors_from_headlines(headlines, keep=keep)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(table.drop(columns="why").to_string(index=False))
    if args.write:
        table.to_csv(args.floors, index=False)
        print(f"wrote {len(table)} floors to {args.floors}")
    else:
        print(f"(not written: add --write to replace {args.floors})")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output-dir", default=str(REPO / "outputs" / "ci"),
                    help="the build's output folder, holding headlines/<page>.csv (default: outputs/ci)")
    ap.add_argument("--floors", default=str(REPO / "results" / "ci_floors.csv"),
                    help="the floors table (default: results/ci_floors.csv)")
    ap.add_argument("--set", action="store_true", help="set the floors from this build instead of checking them")
    ap.add_argument("--write", action="store_true", help="with --set: write the table (else only print it)")
    ap.add_argument("--keep-missing", action="store_true",
                    help="with --set: a guarded headline this build lacks keeps its row of the current table")
    args = ap.parse_args(argv)
    if (args.write or args.keep_missing) and not args.set:
        ap.error("--write and --keep-missing go with --set")
    if not (Path(args.output_dir) / "headlines").is_dir():
        print(f"error: {args.output_dir} holds no headlines/ folder: build the book first "
              "(bash scripts/build_book.sh ci)", file=sys.stderr)
        return 2
    from spinelib.core.headlines import collect_headlines
    from spinelib.paper import floors

    if args.set:
        return set_floors(args, floors, collect_headlines(args.output_dir))
    try:
        checked = floors.check_build(args.output_dir, args.floors)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(floors.floors_report(checked))
    return 0 if checked["holds"].all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
