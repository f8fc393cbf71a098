"""The one bootstrap of the package: resampling cases, or patients with all their images.

Every confidence interval of the book (:func:`spinelib.seg.metrics.bootstrap_ci`,
:func:`spinelib.cls.metrics.bootstrap_ci`, :func:`spinelib.cls.metrics.classification_report_table`,
:func:`spinelib.paper.final_classifier.patient_bootstrap_auroc`) draws its resamples here and
takes its percentile interval here. The draws are those of ``numpy.random.default_rng(seed)``,
``n_boot`` rows of ``n`` indices, so the intervals are the same as before the helpers existed.
(``scipy.stats.bootstrap`` would give other resamples, and so other numbers than the recorded
ones; its BCa interval is not needed for the book's means and rates.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bootstrap_indices(n: int, n_boot: int, seed: int = 0, groups: Sequence | None = None) -> list[np.ndarray] | np.ndarray:
    """Indices of ``n_boot`` bootstrap resamples of ``n`` cases, drawn with replacement.

    Without ``groups``: an ``(n_boot, n)`` array. With ``groups`` (one patient id per case): a
    list of ``n_boot`` index arrays, each made of as many patients as there are, drawn with
    replacement, every drawn patient contributing all of its cases (a cluster bootstrap).
    """
    if not isinstance(n_boot, (int, np.integer)) or isinstance(n_boot, bool) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if n < 1:
        raise ValueError(f"nothing to resample: n = {n}")
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.integers(0, n, size=(int(n_boot), n))
    g = np.asarray([str(x) for x in groups])
    if len(g) != n:
        raise ValueError(f"{len(g)} patient ids for {n} cases")
    patients, inverse = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(patients))]
    return [np.concatenate([members[i] for i in rng.integers(0, len(patients), len(patients))])
            for _ in range(int(n_boot))]


def percentile_interval(values, alpha: float = 0.05, level: float | None = None) -> tuple[float, float]:
    """The ``alpha / 2`` and ``1 - alpha / 2`` quantiles of bootstrap ``values``, or with ``level``
    the ``(1 - level) / 2`` and ``(1 + level) / 2`` ones (the segmentation summaries' spelling,
    kept because in floating point it is not exactly the same quantile and the recorded intervals
    used it). NaNs, from resamples where a measure is undefined, are left out; all NaN gives NaN."""
    q = [alpha / 2, 1 - alpha / 2] if level is None else [(1 - level) / 2, (1 + level) / 2]
    if not 0 < q[0] < q[1] < 1:
        raise ValueError(f"alpha must be in (0, 1) and level in (0, 1), got alpha={alpha!r}, level={level!r}")
    v = np.asarray(values, dtype=float)
    if not np.isfinite(v).any():
        return float("nan"), float("nan")
    lo, hi = np.nanquantile(v, q)
    return float(lo), float(hi)
