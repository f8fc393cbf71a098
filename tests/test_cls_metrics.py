"""Classification measures: the paper's Figure 9 numbers, bootstrap intervals, figures."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from spinelib.cls import metrics as cls_metrics

matplotlib.use("Agg")

PAPER_TABLE = {  # Figure 9 of the paper, 4 decimals
    "sensitivity": 0.9787, "specificity": 0.9198, "precision": 0.9200, "npv": 0.9787, "fpr": 0.0802,
    "fdr": 0.0800, "fnr": 0.0213, "accuracy": 0.9484, "f1": 0.9485,
}


def test_paper_numbers_follow_from_the_paper_formulas():
    m = cls_metrics.confusion_measures(**cls_metrics.PAPER_CONFUSION)  # TP 322, FP 28, FN 7, TN 321
    assert list(m) == list(cls_metrics.MEASURES) == list(PAPER_TABLE)
    for key, value in PAPER_TABLE.items():
        assert round(m[key], 4) == value, key
    assert m["specificity"] == 321 / 349 and m["f1"] == 644 / 679


def test_complementary_measures():
    m = cls_metrics.confusion_measures(tp=13, fp=4, fn=6, tn=20)
    assert m["sensitivity"] + m["fnr"] == pytest.approx(1)
    assert m["specificity"] + m["fpr"] == pytest.approx(1)
    assert m["precision"] + m["fdr"] == pytest.approx(1)
    assert m["f1"] == pytest.approx(2 * m["precision"] * m["sensitivity"] / (m["precision"] + m["sensitivity"]))


def test_zero_denominators_are_nan_and_negative_counts_rejected():
    m = cls_metrics.confusion_measures(tp=0, fp=0, fn=0, tn=5)
    assert math.isnan(m["sensitivity"]) and math.isnan(m["precision"]) and m["specificity"] == 1.0
    with pytest.raises(ValueError, match=">= 0"):
        cls_metrics.confusion_measures(tp=-1, fp=0, fn=0, tn=1)


def test_vectorised_counts():
    m = cls_metrics.confusion_measures(tp=np.array([1, 2]), fp=np.array([1, 0]), fn=np.array([0, 2]), tn=np.array([2, 0]))
    np.testing.assert_allclose(m["sensitivity"], [1.0, 0.5])
    assert math.isnan(m["specificity"][1])


def test_measures_from_predictions_match_counts():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    pred = np.array([1, 0, 1, 0, 1, 0, 0, 1])
    assert cls_metrics.confusion_counts(y, pred) == {"tp": 3, "fp": 1, "fn": 1, "tn": 3}
    assert cls_metrics.measures_from_predictions(y, pred) == cls_metrics.confusion_measures(3, 1, 1, 3)
    with pytest.raises(ValueError, match="y_pred"):
        cls_metrics.measures_from_predictions(y, pred * 2)
    with pytest.raises(ValueError, match="entries"):
        cls_metrics.measures_from_predictions(y, pred[:3])


def _scores(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    prob = np.clip(0.5 + 0.25 * (2 * y - 1) + rng.normal(0, 0.35, n), 0, 1)
    return y, prob


def test_bootstrap_ci_contains_estimate_and_shrinks_with_n():
    y, p = _scores(400)
    est, lo, hi = cls_metrics.bootstrap_ci(y, p, roc_auc_score, n_boot=300, seed=1)
    assert lo < est < hi and est == roc_auc_score(y, p)
    _, lo_s, hi_s = cls_metrics.bootstrap_ci(y[:60], p[:60], roc_auc_score, n_boot=300, seed=1)
    assert hi_s - lo_s > hi - lo
    assert cls_metrics.bootstrap_ci(y, p, roc_auc_score, n_boot=50, seed=3) == cls_metrics.bootstrap_ci(y, p, roc_auc_score, n_boot=50, seed=3)
    # AUROC undefined in one-class resamples: those are dropped, not fatal
    est2, lo2, hi2 = cls_metrics.bootstrap_ci([0, 1, 0], [0.2, 0.9, 0.1], roc_auc_score, n_boot=100)
    assert est2 == 1.0 and lo2 == hi2 == 1.0
    with pytest.raises(ValueError, match="n_boot"):
        cls_metrics.bootstrap_ci(y, p, roc_auc_score, n_boot=0)


def test_classification_report_table():
    y, p = _scores(150)
    df = cls_metrics.classification_report_table(y, p, threshold=0.5, n_boot=200, seed=0, progress=False)
    assert list(df.index) == [*cls_metrics.MEASURES, "auroc", "auprc", "brier"]
    assert list(df.columns) == ["measure", "value", "ci_low", "ci_high", "formula"]
    assert (df["ci_low"] <= df["value"] + 1e-12).all() and (df["value"] <= df["ci_high"] + 1e-12).all()
    assert (df["ci_high"] - df["ci_low"] > 0).all()
    expected = cls_metrics.measures_from_predictions(y, (p >= 0.5).astype(int))
    for k, v in expected.items():
        assert df.loc[k, "value"] == pytest.approx(v)
    assert df.loc["auroc", "value"] == pytest.approx(roc_auc_score(y, p))
    assert df.loc["brier", "value"] == pytest.approx(np.mean((p - y) ** 2))
    assert sum(df.attrs["counts"].values()) == 150 and df.attrs["threshold"] == 0.5
    assert df.loc["specificity", "measure"] == "Specificity"
    with pytest.raises(ValueError, match="probabilities"):
        cls_metrics.classification_report_table(y, p + 1, n_boot=10, progress=False)
    with pytest.raises(ValueError, match="threshold"):
        cls_metrics.classification_report_table(y, p, threshold=1.5, n_boot=10, progress=False)


def test_expected_calibration_error():
    y = np.array([0] * 8 + [1] * 2 + [0] * 2 + [1] * 8)
    p = np.array([0.2] * 10 + [0.8] * 10)
    assert cls_metrics.expected_calibration_error(y, p, n_bins=10) == pytest.approx(0.0)
    assert cls_metrics.expected_calibration_error(y, np.clip(p + 0.1, 0, 1)) == pytest.approx(0.1)


def test_figures_are_labelled(tmp_path):
    y, p = _scores(120)
    figs = {
        "roc_pr": cls_metrics.roc_pr_figure(y, {"head": p, "logistic": np.clip(p * 0.9, 0, 1)}, threshold=0.5),
        "reliability": cls_metrics.reliability_figure(y, p, n_bins=8),
        "confusion": cls_metrics.confusion_figure(y, prob=p, threshold=0.5),
    }
    for name, fig in figs.items():
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel(), name
        fig.savefig(tmp_path / f"{name}.png", dpi=60)
        assert (tmp_path / f"{name}.png").stat().st_size > 2000
    roc_ax = figs["roc_pr"].axes[0]
    assert any("AUROC" in t.get_text() for t in roc_ax.get_legend().get_texts())
    texts = [t.get_text() for t in figs["confusion"].axes[0].texts]
    counts = cls_metrics.confusion_counts(y, (p >= 0.5).astype(int))
    assert any(t.startswith(f"{counts['tp']}\n") for t in texts)
    assert [t.get_text() for t in figs["confusion"].axes[0].get_xticklabels()] == ["Normal", "Damaged"]
    with pytest.raises(ValueError, match="exactly one"):
        cls_metrics.confusion_figure(y)
