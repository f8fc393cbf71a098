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

from typing import Sequence

import keras
import numpy as np
from keras import layers

from spinelib.core.config import Profile, set_seed

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
    return layers.Dense(1, activation="sigmoid", name="damaged_probability", dtype="float32")(x)


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


def n_samples(X: Features) -> int:
    return len(X[0]) if isinstance(X, (list, tuple)) else len(X)


def take_samples(X: Features, idx: np.ndarray) -> Features:
    return [np.asarray(x)[idx] for x in X] if isinstance(X, (list, tuple)) else np.asarray(X)[idx]


def flatten_features(X: Features) -> np.ndarray:
    """``(n, ...)`` or ``(ap, lat)`` -> one ``(n, d)`` float32 matrix (views concatenated)."""
    parts = list(X) if isinstance(X, (list, tuple)) else [X]
    n = len(parts[0])
    if any(len(p) != n for p in parts):
        raise ValueError(f"views have different numbers of samples: {[len(p) for p in parts]}")
    return np.concatenate([np.asarray(p, np.float32).reshape(n, -1) for p in parts], axis=1)


def check_labels(y, n: int) -> np.ndarray:
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
    reuse: "FoldModel | None" = None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Train a head with binary cross-entropy and Adam; return ``(model, history)``.

    ``model`` defaults to :func:`paper_head` on the flattened features (a two-input model gets
    ``[ap, lat]``). With ``lr_decay`` the learning rate falls exponentially to a tenth over the run:
    ``lr(step) = lr * 0.1 ** (step / (epochs * steps_per_epoch))``. ``X_val`` only feeds the
    history (no early stopping or plateau schedule), so it may be the held-out fold.

    ``reuse`` (a :class:`FoldModel`, one per cross-validation): train the compiled network of an
    earlier fold, loaded with this fold's fresh ``model`` (same start, no new graphs); the returned
    model is then that shared one, so use its predictions before the next fold trains it.
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
    n = n_samples(X_train)
    y_train = check_labels(y_train, n)
    if model is None:
        X_train = flatten_features(X_train)
        X_val = None if X_val is None else flatten_features(X_val)
        model = paper_head(X_train.shape[1])
    else:  # a multi-input model takes a list of arrays
        X_train = list(X_train) if isinstance(X_train, (list, tuple)) else X_train
        X_val = list(X_val) if isinstance(X_val, (list, tuple)) else X_val
    steps = int(np.ceil(n / batch_size)) * epochs
    settings = (float(lr), bool(lr_decay))
    if reuse is not None and reuse.fits(model, settings):
        model = reuse.load(model, steps)
    else:
        schedule = _Decay(lr, steps) if lr_decay else lr
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss="binary_crossentropy",
                      metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")])
        if reuse is not None:
            reuse.keep(model, settings, schedule if lr_decay else None)
    val = None if X_val is None else (X_val, check_labels(y_val, n_samples(X_val)))
    hist = model.fit(X_train, y_train, validation_data=val, epochs=epochs, batch_size=batch_size,
                     shuffle=True, verbose=verbose, class_weight=class_weight)
    return model, {k: [float(v) for v in vals] for k, vals in hist.history.items()}


class _Decay(keras.optimizers.schedules.ExponentialDecay):
    """:func:`train_head`'s decay, ``lr * 0.1 ** (step / decay_steps)``, with ``decay_steps`` held in
    a variable, so that a compiled network trains the next fold (another number of steps) without
    tracing its graphs again. The same operations as Keras' ``ExponentialDecay`` on a constant."""

    def __init__(self, lr: float, decay_steps: int):
        super().__init__(lr, decay_steps=decay_steps, decay_rate=0.1)
        self.decay_steps = keras.Variable(float(decay_steps), dtype="float32", trainable=False, name="decay_steps")

    def get_config(self):
        return dict(super().get_config(), decay_steps=float(keras.ops.convert_to_numpy(self.decay_steps)))


class FoldModel:
    """One compiled network for every fold of a cross-validation (:func:`train_head` ``reuse=``).

    Each fold still builds its own fresh network, so it starts from the weights it always did; that
    network's state (weights, batch-norm statistics, random-seed states) is copied into the network
    compiled at the first fold, the optimizer's state is zeroed and the learning-rate decay gets
    the fold's number of steps. So Keras traces the train, test and predict graphs once per
    cross-validation instead of once per fold (13 s a fold for a ResNet-50 on this CPU). A fresh
    network of another architecture (or other training settings) is compiled and kept instead."""

    def __init__(self):
        self.model: keras.Model | None = None
        self._settings = None
        self._schedule: _Decay | None = None
        self.folds_reused = 0

    @staticmethod
    def _layout(model: keras.Model) -> list:
        return [(tuple(v.shape), str(v.dtype)) for v in model.variables]

    def fits(self, fresh: keras.Model, settings) -> bool:
        """Whether ``fresh`` can train on the kept compiled network."""
        return (self.model is not None and self._settings == settings and fresh is not self.model
                and type(fresh) is type(self.model) and self._layout(fresh) == self._layout(self.model))

    def keep(self, model: keras.Model, settings, schedule: _Decay | None) -> None:
        self.model, self._settings, self._schedule = model, settings, schedule

    def load(self, fresh: keras.Model, steps: int) -> keras.Model:
        """The kept network, holding ``fresh``'s state, with a zeroed optimizer and ``steps`` of decay."""
        for kept, new in zip(self.model.variables, fresh.variables):
            kept.assign(new)
        optimizer = self.model.optimizer
        lr_variable = getattr(optimizer, "_learning_rate", None)
        for v in optimizer.variables:
            if v is not lr_variable:
                v.assign(keras.ops.zeros_like(v))
        if self._schedule is not None:
            self._schedule.decay_steps.assign(float(steps))
        self.folds_reused += 1
        return self.model


def predict_head(model: keras.Model, X: Features) -> np.ndarray:
    x = list(X) if isinstance(X, (list, tuple)) else X
    return np.asarray(model.predict(x, verbose=0, batch_size=64)).ravel()


def paper_fit_kwargs(profile: Profile) -> dict:
    """The paper's head training (section 3.3): BCE, Adam with a decaying learning rate
    (1e-4 to 1e-5), ``cls_epochs`` epochs at ``cls_batch_size``."""
    return {"epochs": int(profile.cls_epochs), "batch_size": int(profile.cls_batch_size), "lr": 1e-4, "lr_decay": True}
