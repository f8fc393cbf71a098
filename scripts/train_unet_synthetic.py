#!/usr/bin/env python
"""The long synthetic run of page 3: Table 3 (one multi-output U-Net per view) and the paper's
remedies for small structures, at a larger size and for more epochs than the ``ci`` profile affords.

    .venv/bin/python scripts/train_unet_synthetic.py --size 384 192 --filters 16 --epochs 60 \
        --line-epochs 40 --out results/unet_synthetic

Same code as the page (:mod:`spinelib.seg.experiment`), same synthetic dataset as the ``ci``
profile (60 patients, generated if missing), same recipe (:data:`spinelib.core.plans.RECIPE`).
Training files go to ``--work`` (not committed; an interrupted run resumes from there); the
committed record goes to ``--out``: ``table3.csv``, ``lines.csv``, ``final_table3.csv``,
``metrics.json`` (command, git commit, timings, machine), figures and ``README.md``; the headline
rows for the results page go to ``<out>/../headlines/<out name>.csv``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, nargs=2, default=(384, 192), metavar=("H", "W"))
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=60, help="epochs of the Table 3 networks")
    ap.add_argument("--line-epochs", type=int, default=40, help="epochs of each remedy network (section 5)")
    ap.add_argument("--large-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                    help="the 'larger input' remedy (default: twice --size)")
    ap.add_argument("--large-filters", type=int, default=None, help="default: half of --filters")
    ap.add_argument("--n-synthetic", type=int, default=60, help="synthetic patients (the ci profile's 60)")
    ap.add_argument("--scale", type=float, default=1.0, help="synthetic image scale (the ci profile's 1.0)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synthetic-dir", default=None, help="default data/synthetic-ci")
    ap.add_argument("--work", default=str(REPO / "outputs" / "unet_synthetic"))
    ap.add_argument("--out", default=str(REPO / "results" / "unet_synthetic"))
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    from spinelib import viz
    from spinelib.core import config, plans
    from spinelib.core.provenance import git_commit
    from spinelib.data import segdata
    from spinelib.data.synthetic import generator
    from spinelib.paper import report, table3_unet
    from spinelib.seg import experiment
    from spinelib.viz import plot_history

    commit = git_commit(REPO, mark_dirty=True)  # the code this run starts from (HEAD may move while it trains)

    h, w = args.size
    plan = dataclasses.replace(
        plans.plan("long", seed=args.seed), table3_size=(h, w), table3_filters=args.filters,
        table3_batch_size=args.batch_size, table3_epochs=args.epochs, table3_single_epochs=args.epochs,
        table3_line_epochs=args.line_epochs,
        table3_large_size=tuple(args.large_size) if args.large_size else (2 * h, 2 * w),
        table3_large_filters=args.large_filters or max(1, args.filters // 2),
        table3_aasce_size=(h, w), table3_aasce_images=None, table3_aasce_epochs=args.epochs,
    )
    syn_dir = config.default_synthetic_dir(args.synthetic_dir, "ci")
    generator.generate_dataset(syn_dir, n_patients=args.n_synthetic, seed=args.seed, scale=args.scale, progress=False)
    views = {v: segdata.prepare_view_data(syn_dir, v, plan.table3_size, seed=args.seed, progress=False) for v in ("AP", "LAT")}
    work = Path(args.work)
    runs = {v: experiment.run_experiment(d, work, f"table3_{v}", verbose=2, **plan.recipe("table3")) for v, d in views.items()}
    table3 = table3_unet.table3(list(runs.values()), views=views)
    print(table3.round(3).to_string(), flush=True)
    remedies = table3_unet.remedy_experiments(views, runs, work, plan)
    print(remedies.dice.round(3).to_string(), flush=True)
    final = table3_unet.final_table3(remedies.dice, input_frame=remedies.input_frame_dice())
    print(final.round(3).to_string(), flush=True)
    wall = time.perf_counter() - t_start

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table3.to_csv(out / "table3.csv")
    remedies.dice.to_csv(out / "remedies.csv")
    table3_unet.remedy_timing(remedies).to_csv(out / "remedy_timing.csv")
    final.to_csv(out / "final_table3.csv")
    command = ".venv/bin/python scripts/train_unet_synthetic.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    import tensorflow as tf

    from spinelib.core.provenance import run_info

    metrics = {
        "command": command, "git_commit": commit,
        "dataset": f"synthetic, {args.n_synthetic} patients (spinelib.data.synthetic.generator, seed {args.seed}, scale {args.scale})",
        "validation": "patients (not images), spinelib.data.splits.patient_split",
        "plan": {k: (list(v) if isinstance(v, tuple) else v) for k, v in plan.part("page").as_dict().items()},
        "recipe": plans.RECIPE,
        "structures_at_or_above_paper": int(final["at_or_above_paper"].sum()),
        "n_structures": int(len(final)),
        "training_minutes": {r.name: round(r.train_seconds / 60, 1)
                             for r in list(runs.values()) + list(remedies.results.values())},
        "wall_seconds_this_call": round(wall, 1),
        "load_average_1min_at_start": round(load_start, 2), "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "run": run_info(seed=args.seed, data_dirs={"synthetic": syn_dir}),  # versions, data fingerprint
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    for v, r in runs.items():
        plot_history(r.history, title=f"{v} network, long run (synthetic)").savefig(out / f"history_{v}.png", dpi=60)
    for v, r in runs.items():
        worst = table3.loc[list(r.structures), "dice"].idxmin()
        viz.cases_figure(views[v], r, worst, n=2).savefig(out / f"cases_{worst}.png", dpi=60)
    for structure in ("Lat_Anterior_Vertebral_Line", "Ap_Pedicle"):
        remedies.figure(structure).savefig(out / f"crop_{structure}.png", dpi=60)
    (out / "README.md").write_text(
        "# U-Net on the synthetic patients: the long run of page 3\n\n"
        "Synthetic data (not patients), validation split by patient. Produced by\n\n"
        f"    {command}\n\n"
        f"at git commit `{metrics['git_commit']}`, on {metrics['cpu_count']} CPU cores "
        f"(1-min load average {metrics['load_average_1min_at_start']} at the start, shared with other jobs); "
        f"{wall / 60:.0f} min wall time.\n\n"
        f"{metrics['structures_at_or_above_paper']} of {metrics['n_structures']} structures at or above the paper's "
        "Table 3 (`final_table3.csv`).\n\n"
        "Files: `table3.csv` (the two multi-output networks with the paper's loss, Dice at the input size "
        "and at the original resolution), `remedies.csv` (the paper's suggestions, original resolution), "
        "`remedy_timing.csv`, `final_table3.csv` (spine crop + Dice loss), `metrics.json`, `history_*.png`, "
        "`cases_*.png` (best and worst validation patients of the weakest structure per view), `crop_*.png`.\n"
    )

    dataset = f"synthetic, {args.n_synthetic} patients, {len(set(views['AP'].val_ids))} validation patients"
    rows = [dict(r, profile="long run", note=f"committed long run ({h}x{w}): {r['note']}")
            for r in report.segmentation_headlines(table3=table3, final=final, synthetic_dataset=dataset)]
    report.record_headlines(out.parent, "03_unet_segmentation", rows, profile="long run", seed=args.seed, name=out.name)
    print(json.dumps({k: metrics[k] for k in ("structures_at_or_above_paper", "wall_seconds_this_call")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
