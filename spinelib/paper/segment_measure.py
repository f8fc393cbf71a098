"""Segment, then measure: the interpretable classifier without ground-truth masks.

Page 5's measured-geometry classifier reads wedge ratios, disk heights, slips and the Cobb angle
from masks. On the ground-truth masks that is an upper bound; a deployable pipeline must first
*segment* each patient. Here the segmentation networks are trained on a **separate** synthetic
dataset (generated with another seed: no patient, no mask of the classification data is ever
seen), then segment every classification patient; the measurements of the predicted masks feed
the same patient-level cross-validation as every other classifier.

The three measured structures, per view (:data:`MEASURED_STRUCTURES`): the AP vertebra bodies
(Cobb angle, lateral deviation) and the LAT vertebra bodies and disk spaces (wedge ratios,
listhesis, disk heights). One multi-output U-Net per view, the U-Net page's recipe (batch norm
with momentum 0.9) with the Dice loss; the LAT network at a larger input than the segmentation
page (measuring a disk 2 px high is not measuring), the AP one at the plan's ``segmenter_ap_size``
when it has one (:meth:`~spinelib.core.plans.Plan.segmenter_input`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from spinelib.core.plans import Plan

MEASURED_STRUCTURES: dict[str, tuple[str, ...]] = {
    "AP": ("Ap_Vertebra",),
    "LAT": ("Lat_Vertebra", "Lat_Disk_Height"),
}


def check_disjoint(train_root: str | os.PathLike, eval_root: str | os.PathLike) -> None:
    """Raise ``ValueError`` if two synthetic datasets share a patient (same per-patient generator
    seed in ``metadata.csv``) or are the same folder: the measuring networks must never have
    seen a patient they are evaluated on."""
    from spinelib.data.synthetic.generator import read_metadata

    a, b = Path(train_root).resolve(), Path(eval_root).resolve()
    if a == b:
        raise ValueError(f"the segmenters' training set and the evaluated patients are the same folder {a}")
    shared = set(read_metadata(a)["seed"]) & set(read_metadata(b)["seed"])
    if shared:
        raise ValueError(f"{len(shared)} patient(s) of {a} are also in {b} (same generator seeds); "
                         "generate the segmenters' training set with another seed")


def train_segmenters(train_root: str | os.PathLike, out_dir: str | os.PathLike, plan: Plan,
                     seed: int = 0, progress: bool = True, verbose: int = 0,
                     lr_schedule: str = "plateau") -> dict[str, Path]:
    """One U-Net per view on the :data:`MEASURED_STRUCTURES` of the dataset at ``train_root``
    (15 % of its patients held out for checkpointing on validation Dice). Saved as
    ``out_dir/segmenters-<key>/<view>/best.keras``, keyed by the plan and the dataset; a finished
    network is reused, an interrupted one resumes. Returns ``{view: path}``. ``progress``: loading
    bars (stderr); ``verbose``: Keras' per-epoch output (stdout, which a book page would show);
    ``lr_schedule``: :func:`spinelib.seg.training.train_segmentation`'s (another one than the default
    ``plateau`` joins the key)."""
    from spinelib.core.config import set_seed
    from spinelib.core.provenance import data_fingerprint
    from spinelib.core.runs import quiet_tensorflow, run_key
    from spinelib.data.clinical import scan_clinical
    from spinelib.data.clinical_arrays import load_segmentation_arrays
    from spinelib.data.splits import patient_split
    from spinelib.seg.training import train_segmentation
    from spinelib.seg.unet import unet

    dataset = scan_clinical(train_root, progress=False)
    extra = {} if lr_schedule == "plateau" else {"lr_schedule": lr_schedule}
    key = run_key({**plan.segmenter_fields(), "data": data_fingerprint(train_root), "seed": seed, **extra})
    paths = {}
    for view, names in MEASURED_STRUCTURES.items():
        folder = Path(out_dir) / f"segmenters-{key}" / view
        paths[view] = folder / "best.keras"
        state = folder / "train_state.json"
        if paths[view].is_file() and state.is_file() and json.loads(state.read_text()).get("epoch", 0) >= plan.segmenter_epochs:
            continue  # finished before: not even the arrays are loaded again
        size = plan.segmenter_input(view)
        x, y, ids = load_segmentation_arrays(dataset, view, size, structures=names, progress=progress)
        train, val = patient_split(ids, val_fraction=0.15, seed=seed)
        set_seed(seed)
        model = unet((*size, 1), filters=plan.segmenter_filters, n_classes=len(names), batch_norm=True, bn_momentum=0.9,
                     name=f"segmenter_{view.lower()}")
        with quiet_tensorflow():
            train_segmentation(model, x[train], y[train], x[val], y[val], loss="dice", epochs=plan.segmenter_epochs,
                               batch_size=plan.segmenter_batch_size, out_dir=folder, seed=seed, patience=plan.segmenter_epochs,
                               verbose=verbose, lr_schedule=lr_schedule)
    return paths


def predicted_morphometrics(data, segmenters: dict[str, Path], out_dir: str | os.PathLike | None = None,
                            max_side: int = 1024, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(features, dice)`` of every patient of ``data`` (synthetic
    :class:`~spinelib.data.clsdata.ClassificationInputs`), measured on **predicted** masks.

    Each view is resized to the network's input (as in training), segmented, and the
    probabilities are resized (bilinear, > 0.5) to the view's original size shrunk by an integer
    factor to ``max_side`` (:func:`spinelib.geometry.morphometrics.downscale_mask`, the frame of the
    ground-truth measurements), then measured with
    :func:`spinelib.geometry.morphometrics.patient_features`. ``dice``: one row per patient and
    structure, the predicted mask against the true one in that frame. Cached as CSV under
    ``out_dir``."""
    from spinelib.cls.backbones import load_unet
    from spinelib.core.imageio import atomic_write_bytes, read_xray, resize_probabilities
    from spinelib.core.runs import run_key
    from spinelib.data.clinical_arrays import load_view
    from spinelib.geometry import morphometrics
    from spinelib.seg.inference import predict
    from spinelib.seg.metrics import dice as dice_score

    if data.dataset != "synthetic" or data.root is None:
        raise ValueError("predicted_morphometrics needs synthetic inputs from load_synthetic_inputs()")
    missing = [v for v in MEASURED_STRUCTURES if v not in segmenters or not Path(segmenters[v]).is_file()]
    if missing:
        raise FileNotFoundError(f"no trained segmenter for view(s) {missing}: run train_segmenters() first")
    key = run_key({"root": str(data.root), "ids": list(data.patient_ids), "max_side": max_side,
                      "nets": {v: [str(p), Path(p).stat().st_mtime] for v, p in segmenters.items()}})
    folder = None if out_dir is None else Path(out_dir) / "morphometrics"
    files = None if folder is None else [folder / f"synthetic-predicted-{key}-{n}.csv" for n in ("features", "dice")]
    if files is not None and all(f.is_file() for f in files):
        return pd.read_csv(files[0]), pd.read_csv(files[1], dtype={"patient_id": str})
    models = {v: load_unet(p) for v, p in segmenters.items()}
    dataset = data.scanned()
    feats, dice_rows = [], []
    for pid in tqdm(data.patient_ids, desc="segment + measure", disable=not progress):
        rec = dataset.patient(pid)
        found = {}
        for view, names in MEASURED_STRUCTURES.items():
            model = models[view]
            size = tuple(int(s) for s in model.input.shape[1:3])
            small = read_xray(rec.views[view].image_path, size=size)  # as load_segmentation_arrays
            prob = predict(model, small[None, ..., None] / np.float32(255))[0]
            _, truth = load_view(rec, view, structures=list(names))
            for c, name in enumerate(names):
                true_mask, _ = morphometrics.downscale_mask(truth[..., c], max_side)
                pred = resize_probabilities(prob[..., c], true_mask.shape) > 0.5
                found[name] = pred
                dice_rows.append({"patient_id": pid, "structure": name, "dice": dice_score(true_mask, pred)})
        feats.append(morphometrics.patient_features(found["Ap_Vertebra"], found["Lat_Vertebra"], found["Lat_Disk_Height"]))
    features, dice = pd.DataFrame(feats), pd.DataFrame(dice_rows)
    if files is not None:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(files[0], features.to_csv(index=False).encode())
        atomic_write_bytes(files[1], dice.to_csv(index=False).encode())
    return features, dice


def dice_summary(dice: pd.DataFrame) -> pd.DataFrame:
    """Mean, SD, minimum and median Dice per structure of :func:`predicted_morphometrics`."""
    return dice.groupby("structure")["dice"].agg(["mean", "std", "min", "median", "count"]).rename(
        columns={"std": "sd", "count": "patients"})
