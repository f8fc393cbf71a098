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
