"""Segment, then measure: disjoint training data, trained segmenters, predicted-mask features."""

import numpy as np
import pytest

from spinelib.cls import cv
from spinelib.core import plans
from spinelib.core.config import get_profile
from spinelib.core.provenance import assert_unchanged
from spinelib.data import clsdata
from spinelib.data.synthetic.generator import generate_dataset
from spinelib.geometry.morphometrics import SYNTHETIC_FEATURES
from spinelib.paper import final_classifier, segment_measure


@pytest.fixture(scope="module")
def segmenter_set(tmp_path_factory, tiny_synthetic):
    plan = plans.plan("tiny")
    root = tmp_path_factory.mktemp("seg-train") / "synthetic"
    generate_dataset(root, n_patients=plan.segmenter_patients, seed=plan.segmenter_seed_offset,
                     scale=get_profile("tiny").synthetic_scale, progress=False)
    return root


def test_check_disjoint_refuses_shared_patients(tiny_synthetic, segmenter_set, tmp_path):
    segment_measure.check_disjoint(segmenter_set, tiny_synthetic)  # another seed: no shared patient
    with pytest.raises(ValueError, match="same folder"):
        segment_measure.check_disjoint(tiny_synthetic, tiny_synthetic)
    copy = tmp_path / "same-seed"
    generate_dataset(copy, n_patients=3, seed=0, scale=get_profile("tiny").synthetic_scale, progress=False)
    with pytest.raises(ValueError, match="also in"):
        segment_measure.check_disjoint(copy, tiny_synthetic)


def test_train_then_measure_predicted_masks(tiny_synthetic, segmenter_set, tmp_path):
    plan = plans.segmenter_plan("tiny")  # the part page 5 passes; a whole Plan works the same
    with assert_unchanged(tiny_synthetic, segmenter_set):
        paths = segment_measure.train_segmenters(segmenter_set, tmp_path, plan, progress=False)
        assert set(paths) == {"AP", "LAT"} and all(p.is_file() for p in paths.values())
        mtimes = {v: p.stat().st_mtime for v, p in paths.items()}
        again = segment_measure.train_segmenters(segmenter_set, tmp_path, plan, progress=False)  # finished: reused
        assert {v: p.stat().st_mtime for v, p in again.items()} == mtimes
        data = clsdata.load_synthetic_inputs(tiny_synthetic, (64, 32), with_masks=False, progress=False)
        feats, dice = segment_measure.predicted_morphometrics(data, paths, tmp_path, progress=False)
    assert list(feats.columns) == list(SYNTHETIC_FEATURES) and len(feats) == len(data)
    assert len(dice) == 3 * len(data)
    assert set(dice["structure"]) == {"Ap_Vertebra", "Lat_Vertebra", "Lat_Disk_Height"}
    assert dice["dice"].between(0, 1).all()
    cached, cached_dice = segment_measure.predicted_morphometrics(data, paths, tmp_path, progress=False)
    np.testing.assert_allclose(cached.to_numpy(float), feats.to_numpy(float), equal_nan=True)
    assert len(list((tmp_path / "morphometrics").glob("synthetic-predicted-*.csv"))) == 2
    summary = segment_measure.dice_summary(dice)
    assert list(summary.index) == sorted(set(dice["structure"])) and (summary["patients"] == len(data)).all()


def test_predicted_morphometrics_needs_both_segmenters(tiny_synthetic, tmp_path):
    data = clsdata.load_synthetic_inputs(tiny_synthetic, (64, 32), with_masks=False, progress=False)
    with pytest.raises(FileNotFoundError, match="train_segmenters"):
        segment_measure.predicted_morphometrics(data, {"AP": tmp_path / "missing.keras"}, progress=False)


def _inputs(n: int, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    ids = np.array([f"ID ({i})" for i in range(n)])
    blank = np.zeros((n, 8, 4, 1), np.float32)
    data = clsdata.ClassificationInputs("synthetic", blank, blank, None, labels, ids, pd.DataFrame({"i": range(n)}))
    feats = pd.DataFrame({"signal": labels * 2.0 + rng.normal(0, 0.5, n), "noise": rng.normal(0, 1, n)})
    return data, feats


@pytest.mark.parametrize("C_", [1.0, "cv"])
def test_morphometric_cv_learns_a_signal_out_of_fold(C_):
    data, feats = _inputs(40)
    res = final_classifier.morphometric_cv("toy", feats, data, get_profile("ci"), None, C_=C_)
    assert len(res.oof) == 40 and set(res.oof["fold"]) == set(range(5))
    assert ((res.oof.prob > 0.5) == res.oof.y_true).mean() > 0.85
    assert len(res.info["C per fold"]) == 5
    if C_ == "cv":  # chosen on the training folds, from the grid
        assert set(res.info["C per fold"]) <= set(cv.MORPHOMETRIC_CS)
    else:
        assert res.info["C per fold"] == [1.0] * 5
    assert (res.coefficients["signal"].abs() > res.coefficients["noise"].abs()).all()


def test_morphometric_cv_rejects_bad_input():
    data, feats = _inputs(20)
    with pytest.raises(ValueError, match="C_"):
        final_classifier.morphometric_cv("toy", feats, data, get_profile("ci"), None, C_=0)
    with pytest.raises(ValueError, match="feature rows"):
        final_classifier.morphometric_cv("toy", feats.iloc[:10], data, get_profile("ci"), None)
