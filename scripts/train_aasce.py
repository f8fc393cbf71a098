#!/usr/bin/env python
"""The long AASCE run: a U-Net on the real AP X-rays' vertebra bodies, validated by patient.

    .venv/bin/python scripts/train_aasce.py --size 384 192 --filters 16 --epochs 40 \
        --out results/aasce_unet

Training files (models, about 10-30 MB) go to ``--work`` (default ``outputs/aasce_unet``, not
committed; an interrupted run resumes from there). The small, committed record goes to ``--out``:
``metrics.json`` (settings, Dice per validation patient summarised, timings, machine, git
commit), ``cases.csv`` (one row per validation image), ``history.csv``, ``history.png``,
``cases.png`` (best and worst validation patients) and ``README.md`` (the exact command).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, nargs=2, default=(384, 192), metavar=("H", "W"),
                    help="input height and width, multiples of 16 (default 384 192)")
    ap.add_argument("--filters", type=int, default=16, help="U-Net filters at the first level (paper: 32)")
    ap.add_argument("--depth", type=int, default=5, help="resolution levels (paper: 5); the size must divide by 2**(depth-1)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--loss", default="paper", help="a spinelib.seg.losses name (default: the paper's)")
    ap.add_argument("--augment", action="store_true", help="random affine + intensity augmentation (with flips)")
    ap.add_argument("--batch-norm", action="store_true", help="BatchNorm after every convolution")
    ap.add_argument("--bn-momentum", type=float, default=0.99, help="BatchNorm moving-average momentum (Keras: 0.99)")
    ap.add_argument("--encoder", default="none", choices=("none", "lite0-imagenet", "lite0-random"),
                    help="the U-Net's contracting path: its own (none, default) or EfficientNet-Lite0 with "
                         "ImageNet weights / a random start (then --filters, --depth and --batch-norm do not apply; "
                         "height and width must be multiples of 32)")
    ap.add_argument("--full-res-skip", type=int, default=0, metavar="N",
                    help="Lite0 encoder only: a stride-1 skip of N channels from the X-ray (default 0: none)")
    ap.add_argument("--decoder-filters", type=int, nargs=5, default=None, metavar="N",
                    help="Lite0 encoder only: decoder widths from stride 16 to 1 (default: spinelib.seg.unet.LITE0_DECODER)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-schedule", default="plateau", choices=("plateau", "cosine"),
                    help="halve the LR on a validation plateau (default) or cosine decay to lr/100 over --epochs")
    ap.add_argument("--tta", action="store_true",
                    help="flip test-time augmentation for the reported Dice (the Dice without it is recorded too)")
    ap.add_argument("--patience", type=int, default=15)
    ap.add_argument("--crop", action="store_true",
                    help="two stages: a small network finds the spine, the main one segments crops around it")
    ap.add_argument("--stage1-size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"))
    ap.add_argument("--stage1-filters", type=int, default=8)
    ap.add_argument("--stage1-epochs", type=int, default=15)
    ap.add_argument("--margin", type=float, default=0.1, help="crop margin, a fraction of the box per side")
    ap.add_argument("--crop-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                    help="input size of the crop network (default: --size); Dice is always measured on "
                         "the full X-ray at --size")
    ap.add_argument("--max-images", type=int, default=None, help="first N images only (default: all 481)")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--aasce-dir", default=None, help="AASCE folder (default: ../shared/data/aasce)")
    ap.add_argument("--work", default=str(REPO / "outputs" / "aasce_unet"), help="training files (not committed)")
    ap.add_argument("--out", default=str(REPO / "results" / "aasce_unet"), help="committed metrics and figures")
    ap.add_argument("--verbose", type=int, default=2)
    return ap.parse_args(argv)


def record_long_run(out: Path, seed: int = 0) -> Path:
    """The run's headline row for the results page: ``<out>/../headlines/<out name>.csv``, linked
    to page 3 (which shows the run beside its own)."""
    from spinelib.paper import aasce_runs, report

    rows = report.segmentation_headlines(aasce=aasce_runs.aasce_comparison(None, out), long_run=True)
    return report.record_headlines(out.parent, "03b_aasce_segmentation", rows, profile="long run", seed=seed,
                                   name=out.name)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from spinelib.core.config import dataset_missing_message, find_dataset
    from spinelib.paper import aasce_runs

    if (args.full_res_skip or args.decoder_filters) and args.encoder == "none":
        flag = "--full-res-skip" if args.full_res_skip else "--decoder-filters"
        print(f"{flag} needs --encoder lite0-imagenet or lite0-random", file=sys.stderr)
        return 2
    root = find_dataset("aasce", args.aasce_dir)
    if root is None:
        print(dataset_missing_message("aasce"), file=sys.stderr)
        return 2
    command = ".venv/bin/python scripts/train_aasce.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    metrics = aasce_runs.train_long_run(root, vars(args), command)
    record_long_run(Path(args.out), args.seed)
    print(json.dumps({k: metrics[k] for k in ("dice_mean_over_val_patients", "dice_ci95", "epochs_run",
                                              "train_seconds", "wall_seconds_this_call")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
