"""Scoring the two routes to Cobb angles on the validation patients.

For every validation X-ray, from one landmark network (:mod:`spinelib.landmarks.network`):

- **landmark route**: the corners read off the heat map and offsets (test-time augmentation:
  the X-ray as it is and scaled by a few percent, each also mirrored; corners averaged);
- **mask route**: the network's body mask, bodies separated and their corners fitted
  (:func:`spinelib.geometry.corners.corners_from_mask`).

Both routes' corners go back to the X-ray's own pixels and through the challenge's Cobb rule
(:func:`spinelib.geometry.cobb.cobb_angles`). Per image: the three angles, SMAPE against
``angles.csv``, landmark error in original pixels, whether all 17 levels were found in order, the
Dice of the quadrilaterals drawn from the predicted corners against the true ones, and (landmark
route) the spread of each angle over the test-time variants, an uncertainty.
Summaries average per patient first, then bootstrap over patients.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

ANGLES = ("pt", "mt", "tl")
TTA_SCALES = (0.95, 1.0, 1.05)
"""Zoom factors of the test-time variants (each also mirrored)."""

TTA_COMBINE = "median"
"""How the test-time variants' corners become one prediction: their per-coordinate median (robust
to a variant whose peaks slipped a level at one end; on the v1 model's validation X-rays it gave
quadrilateral Dice 0.829 against 0.801 for the mean, SMAPE 11.96 against 12.05 %). The v1 record
(``results/aasce_landmarks``) was scored with ``"mean"``."""

ERROR_PX = 20.0
"""A landmark counts as missed when it is further than this from the truth (original pixels)."""


def _scaled(images: np.ndarray, zoom: float):
    """X-rays zoomed about their centre by ``zoom`` (>1 enlarges), and the 8-number map from the
    zoomed frame back to the original (output -> input, as ``affine_matrix``)."""
    import tensorflow as tf

    from spinelib.landmarks.encoding import keras_affine

    h, w = images.shape[1:3]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    m = np.array([1 / zoom, 0, cx - cx / zoom, 0, 1 / zoom, cy - cy / zoom, 0, 0], np.float32)
    x = tf.convert_to_tensor(np.asarray(images, np.float32) / 255.0)
    out = np.stack([keras_affine(x[i], tf.constant(m), "bilinear").numpy() for i in range(len(images))])
    return out, m


def tta_corners(network, images: np.ndarray, scales=TTA_SCALES, batch_size: int = 8):
    """Corners of every test-time variant, ``(V, N, 17, 4, 2)`` in the input frame, the mean
    scores ``(N, 17)`` and the body-mask probabilities ``(N, H, W)`` of the unzoomed X-ray and its
    mirror, averaged. Variants: each zoom of ``scales``, as is and mirrored (mirrored back)."""
    from spinelib.landmarks import encoding
    from spinelib.landmarks.train import predict_corners

    images = np.asarray(images)
    w = images.shape[2]
    variants, scores, masks = [], [], []
    for zoom in scales:
        x, m = (np.asarray(images, np.float32) / 255.0, None) if zoom == 1.0 else _scaled(images, zoom)
        for mirror in (False, True):
            xi = x[:, :, ::-1] if mirror else x
            c, s, mask = predict_corners(network, xi, batch_size)
            if zoom == 1.0:
                masks.append(mask[:, :, ::-1] if mirror else mask)
            if mirror:
                c = c[:, :, list(encoding.FLIP_CORNERS)]
                c[..., 0] = (w - 1) - c[..., 0]
            if m is not None:
                c = np.stack([c[..., 0] * m[0] + m[2], c[..., 1] * m[4] + m[5]], axis=-1)
            variants.append(c)
            scores.append(s)
    mask = np.mean(masks, axis=0) if masks else None
    return np.stack(variants), np.mean(scores, axis=0), mask


def combine_variants(variants: np.ndarray, how: str = TTA_COMBINE) -> np.ndarray:
    """One corner set per X-ray from the test-time variants ``(V, N, 17, 4, 2)``: ``"mean"`` or
    ``"median"`` over the variants (:data:`TTA_COMBINE`)."""
    if how == "mean":
        return np.mean(variants, axis=0)
    if how == "median":
        return np.median(variants, axis=0)
    raise ValueError(f"how must be 'mean' or 'median', got {how!r}")


def levels_in_order(pred: np.ndarray, true: np.ndarray) -> bool:
    """All 17 levels found in order: every predicted vertebra's centre is nearest to the true
    centre of its own level."""
    if not np.isfinite(pred).all():
        return False
    pc, tc = pred.mean(axis=1), true.mean(axis=1)
    d = np.linalg.norm(pc[:, None, :] - tc[None, :, :], axis=-1)
    return bool(np.all(np.argmin(d, axis=1) == np.arange(len(tc))))


def _route_row(prefix: str, corners: np.ndarray, row, flagged: bool) -> dict:
    from spinelib.geometry.cobb import cobb_angles, smape_per_image
    from spinelib.geometry.corners import landmark_errors, quadrilateral_dice

    true = np.asarray(row.landmarks, np.float64)
    out = {}
    if np.isfinite(corners).all():
        cobb = cobb_angles(corners, image_height=row.height)
        pred_angles = cobb.angles
    else:  # a level missing: no angle can be measured the challenge's way
        pred_angles = np.full(3, np.nan)
    true_angles = np.array([row.cobb_pt, row.cobb_mt, row.cobb_tl], float)
    err = landmark_errors(corners, true)
    for name, p in zip(ANGLES, pred_angles):
        out[f"{prefix}_{name}"] = float(p)
    out[f"{prefix}_smape"] = (float(smape_per_image(pred_angles[None], true_angles[None])[0])
                              if np.isfinite(pred_angles).all() else np.nan)
    out[f"{prefix}_error_mean_px"] = float(np.nanmean(err)) if np.isfinite(err).any() else np.nan
    out[f"{prefix}_error_median_px"] = float(np.nanmedian(err)) if np.isfinite(err).any() else np.nan
    out[f"{prefix}_share_over_{int(ERROR_PX)}px"] = float(np.mean(~(err <= ERROR_PX)))
    out[f"{prefix}_levels_in_order"] = levels_in_order(corners, true)
    out[f"{prefix}_quad_dice"] = quadrilateral_dice(corners, true, (int(row.height), int(row.width)))
    return out


def evaluate_routes(network, data, val_idx, flagged=frozenset(), scales=TTA_SCALES, progress: bool = True,
                    combine: str = TTA_COMBINE) -> pd.DataFrame:
    """One row per validation X-ray (module docstring): truth, both routes, the uncertainty.

    ``data``: a :class:`spinelib.landmarks.train.LandmarkData`; ``flagged``: image names whose
    labels the audit flags (a column, so figures can be given on all images and on the clean ones).
    """
    from spinelib.data.aasce import scale_landmarks
    from spinelib.geometry.cobb import cobb_angles
    from spinelib.geometry.corners import corners_from_mask

    val_idx = np.asarray(val_idx)
    images = data.images[val_idx]
    if 1.0 not in scales:
        raise ValueError(f"scales must include 1.0 (the mask route reads the unzoomed X-ray), got {scales!r}")
    variants, scores, mask_prob = tta_corners(network, images, scales)  # one pass serves both routes
    rows = []
    it = tqdm(enumerate(val_idx), total=len(val_idx), desc="score validation X-rays", disable=not progress)
    for j, i in it:
        row = data.frame.iloc[i]
        shape = (int(row.height), int(row.width))
        mean = scale_landmarks(combine_variants(variants[:, j], combine), data.size, shape)
        out = {"image_name": row.image_name, "patient_id": row.patient_id, "flagged": row.image_name in flagged,
               "height": shape[0], "width": shape[1], "cobb_pt": row.cobb_pt, "cobb_mt": row.cobb_mt,
               "cobb_tl": row.cobb_tl, "cobb_max": row.cobb_max, "min_score": float(scores[j].min())}
        out.update(_route_row("lm", mean, row, out["flagged"]))
        per_variant = np.stack([cobb_angles(scale_landmarks(v[j], data.size, shape), image_height=shape[0]).angles
                                for v in variants])
        for k, name in enumerate(ANGLES):
            out[f"lm_{name}_sd"] = float(per_variant[:, k].std(ddof=1))
        try:
            mc = corners_from_mask(mask_prob[j], threshold=0.5)
            mask_corners, complete, failure = mc.corners, bool(mc.complete), ""
        except ValueError as e:  # e.g. a sliver of a body too thin for four corners: the route fails here
            mask_corners, complete, failure = np.full((17, 4, 2), np.nan), False, str(e)
        out.update(_route_row("mask", scale_landmarks(mask_corners, data.size, shape), row, out["flagged"]))
        out["mask_complete"] = complete
        out["mask_failure"] = failure
        t = data.masks[i, ..., 0] > 0
        p = mask_prob[j] >= 0.5
        out["mask_dice_frame"] = float(2 * (t & p).sum() / max(t.sum() + p.sum(), 1))
        rows.append(out)
    return pd.DataFrame(rows)


def per_patient(cases: pd.DataFrame, column: str) -> pd.Series:
    """Mean of ``column`` per patient (NaNs left out)."""
    return cases.groupby("patient_id")[column].mean()


def summarise_routes(cases: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per route and image set (all, clean): SMAPE with a bootstrap 95 % CI over patients, mean
    absolute error per angle, landmark errors, levels in order, quadrilateral Dice."""
    from spinelib.seg.metrics import bootstrap_ci

    out = []
    for subset, part in (("all", cases), ("clean", cases[~cases["flagged"]])):
        for route in ("lm", "mask"):
            pat = per_patient(part, f"{route}_smape")
            lo, hi = bootstrap_ci(pat.to_numpy(), n_boot=n_boot, seed=seed)
            row = {"route": {"lm": "landmarks", "mask": "mask + fitted corners"}[route], "images": subset,
                   "n_images": len(part), "n_patients": part["patient_id"].nunique(),
                   "smape": float(pat.mean()), "smape_lo": lo, "smape_hi": hi,
                   "no_angle_share": float(part[f"{route}_smape"].isna().mean())}
            for name in ANGLES:
                row[f"mae_{name}"] = float(per_patient(part.assign(
                    _e=(part[f"{route}_{name}"] - part[f"cobb_{name}"]).abs()), "_e").mean())
            row["error_mean_px"] = float(per_patient(part, f"{route}_error_mean_px").mean())
            row["error_median_px"] = float(per_patient(part, f"{route}_error_median_px").mean())
            row[f"share_over_{int(ERROR_PX)}px"] = float(per_patient(part, f"{route}_share_over_{int(ERROR_PX)}px").mean())
            row["levels_in_order"] = float(part[f"{route}_levels_in_order"].mean())
            row["quad_dice"] = float(per_patient(part, f"{route}_quad_dice").mean())
            out.append(row)
    return pd.DataFrame(out)


