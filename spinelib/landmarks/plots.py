"""Figures of predicted Cobb angles: agreement with the truth (seaborn) and overlays."""

from __future__ import annotations

import numpy as np
import pandas as pd

ANGLE_LABELS = {"pt": "PT (main curve)", "mt": "MT (second)", "tl": "TL (third)"}


def long_angles(cases: pd.DataFrame, route: str = "lm") -> pd.DataFrame:
    """One row per (image, angle): ``true``, ``pred``, ``mean`` and ``difference`` (pred - true)."""
    rows = []
    for name, label in ANGLE_LABELS.items():
        part = pd.DataFrame({"image_name": cases["image_name"], "patient_id": cases["patient_id"],
                             "flagged": cases["flagged"], "angle": label, "true": cases[f"cobb_{name}"],
                             "pred": cases[f"{route}_{name}"]})
        rows.append(part)
    out = pd.concat(rows, ignore_index=True).dropna(subset=["pred"])
    out["mean"] = (out["true"] + out["pred"]) / 2
    out["difference"] = out["pred"] - out["true"]
    return out


def agreement_figure(cases: pd.DataFrame, route: str = "lm", title: str | None = None):
    """Predicted against true angle (left) and a Bland-Altman plot (right): difference against
    mean, with the mean difference and its limits of agreement, mean :math:`\\pm 1.96` SD.
    Images whose labels the audit flags are drawn as crosses."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = long_angles(cases, route)
    data["labels"] = np.where(data["flagged"], "flagged", "clean")
    fig, (a, b) = plt.subplots(1, 2, figsize=(6.8, 3.3))
    sns.scatterplot(data=data, x="true", y="pred", hue="angle", style="labels", markers={"clean": "o", "flagged": "X"},
                    s=28, alpha=0.75, ax=a)
    top = float(np.nanmax(data[["true", "pred"]].to_numpy())) * 1.05 if len(data) else 1.0
    a.plot([0, top], [0, top], color="0.5", lw=1, ls="--")
    a.set(xlim=(0, top), ylim=(0, top), xlabel="true angle (°, angles.csv)", ylabel="predicted angle (°)",
          title="predicted vs true\n")
    a.legend(fontsize=7, loc="upper left")
    sns.scatterplot(data=data, x="mean", y="difference", hue="angle", style="labels",
                    markers={"clean": "o", "flagged": "X"}, s=28, alpha=0.75, ax=b, legend=False)
    d = data["difference"].to_numpy()
    if len(d) > 1:
        m, sd = float(np.mean(d)), float(np.std(d, ddof=1))
        for y, ls in ((m, "-"), (m - 1.96 * sd, "--"), (m + 1.96 * sd, "--")):
            b.axhline(y, color="0.4", lw=1, ls=ls)
        b.set_title(f"Bland-Altman: bias {m:+.1f}°\nlimits {m - 1.96 * sd:+.1f}° to {m + 1.96 * sd:+.1f}°", fontsize=10)
    b.set(xlabel="mean of predicted and true (°)", ylabel="predicted - true (°)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def overlay_grid(images, predictions, titles, columns: int = 4, width: float = 6.8):
    """X-rays side by side with their predictions drawn (:func:`spinelib.overlay.draw_prediction`).

    ``predictions``: (corners in the image's pixels, :class:`spinelib.geometry.cobb.CobbResult`) pairs."""
    import matplotlib.pyplot as plt

    from spinelib.overlay import draw_prediction

    n = len(images)
    columns = max(1, min(columns, n))
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(width, width / columns * 2.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, (corners, cobb), title in zip(axes.ravel(), images, predictions, titles):
        ax.imshow(draw_prediction(img, corners, cobb))
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def severity_probability(cases: pd.DataFrame, threshold: float = 40.0, spread_factor: float = 1.0) -> pd.DataFrame:
    """P(severe) per X-ray: the probability that the largest Cobb angle is at least ``threshold``,
    reading the landmark route's largest predicted angle as the mean of a normal distribution whose
    SD is the test-time spread of that angle (``lm_<angle>_sd``) times ``spread_factor`` (1: the
    raw spread; the calibrated factor of ``metrics.json``'s ``coverage_calibrated`` over 1.96 makes
    it the spread that covered 95 % of held-out angles). Returns ``image_name``, ``patient_id``,
    ``true_max`` (°), ``pred_max`` (°), ``sd`` (°), ``p_severe``, ``severe`` (true angle >= threshold)."""
    from scipy.stats import norm

    names = list(ANGLE_LABELS)
    pred = cases[[f"lm_{n}" for n in names]].to_numpy(dtype=float)
    sds = cases[[f"lm_{n}_sd" for n in names]].to_numpy(dtype=float)
    which = np.nanargmax(pred, axis=1)
    pred_max = pred[np.arange(len(pred)), which]
    sd = np.clip(sds[np.arange(len(pred)), which] * float(spread_factor), 0.5, None)  # never a step at 0
    return pd.DataFrame({"image_name": cases["image_name"].to_numpy(), "patient_id": cases["patient_id"].to_numpy(),
                         "true_max": cases["cobb_max"].to_numpy(dtype=float), "pred_max": pred_max, "sd": sd,
                         "p_severe": norm.sf(threshold, loc=pred_max, scale=sd),
                         "severe": cases["cobb_max"].to_numpy(dtype=float) >= threshold})


def severity_figure(cases: pd.DataFrame, threshold: float = 40.0, spread_factor: float = 1.0,
                    title: str | None = None, width: float = 6.8):
    """P(severe) (:func:`severity_probability`) against the true largest Cobb angle, one dot per
    validation X-ray (seaborn), coloured by the true class, with the threshold angle and P = 0.5 as
    dashed lines: the dots in the upper left and lower right quadrants are the wrong decisions."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = severity_probability(cases, threshold, spread_factor)
    data["true class"] = np.where(data["severe"], f"severe (≥ {threshold:g}°)", f"not severe (< {threshold:g}°)")
    fig, ax = plt.subplots(figsize=(width, 3.0))
    sns.scatterplot(data=data, x="true_max", y="p_severe", hue="true class", ax=ax, s=24, alpha=0.8,
                    palette={f"severe (≥ {threshold:g}°)": "#D55E00", f"not severe (< {threshold:g}°)": "#0072B2"})
    ax.axvline(threshold, color="0.5", lw=1, ls="--")
    ax.axhline(0.5, color="0.5", lw=1, ls=":")
    ax.set(xlabel="true largest Cobb angle (°, angles.csv)", ylabel="P(severe)", ylim=(-0.03, 1.03))
    wrong = int(((data["p_severe"] >= 0.5) != data["severe"]).sum())
    ax.set_title(title or f"P(largest angle ≥ {threshold:g}°) from the predicted angle and its spread\n"
                          f"{wrong} of {len(data)} X-rays on the wrong side of P = 0.5", fontsize=9)
    ax.legend(fontsize=7, loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def error_figure(cases: pd.DataFrame, width: float = 6.8):
    """The landmark route's SMAPE per X-ray against what can go wrong (seaborn), three panels: labels
    the audit flags (box + strip), the weakest of the 17 heat-map peaks (coloured by whether all 17
    levels came out in order), and the size of the true main curve."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 3, figsize=(width, 2.6))
    sns.boxplot(data=cases, x="flagged", y="lm_smape", ax=axes[0], color="0.85")
    sns.stripplot(data=cases, x="flagged", y="lm_smape", ax=axes[0], size=3)
    axes[0].set(xlabel="labels flagged by the audit", ylabel="SMAPE per X-ray (%)")
    sns.scatterplot(data=cases, x="min_score", y="lm_smape", hue="lm_levels_in_order", ax=axes[1], s=18)
    axes[1].set(xlabel="weakest of the 17 peaks", ylabel="")
    axes[1].legend(title="17 in order", fontsize=7)
    sns.scatterplot(data=cases, x="cobb_max", y="lm_smape", ax=axes[2], s=18)
    axes[2].set(xlabel="true main angle (°)", ylabel="")
    fig.tight_layout()
    return fig


def calibrated_spread_factor(metrics: dict, z: float = 1.96) -> float:
    """The factor on the raw test-time spread that makes it the SD of the calibrated intervals: the
    mean of the split-conformal factors in ``metrics["coverage_calibrated"]`` (a long run's
    ``metrics.json``) over ``z``; 1.0 when the record has none."""
    factors = [f for row in metrics.get("coverage_calibrated") or [] for f in row.get("factors", [])]
    return float(np.mean(factors)) / z if factors else 1.0
