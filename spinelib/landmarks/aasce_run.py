"""The AASCE landmark run: split by patient, leave flagged labels out of training, train.

    split = aasce_split(frame)                  # the committed mask runs' 190 / 47 patients
    result = train_aasce_landmarks(root, work_dir="outputs/landmarks_aasce", epochs=30)

The validation patients are those of every committed AASCE mask run
(:func:`spinelib.data.splits.patient_split` with ``val_fraction=0.2, seed=0`` on all 481 images).
Training leaves out the training images whose labels :func:`spinelib.data.label_audit.flagged_images`
flags (their names are recorded in ``exclusions.json``); validation keeps every image, and
:mod:`spinelib.landmarks.evaluate` scores all of them and the clean ones apart.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spinelib.landmarks.train import (
    LandmarkTrainResult,
    prepare_landmark_data,
    recalibrate_batchnorm,
    train_landmarks,
)


@dataclass(frozen=True)
class AasceSplit:
    """Row indices into the :func:`spinelib.data.aasce.load_aasce` frame."""

    train: np.ndarray          # training images with clean labels (what the network sees)
    val: np.ndarray            # every validation image
    excluded: tuple[str, ...]  # training images left out for flagged labels
    flagged: frozenset         # every flagged image name (training and validation)


def aasce_split(frame: pd.DataFrame, val_fraction: float = 0.2, seed: int = 0, exclude_flagged: bool = True,
                min_severity: str = "suspect") -> AasceSplit:
    """The patient split of the AASCE runs, with flagged training images left out."""
    from spinelib.data.label_audit import flagged_images
    from spinelib.data.splits import patient_split

    train, val = patient_split(frame["patient_id"].astype(str).tolist(), val_fraction=val_fraction, seed=seed)
    flagged = frozenset(flagged_images(frame, min_severity=min_severity)) if exclude_flagged else frozenset()
    names = frame["image_name"].astype(str).to_numpy()
    keep = np.array([names[i] not in flagged for i in train], bool)
    return AasceSplit(train[keep], val, tuple(names[train[~keep]]), flagged)


def train_aasce_landmarks(root: str | os.PathLike, work_dir: str | os.PathLike, max_images: int | None = None,
                          progress: bool = True, **settings) -> tuple[LandmarkTrainResult, AasceSplit]:
    """Train the landmark network on the AASCE training split (settings: :data:`spinelib.landmarks.train.SETTINGS`).

    ``work_dir`` receives the network's files, ``exclusions.json`` and a cache of the resized
    X-rays (``data_<H>x<W>.npz``)."""
    from spinelib.data.aasce import load_aasce
    from spinelib.landmarks.train import SETTINGS

    frame = load_aasce(root, max_images=max_images)
    split = aasce_split(frame)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "exclusions.json").write_text(json.dumps(
        {"rule": "spinelib.data.label_audit.flagged_images (any severity)", "excluded_training_images": list(split.excluded),
         "n_train": int(len(split.train)), "n_val": int(len(split.val))}, indent=1))
    size = tuple(settings.get("size", SETTINGS["size"]))
    data = prepare_landmark_data(frame, size, cache=work / f"data_{size[0]}x{size[1]}.npz", progress=progress)
    return train_landmarks(data, split.train, split.val, work, progress=progress, **settings), split


# --------------------------------------------------------------------------------------------
# the finished run: its record in results/, and the released model

ANCHORS = pd.DataFrame([
    ("RouterNet (2026)", 6.24), ("Seg4Reg+", 7.32), ("Seg4Reg", 7.64), ("Yi et al., vertebra-focused landmarks", "8.2-10.8"),
    ("AASCE 2019 winner (its own hidden test set)", 21.71)], columns=["method", "smape_percent"])
"""Published SMAPE on this release's 128-image public test split (GPUs, larger inputs), except the
winner's, which is on the challenge's hidden test set. Not our patients: a reference, not a match."""

RELEASED_RUN = "aasce_landmarks_512"
"""The folder under ``results/`` that holds the record of the run whose network is the default
shipped model (:data:`spinelib.landmarks.model.DEFAULT_MODEL`)."""

RECORD_FILES = ("metrics.json", "cases.csv", "summary.csv", "coverage.csv", "history.csv", "agreement.png",
                "overlays.png", "README.md")


def _git_commit() -> str:
    from spinelib.core.config import REPO_ROOT
    from spinelib.core.provenance import git_commit

    return git_commit(REPO_ROOT, mark_dirty=True) or "unknown"


def _time_predict(model, path, repeats: int = 3) -> float:
    """Median seconds of :meth:`VertebraModel.predict_file` on one X-ray (after one warm-up call)."""
    import time

    model.predict_file(path)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.predict_file(path)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def finish_aasce_landmarks(root: str | os.PathLike, work_dir: str | os.PathLike, out_dir: str | os.PathLike,
                           model_dir: str | os.PathLike | None = None, command: str = "", version: str = "1.0",
                           progress: bool = True) -> dict:
    """Score a finished :func:`train_aasce_landmarks` run on its validation patients and write its
    record (:data:`RECORD_FILES`) to ``out_dir``; with ``model_dir``, also release the network
    there as a model folder (:func:`spinelib.landmarks.model.save_model`) with a model card."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spinelib.data.aasce import load_aasce
    from spinelib.landmarks import evaluate as ev
    from spinelib.landmarks.network import landmark_net
    from spinelib.landmarks.plots import agreement_figure, overlay_grid

    work, out = Path(work_dir), Path(out_dir)
    settings = json.loads((work / "settings.json").read_text())
    h, w = settings["size"]
    frame = load_aasce(root)
    split = aasce_split(frame)
    if [frame.image_name[i] for i in split.val] != settings["val_images"]:
        raise ValueError(f"{work} was trained with another validation split")
    data = prepare_landmark_data(frame, (h, w), cache=work / f"data_{h}x{w}.npz", progress=progress)
    net = landmark_net((h, w, 1), weights=None)
    net.load_weights(work / "weights.weights.h5")
    recalibrate_batchnorm(net, data.images[split.train], settings["batch_size"])  # exact BatchNorm statistics
    cases = ev.evaluate_routes(net, data, split.val, split.flagged, progress=progress)
    summary = ev.summarise_routes(cases)
    coverage = ev.interval_coverage(cases)
    history = pd.read_csv(work / "history.csv")
    out.mkdir(parents=True, exist_ok=True)
    cases.to_csv(out / "cases.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    coverage.to_csv(out / "coverage.csv", index=False)
    history.to_csv(out / "history.csv", index=False)
    fig = agreement_figure(cases, title="Landmark route, 47 validation patients (real AASCE)")
    fig.savefig(out / "agreement.png", dpi=110)
    plt.close(fig)
    ranked = cases.sort_values("lm_smape")
    picks = pd.concat([ranked.head(2), ranked.tail(2)])
    from spinelib.core.imageio import read_xray
    from spinelib.data.aasce import scale_landmarks
    from spinelib.geometry.cobb import cobb_angles

    variants, _, _ = ev.tta_corners(net, data.images[[int(np.flatnonzero(frame.image_name == n)[0]) for n in picks.image_name]])
    images, preds, titles = [], [], []
    for j, (_, r) in enumerate(picks.iterrows()):
        img = read_xray(frame.image_path[frame.image_name == r.image_name].iloc[0])
        corners = scale_landmarks(ev.combine_variants(variants[:, j]), (h, w), img.shape)
        images.append(img)
        preds.append((corners, cobb_angles(corners, image_height=img.shape[0])))
        titles.append(f"{'best' if j < 2 else 'worst'}: SMAPE {r.lm_smape:.1f} %\ntrue {r.cobb_pt:.0f}/{r.cobb_mt:.0f}/"
                      f"{r.cobb_tl:.0f}°")
    fig = overlay_grid(images, preds, titles)
    fig.savefig(out / "overlays.png", dpi=90)
    plt.close(fig)
    lm_all = summary.query("route == 'landmarks' and images == 'all'").iloc[0]
    metrics = {
        "command": command, "git_commit_at_scoring": _git_commit(), "settings": {k: v for k, v in settings.items()
                                                                             if k not in ("train_images", "val_images")},
        "n_train_images": len(settings["train_images"]), "n_val_images": len(settings["val_images"]),
        "n_train_patients": int(frame.patient_id[np.isin(frame.image_name, settings["train_images"])].nunique()),
        "n_val_patients": int(cases.patient_id.nunique()),
        "excluded_training_images": list(split.excluded), "flagged_validation_images": int(cases.flagged.sum()),
        "epochs_run": int(len(history)), "train_seconds": float(history.seconds.sum()),
        "schedule_note": (work / "schedule_note.txt").read_text() if (work / "schedule_note.txt").is_file() else "",
        "training_note": (work / "training_note.txt").read_text() if (work / "training_note.txt").is_file() else "",
        "summary": summary.to_dict("records"), "coverage": coverage.to_dict("records"),
        "coverage_calibrated": ev.calibrated_coverage(cases).to_dict("records"),
        "severity_all": ev.severity_auroc(cases), "severity_clean": ev.severity_auroc(cases[~cases.flagged]),
        "anchors": ANCHORS.to_dict("records"), "cpu_count": os.cpu_count(), "tta_combine": ev.TTA_COMBINE,
    }
    if model_dir is not None:
        from spinelib.landmarks.model import load_model, save_model

        config = {"name": Path(model_dir).name, "version": version, "trained_on": "AASCE 2019 / SpineWeb 16 training "
                  f"split: {metrics['n_train_images']} X-rays of {metrics['n_train_patients']} patients (flagged labels "
                  "left out)", "validation": f"{metrics['n_val_images']} X-rays of {metrics['n_val_patients']} held-out "
                  "patients", "smape_val": float(lm_all.smape), "smape_val_ci95": [float(lm_all.smape_lo),
                                                                                    float(lm_all.smape_hi)],
                  "training": metrics["settings"], "licence_note": "Research use only: trained on the AASCE 2019 "
                  "challenge's research data (cite the challenge and SpineWeb); not for clinical decisions.",
                  "command": command, "git_commit": _git_commit()}
        folder = save_model(net, model_dir, config, overwrite=True)
        (folder / "README.md").write_text(model_card(config, summary, metrics))
        sample = frame.image_path[split.val[0]]
        metrics["predict_file_seconds"] = _time_predict(load_model(folder), sample)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float) + "\n")
    (out / "README.md").write_text(record_readme(metrics, summary))
    record_long_run_headlines(out, summary, metrics)
    return metrics


