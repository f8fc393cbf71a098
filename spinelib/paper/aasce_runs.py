"""Page 3b, real X-rays: the AASCE runs of this page beside the committed long runs, their error budget, Dice per
vertebra; and the long run itself (:func:`train_long_run`, what ``scripts/train_aasce.py`` calls)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from spinelib.data.segdata import SegmentationData
from spinelib.seg.experiment import ExperimentResult, input_size, outline_error_summary
from spinelib.seg.long_runs import LEVELS_FILE, long_run_label, read_long_runs
from spinelib.seg.spine_crop import full_resolution_dice
from spinelib.viz import short_label


def _shown_path(path: str | os.PathLike) -> str:
    """A run record's path as a page shows it: ``results/<run>/metrics.json``, never the absolute
    path of the machine that built the book."""
    path = Path(path)
    return f"results/{path.parent.name}/{path.name}"


def aasce_patient_dice(long_dir: str | os.PathLike | Sequence[str | os.PathLike],
                       profile_run: ExperimentResult | None = None, profile: str = "") -> pd.DataFrame:
    """Per-patient validation Dice of this page's ``profile_run`` (if given) and of each committed
    long run that kept its ``cases.csv`` (one row per validation image, written by
    ``scripts/train_aasce.py``): columns ``run`` (the row labels of :func:`aasce_comparison`),
    ``patient``, ``dice`` (the mean over the patient's X-rays)."""
    frames = []
    if profile_run is not None:
        per = profile_run.cases.groupby("patient", sort=False)["dice"].mean().reset_index()
        frames.append(per.assign(run=f"this page (profile {profile})")[["run", "patient", "dice"]])
    for path, m in read_long_runs(long_dir):
        cases = Path(path).parent / "cases.csv"
        if cases.is_file():
            c = pd.read_csv(cases)
            if {"patient", "dice"} <= set(c.columns):
                per = c.groupby("patient", sort=False)["dice"].mean().reset_index()
                frames.append(per.assign(run=long_run_label(m["settings"]))[["run", "patient", "dice"]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "patient", "dice"])


def aasce_comparison(profile_run: ExperimentResult | None, long_dir: str | os.PathLike | Sequence[str | os.PathLike],
                     profile: str = "", data: SegmentationData | None = None) -> pd.DataFrame:
    """The AASCE vertebra Dice of this page's profile run beside the committed long runs
    (``<dir>/metrics.json`` written by ``scripts/train_aasce.py``; one folder or several); any
    may be missing. Long-run rows are labelled ``long run (committed): <network>``, plus the
    learning-rate schedule, a stride-1 skip and test-time flips when they were used. The ``mask grid`` column
    says how the masks were drawn at the network's size: runs before
    :func:`spinelib.data.aasce.scale_landmarks` (no ``mask_convention`` in their record) were trained
    and scored on masks 0.4 px right of and below the bodies. ``dice, original size`` is the one
    frame-free measure (:func:`full_resolution_dice`): from the run's record, from a
    ``rescored.json`` beside it (``scripts/rescore_aasce.py``), or for the profile run computed
    here when its ``data`` is given. ``wrong pixels on the outline``: the share of wrongly
    labelled pixels within one pixel of the true outline (:func:`outline_error_summary`, same
    sources); the rest lie further out (edges off by more than a pixel, or gross errors)."""
    rows = {}
    if profile_run is not None:
        d = profile_run.summary.query("metric == 'dice'").iloc[0]
        c = profile_run.config
        rows[f"this page (profile {profile})"] = {
            "dice": d["mean"], "ci_low": d["ci_low"], "ci_high": d["ci_high"], "validation patients": int(d["n"]),
            "input": "x".join(str(s) for s in input_size(profile_run)),
            "filters": c["filters"] if c.get("encoder", "none") == "none" else "Lite0", "loss": c["loss"],
            "epochs": profile_run.epochs_run,
            "training minutes": profile_run.train_seconds / 60, "mask grid": "pixel centres aligned",
            "dice, original size": math.nan if data is None else float(full_resolution_dice(
                data, profile_run.val_prob(), n_boot=10, progress=False).query("metric == 'dice'")["mean"].iloc[0]),
            "wrong pixels on the outline": math.nan if data is None else outline_error_summary(
                profile_run.val_prob(), data.val_masks, bands=(1.0,))["within_1px"]["share_of_wrong_pixels"],
            "source": "computed now",
        }
    for path, m in read_long_runs(long_dir):
        s = m["settings"]
        original, edges = m.get("dice_original_resolution"), m.get("outline_errors_in_frame")
        encoder = s.get("encoder", "none")
        crop = s.get("crop", False)
        size = "x".join(str(v) for v in s["size"])
        if crop:
            size = (f"spine finder {'x'.join(str(v) for v in s['stage1_size'])}, then crops "
                    f"{'x'.join(str(v) for v in (s.get('crop_size') or s['size']))}; Dice on the full X-ray at {size}")
        rows[long_run_label(s)] = {
            "dice": m["dice_mean_over_val_patients"], "ci_low": m["dice_ci95"][0], "ci_high": m["dice_ci95"][1],
            "validation patients": m["n_val_patients"], "input": size,
            "filters": s["filters"] if encoder == "none" else "Lite0", "loss": s["loss"], "epochs": m["epochs_run"],
            "training minutes": m["train_seconds"] / 60,
            "mask grid": "pixel centres aligned" if m.get("mask_convention") else "naive (0.4 px offset)",
            "dice, original size": math.nan if original is None else original["mean"],
            "wrong pixels on the outline": math.nan if edges is None else edges["within_1px"]["share_of_wrong_pixels"],
            "source": f"{_shown_path(path)} (commit {m['git_commit'][:12]})",
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def aasce_error_budget(long_dir: str | os.PathLike | Sequence[str | os.PathLike], yardstick: pd.DataFrame,
                       size: tuple[int, int], target: float = 0.90) -> pd.DataFrame:
    """Where the committed AASCE long runs stand, in two measures that say what limits them.

    - ``training fit``: the run's network on its own training images (no augmentation) beside the
      validation patients (:func:`training_fit`; from the record or its ``rescored.json``). Close
      together = underfitting: more data, capacity or cleaner labels, not more regularisation.
    - ``equivalent corner error (px)``: the Gaussian corner error, per coordinate in pixels of
      ``size``, that would cost as much Dice (interpolated in ``yardstick``, the table of
      :func:`spinelib.seg.aasce_masks.corner_error_dice` at ``size``); only for runs scored at ``size``.

    A last row gives the corner error that ``target`` allows.
    """
    if not {"sigma_px", "dice_mean"} <= set(yardstick.columns) or len(yardstick) < 2:
        raise ValueError("yardstick must be a spinelib.seg.aasce_masks.corner_error_dice table with at least 2 sigmas")
    y = yardstick.sort_values("dice_mean")

    def sigma(d: float) -> float:
        if not y["dice_mean"].min() <= d <= y["dice_mean"].max():
            return math.nan  # outside the yardstick: no extrapolation
        return float(np.interp(d, y["dice_mean"], y["sigma_px"]))

    size = tuple(int(v) for v in size)
    rows = {}
    for _, m in read_long_runs(long_dir):
        fit = m.get("training_fit")
        dice = m["dice_mean_over_val_patients"]
        same = tuple(m["settings"]["size"]) == size
        rows[long_run_label(m["settings"])] = {
            "dice": dice, "training fit: train": math.nan if fit is None else fit["train"]["mean"],
            "training fit: validation": math.nan if fit is None else fit["val"]["mean"],
            "equivalent corner error (px)": sigma(dice) if same else math.nan}
    rows[f"target {target:g}"] = {"dice": target, "training fit: train": math.nan, "training fit: validation": math.nan,
                                  "equivalent corner error (px)": sigma(target)}
    return pd.DataFrame.from_dict(rows, orient="index")


def aasce_level_dice(prob: np.ndarray, data: SegmentationData, reach: float = 4.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Where on the spine an AASCE network goes wrong, from its validation probabilities ``prob``
    (``(N, H, W, 1)`` in the network's frame, in the order of ``data.val_*``; masks are drawn
    again from each X-ray's corners, :func:`spinelib.data.aasce.scale_landmarks`). Returns
    ``(levels, images)``:

    - ``levels``, one row per validation image and vertebra: ``image, patient, level`` (0 = T1 ...
      16 = L5), ``vertebra``, ``dice``. Each predicted pixel within ``reach`` px of a true body is
      given to the nearest body; ``dice`` compares those pixels with that body (a body nothing was
      predicted for scores 0).
    - ``images``, one row per validation image: ``image, patient, dice`` (thresholded at 0.5, as
      the runs are scored), ``stray_share`` (predicted pixels further than ``reach`` from every
      true body, share of all predicted), ``outside_span_share`` (predicted pixels more than 2 rows
      above T1's top or below L5's bottom: bodies the labels do not include, such as C7 or the
      sacrum) and ``dice_within_span`` (the Dice with those removed: what knowing where the
      labelled span starts and ends would be worth).
    """
    from scipy import ndimage as ndi

    from spinelib.data.aasce import (
        N_VERTEBRAE,
        VERTEBRA_NAMES,
        scale_landmarks,
        vertebra_mask,
    )
    from spinelib.seg.metrics import dice

    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 4 or prob.shape[-1] != 1 or len(prob) != len(data.val_sources):
        raise ValueError(f"prob must be (N, H, W, 1) with one image per validation X-ray "
                         f"({len(data.val_sources)}), got {prob.shape}")
    if not reach > 0:
        raise ValueError(f"reach must be positive, got {reach!r}")
    size = prob.shape[1:3]
    levels, images = [], []
    for i, (record, p) in enumerate(zip(data.val_sources, prob[..., 0] > 0.5)):
        lm = scale_landmarks(record["landmarks"], (record["height"], record["width"]), size)
        label = np.zeros(size, np.int16)
        for v in range(N_VERTEBRAE):  # one body at a time; where two overlap, the upper keeps the pixel
            body = vertebra_mask(np.repeat(lm[v:v + 1], N_VERTEBRAE, axis=0), size)
            label[body & (label == 0)] = v + 1
        true = label > 0
        dist, (iy, ix) = ndi.distance_transform_edt(~true, return_indices=True)
        nearest = np.where(dist <= reach, label[iy, ix], 0)
        for v in range(N_VERTEBRAE):
            t, q = label == v + 1, p & (nearest == v + 1)
            levels.append((i, data.val_ids[i], v, VERTEBRA_NAMES[v], dice(t, q)))
        rows = np.flatnonzero(true.any(axis=1))
        inside = np.zeros(size, bool)
        inside[max(rows[0] - 2, 0):rows[-1] + 3] = True
        n = max(p.sum(), 1)
        images.append((i, data.val_ids[i], dice(p, true), (p & (nearest == 0)).sum() / n,
                       (p & ~inside).sum() / n, dice(p & inside, true)))
    return (pd.DataFrame(levels, columns=["image", "patient", "level", "vertebra", "dice"]),
            pd.DataFrame(images, columns=["image", "patient", "dice", "stray_share", "outside_span_share",
                                          "dice_within_span"]))


def aasce_level_summary(levels: pd.DataFrame, images: pd.DataFrame, low: float = 0.7) -> tuple[pd.DataFrame, dict]:
    """The tables of :func:`aasce_level_dice` summed up over patients (several X-rays of one
    patient averaged first, as everywhere in the book). Returns ``(per_level, span)``:
    ``per_level`` indexed by vertebra (T1 ... L5) with ``dice`` (mean over patients) and
    ``share below <low>`` (of images); ``span``: ``dice``, ``dice_within_span``,
    ``outside_span_share`` and ``stray_share``, each a mean over patients."""
    if not 0 < low < 1:
        raise ValueError(f"low must lie in (0, 1), got {low!r}")
    per_patient = levels.groupby(["vertebra", "level", "patient"], sort=False)["dice"].mean().reset_index()
    per_level = per_patient.groupby(["level", "vertebra"])["dice"].mean().reset_index(level=0, drop=True).to_frame()
    per_level[f"share below {low:g}"] = (levels.assign(low=levels["dice"] < low)
                                         .groupby("vertebra", sort=False)["low"].mean())
    cols = ["dice", "dice_within_span", "outside_span_share", "stray_share"]
    span = {c: float(v) for c, v in images.groupby("patient")[cols].mean().mean().items()}
    return per_level, span


def aasce_level_comparison(long_dir: str | os.PathLike | Sequence[str | os.PathLike],
                           profile_levels: pd.DataFrame | None = None, profile: str = "") -> pd.DataFrame:
    """Dice per vertebra (rows T1 ... L5) of this page's run (``profile_levels``: the first table of
    :func:`aasce_level_summary`) beside each committed long run that has one (``levels.csv``,
    written by ``scripts/train_aasce.py`` or ``scripts/rescore_aasce.py``), one column per run.
    A last row ``within labelled span`` gives the run's Dice with the pixels above T1 and below L5
    removed, and ``all`` the Dice as it is (both means over patients). Every column is scored
    against the aligned masks (:func:`spinelib.data.aasce.scale_landmarks`), also for runs trained and
    recorded on the shifted ones, whose ``all`` is then a little below their recorded Dice."""
    from spinelib.data.aasce import VERTEBRA_NAMES

    cols = {}
    if profile_levels is not None:
        cols[f"this page (profile {profile})"] = profile_levels["dice"]
    spans = {}
    for path, m in read_long_runs(long_dir):
        levels = path.parent / LEVELS_FILE
        if levels.is_file():
            label = long_run_label(m["settings"]).removeprefix("long run (committed): ")
            cols[label] = pd.read_csv(levels, index_col="vertebra")["dice"]
            if m.get("span"):
                spans[label] = m["span"]
    out = pd.DataFrame(cols).reindex(list(VERTEBRA_NAMES))
    for row, key in (("all", "dice"), ("within labelled span", "dice_within_span")):
        out.loc[row] = [spans[c][key] if c in spans else math.nan for c in out.columns]
    return out


def level_dice_figure(table: pd.DataFrame, title: str = "AASCE validation Dice per vertebra",
                      target: float | None = 0.90):
    """Lines of :func:`aasce_level_comparison` (the vertebra rows only), one per run, and the
    ``target`` Dice as a dashed line (``None``: none)."""
    import matplotlib.pyplot as plt

    from spinelib.data.aasce import VERTEBRA_NAMES

    levels = table.loc[[v for v in VERTEBRA_NAMES if v in table.index]]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for col in levels.columns:
        ax.plot(levels.index, levels[col], marker="o", ms=3, label=short_label(col, 90))
    if target is not None:
        ax.axhline(target, ls="--", lw=1, color="grey", label=f"target {target:g} (mean over the spine)")
    ax.set_ylabel("Dice (mean over patients)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), borderaxespad=0)  # below: never cut
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# the long run (scripts/train_aasce.py): train, score, write the committed record


def train_long_run(root: str | os.PathLike, settings: dict, command: str) -> dict:
    """Train and score one long AASCE run and write its committed record; returns ``metrics``.

    ``settings``: the options of ``scripts/train_aasce.py`` (``vars`` of its parsed arguments: size,
    filters, depth, epochs, batch_size, loss, augment, batch_norm, bn_momentum, encoder,
    full_res_skip, decoder_filters, lr, lr_schedule, tta, patience, crop, stage1_size,
    stage1_filters, stage1_epochs, margin, crop_size, max_images, val_fraction, seed, work, out,
    verbose); ``command``: the command line the record shows. Training files go to
    ``settings["work"]`` (resumed when called again); the record to ``settings["out"]``:
    ``metrics.json`` (settings, Dice per validation patient summarised, at the X-ray's own size and
    without TTA, outline errors, the fit on the training images, Dice per vertebra, timings, machine,
    git commit, versions and data fingerprint), ``cases.csv``, the per-vertebra table, ``history.csv``,
    ``history.png``, ``cases.png`` and ``README.md``."""
    import json
    import platform
    import time
    from types import SimpleNamespace

    from spinelib import viz
    from spinelib.core.provenance import git_commit, run_info
    from spinelib.data import segdata
    from spinelib.seg import experiment, long_runs, spine_crop

    args = SimpleNamespace(**settings)
    if (args.full_res_skip or args.decoder_filters) and args.encoder == "none":
        raise ValueError("full_res_skip and decoder_filters need the encoder lite0-imagenet or lite0-random")
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    commit = git_commit(Path(__file__).resolve().parents[2], mark_dirty=True)  # the code this run starts from
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
        common["full_res_skip"] = args.full_res_skip
    if args.decoder_filters:
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
    per_level, span = aasce_level_summary(*aasce_level_dice(prob_frame, data))  # where on the spine it errs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dice = summary.query("metric == 'dice'").iloc[0]
    metrics = {
        "command": command,
        "git_commit": commit,
        "dataset": "AASCE 2019 training split (real AP X-rays), vertebra bodies T1-L5 from the corner landmarks",
        "validation": "patients (not images), spinelib.data.splits.patient_split",
        "settings": dict(settings) | {"size": list(args.size)},
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
    metrics["run"] = run_info(seed=args.seed, data_dirs={"aasce": root})  # versions, data fingerprint
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    cases.to_csv(out / "cases.csv", index=False)
    per_level.to_csv(out / long_runs.LEVELS_FILE)
    result.history.to_csv(out / "history.csv", index=False)
    fig = viz.plot_history(result.history, title="AASCE vertebra U-Net (real X-rays)")
    fig.savefig(out / "history.png", dpi=70)
    fig = viz.cases_figure(figure_data, figure_result, n=3)
    fig.savefig(out / "cases.png", dpi=70)
    long_runs.write_readme(out, metrics)
    return metrics
