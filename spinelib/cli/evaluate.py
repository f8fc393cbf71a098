"""``spinelib evaluate``: a ``predict`` output folder scored against ground truth (AASCE or the
clinical layout), matched by the SHA-256 of the input files; ``per_case.csv`` + ``summary.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spinelib.cli.records import (
    EXIT_FAILED,
    EXIT_OK,
    MANIFEST,
    SCHEMA_ID,
    SEG_SCHEMA_ID,
    UsageError,
    report_error,
    sha256_file,
    write_csv,
    write_json,
)
from spinelib.cli.train import detect_layout
from spinelib.landmarks.model import CORNER_ORDER


def _read_predictions(folder: Path) -> list[dict]:
    records = []
    for p in sorted(folder.glob("*.json")):
        if p.name == MANIFEST:
            continue
        try:
            rec = json.loads(p.read_text())
        except ValueError:
            continue
        if rec.get("schema") in (SCHEMA_ID, SEG_SCHEMA_ID):
            rec["_json"] = p
            records.append(rec)
    if not records:
        raise ValueError(f"{folder} holds no 'spinelib predict' JSON")
    return records


def _corners_of(rec: dict) -> np.ndarray:
    out = np.full((len(rec["vertebrae"]), 4, 2), np.nan)
    for v in rec["vertebrae"]:
        if v["found"]:
            out[v["index"]] = [v["corners_px"][k] for k in CORNER_ORDER]
    return out


def _landmark_error(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean Euclidean corner distance (px) over the vertebrae found,
    :math:`\frac1{4n}\sum\lVert p - t\rVert` (:func:`spinelib.geometry.corners.landmark_errors`)."""
    from spinelib.geometry.corners import landmark_errors

    d = landmark_errors(pred, true)
    return float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")


def evaluate_aasce(records: list[dict], root: Path, split: str = "training") -> "pd.DataFrame":
    """One row per prediction whose input is an AASCE X-ray (matched by SHA-256 of the file):
    ``dice`` of the predicted mask PNG against the ground-truth quadrilaterals
    (:func:`spinelib.data.aasce.vertebra_mask`), ``corner_dice`` of the quadrilaterals drawn from the
    predicted corners (:func:`spinelib.geometry.corners.quadrilateral_dice`), the mean corner
    error (px), the three angles predicted and true, and the image's SMAPE
    :math:`100 \sum_j |p_j - t_j| / \sum_j (p_j + t_j)`."""
    import pandas as pd

    from spinelib.core.imageio import read_mask
    from spinelib.data.aasce import load_aasce, vertebra_mask
    from spinelib.geometry.corners import quadrilateral_dice
    from spinelib.seg.metrics import dice

    frame = load_aasce(root, split=split)
    by_name = {str(r.image_name): r for r in frame.itertuples()}
    rows = []
    for rec in records:
        if rec["schema"] != SCHEMA_ID:
            continue  # segmentation predictions have no corners: scored on the clinical layout
        r = by_name.get(rec["input"]["name"])
        if r is None or sha256_file(r.image_path) != rec["input"]["sha256"]:
            continue
        shape = (int(r.height), int(r.width))
        truth = vertebra_mask(r.landmarks, shape)
        pred_mask = read_mask(rec["_json"].parent / rec["outputs"]["mask"], shape=shape)
        corners = _corners_of(rec)
        true_angles = np.array([r.cobb_pt, r.cobb_mt, r.cobb_tl], float)
        c = rec["cobb"]
        pred_angles = np.array([c[k]["angle_deg"] for k in ("pt", "mt", "tl")], float) if c else np.full(3, np.nan)
        denom = float(np.sum(pred_angles + true_angles))
        row = {"case": rec["input"]["name"], "dice": dice(truth, pred_mask),
               "corner_dice": quadrilateral_dice(corners, np.asarray(r.landmarks, float), shape),
               "landmark_error_px": _landmark_error(corners, np.asarray(r.landmarks, float)),
               "vertebrae_found": int(np.isfinite(corners).all(axis=(1, 2)).sum()),
               "smape": 100.0 * float(np.sum(np.abs(pred_angles - true_angles))) / denom if denom > 0 else float("nan")}
        for k, p, t in zip(("pt", "mt", "tl"), pred_angles, true_angles):
            row[f"{k}_pred"], row[f"{k}_true"] = float(p), float(t)
        rows.append(row)
    return pd.DataFrame(rows)


