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
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    from spinelib import viz
    from spinelib.core.config import dataset_missing_message, find_dataset
    from spinelib.core.provenance import git_commit
    from spinelib.data import segdata
    from spinelib.paper import aasce_runs
    from spinelib.seg import experiment, long_runs, spine_crop
    from spinelib.viz import plot_history

    commit = git_commit(REPO, mark_dirty=True)  # the code this run starts from (HEAD may move while it trains)
    root = find_dataset("aasce", args.aasce_dir)
    if root is None:
        print(dataset_missing_message("aasce"), file=sys.stderr)
        return 2
    data = segdata.prepare_aasce_data(root, tuple(args.size), max_images=args.max_images,
                                 val_fraction=args.val_fraction, seed=args.seed, progress=False)
    print(f"{len(data.train_ids)} training images ({len(set(data.train_ids))} patients), "
          f"{len(data.val_ids)} validation images ({len(set(data.val_ids))} patients)", flush=True)
    augment = {"flip": True} if args.augment else False
    common = dict(loss=args.loss, batch_size=args.batch_size, lr=args.lr, augment=augment, seed=args.seed,
                  batch_norm=args.batch_norm, bn_momentum=args.bn_momentum, verbose=args.verbose)
    if args.lr_schedule != "plateau":
        common["lr_schedule"] = args.lr_schedule
    if args.encoder != "none":
        common["encoder"] = args.encoder
    if args.full_res_skip:
        if args.encoder == "none":
            print("--full-res-skip needs --encoder lite0-imagenet or lite0-random", file=sys.stderr)
            return 2
        common["full_res_skip"] = args.full_res_skip
    if args.decoder_filters:
        if args.encoder == "none":
            print("--decoder-filters needs --encoder lite0-imagenet or lite0-random", file=sys.stderr)
            return 2
        common["decoder_filters"] = list(args.decoder_filters)
    stages = []
    if args.crop:
        # stage 1: where is the spine? (a small, low-resolution network; same patients in each split)
        small = segdata.prepare_aasce_data(root, tuple(args.stage1_size), max_images=args.max_images,
                                      val_fraction=args.val_fraction, seed=args.seed, progress=False)
        # the spine finder is always a small plain U-Net (--encoder is for the crop network)
        finder = {k: v for k, v in common.items() if k not in ("encoder", "full_res_skip", "decoder_filters")}
        stage1, crop = spine_crop.two_stage_crop(
            data, small, args.work, dict(finder, filters=args.stage1_filters, epochs=args.stage1_epochs,
                                         patience=args.stage1_epochs),
            size=args.crop_size, margin=args.margin, filters=args.filters, epochs=args.epochs,
            patience=args.patience, depth=args.depth, tta=args.tta, **common)
        result, boxes_val = crop.result, crop.boxes
        stages += [stage1, result]
        print(f"stage 1 Dice {stage1.dice().iloc[0]:.4f}", flush=True)
        print(f"Dice inside the predicted crops {result.dice().iloc[0]:.4f}", flush=True)
        cases, summary = experiment.evaluate_probabilities(crop.frame_prob(), data.val_masks, data.structures,
                                                           data.val_ids)
        figure_data, figure_result = crop.data, result
    else:
        result = experiment.run_experiment(data, args.work, "aasce_vertebra", filters=args.filters, epochs=args.epochs,
                                   patience=args.patience, depth=args.depth, tta=args.tta, **common)
        stages.append(result)
        cases, summary = result.cases, result.summary
        figure_data, figure_result = data, result
    prob_frame = crop.frame_prob() if args.crop else result.val_prob()
    without_tta = plain_prob = None
    model = result.load_model()
    if args.tta:  # the same network without test-time flips: what TTA adds
        from spinelib.seg.inference import predict

        plain_prob = predict(model, figure_data.val_images, batch_size=args.batch_size, tta_flip=False)
        prob = crop.frame_prob(plain_prob) if args.crop else plain_prob
        _, plain = experiment.evaluate_probabilities(prob, data.val_masks, data.structures, data.val_ids, seed=args.seed)
        without_tta = plain.query("metric == 'dice'").iloc[0]
    # frame-free: the probabilities (or the crops') put back into each X-ray at its own size
    full = spine_crop.full_resolution_dice(data, result.val_prob(), progress=False, seed=args.seed,
                                   boxes=boxes_val if args.crop else None).query("metric == 'dice'").iloc[0]
    wall = time.perf_counter() - t_start
    t_fit = time.perf_counter()  # after the wall time, so wall times stay comparable with older runs
    fit = experiment.training_fit(model, figure_data, batch_size=args.batch_size, seed=args.seed,
                          val_prob=plain_prob)  # without TTA the validation half is predicted here
    fit["frame"] = "the crops' frame" if args.crop else "the network's frame"
    fit["seconds"] = round(time.perf_counter() - t_fit, 1)
    per_level, span = aasce_runs.aasce_level_summary(*aasce_runs.aasce_level_dice(prob_frame, data))  # where on the spine it errs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = ".venv/bin/python scripts/train_aasce.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    dice = summary.query("metric == 'dice'").iloc[0]
    metrics = {
        "command": command,
        "git_commit": commit,
        "dataset": "AASCE 2019 training split (real AP X-rays), vertebra bodies T1-L5 from the corner landmarks",
        "validation": "patients (not images), spinelib.data.splits.patient_split",
        "settings": vars(args) | {"size": list(args.size)},
        "n_train_images": len(data.train_ids), "n_train_patients": len(set(data.train_ids)),
        "n_val_images": len(data.val_ids), "n_val_patients": len(set(data.val_ids)),
        "dice_mean_over_val_patients": float(dice["mean"]),
        "dice_ci95": [float(dice["ci_low"]), float(dice["ci_high"])],
        "dice_sd": float(dice["sd"]),
        "dice_frame": f"the full X-ray resized to {args.size[0]}x{args.size[1]} (the network's input size)",
        "mask_convention": "corners scaled with pixel centres aligned (spinelib.data.aasce.scale_landmarks)",
        "dice_original_resolution": {"mean": float(full["mean"]), "ci95": [float(full["ci_low"]), float(full["ci_high"])],
                                     "how": "probabilities resized (or crops put back) to each X-ray's own size, "
                                            "against the corners drawn there (spinelib.seg.spine_crop.full_resolution_dice)"},
        "outline_errors_in_frame": experiment.outline_error_summary(
            prob_frame, data.val_masks),  # wrong pixels on the true outline (blurred edges) or away from it
        "training_fit": fit,  # own training images, no augmentation, no TTA: not a validation number
        "span": span | {"how": "spinelib.paper.aasce_runs.aasce_level_dice, in the network's frame; per vertebra: levels.csv"},
        "dice_without_tta": None if without_tta is None else {
            "mean": float(without_tta["mean"]), "ci95": [float(without_tta["ci_low"]), float(without_tta["ci_high"])]},
        "summary": json.loads(summary.to_json(orient="records")),
        "stages": [{"name": r.name, "input": list(experiment.input_size(r)), "params": r.params,
                    "epochs_run": r.epochs_run, "train_seconds": round(r.train_seconds, 1),
                    "dice_in_its_frame": float(r.dice().iloc[0])} for r in stages],
        "params": sum(r.params for r in stages),
        "epochs_run": sum(r.epochs_run for r in stages),
        "train_seconds": round(sum(r.train_seconds for r in stages), 1),
        "seconds_per_epoch": round(result.seconds_per_epoch, 1),
        "wall_seconds_this_call": round(wall, 1),
        "load_average_1min_at_start": round(load_start, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    import tensorflow as tf

    metrics["tensorflow"] = tf.__version__
    from spinelib.core.provenance import run_info

    metrics["run"] = run_info(seed=args.seed, data_dirs={"aasce": root})  # versions, data fingerprint
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    cases.to_csv(out / "cases.csv", index=False)
    per_level.to_csv(out / long_runs.LEVELS_FILE)
    result.history.to_csv(out / "history.csv", index=False)
    fig = plot_history(result.history, title="AASCE vertebra U-Net (real X-rays)")
    fig.savefig(out / "history.png", dpi=70)
    fig = viz.cases_figure(figure_data, figure_result, n=3)
    fig.savefig(out / "cases.png", dpi=70)
    long_runs.write_readme(out, metrics)
    record_long_run(out, args.seed)
    print(json.dumps({k: metrics[k] for k in ("dice_mean_over_val_patients", "dice_ci95", "epochs_run",
                                              "train_seconds", "wall_seconds_this_call")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