def severity_auroc(cases: pd.DataFrame, threshold: float = 40.0) -> dict:
    """Severe scoliosis (max true Cobb >= ``threshold``) decided from the landmark route's largest
    predicted angle: AUROC, and accuracy / sensitivity / specificity at the same threshold."""
    from sklearn.metrics import roc_auc_score

    truth = cases["cobb_max"].to_numpy() >= threshold
    score = cases[[f"lm_{n}" for n in ANGLES]].max(axis=1).to_numpy()
    pred = score >= threshold
    both = len(set(truth)) == 2
    return {"n_images": int(len(cases)), "n_severe": int(truth.sum()),
            "auroc": float(roc_auc_score(truth, score)) if both else float("nan"),
            "accuracy": float(np.mean(pred == truth)),
            "sensitivity": float(pred[truth].mean()) if truth.any() else float("nan"),
            "specificity": float((~pred[~truth]).mean()) if (~truth).any() else float("nan")}


def interval_coverage(cases: pd.DataFrame, z: float = 1.96) -> pd.DataFrame:
    """Do the test-time-augmentation intervals (predicted angle +- ``z`` x spread) cover the true
    angle as often as a normal 95 % interval claims? One row per angle."""
    rows = []
    for name in ANGLES:
        err = (cases[f"lm_{name}"] - cases[f"cobb_{name}"]).abs()
        half = z * cases[f"lm_{name}_sd"]
        rows.append({"angle": name, "claimed": 0.95 if z == 1.96 else float("nan"), "covered": float((err <= half).mean()),
                     "median_half_width_deg": float(half.median()), "median_abs_error_deg": float(err.median()),
                     "z_needed_for_95": float(np.quantile(err / cases[f"lm_{name}_sd"].clip(lower=1e-6), 0.95))})
    return pd.DataFrame(rows)