def record_long_run_headlines(out: Path, summary: pd.DataFrame, metrics: dict) -> Path:
    """The run's headline numbers for the results page: ``<out>/../headlines/<out name>.csv``."""
    from spinelib.core import headlines as report

    dataset = f"AASCE 2019 training split, {metrics['n_val_patients']} validation patients"
    s = metrics["settings"]
    note = f"long run (committed): input {s['size'][0]}x{s['size'][1]}, {metrics['epochs_run']} epochs; target SMAPE <= 10 %"
    rows = []
    for r in summary.itertuples():
        rows.append({"section": "Cobb angles (real AP)", "quantity": f"SMAPE (%), {r.route}, {r.images} validation images",
                     "ours": r.smape, "ci_low": r.smape_lo, "ci_high": r.smape_hi, "data": "real", "dataset": dataset,
                     "note": note})
    for r in summary.query("images == 'all'").itertuples():
        rows.append({"section": "Cobb angles (real AP)", "quantity": f"quadrilateral Dice, {r.route}", "ours": r.quad_dice,
                     "data": "real", "dataset": dataset, "note": "target 0.90"})
    sev = metrics["severity_all"]
    rows.append({"section": "Cobb angles (real AP)", "quantity": "severe scoliosis (Cobb >= 40) AUROC from predicted angles",
                 "ours": sev["auroc"], "data": "real", "dataset": dataset, "note": note})
    return report.record_headlines(out.parent, "07_cobb_angles", rows, profile="long run", name=out.name)