def evaluate_clinical(records: list[dict], root: Path, structure: str = "Ap_Vertebra") -> "pd.DataFrame":
    """One row per prediction whose input is a patient X-ray of the clinical layout (matched by
    SHA-256): Dice of the predicted mask against the ``structure`` mask."""
    import pandas as pd

    from spinelib.core.imageio import read_mask
    from spinelib.core.structures import view_of
    from spinelib.data.clinical import scan_clinical
    from spinelib.seg.metrics import dice

    view = view_of(structure)
    dataset = scan_clinical(root, progress=False)
    by_sha = {}
    for p in dataset.patients:
        vr = p.views.get(view)
        if vr is not None and structure in vr.mask_paths:
            by_sha[sha256_file(vr.image_path)] = (p.patient_id, vr)
    rows = []
    for rec in records:
        hit = by_sha.get(rec["input"]["sha256"])
        if hit is None:
            continue
        pid, vr = hit
        shape = (rec["input"]["height"], rec["input"]["width"])
        truth = read_mask(vr.mask_paths[structure], shape=shape)
        pred_mask = read_mask(rec["_json"].parent / rec["outputs"]["mask"], shape=shape)
        rows.append({"case": pid, "dice": dice(truth, pred_mask)})
    return pd.DataFrame(rows)


def summarise_evaluation(per_case) -> dict:
    """Means with 95 % bootstrap intervals (:func:`spinelib.seg.metrics.bootstrap_ci`) and, with
    angles, the challenge's SMAPE over all cases (:func:`spinelib.geometry.cobb.smape`)."""
    from spinelib.seg.metrics import bootstrap_ci

    out: dict = {"n_cases": int(len(per_case))}
    for col in ("dice", "corner_dice", "landmark_error_px"):
        if col in per_case and per_case[col].notna().any():
            v = per_case[col].dropna().to_numpy(float)
            lo, hi = bootstrap_ci(v) if len(v) > 1 else (float(v[0]), float(v[0]))
            out[col] = {"mean": float(v.mean()), "median": float(np.median(v)), "ci95": [float(lo), float(hi)]}
    if "pt_pred" in per_case:
        from spinelib.geometry.cobb import smape

        ok = per_case[["pt_pred", "mt_pred", "tl_pred"]].notna().all(axis=1)
        pred = per_case.loc[ok, ["pt_pred", "mt_pred", "tl_pred"]].to_numpy(float)
        true = per_case.loc[ok, ["pt_true", "mt_true", "tl_true"]].to_numpy(float)
        if len(pred):
            out["smape"] = float(smape(pred, true))
            out["angle_mae_deg"] = {k: float(np.mean(np.abs(pred[:, i] - true[:, i]))) for i, k in enumerate(("pt", "mt", "tl"))}
        out["n_without_angles"] = int((~ok).sum())
    return out


def cmd_evaluate(args) -> int:
    preds, truth, out = Path(args.predictions), Path(args.truth), Path(args.out)
    if not preds.is_dir():
        raise UsageError(f"predictions {preds} is not a folder (give a 'spinelib predict' output folder)")
    if not truth.is_dir():
        raise UsageError(f"ground truth {truth} is not a folder")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(f"--out {out} already holds files; add --overwrite or choose another folder")
    try:
        records = _read_predictions(preds)
        layout = args.layout if args.layout != "auto" else detect_layout(truth)
        per_case = evaluate_aasce(records, truth, args.split) if layout == "aasce" else \
            evaluate_clinical(records, truth, args.structure)
    except (ValueError, FileNotFoundError) as e:
        report_error(str(e))
        return EXIT_FAILED
    if per_case.empty:
        report_error(f"none of the {len(records)} prediction(s) in {preds} is of an X-ray in {truth} (matched by SHA-256)")
        return EXIT_FAILED
    summary = {"layout": layout, "truth": str(truth), "predictions": str(preds), "n_predictions": len(records),
               **summarise_evaluation(per_case)}
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "per_case.csv", per_case)
    write_json(out / "summary.json", summary)
    print(json.dumps(summary, indent=1))
    return EXIT_OK
