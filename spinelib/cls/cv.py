"""Cross-validation by patient: one fold loop, one logistic pipeline, cached runs, fold thresholds."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score, roc_curve
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from spinelib.cls.heads import (
    Features,
    FoldModel,
    check_labels,
    flatten_features,
    n_samples,
    predict_head,
    take_samples,
    train_head,
)
from spinelib.core.runs import cpu_cost, run_key, write_json
from spinelib.data.splits import patient_kfold


def cv_frame(groups, labels, folds: list[tuple[np.ndarray, np.ndarray]], probs: dict[int, np.ndarray]) -> pd.DataFrame:
    rows = []
    for f, (_, val) in enumerate(folds):
        for i, p in zip(val, probs[f]):
            rows.append({"index": int(i), "patient_id": str(groups[i]), "fold": f, "y_true": int(labels[i]), "prob": float(p)})
    return pd.DataFrame(rows).sort_values("index").reset_index(drop=True)


def fold_loop(groups, labels, k: int, seed: int, fit_predict: Callable, desc: str = "cross-validation",
              progress: bool = True, folds: list | None = None) -> tuple[pd.DataFrame, list]:
    """The one patient-level cross-validation loop of the package.

    Folds are :func:`spinelib.data.splits.patient_kfold` ``(groups, labels, k, seed)`` (the same
    for every run with that seed) unless ``folds`` are given; for each fold ``f``,
    ``fit_predict(f, train, val)`` fits on the ``train`` indices and returns ``(probabilities of
    the val indices, anything to keep)``. Returns the out-of-fold frame (:func:`cv_frame`: one
    row per sample, ``index, patient_id, fold, y_true, prob``) and the kept things, one per fold.
    """
    y = np.asarray(labels).astype(int).ravel()
    groups = np.asarray([str(g) for g in groups])
    if folds is None:
        folds = list(patient_kfold(groups, y, k=k, seed=seed))
    probs, kept = {}, []
    for f, (train, val) in enumerate(tqdm(folds, desc=desc, disable=not progress)):
        probs[f], extra = fit_predict(f, train, val)
        kept.append(extra)
    return cv_frame(groups, y, folds, probs), kept


def logistic_pipeline(C: float = 1.0, impute_median: bool = False, model=None):
    """The one logistic pipeline: z-scored features (missing values first filled with the training
    median when ``impute_median``), then L2 logistic regression with strength ``C`` (or ``model``,
    e.g. :func:`inner_logistic`'s cross-validated one)."""
    steps = [SimpleImputer(strategy="median", keep_empty_features=True)] if impute_median else []
    return make_pipeline(*steps, StandardScaler(), model if model is not None else LogisticRegression(C=C, max_iter=5000))


def cross_validate(
    features: Features,
    labels: Sequence[int],
    groups: Sequence,
    k: int = 5,
    make_model: Callable[[], keras.Model] | None = None,
    fit_kwargs: dict | None = None,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Patient-grouped, stratified k-fold CV of a head; out-of-fold probabilities.

    Returns a DataFrame with one row per sample: ``index, patient_id, fold, y_true, prob``
    (``prob`` comes from the model that never saw that patient). ``make_model()`` builds a fresh
    uncompiled model per fold (default: :func:`paper_head` on the flattened features, in which
    case features are flattened); ``fit_kwargs`` go to :func:`train_head` (epochs, batch_size, lr,
    lr_decay, ...). Per-fold training histories are in ``df.attrs['histories']``.
    """
    n = n_samples(features)
    y = check_labels(labels, n).astype(int)
    groups = np.asarray([str(g) for g in groups])
    if len(groups) != n:
        raise ValueError(f"got {len(groups)} patient ids for {n} samples")
    X = features if make_model is not None else flatten_features(features)
    fit_kwargs = dict(fit_kwargs or {})
    reuse = FoldModel()  # one compiled network for all folds (each fold still starts from its own fresh one)

    def fit_predict(f, train, val):
        model = make_model() if make_model is not None else None
        model, hist = train_head(take_samples(X, train), y[train], take_samples(X, val), y[val], seed=seed + f,
                                 model=model, reuse=reuse, **fit_kwargs)
        return predict_head(model, take_samples(X, val)), hist

    df, histories = fold_loop(groups, y, k, seed, fit_predict, "cross-validation", progress)
    df.attrs["histories"] = histories
    return df


def logistic_cv(
    features: Features,
    labels: Sequence[int],
    groups: Sequence,
    k: int = 5,
    seed: int = 0,
    C: float = 1.0,
    progress: bool = True,
) -> pd.DataFrame:
    """The same patient folds as :func:`cross_validate` (same ``seed``), with standardised
    L2-regularised logistic regression, ``p = 1 / (1 + exp(-(w . z + b)))`` on z-scored features.

    Fast and interpretable; fitted pipelines are in ``df.attrs['models']``.
    """
    X = flatten_features(features)
    y = check_labels(labels, len(X)).astype(int)
    groups = np.asarray([str(g) for g in groups])
    if len(groups) != len(X):
        raise ValueError(f"got {len(groups)} patient ids for {len(X)} samples")

    def fit_predict(f, train, val):
        pipe = logistic_pipeline(C).fit(X[train], y[train])
        return pipe.predict_proba(X[val])[:, 1], pipe

    df, models = fold_loop(groups, y, k, seed, fit_predict, "logistic CV", progress)
    df.attrs["models"] = models
    return df


def choose_threshold(y_true: Sequence[int], prob: Sequence[float], criterion: str = "youden") -> float:
    """Decision threshold (predict Damaged when ``prob >= threshold``), chosen on validation data.

    - ``'youden'``: maximise Youden's J = sensitivity + specificity - 1 = TPR - FPR
    - ``'f1'``: maximise F1 = 2TP / (2TP + FP + FN)

    Ties go to the highest threshold. Use on validation folds only, never on the test fold.
    """
    y = check_labels(y_true, len(np.asarray(prob).ravel())).astype(int)
    p = np.asarray(prob, dtype=float).ravel()
    if len(np.unique(y)) < 2:
        raise ValueError("choose_threshold needs both classes in y_true")
    if criterion == "youden":
        fpr, tpr, thr = roc_curve(y, p)  # thresholds in decreasing order
        j = np.where(np.isfinite(thr), tpr - fpr, -np.inf)
        return float(thr[int(np.argmax(j >= j.max() - 1e-12))])  # first = highest among ties
    if criterion == "f1":
        cands = np.unique(p)[::-1]
        scores = np.array([f1_score(y, p >= t, zero_division=0.0) for t in cands])
        return float(cands[int(np.argmax(scores >= scores.max() - 1e-12))])
    raise ValueError(f"criterion must be 'youden' or 'f1', got {criterion!r}")


@dataclass
class CVResult:
    """Out-of-fold predictions of one run and what it cost.

    ``oof``: one row per sample, ``index, patient_id, fold, y_true, prob`` (from the model that
    never saw that patient). ``info``: the run's description (data, input, backbone, weights,
    head, sizes, epochs). ``cpu_minutes``/``wall_minutes``: the whole run (features included
    unless they came from the cache).
    """

    name: str
    oof: pd.DataFrame
    info: dict = field(default_factory=dict)
    cpu_minutes: float = float("nan")
    wall_minutes: float = float("nan")
    cached: bool = False

    def summary(self, criterion: str = "youden") -> dict:
        """Accuracy at 0.5 and at the validation-chosen thresholds, AUROC, n."""
        t = fold_thresholds(self.oof, criterion)
        y, p = t["y_true"].to_numpy(), t["prob"].to_numpy()
        both = len(np.unique(y)) == 2
        return {
            "run": self.name, "data": self.info.get("data", ""), "weights": self.info.get("weights", ""),
            "n": int(len(y)), "accuracy@0.5": float(((p >= 0.5) == y).mean()),
            "accuracy": float((t["y_pred"] == y).mean()),
            "auroc": float(roc_auc_score(y, p)) if both else float("nan"),
            "cpu_minutes": self.cpu_minutes, "wall_minutes": self.wall_minutes,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        self.oof.to_csv(d / "oof.csv", index=False)
        meta = {"name": self.name, "info": self.info, "cpu_minutes": self.cpu_minutes,
                "wall_minutes": self.wall_minutes}
        write_json(d / "result.json", meta, indent=1)
        return d

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "CVResult":
        d = Path(folder)
        meta = json.loads((d / "result.json").read_text())
        oof = pd.read_csv(d / "oof.csv", dtype={"patient_id": str})
        return cls(meta["name"], oof, meta["info"], meta["cpu_minutes"], meta["wall_minutes"], cached=True)


def cached_run(out_dir: str | os.PathLike | None, name: str, config: dict,
               run: Callable[[], pd.DataFrame]) -> CVResult:
    """Return the finished run ``name`` with this ``config`` from ``out_dir/cls_runs`` or run it
    (``run()`` returns the out-of-fold frame; its cost is measured) and save it there."""
    folder = None if out_dir is None else Path(out_dir) / "cls_runs" / f"{name}-{run_key(config)}"
    if folder is not None and (folder / "result.json").is_file() and (folder / "oof.csv").is_file():
        return CVResult.load(folder)
    from spinelib.core.runs import quiet_tensorflow

    with cpu_cost() as cost, quiet_tensorflow():  # each fold builds a new model: no retracing warnings
        oof = run()
    result = CVResult(name, oof, dict(config), cost["cpu_minutes"], cost["wall_minutes"])
    if folder is not None:
        result.save(folder)
    return result


def fold_features(features, f: int):
    return features(f) if callable(features) else features


def cross_validate_features(
    features,
    labels: Sequence[int],
    groups: Sequence,
    k: int = 5,
    head: str = "paper",
    fit_kwargs: dict | None = None,
    seed: int = 0,
    keep_models: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Patient-grouped stratified k-fold CV on frozen features; out-of-fold probabilities.

    ``features``: ``(n, ...)``, a tuple of views ``(ap, lat)``, or a callable ``fold -> features``
    (per-fold features, e.g. from a fold's own in-domain encoder). ``head``: ``'paper'``
    (:func:`spinelib.cls.heads.paper_head` on the flattened views, trained by
    :func:`spinelib.cls.heads.train_head` with ``fit_kwargs``) or ``'logistic'`` (z-scored,
    L2 logistic regression). Folds are :func:`spinelib.data.splits.patient_kfold` ``(groups, labels,
    k, seed)``, the same as every other run with that seed. With ``keep_models`` the fitted
    models are in ``df.attrs['models']`` (one per fold).
    """
    if head not in ("paper", "logistic"):
        raise ValueError(f"head must be 'paper' or 'logistic', got {head!r}")
    y = np.asarray(labels).astype(int).ravel()
    reuse = None if keep_models else FoldModel()  # kept models must be one per fold

    def fit_predict(f, train, val):
        X = flatten_features(fold_features(features, f))
        if head == "paper":
            model, _ = train_head(X[train], y[train], seed=seed + f, reuse=reuse, **(fit_kwargs or {}))
            return np.asarray(model.predict(X[val], verbose=0, batch_size=64)).ravel(), model
        model = logistic_pipeline((fit_kwargs or {}).get("C", 1.0)).fit(X[train], y[train])
        return model.predict_proba(X[val])[:, 1], model

    df, models = fold_loop(groups, y, k, seed, fit_predict, f"CV ({head} head)", progress)
    if keep_models:
        df.attrs["models"] = models
    return df


def fold_thresholds(oof: pd.DataFrame, criterion: str = "youden") -> pd.DataFrame:
    """Add ``threshold`` and ``y_pred``: fold ``f``'s threshold is chosen
    (:func:`spinelib.cls.cv.choose_threshold`) on the out-of-fold predictions of the *other*
    folds only, so no test patient's label or prediction sets its own threshold. The threshold is
    then moved midway to the next lower validation probability (the same validation decisions,
    but not on a data point: with separable validation predictions it falls between the
    classes). A fold whose other folds hold one class only falls back to 0.5."""
    need = {"fold", "y_true", "prob"}
    if not need <= set(oof.columns):
        raise ValueError(f"oof lacks columns {sorted(need - set(oof.columns))}")
    out = oof.copy()
    out["threshold"] = 0.5
    for f in sorted(out["fold"].unique()):
        other = out[out["fold"] != f]
        if other["y_true"].nunique() == 2:
            t = choose_threshold(other["y_true"], other["prob"], criterion)
            below = other["prob"][other["prob"] < t]
            if len(below):  # midway into the gap: same validation decisions, no boundary on a data point
                t = (t + float(below.max())) / 2
            out.loc[out["fold"] == f, "threshold"] = t
    out["y_pred"] = (out["prob"] >= out["threshold"]).astype(int)
    return out


MORPHOMETRIC_CS: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
"""The inverse regularisation strengths that :func:`morphometric_cv` chooses from (``C_="cv"``)."""


def inner_logistic(X_train, y_train, groups_train, seed: int):
    """L2 logistic regression whose ``C`` is chosen by an inner cross-validation on the training
    folds only (log loss, stratified and grouped by patient): nested, so the outer folds that
    report the accuracy never choose it."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedGroupKFold

    n_inner = int(min(4, np.bincount(y_train).min(), len(set(groups_train))))
    if n_inner < 2:  # too few patients for an inner split: the default strength
        return LogisticRegression(C=1.0, max_iter=5000)
    splits = list(StratifiedGroupKFold(n_splits=n_inner, shuffle=True, random_state=seed).split(
        X_train, y_train, groups_train))
    return LogisticRegressionCV(Cs=list(MORPHOMETRIC_CS), cv=splits, scoring="neg_log_loss", max_iter=5000,
                                l1_ratios=(0.0,), use_legacy_attributes=False)  # plain L2, scikit-learn 1.9 API
