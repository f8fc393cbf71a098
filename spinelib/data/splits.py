"""Patient-level splits: no patient ever has images on both sides of a split.

Used by the clinical, synthetic and AASCE data alike (several AASCE images belong to one patient).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold


def _groups(patient_ids: Sequence) -> np.ndarray:
    ids = np.asarray([str(p) for p in patient_ids])
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError("patient_ids must be a non-empty 1-D sequence")
    return ids


def patient_split(patient_ids: Sequence, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation split by patient: ``(train_idx, val_idx)`` (sorted index arrays).

    About ``val_fraction`` of the *patients* (not images) go to validation, at least one patient
    on each side.
    """
    ids = _groups(patient_ids)
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    n_groups = len(np.unique(ids))
    if n_groups < 2:
        raise ValueError(f"need at least 2 distinct patients to split, got {n_groups}")
    n_val = min(max(1, int(round(val_fraction * n_groups))), n_groups - 1)
    splitter = GroupShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
    train, val = next(splitter.split(np.zeros(len(ids)), groups=ids))
    return np.sort(train), np.sort(val)


def patient_kfold(patient_ids: Sequence, labels: Sequence, k: int = 5, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``k`` folds of ``(train_idx, val_idx)`` grouped by patient and stratified by ``labels``
    (``sklearn.model_selection.StratifiedGroupKFold`` with shuffling)."""
    ids = _groups(patient_ids)
    y = np.asarray(labels)
    if len(y) != len(ids):
        raise ValueError(f"labels has {len(y)} entries but patient_ids has {len(ids)}")
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    n_groups = len(np.unique(ids))
    if k > n_groups:
        raise ValueError(f"k={k} folds need at least {k} distinct patients, got {n_groups}")
    cv = StratifiedGroupKFold(n_splits=int(k), shuffle=True, random_state=seed)
    for train, val in cv.split(np.zeros(len(ids)), y, groups=ids):
        yield np.sort(train), np.sort(val)