def _summary_markdown(summary: pd.DataFrame) -> str:
    cols = ["route", "images", "n_patients", "smape", "smape_lo", "smape_hi", "error_median_px", "levels_in_order",
            "quad_dice"]
    t = summary[cols].copy()
    t["SMAPE % (95 % CI)"] = [f"{r.smape:.1f} ({r.smape_lo:.1f}-{r.smape_hi:.1f})" for r in t.itertuples()]
    t = t.rename(columns={"n_patients": "patients", "error_median_px": "median corner error (px)",
                          "levels_in_order": "17 levels in order", "quad_dice": "quadrilateral Dice"})
    t = t[["route", "images", "patients", "SMAPE % (95 % CI)", "median corner error (px)", "17 levels in order",
           "quadrilateral Dice"]]
    return t.to_markdown(index=False, floatfmt=".3g")


def record_readme(metrics: dict, summary: pd.DataFrame) -> str:
    """``README.md`` of the run's record: the command, the split, the numbers."""
    s = metrics["settings"]
    text = (f"# AASCE vertebra landmarks: the long run\n\nReal AASCE AP X-rays, validation by patient. Produced by\n\n"
            f"    {metrics['command']}\n\nscored at git commit `{metrics['git_commit_at_scoring']}` on "
            f"{metrics['cpu_count']} CPU cores. Input {s['size'][0]}x{s['size'][1]}, {metrics['epochs_run']} epochs, "
            f"{metrics['train_seconds'] / 60:.0f} min of training"
            f"{' (on a CPU shared with other work; see the schedule note)' if metrics.get('schedule_note') else ''}, "
            f"{metrics['n_train_images']} training X-rays of {metrics['n_train_patients']} patients "
            f"({len(metrics['excluded_training_images'])} training X-rays with flagged labels left out), "
            f"{metrics['n_val_images']} validation X-rays of {metrics['n_val_patients']} patients "
            f"({metrics['flagged_validation_images']} of them with flagged labels).\n\n")
    if metrics.get("schedule_note"):
        text += f"Schedule note: {metrics['schedule_note'].strip()}\n\n"
    if metrics.get("training_note"):
        text += f"Training: {metrics['training_note'].strip()}\n\n"
    text += _summary_markdown(summary) + "\n\n"
    sev = metrics["severity_all"]
    text += (f"Severe scoliosis (max Cobb >= 40°) from the largest predicted angle: AUROC {sev['auroc']:.3f}, accuracy "
             f"{sev['accuracy']:.3f} ({sev['n_severe']} of {sev['n_images']} validation X-rays severe).\n\n")
    if "predict_file_seconds" in metrics:
        text += (f"One X-ray read and predicted by the released model (`predict_file`, flip test-time augmentation): "
                 f"{metrics['predict_file_seconds']:.2f} s on this machine.\n\n")
    text += "Files: " + ", ".join(f"`{f}`" for f in RECORD_FILES if f != "README.md") + ".\n"
    return text


