"""A/B of one Table 4 end-to-end row at the ``ci`` sizes: every fold compiling its own network (as
before ``spinelib.cls.heads.FoldModel``) against one compiled network for all folds. Same data, same
seed before each variant; prints the seconds of each and whether the out-of-fold probabilities are
equal (issue 16).

    python benchmarks/fold_model_ab.py [--row 2] [--synthetic-dir data/synthetic-ci]

The synthetic ``ci`` dataset must exist (any ``ci`` page generates it). Measured 2026-12-03 on the
Intel Xeon (AMX), row 2 (ResNet-50 from random init, AP + LAT, 128x64, 3 folds of 5 epochs):
116.9 s against 82.4 s, the probabilities equal to the last bit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--row", type=int, default=2, help="an end-to-end row of Table 4 (1-5)")
    ap.add_argument("--synthetic-dir", default=str(REPO / "data" / "synthetic-ci"))
    args = ap.parse_args(argv)
    if not Path(args.synthetic_dir).is_dir():
        ap.error(f"no synthetic dataset at {args.synthetic_dir}: build a ci page first, or pass --synthetic-dir")

    import keras

    from spinelib.cls import heads
    from spinelib.core.config import get_profile
    from spinelib.data import clsdata
    from spinelib.paper import table4_backbones as t4

    profile = get_profile("ci")
    data = clsdata.load_synthetic_inputs(args.synthetic_dir, profile.cls_size, progress=False)
    rows = [r for r in t4.table4_rows() if r.row == args.row and r.mode == "end-to-end"]
    if not rows:
        ap.error(f"row {args.row} is not an end-to-end row of Table 4")
    fits, out = heads.FoldModel.fits, {}
    for variant in ("each fold compiles its network", "one compiled network"):
        heads.FoldModel.fits = fits if variant == "one compiled network" else (lambda self, *a: False)
        keras.utils.set_random_seed(0)  # fold 0's network is built before cross_validate seeds anything
        t = time.perf_counter()
        result = t4.run_table4_row(rows[0], data, profile, None, seed=0, progress=False)
        out[variant] = (time.perf_counter() - t, result.oof["prob"].to_numpy())
        print(f"{variant}: {out[variant][0]:.1f} s", flush=True)
    heads.FoldModel.fits = fits
    a, b = (v[1] for v in out.values())
    print(json.dumps({"row": rows[0].key, "seconds": {k: round(v[0], 1) for k, v in out.items()},
                      "oof_equal": bool((a == b).all()), "max_abs_difference": float(abs(a - b).max())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
