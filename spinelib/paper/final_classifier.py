"""Classification experiments: the paper's Table 4 re-run, the final classifier, and its evaluation.

Orchestration only, read top to bottom in the order a page uses it:

1. inputs - :func:`load_synthetic_inputs` (AP + LAT X-rays and the 8 masks per patient) and
   :func:`load_aasce_inputs` (real AP X-rays, vertebra masks, severity label: max Cobb >= 40 deg);
2. cost - :func:`cpu_cost` measures CPU minutes (all threads of the process) and wall minutes;
3. backbones - :func:`feature_backbone` (random / ImageNet / a local ResNet-50 file / in-domain),
   in-domain pre-training by :func:`train_aasce_unets` (a small U-Net on AASCE vertebra masks,
   one per fold of the patient cross-validation, so no encoder has seen its test patients);
4. cross-validation by patient - :func:`cross_validate_features` (frozen features + the paper's
   head or logistic regression), :func:`fold_thresholds` (each fold's threshold is chosen on the
   other folds' out-of-fold predictions only), cached runs (:class:`CVResult`);
5. Table 4 - :data:`PAPER_TABLE4`, :func:`table4_rows`, :func:`run_table4_row`, :func:`table4_frame`;
6. evaluation - :func:`evaluation_tables`, :func:`patient_bootstrap_auroc`, :func:`feature_grad_cam`,
   error tables.

Every number keeps the name of the data (synthetic / AASCE) and of the weights it came from.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from spinelib.cls.backbones import load_unet
from spinelib.cls.cv import (
    CVResult,
    cached_run,
    cross_validate_features,
    fold_loop,
    fold_thresholds,
    inner_logistic,
    logistic_pipeline,
)
from spinelib.cls.extractors import feature_backbone, features_of, weights_label
from spinelib.cls.heads import paper_fit_kwargs
from spinelib.cls.metrics import classification_report_table
from spinelib.core.config import Profile
from spinelib.core.plans import Plan
from spinelib.core.runs import run_key
from spinelib.core.stats import bootstrap_indices, percentile_interval
from spinelib.data.clsdata import ClassificationInputs, resize_images
from spinelib.data.splits import patient_kfold


def evaluation_tables(oof: pd.DataFrame, n_boot: int = 1000, seed: int = 0, criterion: str = "youden",
                      progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(report, oof_with_predictions)``: the paper's 9 measures (Figure 9) + AUROC, AUPRC,
    Brier with bootstrap 95 % CIs (:func:`spinelib.cls.metrics.classification_report_table`),
    at each fold's validation-chosen threshold (:func:`fold_thresholds`)."""
    t = fold_thresholds(oof, criterion)
    report = classification_report_table(t["y_true"], t["prob"], threshold=t["threshold"].to_numpy(),
                                         n_boot=n_boot, seed=seed, progress=progress)
    return report, t


def patient_bootstrap_auroc(y_true, prob, groups, n_boot: int = 1000, seed: int = 0,
                            alpha: float = 0.05) -> tuple[float, float, float]:
    """AUROC with a *patient-level* (cluster) percentile bootstrap: patients are resampled with
    replacement, all their images with them (AASCE has up to several X-rays per patient).
    Returns ``(auroc, low, high)``."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    if not (len(y) == len(p) == len(groups)):
        raise ValueError(f"y_true ({len(y)}), prob ({len(p)}) and groups ({len(groups)}) differ in length")
    values = [roc_auc_score(y[idx], p[idx]) for idx in bootstrap_indices(len(y), int(n_boot), seed, groups=groups)
              if len(np.unique(y[idx])) == 2]
    return (float(roc_auc_score(y, p)), *percentile_interval(values, alpha))


def feature_grad_cam(head: keras.Model, view_features: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Grad-CAM of the paper's head on frozen feature maps, one heat map per view.

    The head takes the views' maps ``A`` (each ``h x w x K``) flattened and concatenated; with
    ``y`` its Damaged probability, per view :math:`\\alpha_k = \\mathrm{mean}_{ij}\\,\\partial y / \\partial A^k_{ij}`
    and :math:`L = \\mathrm{ReLU}(\\sum_k \\alpha_k A^k)`, scaled to [0, 1] by the largest value
    over all views (all zeros when nothing speaks for Damaged). The maps are the backbone's last
    convolutional layer, so this is Grad-CAM at that layer (Selvaraju et al., 2017).
    """
    import tensorflow as tf

    maps = [tf.convert_to_tensor(np.asarray(a, np.float32)[None]) for a in view_features]
    with tf.GradientTape() as tape:
        for m in maps:
            tape.watch(m)
        flat = tf.concat([tf.reshape(m, (1, -1)) for m in maps], axis=1)
        score = head(flat, training=False)[:, 0]
    grads = tape.gradient(score, maps)
    cams = []
    for m, g in zip(maps, grads):
        alpha = tf.reduce_mean(g, axis=(1, 2))
        cams.append(tf.nn.relu(tf.reduce_sum(m * alpha[:, None, None, :], axis=-1))[0].numpy())
    top = max(float(c.max()) for c in cams)
    return [(c / top if top > 0 else np.zeros_like(c)).astype(np.float32) for c in cams]