def model_card(config: dict, summary: pd.DataFrame, metrics: dict) -> str:
    """The released model's card: what it is, the data and its licence note, the split, the numbers."""
    return (f"# {config['name']} (version {config['version']})\n\n"
            "Vertebra landmarks on AP spine X-rays: the 4 corners of each of the 17 vertebrae T1-L5 and the three Cobb "
            "angles (the AASCE challenge's rule). Network: `spinelib.landmarks.network.landmark_net` (EfficientNet-Lite0 "
            "encoder from ImageNet weights, centre heat map and corner offsets at stride 4, body-mask head).\n\n"
            f"**{config['licence_note']}**\n\n"
            f"- Trained on: {config['trained_on']}.\n- Validated on: {config['validation']} (the patient split of every "
            "AASCE run in the book).\n"
            f"- Made by `{config['command']}` at git commit `{config['git_commit']}`.\n"
            "- Limits: AP view only; one public dataset of adolescent scoliosis patients; angles are the challenge's "
            "(the main curve first), not a clinician's choice of end vertebrae.\n\n"
            "## Validation (real AASCE X-rays, held-out patients)\n\n" + _summary_markdown(summary) + "\n\n"
            f"Severe scoliosis (max Cobb >= 40°): AUROC {metrics['severity_all']['auroc']:.3f}.\n")


# --------------------------------------------------------------------------------------------
# the Cobb-angle page's own short run

