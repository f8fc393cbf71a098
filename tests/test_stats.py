"""The one bootstrap (spinelib.core.stats): what it resamples and how its interval reads."""

from __future__ import annotations

import numpy as np
import pytest

from spinelib.core.stats import bootstrap_indices, percentile_interval


def test_case_bootstrap_is_seeded_and_draws_every_row_with_replacement():
    a = bootstrap_indices(7, 50, seed=3)
    assert a.shape == (50, 7) and a.min() >= 0 and a.max() <= 6
    assert (a == bootstrap_indices(7, 50, seed=3)).all() and not (a == bootstrap_indices(7, 50, seed=4)).all()
    assert any(len(set(row)) < 7 for row in a)  # with replacement: some case drawn twice


def test_patient_bootstrap_keeps_every_patient_whole():
    groups = ["a", "a", "a", "b", "c", "c"]
    for idx in bootstrap_indices(6, 40, seed=0, groups=groups):
        drawn = [groups[i] for i in idx]
        for patient, size in (("a", 3), ("b", 1), ("c", 2)):
            assert drawn.count(patient) % size == 0  # all of a patient's images, or none
    with pytest.raises(ValueError, match="patient ids for 6 cases"):
        bootstrap_indices(6, 10, groups=["a"])


def test_percentile_interval_skips_undefined_resamples_and_checks_its_level():
    v = np.r_[np.arange(101.0), np.nan]
    assert percentile_interval(v, alpha=0.1) == pytest.approx((5.0, 95.0))
    assert percentile_interval(v, level=0.9) == pytest.approx((5.0, 95.0))
    assert all(np.isnan(percentile_interval([np.nan, np.nan])))
    with pytest.raises(ValueError, match="n_boot must be a positive integer"):
        bootstrap_indices(5, 0)
    with pytest.raises(ValueError, match="alpha must be in"):
        percentile_interval(v, alpha=1.5)
