"""Classification measures of the paper's Figure 9, with bootstrap confidence intervals, and figures.

Positive class = Damaged (label 1). From the confusion counts TP, FP, FN, TN (P = TP + FN,
N = FP + TN), exactly as in the paper's Figure 9:

    Sensitivity               TPR = TP / (TP + FN)
    Specificity               SPC = TN / (FP + TN)
    Precision                 PPV = TP / (TP + FP)
    Negative predictive value NPV = TN / (TN + FN)
    False positive rate       FPR = FP / (FP + TN)
    False discovery rate      FDR = FP / (FP + TP)
    False negative rate       FNR = FN / (FN + TP)
    Accuracy                  ACC = (TP + TN) / (P + N)
    F1 score                  F1  = 2TP / (2TP + FP + FN)

A ratio with a zero denominator is NaN. Threshold-free measures from probabilities: AUROC (area
under the ROC curve), AUPRC (average precision) and the Brier score ``mean((p - y)^2)``.
"""

from __future__ import annotations

import warnings
from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from tqdm.auto import tqdm

from spinelib.core.stats import bootstrap_indices, percentile_interval
from spinelib.core.structures import CLASSES

MEASURES: dict[str, tuple[str, str]] = {
    "sensitivity": ("Sensitivity", "TPR = TP / (TP + FN)"),
    "specificity": ("Specificity", "SPC = TN / (FP + TN)"),
    "precision": ("Precision", "PPV = TP / (TP + FP)"),
    "npv": ("Negative Predictive Value", "NPV = TN / (TN + FN)"),
    "fpr": ("False Positive Rate", "FPR = FP / (FP + TN)"),
    "fdr": ("False Discovery Rate", "FDR = FP / (FP + TP)"),
    "fnr": ("False Negative Rate", "FNR = FN / (FN + TP)"),
    "accuracy": ("Accuracy", "ACC = (TP + TN) / (P + N)"),
    "f1": ("F1 Score", "F1 = 2TP / (2TP + FP + FN)"),
}
"""Key -> (the paper's name, formula), in the order of Figure 9."""


PROB_MEASURES: dict[str, tuple[str, str]] = {
    "auroc": ("AUROC", "area under the ROC curve"),
    "auprc": ("AUPRC", "average precision"),
    "brier": ("Brier score", "mean((p - y)^2)"),
}


PAPER_CONFUSION = {"tp": 322, "fp": 28, "fn": 7, "tn": 321}
"""The paper's Figure 9 counts (validation set, ResNet-50 features + dense head)."""


def _ratio(num, den):
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out if out.ndim else float(out)


def confusion_measures(tp, fp, fn, tn) -> dict[str, float]:
    """The 9 measures of the module docstring from confusion counts (scalars or arrays).

    >>> round(confusion_measures(322, 28, 7, 321)["specificity"], 4)
    0.9198
    """
    counts = [np.asarray(c) for c in (tp, fp, fn, tn)]
    if any((c < 0).any() for c in counts):
        raise ValueError(f"confusion counts must be >= 0, got tp={tp}, fp={fp}, fn={fn}, tn={tn}")
    tp, fp, fn, tn = counts
    return {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, fp + tn),
        "precision": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "fpr": _ratio(fp, fp + tn),
        "fdr": _ratio(fp, fp + tp),
        "fnr": _ratio(fn, fn + tp),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _binary(y, name: str) -> np.ndarray:
    y = np.asarray(y).ravel()
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0 (Normal) and 1 (Damaged), got {np.unique(y)[:10]}")
    return y.astype(int)


def _check_pair(y_true, prob) -> tuple[np.ndarray, np.ndarray]:
    y = _binary(y_true, "y_true")
    p = np.asarray(prob, dtype=float).ravel()
    if len(p) != len(y):
        raise ValueError(f"y_true has {len(y)} entries but prob has {len(p)}")
    if len(y) == 0:
        raise ValueError("empty y_true")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("prob must be probabilities in [0, 1] without NaN")
    return y, p


def confusion_counts(y_true, y_pred) -> dict[str, int]:
    """``tp, fp, fn, tn`` via ``sklearn.metrics.confusion_matrix`` (labels 0, 1)."""
    y = _binary(y_true, "y_true")
    yp = _binary(y_pred, "y_pred")
    if len(y) != len(yp):
        raise ValueError(f"y_true has {len(y)} entries but y_pred has {len(yp)}")
    tn, fp, fn, tp = confusion_matrix(y, yp, labels=[0, 1]).ravel()
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)}