def calibrated_coverage(cases: pd.DataFrame, level: float = 0.95, folds: int = 2, seed: int = 0) -> pd.DataFrame:
    """Intervals whose width is learnt, checked on patients it was not learnt on.

    The raw test-time spread under-covers (:func:`interval_coverage`). Here the patients are split
    into ``folds`` groups; on all but one group the factor :math:`k` is the ``level`` quantile of
    :math:`|\\text{error}| / \\text{spread}` (split-conformal), and the held-out group's intervals
    :math:`\\pm k \\cdot \\text{spread}` are scored. One row per angle: the coverage over all
    held-out X-rays, the factors of the folds, the median half-width in degrees."""
    rng = np.random.default_rng(seed)
    patients = cases["patient_id"].unique()
    group = dict(zip(rng.permutation(patients), np.arange(len(patients)) % folds))
    g = cases["patient_id"].map(group).to_numpy()
    rows = []
    for name in ANGLES:
        err = (cases[f"lm_{name}"] - cases[f"cobb_{name}"]).abs().to_numpy()
        sd = cases[f"lm_{name}_sd"].clip(lower=1e-6).to_numpy()
        ok = np.isfinite(err) & np.isfinite(sd)
        covered, half, factors = np.zeros(len(cases), bool), np.full(len(cases), np.nan), []
        for f in range(folds):
            fit, test = ok & (g != f), ok & (g == f)
            k = float(np.quantile(err[fit] / sd[fit], level))
            factors.append(k)
            covered[test] = err[test] <= k * sd[test]
            half[test] = k * sd[test]
        rows.append({"angle": name, "claimed": level, "covered": float(covered[ok].mean()),
                     "factors": [round(k, 2) for k in factors], "median_half_width_deg": float(np.nanmedian(half[ok]))})
    return pd.DataFrame(rows)
