"""Shorter schedules for the ci book's longest training (issue 16): do they keep the numbers?

    python benchmarks/short_schedules.py table3 --epochs 12 --schedule cosine
    python benchmarks/short_schedules.py segmenters --epochs 12 --schedule cosine

``table3``: page 3's two Table 3 networks (the paper's loss, batch norm) at the ``ci`` plan's size,
for ``--epochs`` with ``--schedule`` (``plateau``: the book's, ``cosine``: from 1e-3 to 1e-5); prints
Table 3 (Dice per structure, 95 % CI) and each epoch's training and validation Dice.
``segmenters``: page 5's measuring U-Nets (Dice loss) the same way, then segment-then-measure: their
Dice on the 60 classified patients and the accuracy of the logistic classifier on the measured geometry.

Runs write under ``--work-dir`` (default ``/tmp/short_schedules``). Measured 2026-12-03 on the Intel
Xeon (AMX), float32: Table 3 at 12 cosine epochs against the book's 20 plateau epochs, Dice Ap Vertebra
0.891 against 0.977, Lat Vertebra 0.901 against 0.977, Lat Disk Height 0.070 against 0.819 (the
paper's loss lets the small structures in late, at the constant rate); segmenters at 12 cosine epochs:
accuracy 0.867 against the reference build's 0.933. Neither was adopted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def table3_check(args) -> None:
    from spinelib.core import plans
    from spinelib.data import segdata
    from spinelib.paper import table3_unet
    from spinelib.paper.page import setup
    from spinelib.seg import experiment

    page = setup("ci", 0, output_dir=args.work_dir)
    plan = plans.page_plan(page.profile)
    views = {v: segdata.prepare_view_data(page.synthetic_dir, v, plan.size, seed=0) for v in ("AP", "LAT")}
    runs = {}
    for view, data in views.items():
        t = time.perf_counter()
        recipe = dict(plan.recipe("table3"), epochs=args.epochs, patience=args.epochs, lr_schedule=args.schedule)
        runs[view] = experiment.run_experiment(data, Path(args.work_dir) / "runs", f"table3_{view}_{args.schedule}{args.epochs}",
                                               n_boot=1000, **recipe)
        print(f"{view}: {time.perf_counter() - t:.0f} s", flush=True)
    print(table3_unet.table3(list(runs.values()), views=views)[["dice", "ci_low", "ci_high"]].round(3).to_string())
    for view, r in runs.items():
        print(view, "\n", r.history[[c for c in r.history.columns if "dice" in c]].round(3).to_string())


def segmenters_check(args) -> None:
    import dataclasses

    import pandas as pd

    from spinelib.core import config, plans
    from spinelib.data import clsdata
    from spinelib.paper import final_classifier, segment_measure
    from spinelib.paper.page import setup

    part = plans.segmenter_plan("ci")
    train_dir = config.default_synthetic_dir(None, "ci-segmenters")
    page = setup("ci", 0, output_dir=args.work_dir,
                 extra_synthetic={"segmenter training": (train_dir, part.n_patients, part.seed_offset)})
    short = dataclasses.replace(part.plan, segmenter_epochs=args.epochs).part("segmenter")
    t = time.perf_counter()
    nets = segment_measure.train_segmenters(train_dir, page.out, short, seed=0, lr_schedule=args.schedule)
    print(f"segmenters: {time.perf_counter() - t:.0f} s", flush=True)
    data = clsdata.load_synthetic_inputs(page.synthetic_dir, page.profile.cls_size)
    features, dice = segment_measure.predicted_morphometrics(data, nets, page.out)
    print(segment_measure.dice_summary(dice).to_string())
    result = final_classifier.morphometric_cv("predicted", features, data, page.profile, page.out, seed=0)
    print("segment then measure:", {k: result.summary()[k] for k in ("accuracy", "accuracy@0.5", "auroc")})
    for view, path in nets.items():
        print(view, "\n", pd.read_csv(Path(path).parent / "history.csv").filter(like="dice").round(3).to_string())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("table3", "segmenters"))
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--schedule", choices=("plateau", "cosine"), default="cosine")
    ap.add_argument("--work-dir", default="/tmp/short_schedules")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error("--epochs must be positive")
    (table3_check if args.what == "table3" else segmenters_check)(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