def measures_from_predictions(y_true, y_pred) -> dict[str, float]:
    """:func:`confusion_measures` of hard 0/1 predictions."""
    return confusion_measures(**confusion_counts(y_true, y_pred))


def bootstrap_ci(
    y_true,
    prob,
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """Percentile bootstrap: ``(estimate, low, high)`` of ``metric_fn(y_true, prob)``.

    Cases are resampled with replacement ``n_boot`` times; the interval is the
    ``alpha/2`` and ``1 - alpha/2`` quantiles of the resampled metric. Resamples where the metric
    is undefined (e.g. AUROC with one class: ``ValueError`` or NaN) are dropped.
    """
    y = np.asarray(y_true).ravel()
    p = np.asarray(prob).ravel()
    if len(y) != len(p) or len(y) == 0:
        raise ValueError(f"y_true ({len(y)}) and prob ({len(p)}) must be non-empty and of equal length")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    samples = bootstrap_indices(len(y), n_boot, seed)
    estimate = float(metric_fn(y, p))
    values = np.full(n_boot, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for b, idx in enumerate(samples):
            try:
                values[b] = metric_fn(y[idx], p[idx])
            except ValueError:
                pass
    return (estimate, *percentile_interval(values, alpha))


def _prob_measures(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    both = len(np.unique(y)) == 2
    return {
        "auroc": float(roc_auc_score(y, p)) if both else float("nan"),
        "auprc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p, labels=[0, 1])),
    }


def classification_report_table(
    y_true,
    prob,
    threshold: float | np.ndarray = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    progress: bool = True,
) -> pd.DataFrame:
    """The 9 measures at ``prob >= threshold`` plus AUROC, AUPRC and Brier, with bootstrap CIs.

    ``threshold`` is one number, or one per case (e.g. each cross-validation fold's threshold,
    chosen on the other folds); a case keeps its own threshold when resampled.

    Columns: ``measure`` (the paper's name), ``value``, ``ci_low``, ``ci_high`` (percentile
    bootstrap over cases, ``1 - alpha`` level), ``formula``; index: the measure keys.
    Also carries the counts in ``df.attrs['counts']`` and the threshold in ``df.attrs['threshold']``.
    """
    y, p = _check_pair(y_true, prob)
    thr = np.asarray(threshold, dtype=float)
    if thr.ndim > 1 or (thr.ndim == 1 and len(thr) != len(y)):
        raise ValueError(f"threshold must be a number or one per case ({len(y)}), got shape {thr.shape}")
    if np.isnan(thr).any() or (thr < 0).any() or (thr > 1).any():
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    if not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    pred = (p >= thr).astype(int)
    counts = confusion_counts(y, pred)
    point = {**confusion_measures(**counts), **_prob_measures(y, p)}

    idx = bootstrap_indices(len(y), n_boot, seed)
    yb, pb = y[idx], pred[idx]
    boot = confusion_measures(
        tp=(yb & pb).sum(1), fp=((1 - yb) & pb).sum(1), fn=(yb & (1 - pb)).sum(1), tn=((1 - yb) & (1 - pb)).sum(1)
    )
    prob_boot = {k: np.full(n_boot, np.nan) for k in PROB_MEASURES}
    for b in tqdm(range(n_boot), desc="bootstrap", disable=not progress):
        for k, v in _prob_measures(y[idx[b]], p[idx[b]]).items():
            prob_boot[k][b] = v
    boot.update(prob_boot)

    rows = []
    for key, (name, formula) in {**MEASURES, **PROB_MEASURES}.items():
        lo, hi = percentile_interval(boot[key], alpha)
        rows.append({"key": key, "measure": name, "value": float(point[key]), "ci_low": float(lo),
                     "ci_high": float(hi), "formula": formula})
    df = pd.DataFrame(rows).set_index("key")
    df.attrs["counts"] = counts
    df.attrs["threshold"] = float(thr) if thr.ndim == 0 else thr.copy()
    df.attrs["n_boot"] = n_boot
    return df


def expected_calibration_error(y_true, prob, n_bins: int = 10) -> float:
    """ECE = sum over equal-width bins b of (n_b / n) * |mean(y in b) - mean(p in b)|."""
    y, p = _check_pair(y_true, prob)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(ece)


def _as_dict(prob) -> dict[str, np.ndarray]:
    return dict(prob) if isinstance(prob, Mapping) else {"model": prob}


def roc_pr_figure(y_true, prob: np.ndarray | Mapping[str, np.ndarray], threshold: float | None = None) -> Figure:
    """ROC (left) and precision-recall (right) curves; ``prob`` may map model names to
    probabilities to compare several models. The operating point at ``threshold`` is marked."""
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(10, 4.5))
    y = _binary(y_true, "y_true")
    for name, pr in _as_dict(prob).items():
        y, p = _check_pair(y, pr)
        fpr, tpr, _ = roc_curve(y, p)
        line, = ax_roc.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, p):.3f})")
        prec, rec, _ = precision_recall_curve(y, p)
        ax_pr.step(rec, prec, where="post", color=line.get_color(),
                   label=f"{name} (AP {average_precision_score(y, p):.3f})")
        if threshold is not None:
            m = measures_from_predictions(y, (p >= threshold).astype(int))
            ax_roc.plot(m["fpr"], m["sensitivity"], "o", color=line.get_color())
            ax_pr.plot(m["sensitivity"], m["precision"], "o", color=line.get_color())
    ax_roc.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="chance")
    ax_roc.set(xlabel="False positive rate (1 - specificity)", ylabel="True positive rate (sensitivity)",
               title="ROC curve", xlim=(0, 1), ylim=(0, 1.02))
    ax_pr.axhline(y.mean(), ls="--", color="grey", lw=1, label=f"prevalence {y.mean():.2f}")
    ax_pr.set(xlabel="Recall (sensitivity)", ylabel="Precision (PPV)", title="Precision-recall curve",
              xlim=(0, 1), ylim=(0, 1.02))
    for ax in (ax_roc, ax_pr):
        ax.legend(loc="lower right" if ax is ax_roc else "lower left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def reliability_figure(y_true, prob: np.ndarray | Mapping[str, np.ndarray], n_bins: int = 10) -> Figure:
    """Reliability diagram (observed fraction of Damaged vs mean predicted probability per bin)
    above a histogram of the predicted probabilities; Brier score and ECE in the legend."""
    fig, (ax, ax_hist) = plt.subplots(2, 1, figsize=(5.5, 6.5), gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfectly calibrated")
    y = _binary(y_true, "y_true")
    for name, pr in _as_dict(prob).items():
        y, p = _check_pair(y, pr)
        frac, mean_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
        label = f"{name} (Brier {brier_score_loss(y, p):.3f}, ECE {expected_calibration_error(y, p, n_bins):.3f})"
        line, = ax.plot(mean_pred, frac, "o-", label=label)
        ax_hist.hist(p, bins=n_bins, range=(0, 1), alpha=0.5, color=line.get_color())
    ax.set(xlabel="Mean predicted probability in bin", ylabel="Observed fraction Damaged",
           title="Reliability diagram", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    ax_hist.set(xlabel="Predicted probability of Damaged", ylabel="Count", xlim=(0, 1))
    fig.tight_layout()
    return fig


def confusion_figure(
    y_true,
    y_pred=None,
    prob=None,
    threshold: float = 0.5,
    class_names: Sequence[str] = CLASSES,
    title: str | None = None,
) -> Figure:
    """Confusion matrix (rows: true class, columns: predicted class) with counts and row %.

    Give ``y_pred`` (0/1) or ``prob`` and ``threshold``.
    """
    if (y_pred is None) == (prob is None):
        raise ValueError("give exactly one of y_pred or prob")
    y = _binary(y_true, "y_true")
    if prob is not None:
        y, p = _check_pair(y, prob)
        y_pred = (p >= threshold).astype(int)
    yp = _binary(y_pred, "y_pred")
    cm = confusion_matrix(y, yp, labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    disp = ConfusionMatrixDisplay(cm, display_labels=list(class_names))
    disp.plot(ax=ax, cmap="Blues", colorbar=False, values_format="d")
    rows = cm.sum(1, keepdims=True)
    for (i, j), t in np.ndenumerate(disp.text_):
        share = cm[i, j] / rows[i, 0] if rows[i, 0] else np.nan
        t.set_text(f"{cm[i, j]}\n({share:.1%})")
    ax.set(xlabel="Predicted class", ylabel="True class",
           title=title or f"Confusion matrix (n = {cm.sum()}{'' if prob is None else f', threshold {threshold:.2f}'})")
    fig.tight_layout()
    return fig


PAPER_ACCURACY = 0.9484
"""The paper's reported accuracy (Figure 9)."""


def paper_confusion_total() -> int:
    """TP + FP + FN + TN of the paper's Figure 9: 678, its whole dataset (training included)."""
    return int(sum(PAPER_CONFUSION.values()))