PAGE_PLANS = {
    "tiny": {"max_images": 24, "size": (128, 64), "epochs": 1, "batch_size": 4, "floor_images": 5, "size_floor": (512, 256),
             "shipped_val_images": 3},
    "ci": {"max_images": None, "size": (256, 128), "epochs": 3, "batch_size": 8, "floor_images": 120,
           "size_floor": (512, 256), "shipped_val_images": None},
    "paper": {"max_images": None, "size": (512, 256), "epochs": 60, "batch_size": 8, "floor_images": None,
              "size_floor": (512, 256), "shipped_val_images": None},
}
"""What the Cobb-angle page runs per profile: its own short landmark run (first ``max_images``
X-rays, ``size``, ``epochs``), the mask route's floor on ``floor_images`` X-rays, and the
released model on ``shipped_val_images`` validation X-rays (None: all)."""


def page_plan(profile: str, **overrides) -> dict:
    """The :data:`PAGE_PLANS` entry of ``profile`` with ``overrides`` (None values ignored)."""
    if profile not in PAGE_PLANS:
        raise ValueError(f"profile must be one of {sorted(PAGE_PLANS)}, got {profile!r}")
    plan = dict(PAGE_PLANS[profile])
    unknown = set(overrides) - set(plan)
    if unknown:
        raise ValueError(f"unknown plan entries {sorted(unknown)}; known: {sorted(plan)}")
    plan.update({k: v for k, v in overrides.items() if v is not None})
    return plan


def score_shipped_model(root: str | os.PathLike, model=None, max_images: int | None = None, progress: bool = True):
    """The released model on the validation patients' X-rays, read from their files as a user would
    (:meth:`VertebraModel.predict_file`): one row per X-ray with the three angles, SMAPE, corner
    error and whether the labels are flagged."""
    from tqdm.auto import tqdm

    from spinelib.data.aasce import load_aasce
    from spinelib.geometry.cobb import smape_per_image
    from spinelib.geometry.corners import landmark_errors
    from spinelib.landmarks.model import load_model

    model = model or load_model()
    frame = load_aasce(root)
    split = aasce_split(frame)
    idx = split.val if max_images is None else split.val[:max_images]
    rows = []
    for i in tqdm(idx, desc="released model", disable=not progress):
        r = frame.iloc[i]
        pred = model.predict_file(r.image_path)
        true = np.array([r.cobb_pt, r.cobb_mt, r.cobb_tl])
        rows.append({"image_name": r.image_name, "patient_id": r.patient_id, "flagged": r.image_name in split.flagged,
                     "pred_pt": pred.cobb.pt, "pred_mt": pred.cobb.mt, "pred_tl": pred.cobb.tl, "cobb_pt": r.cobb_pt,
                     "cobb_mt": r.cobb_mt, "cobb_tl": r.cobb_tl,
                     "smape": float(smape_per_image(pred.cobb.angles[None], true[None])[0]),
                     "corner_error_median_px": float(np.median(landmark_errors(pred.corners, r.landmarks)))})
    return pd.DataFrame(rows)


def mask_runs_on_clean_labels(results_root: str | os.PathLike, frame: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """The committed AASCE mask runs' validation Dice on all images and on those whose labels the
    audit does not flag: how much of their ~0.86 the wrong labels cost. Reads each run's
    ``cases.csv`` (one row per validation image, in the split's order); per-patient means, then a
    bootstrap 95 % CI over patients (:func:`spinelib.seg.metrics.bootstrap_ci`)."""
    from spinelib.data.label_audit import flagged_images
    from spinelib.seg.metrics import bootstrap_ci

    split = aasce_split(frame)
    names = frame["image_name"].to_numpy()[split.val]
    flagged = set(flagged_images(frame))
    rows = []
    for cases_csv in sorted(Path(results_root).glob("aasce_unet*/cases.csv")):
        cases = pd.read_csv(cases_csv)
        if len(cases) != len(names):
            continue  # another split or a partial run
        cases = cases.assign(image_name=names, flagged=[n in flagged for n in names])
        row = {"run": cases_csv.parent.name}
        for subset, part in (("all", cases), ("clean", cases[~cases.flagged])):
            pat = part.groupby("patient")["dice"].mean().to_numpy()
            lo, hi = bootstrap_ci(pat, n_boot=n_boot)
            row.update({f"dice_{subset}": float(pat.mean()), f"ci_{subset}": f"{lo:.3f}-{hi:.3f}",
                        f"images_{subset}": len(part)})
        rows.append(row)
    return pd.DataFrame(rows)