def upsample_cam(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A coarse heat map resized (bilinear) to an image's ``(H, W)``."""
    from skimage.transform import resize

    return resize(cam, shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True).astype(np.float32)


def error_table(oof: pd.DataFrame, table: pd.DataFrame, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The misclassified samples (``y_pred != y_true``; run :func:`fold_thresholds` first), most
    confident first, with the given metadata ``columns`` of ``table`` (same row order as the
    inputs): what kind of case does the classifier get wrong?"""
    if "y_pred" not in oof.columns:
        raise ValueError("oof has no y_pred column; use fold_thresholds(oof) first")
    wrong = oof[oof["y_pred"] != oof["y_true"]].copy()
    wrong["error"] = np.where(wrong["y_true"] == 1, "false negative", "false positive")
    wrong["confidence"] = np.abs(wrong["prob"] - wrong["threshold"])
    cols = [c for c in columns if c in table.columns]
    if cols:
        wrong = wrong.join(table.iloc[wrong["index"].to_numpy()][cols].reset_index(drop=True).set_axis(wrong.index))
    return wrong.sort_values("confidence", ascending=False)


def synthetic_pathology_errors(oof: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Per pathology kind of the synthetic Damaged patients (a patient counts for each of its
    kinds): patients, missed (false negatives), and the miss rate; plus the Normal patients'
    false positives."""
    t = oof.set_index("index")
    rows = []
    for kind in ("wedge_fracture", "disk_height_loss", "listhesis", "scoliosis"):
        has = table["pathologies"].fillna("").str.contains(kind)
        idx = np.flatnonzero(has.to_numpy())
        idx = [i for i in idx if i in t.index]
        missed = int((t.loc[idx, "y_pred"] == 0).sum()) if idx else 0
        rows.append({"group": f"Damaged with {kind}", "patients": len(idx), "wrong": missed,
                     "error rate": missed / len(idx) if idx else np.nan})
    normal = t[t["y_true"] == 0]
    rows.append({"group": "Normal", "patients": len(normal), "wrong": int((normal["y_pred"] == 1).sum()),
                 "error rate": float((normal["y_pred"] == 1).mean()) if len(normal) else np.nan})
    return pd.DataFrame(rows)


def cobb_band_errors(oof: pd.DataFrame, cobb: Sequence[float],
                     bands: Sequence[float] = (0, 20, 30, 40, 50, 60, 200)) -> pd.DataFrame:
    """Error rate of the severity classifier by band of the published maximum Cobb angle:
    mistakes should crowd near the 40 deg boundary."""
    if "y_pred" not in oof.columns:
        raise ValueError("oof has no y_pred column; use fold_thresholds(oof) first")
    c = np.asarray(cobb, dtype=float)[oof["index"].to_numpy()]
    band = pd.cut(c, list(bands), right=False)
    wrong = (oof["y_pred"] != oof["y_true"]).to_numpy()
    df = pd.DataFrame({"Cobb band (deg)": band.astype(str), "wrong": wrong, "prob": oof["prob"].to_numpy()})
    g = df.groupby("Cobb band (deg)", sort=False, observed=True)
    out = pd.DataFrame({"images": g.size(), "wrong": g["wrong"].sum(), "error rate": g["wrong"].mean(),
                        "mean prob(severe)": g["prob"].mean()})
    order = [str(b) for b in pd.IntervalIndex.from_breaks(list(bands), closed="left")]
    return out.reindex([o for o in order if o in out.index])


def run_feature_cv(name: str, data: ClassificationInputs, backbone: str, weights: str, size: tuple[int, int],
                   profile: Profile, out_dir: str | os.PathLike | None, seed: int = 0,
                   weights_path: str | os.PathLike | dict | None = None, head: str = "paper",
                   pooled: bool = False, keep_models: bool = False, progress: bool = True) -> CVResult:
    """Frozen features of every view of ``data`` (AP + LAT for synthetic, AP for AASCE) at
    ``size`` -> patient-grouped CV of ``head``; cached under ``out_dir``.

    ``weights='indomain'`` with ``weights_path`` a ``{fold: U-Net path}`` dict (from
    :func:`train_aasce_unets` on the same ``data`` and folds) uses each fold's own encoder, so
    no encoder saw that fold's patients. ``pooled``: global-average-pool the maps first.
    ``keep_models`` saves the fold models (``.keras``) and returns them in ``result.models``
    (for Grad-CAM); ``result.features`` is the feature list (or a per-fold callable).
    """
    cache = None if out_dir is None else Path(out_dir) / "feature_cache"
    per_fold = isinstance(weights_path, dict)

    def extract(path):
        bb = feature_backbone(backbone, (*size, 1), weights, weights_path=path)
        feats = [features_of(bb, v, cache, progress=progress) for v in data.views_at(size, progress)]
        return [f.mean(axis=(1, 2)) for f in feats] if pooled else feats

    if per_fold:
        memo: dict[int, list] = {}

        def features(f):
            if f not in memo:
                memo.clear()
                memo[f] = extract(weights_path[f])
            return tuple(memo[f])
    else:
        features = None
    fit = paper_fit_kwargs(profile) if head == "paper" else {"C": 0.1}
    config = {"data": data.dataset, "n": len(data), "backbone": backbone, "weights": weights, "size": list(size),
              "head": head, "pooled": pooled, "fit": fit, "seed": seed, "folds": int(profile.cls_folds),
              "weights_path": {str(k): str(v) for k, v in weights_path.items()} if per_fold else str(weights_path or ""),
              "keep_models": keep_models, "label": weights_label(backbone, weights), "views_at_size": 2}
    model_dir = None if out_dir is None else Path(out_dir) / "cls_models" / f"{name}-{run_key(config)}"

    def run():
        nonlocal features
        if features is None:
            features = tuple(extract(weights_path))
        oof = cross_validate_features(features, data.labels, data.patient_ids, k=int(profile.cls_folds), head=head,
                                      fit_kwargs=fit, seed=seed, keep_models=keep_models, progress=progress)
        # the fold models go beside the table, not in it: pandas deep-copies ``attrs`` on every copy and filter
        # of the table, and a deep copy of a Keras model saves and rebuilds it (seconds per copy, per model)
        models = oof.attrs.pop("models", None)
        if keep_models and model_dir is not None and head == "paper":
            model_dir.mkdir(parents=True, exist_ok=True)
            for f, m in enumerate(models):
                m.save(model_dir / f"fold{f}.keras")
        run.models = models
        return oof

    run.models = None
    result = cached_run(out_dir, name, config, run)
    if features is None:
        features = tuple(extract(weights_path)) if not per_fold else features
    result.features = features
    result.models = run.models
    if keep_models and result.models is None and model_dir is not None and head == "paper":
        result.models = [keras.models.load_model(model_dir / f"fold{f}.keras", compile=False)
                         for f in range(int(profile.cls_folds))]
    return result


def morphometric_cv(name: str, features: pd.DataFrame, data: ClassificationInputs, profile: Profile,
                    out_dir: str | os.PathLike | None, seed: int = 0, C_: float | str = 1.0) -> CVResult:
    """The interpretable classifier: z-scored L2 logistic regression on measured features
    (one row per sample of ``data``, same order), on the same patient folds as every image run
    with this ``seed``. Missing values are filled with the training folds' median.

    ``C_``: the inverse regularisation strength (default 1, fixed before any result was seen), or
    ``"cv"`` to choose it per fold
    from :data:`MORPHOMETRIC_CS` by an inner cross-validation on that fold's training patients
    (nested; the chosen values are in ``result.info["C per fold"]``). The fitted coefficients
    (per fold) are in ``result.coefficients``."""
    if len(features) != len(data):
        raise ValueError(f"{len(features)} feature rows for {len(data)} samples")
    Xm = features.to_numpy(float)
    y = data.labels.astype(int)
    folds = list(patient_kfold(data.patient_ids, y, k=int(profile.cls_folds), seed=seed))
    if not (C_ == "cv" or (isinstance(C_, (int, float)) and not isinstance(C_, bool) and C_ > 0)):
        raise ValueError(f"C_ must be a positive number or 'cv', got {C_!r}")
    coefs, chosen = [], []

    def fit_predict(f, train, val):
        model = inner_logistic(Xm[train], y[train], data.patient_ids[train], seed + f) if C_ == "cv" else None
        pipe = logistic_pipeline(1.0 if C_ == "cv" else float(C_), impute_median=True, model=model)
        pipe.fit(Xm[train], y[train])
        coefs.append(pipe[-1].coef_[0])
        fitted = pipe[-1]
        chosen.append(float(np.ravel(fitted.C_)[0]) if hasattr(fitted, "C_") else float(fitted.C))
        return pipe.predict_proba(Xm[val])[:, 1], None

    def run():
        return fold_loop(data.patient_ids, y, int(profile.cls_folds), seed, fit_predict, progress=False,
                         folds=folds)[0]

    config = {"data": data.dataset, "n": len(data), "features": list(features.columns), "C": C_, "seed": seed,
              "folds": int(profile.cls_folds), "values": hashlib.sha256(np.nan_to_num(Xm).tobytes()).hexdigest()[:12]}
    result = cached_run(out_dir, name, config, run)
    if not coefs:  # cached: refit for the coefficients (fast)
        run()
    result.coefficients = pd.DataFrame(coefs, columns=features.columns).rename_axis("fold")
    result.info["C per fold"] = chosen
    result.info.setdefault("weights", "none (measured features)")
    return result


def image_size_features(data: ClassificationInputs) -> pd.DataFrame:
    """Each sample's original image size, read from the file headers: height, width and aspect
    (width / height) per view. A classifier on these alone measures how much a dataset's label
    leaks through its image sizes (the synthetic generator draws sizes within each class's range of
    the paper's Table 1, so Damaged X-rays are taller on average); the resized images carry the
    aspect ratio, not the size."""
    from spinelib.core.imageio import image_size

    if data.dataset == "aasce":
        h, w = data.table["height"].to_numpy(float), data.table["width"].to_numpy(float)
        return pd.DataFrame({"AP height": h, "AP width": w, "AP aspect": w / h})
    if data.root is None:
        raise ValueError("image_size_features needs inputs loaded from a folder (data.root)")
    dataset = data.scanned()
    rows = []
    for pid in data.patient_ids:
        row = {}
        for view, rec in sorted(dataset.patient(pid).views.items()):
            h, w = image_size(rec.image_path)
            row.update({f"{view} height": h, f"{view} width": w, f"{view} aspect": w / h})
        rows.append(row)
    return pd.DataFrame(rows).astype(float)


def synthetic_morphometrics(data: ClassificationInputs, out_dir: str | os.PathLike | None = None,
                            max_side: int = 1024, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(features, agreement)`` of every synthetic patient, measured on its *ground-truth* masks
    at native resolution (shrunk by an integer factor to ``max_side``, so angles and ratios are
    kept): :data:`spinelib.geometry.morphometrics.SYNTHETIC_FEATURES`, and, next to the generator's truth
    in ``meta.json``, per patient: wedge-ratio MAE, disk-height correlation, listhesis-offset MAE
    (pixels at full size), measured and true Cobb angle. Cached as CSV under ``out_dir``."""
    from spinelib.data.clinical_arrays import load_view
    from spinelib.geometry import morphometrics

    if data.dataset != "synthetic" or data.root is None:
        raise ValueError("synthetic_morphometrics needs inputs from load_synthetic_inputs()")
    key = run_key({"root": str(data.root), "ids": list(data.patient_ids), "max_side": max_side, "v": 2})
    folder = None if out_dir is None else Path(out_dir) / "morphometrics"
    if folder is not None and (folder / f"synthetic-{key}-features.csv").is_file():
        return (pd.read_csv(folder / f"synthetic-{key}-features.csv"),
                pd.read_csv(folder / f"synthetic-{key}-agreement.csv", dtype={"patient_id": str}))
    dataset = data.scanned()
    feats, agree = [], []
    for pid in tqdm(data.patient_ids, desc="morphometrics", disable=not progress):
        rec = dataset.patient(pid)
        _, ap = load_view(rec, "AP", structures=["Ap_Vertebra"])
        _, lat = load_view(rec, "LAT", structures=["Lat_Vertebra", "Lat_Disk_Height"])
        ap_v, _ = morphometrics.downscale_mask(ap[..., 0], max_side)
        lat_v, f = morphometrics.downscale_mask(lat[..., 0], max_side)
        lat_d, _ = morphometrics.downscale_mask(lat[..., 1], max_side)
        feats.append(morphometrics.patient_features(ap_v, lat_v, lat_d))
        truth = morphometrics.synthetic_truth(rec.folder)
        v, d, s = morphometrics.vertebra_heights(lat_v), morphometrics.disk_heights(lat_d), morphometrics.listhesis_offsets(lat_v)
        row = {"patient_id": pid, "bodies found": len(v), "bodies true": len(truth["wedge_ratio"]),
               "cobb measured": feats[-1]["cobb_angle_deg"], "cobb true": truth["cobb_angle_deg"],
               "pathologies": truth["pathologies"]}
        if len(v) == len(truth["wedge_ratio"]):
            row["wedge ratio MAE"] = float(np.abs(v["wedge_ratio"] - truth["wedge_ratio"]).mean())
        if len(d) == len(truth["disk_height_px"]) and len(d) > 2:
            row["disk height r"] = float(np.corrcoef(d["height"] * f, truth["disk_height_px"])[0, 1])
        if len(s) == len(truth["listhesis_offset_px"]):
            row["listhesis offset MAE (px)"] = float(np.abs(s["offset"] * f - truth["listhesis_offset_px"]).mean())
        agree.append(row)
    features, agreement = pd.DataFrame(feats), pd.DataFrame(agree)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        features.to_csv(folder / f"synthetic-{key}-features.csv", index=False)
        agreement.to_csv(folder / f"synthetic-{key}-agreement.csv", index=False)
    return features, agreement


def aasce_mask_morphometrics(data: ClassificationInputs, unet_paths: dict[int, Path], sizes: Plan,
                             k: int, seed: int = 0, out_dir: str | os.PathLike | None = None,
                             progress: bool = True) -> pd.DataFrame:
    """Measured on *predicted* vertebra masks, out of fold: every AASCE X-ray is segmented by
    the U-Net of the fold in which it is a test image (trained without its patient), then
    :func:`spinelib.geometry.morphometrics.ap_features` (centre-line Cobb angle on square pixels, tilt,
    lateral deviation). One row per image, in ``data`` order; cached under ``out_dir``."""
    from spinelib.geometry import morphometrics
    from spinelib.seg.inference import postprocess, predict

    folds = list(patient_kfold(data.patient_ids, data.labels, k=k, seed=seed))
    if set(unet_paths) != set(range(k)):
        raise ValueError(f"need one U-Net per fold 0..{k - 1}, got folds {sorted(unet_paths)}")
    key = run_key({"paths": {str(f): str(p) for f, p in unet_paths.items()},
                      "mtimes": [Path(p).stat().st_mtime for p in unet_paths.values()], "n": len(data), "seed": seed})
    path = None if out_dir is None else Path(out_dir) / "morphometrics" / f"aasce-predicted-{key}.csv"
    if path is not None and path.is_file():
        return pd.read_csv(path)
    x = resize_images(data.ap, sizes.indomain_size) / np.float32(255)
    h, w = sizes.indomain_size
    rows: dict[int, dict] = {}
    for f, (_, val) in enumerate(tqdm(folds, desc="segment + measure", disable=not progress)):
        masks = postprocess(predict(load_unet(unet_paths[f]), x[val]))
        for i, m in zip(val, masks):
            r = data.table.iloc[i]
            aspect = (r["width"] / w) / (r["height"] / h)
            rows[int(i)] = morphometrics.ap_features(m[..., 0], method="centerline", pixel_aspect=aspect)
    out = pd.DataFrame([rows[i] for i in range(len(data))])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(path, index=False)
    return out


def targets_table(rows: Sequence[dict]) -> pd.DataFrame:
    """``target, threshold, measured, ci_low, ci_high, met`` for the issue's targets."""
    df = pd.DataFrame(rows)
    df["met"] = df["measured"] >= df["threshold"]
    return df


def grad_cam_figure(result: CVResult, data: ClassificationInputs, indices: Sequence[int], alpha: float = 0.4):
    """One row per sample: each view's X-ray with the Grad-CAM (:func:`feature_grad_cam`) of
    the fold model that never saw that patient; the title gives the truth and the probability.
    ``result`` must come from :func:`run_feature_cv` with ``keep_models=True`` and the paper head."""
    import matplotlib.pyplot as plt

    from spinelib.cls.gradcam import overlay_heatmap

    if getattr(result, "models", None) is None:
        raise ValueError(f"run {result.name} kept no models: use run_feature_cv(..., keep_models=True)")
    views = [("AP", data.ap)] + ([("LAT", data.lat)] if data.lat is not None else [])
    names = ("Normal", "Damaged") if data.dataset == "synthetic" else ("Cobb < 40°", "Cobb >= 40°")
    fig, axes = plt.subplots(len(indices), len(views), figsize=(3.0 * len(views) + 1, 4.2 * len(indices)), squeeze=False)
    oof = result.oof.set_index("index")
    for r, i in enumerate(indices):
        f = int(oof.loc[i, "fold"])
        feats = result.features(f) if callable(result.features) else result.features
        cams = feature_grad_cam(result.models[f], [v[i] for v in feats])
        for c, ((view, images), cam) in enumerate(zip(views, cams)):
            kind = "SYNTHETIC" if data.dataset == "synthetic" else f"REAL {data.dataset.upper()}"
            title = f"{kind} {data.patient_ids[i]} {view}\ntrue: {names[int(data.labels[i])]}, " \
                    f"P({names[1]}) = {oof.loc[i, 'prob']:.2f} (fold {f + 1})"
            overlay_heatmap(images[i, ..., 0], upsample_cam(cam, images.shape[1:3]), alpha=alpha, title=title,
                            ax=axes[r, c])
            axes[r, c].set_title(title, fontsize=8)
    # one colour bar for the whole figure instead of one beside every panel
    for extra in [a for a in fig.axes if a not in set(axes.flat)]:
        extra.remove()
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    cax = fig.add_axes((0.9, 0.35, 0.025, 0.3))
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap="jet"), cax=cax, label="Grad-CAM relevance")
    return fig


def comparison_table(results: dict[str, CVResult], groups: Sequence, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Runs side by side on the same folds: accuracy (validation-chosen thresholds), AUROC with
    a patient-level bootstrap 95 % CI, Brier score, CPU minutes. ``results`` maps a label
    (naming the data and the weights) to a run."""
    from sklearn.metrics import brier_score_loss

    rows = []
    for label, res in results.items():
        s = res.summary()
        t = fold_thresholds(res.oof)
        auc, lo, hi = patient_bootstrap_auroc(t["y_true"], t["prob"], np.asarray(groups)[t["index"]], n_boot, seed)
        rows.append({"classifier": label, "accuracy": s["accuracy"], "accuracy@0.5": s["accuracy@0.5"],
                     "AUROC": auc, "AUROC 95% CI": f"{lo:.3f}-{hi:.3f}", "AUROC low": lo, "AUROC high": hi,
                     "Brier": brier_score_loss(t["y_true"], t["prob"]), "CPU minutes": res.cpu_minutes})
    return pd.DataFrame(rows).set_index("classifier")
