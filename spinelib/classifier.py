"""The paper's final classifier: a small dense head on frozen backbone features of AP + LAT X-rays.

Paper, section 3.3: ResNet-50 (ImageNet) features of the AP and of the LAT X-ray (16x8x2048 each
at 512x256) are flattened and concatenated (524,288 numbers), then

    Dense(20, relu) -> Dense(12, relu) -> Dense(1, sigmoid)

    parameters = 524288*20 + 20  +  20*12 + 12  +  12*1 + 1 = 10,485,780 + 252 + 13 = 10,486,045

trained with binary cross-entropy and a decaying learning rate. Here the head is evaluated by
patient-grouped k-fold cross-validation (out-of-fold probabilities), next to a logistic-regression
baseline on the same folds; thresholds are chosen on validation data only.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np
import pandas as pd
from keras import layers
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_curve
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from spinelib.config import set_seed
from spinelib.splits import patient_kfold

PAPER_HIDDEN: tuple[int, ...] = (20, 12)
PAPER_FEATURE_SHAPE: tuple[int, int, int] = (16, 8, 2048)  # ResNet-50 at 512x256, per view
PAPER_HEAD_PARAMS = 10_486_045

Features = np.ndarray | Sequence[np.ndarray]
"""One array ``(n, ...)``, or one per view (``(ap, lat)``) for :func:`two_view_head`."""


def head_parameter_count(n_features: int, hidden: Sequence[int] = PAPER_HIDDEN) -> int:
    """Parameters of ``n_features -> hidden... -> 1``: sum of ``(fan_in + 1) * fan_out``."""
    sizes = [int(n_features), *[int(h) for h in hidden], 1]
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def _dense_stack(x, hidden: Sequence[int], dropout: float):
    for i, units in enumerate(hidden, start=1):
        x = layers.Dense(int(units), activation="relu", name=f"dense_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    return layers.Dense(1, activation="sigmoid", name="damaged_probability")(x)


def _check_hidden(hidden, dropout):
    if any(not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
        raise ValueError(f"hidden must be positive integers, got {tuple(hidden)!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


def paper_head(n_features: int, hidden: Sequence[int] = PAPER_HIDDEN, dropout: float = 0.0,
               name: str = "paper_head") -> keras.Model:
    """``n_features`` (flattened AP+LAT features) -> Dense 20 relu -> Dense 12 relu -> Dense 1 sigmoid.

    ``paper_head(2 * 16 * 8 * 2048).count_params() == 10_486_045``.
    """
    if not isinstance(n_features, (int, np.integer)) or n_features < 1:
        raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
    _check_hidden(hidden, dropout)
    inputs = keras.Input(shape=(int(n_features),), name="features")
    return keras.Model(inputs, _dense_stack(inputs, hidden, dropout), name=name)


def two_view_head(feature_shape_ap: Sequence[int], feature_shape_lat: Sequence[int],
                  hidden: Sequence[int] = PAPER_HIDDEN, dropout: float = 0.0,
                  name: str = "two_view_head") -> keras.Model:
    """Two inputs (AP and LAT feature maps), each flattened, concatenated, then the paper's head.

    Same parameters as ``paper_head(prod(ap) + prod(lat))``.
    """
    _check_hidden(hidden, dropout)
    ap = keras.Input(shape=tuple(int(s) for s in feature_shape_ap), name="ap_features")
    lat = keras.Input(shape=tuple(int(s) for s in feature_shape_lat), name="lat_features")
    x = layers.Concatenate(name="ap_lat")([layers.Flatten(name="ap_flat")(ap), layers.Flatten(name="lat_flat")(lat)])
    return keras.Model([ap, lat], _dense_stack(x, hidden, dropout), name=name)


def _n_samples(X: Features) -> int:
    return len(X[0]) if isinstance(X, (list, tuple)) else len(X)


def _take(X: Features, idx: np.ndarray) -> Features:
    return [np.asarray(x)[idx] for x in X] if isinstance(X, (list, tuple)) else np.asarray(X)[idx]


def flatten_features(X: Features) -> np.ndarray:
    """``(n, ...)`` or ``(ap, lat)`` -> one ``(n, d)`` float32 matrix (views concatenated)."""
    parts = list(X) if isinstance(X, (list, tuple)) else [X]
    n = len(parts[0])
    if any(len(p) != n for p in parts):
        raise ValueError(f"views have different numbers of samples: {[len(p) for p in parts]}")
    return np.concatenate([np.asarray(p, np.float32).reshape(n, -1) for p in parts], axis=1)


def _labels(y, n: int) -> np.ndarray:
    y = np.asarray(y).ravel()
    if len(y) != n:
        raise ValueError(f"got {len(y)} labels for {n} samples")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 (Normal) or 1 (Damaged), got values {np.unique(y)[:10]}")
    return y.astype(np.float32)


def train_head(
    X_train: Features,
    y_train: Sequence[int],
    X_val: Features | None = None,
    y_val: Sequence[int] | None = None,
    epochs: int = 50,
    batch_size: int = 1,
    lr: float = 1e-4,
    seed: int = 0,
    lr_decay: bool = True,
    verbose: int = 0,
    model: keras.Model | None = None,
    class_weight: dict[int, float] | None = None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Train a head with binary cross-entropy and Adam; return ``(model, history)``.

    ``model`` defaults to :func:`paper_head` on the flattened features (a two-input model gets
    ``[ap, lat]``). With ``lr_decay`` the learning rate falls exponentially to a tenth over the run:
    ``lr(step) = lr * 0.1 ** (step / (epochs * steps_per_epoch))``. ``X_val`` only feeds the
    history (no early stopping or plateau schedule), so it may be the held-out fold.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if (X_val is None) != (y_val is None):
        raise ValueError("give both X_val and y_val, or neither")
    set_seed(seed)
    n = _n_samples(X_train)
    y_train = _labels(y_train, n)
    if model is None:
        X_train = flatten_features(X_train)
        X_val = None if X_val is None else flatten_features(X_val)
        model = paper_head(X_train.shape[1])
    else:  # a multi-input model takes a list of arrays
        X_train = list(X_train) if isinstance(X_train, (list, tuple)) else X_train
        X_val = list(X_val) if isinstance(X_val, (list, tuple)) else X_val
    steps = int(np.ceil(n / batch_size)) * epochs
    schedule = keras.optimizers.schedules.ExponentialDecay(lr, decay_steps=steps, decay_rate=0.1) if lr_decay else lr
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="binary_crossentropy",
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")])
    val = None if X_val is None else (X_val, _labels(y_val, _n_samples(X_val)))
    hist = model.fit(X_train, y_train, validation_data=val, epochs=epochs, batch_size=batch_size,
                     shuffle=True, verbose=verbose, class_weight=class_weight)
    return model, {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def _predict(model: keras.Model, X: Features) -> np.ndarray:
    x = list(X) if isinstance(X, (list, tuple)) else X
    return np.asarray(model.predict(x, verbose=0, batch_size=64)).ravel()


def _cv_frame(groups, labels, folds: list[tuple[np.ndarray, np.ndarray]], probs: dict[int, np.ndarray]) -> pd.DataFrame:
    rows = []
    for f, (_, val) in enumerate(folds):
        for i, p in zip(val, probs[f]):
            rows.append({"index": int(i), "patient_id": str(groups[i]), "fold": f, "y_true": int(labels[i]), "prob": float(p)})
    return pd.DataFrame(rows).sort_values("index").reset_index(drop=True)


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
    n = _n_samples(features)
    y = _labels(labels, n).astype(int)
    groups = np.asarray([str(g) for g in groups])
    if len(groups) != n:
        raise ValueError(f"got {len(groups)} patient ids for {n} samples")
    folds = list(patient_kfold(groups, y, k=k, seed=seed))
    X = features if make_model is not None else flatten_features(features)
    fit_kwargs = dict(fit_kwargs or {})
    probs, histories = {}, []
    for f, (train, val) in enumerate(tqdm(folds, desc="cross-validation", disable=not progress)):
        model = make_model() if make_model is not None else None
        model, hist = train_head(_take(X, train), y[train], _take(X, val), y[val], seed=seed + f,
                                 model=model, **fit_kwargs)
        probs[f] = _predict(model, _take(X, val))
        histories.append(hist)
    df = _cv_frame(groups, y, folds, probs)
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
    y = _labels(labels, len(X)).astype(int)
    groups = np.asarray([str(g) for g in groups])
    if len(groups) != len(X):
        raise ValueError(f"got {len(groups)} patient ids for {len(X)} samples")
    folds = list(patient_kfold(groups, y, k=k, seed=seed))
    probs, models = {}, []
    for f, (train, val) in enumerate(tqdm(folds, desc="logistic CV", disable=not progress)):
        pipe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
        pipe.fit(X[train], y[train])
        probs[f] = pipe.predict_proba(X[val])[:, 1]
        models.append(pipe)
    df = _cv_frame(groups, y, folds, probs)
    df.attrs["models"] = models
    return df


def choose_threshold(y_true: Sequence[int], prob: Sequence[float], criterion: str = "youden") -> float:
    """Decision threshold (predict Damaged when ``prob >= threshold``), chosen on validation data.

    - ``'youden'``: maximise Youden's J = sensitivity + specificity - 1 = TPR - FPR
    - ``'f1'``: maximise F1 = 2TP / (2TP + FP + FN)

    Ties go to the highest threshold. Use on validation folds only, never on the test fold.
    """
    y = _labels(y_true, len(np.asarray(prob).ravel())).astype(int)
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
