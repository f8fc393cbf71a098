#!/usr/bin/env python
"""Set the floors (results/ci_floors.csv) from a reference build of the ci book.

    .venv/bin/python scripts/set_floors.py --output-dir outputs/ci            # prints the table
    .venv/bin/python scripts/set_floors.py --output-dir outputs/ci --write    # and writes it

The guarded headlines and how each floor follows from the build (its 95 % CI end, or a margin) are
``spinelib.paper.floors.FLOOR_RULES``. Run it after a deliberate change of the book moved its numbers,
on a whole ``ci`` build (``bash scripts/build_book.sh ci``), and commit the table with the change.
It only prints the table unless ``--write`` is given; it exits 1 when a guarded headline is missing
from the build (``--keep-missing`` keeps such a floor's current row instead), 2 on a bad argument.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output-dir", default=str(REPO / "outputs" / "ci"),
                    help="the reference build's output folder, holding headlines/<page>.csv (default: outputs/ci)")
    ap.add_argument("--floors", default=str(REPO / "results" / "ci_floors.csv"),
                    help="where the table goes (default: results/ci_floors.csv)")
    ap.add_argument("--write", action="store_true", help="write the table (else only print it)")
    ap.add_argument("--keep-missing", action="store_true",
                    help="a guarded headline this build lacks keeps its row of the current table "
                         "(for a build of some pages only)")
    args = ap.parse_args(argv)
    if not (Path(args.output_dir) / "headlines").is_dir():
        print(f"error: {args.output_dir} holds no headlines/ folder: build the book first "
              "(bash scripts/build_book.sh ci)", file=sys.stderr)
        return 2
    from spinelib.core.headlines import collect_headlines
    from spinelib.paper import floors

    try:
        keep = floors.read_floors(args.floors) if args.keep_missing and Path(args.floors).is_file() else None
        table = floors.floors_from_headlines(collect_headlines(args.output_dir), keep=keep)
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


if __name__ == "__main__":
    raise SystemExit(main())
