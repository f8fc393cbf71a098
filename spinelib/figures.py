"""Figures used by the book: overlays, size distributions, mask coverage, Cobb angles.

Every function returns a :class:`matplotlib.figure.Figure` (or draws on a given Axes) with
titles and labelled axes; colour maps are chosen to stay readable in grayscale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .structures import PAPER_TABLE1

# Colour-blind-safe qualitative colours (Okabe-Ito), one per structure slot.
MASK_COLOURS = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"]


def _display_factor(shape, max_side: int) -> int:
    return max(1, int(np.ceil(max(shape[:2]) / max_side)))


def overlay(image: np.ndarray, masks: Mapping[str, np.ndarray] | None = None, ax=None,
            title: str | None = None, alpha: float = 0.45, legend: bool = True, max_side: int = 1000,
            colours: Sequence[str] | None = None):
    """Draw a grayscale X-ray with its binary masks as coloured, semi-transparent layers
    (``colours``, one per mask; default :data:`MASK_COLOURS` in order).

    Images larger than ``max_side`` pixels are shown block-averaged (masks block-maximised, so
    thin lines survive); axes keep the original pixel coordinates, so landmarks can be drawn on top.
    """
    from skimage.measure import block_reduce

    if ax is None:
        _, ax = plt.subplots(figsize=(3, 5))
    h, w = image.shape[:2]
    f = _display_factor(image.shape, max_side)
    extent = (0, w, h, 0)
    shown = block_reduce(image, (f, f), np.mean) if f > 1 else image
    ax.imshow(shown, cmap="gray", interpolation="antialiased", extent=extent)
    handles = []
    for i, (name, mask) in enumerate((masks or {}).items()):
        colour = (colours or MASK_COLOURS)[i % len(colours or MASK_COLOURS)]
        m = block_reduce(mask.astype(bool), (f, f), np.max) if f > 1 else mask.astype(bool)
        rgba = np.zeros(m.shape + (4,), dtype=float)
        rgba[m] = plt.matplotlib.colors.to_rgba(colour, alpha)
        ax.imshow(rgba, interpolation="nearest", extent=extent)
        handles.append(plt.matplotlib.patches.Patch(color=colour, label=name.replace("_", " ")))
    if legend and handles:
        ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.85, handlelength=1.0,
                  borderpad=0.3, labelspacing=0.2)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def patients_figure(panels: Sequence[tuple[str, np.ndarray, Mapping[str, np.ndarray]]],
                    ncols: int | None = None, panel_size=(3.0, 5.2)):
    """Several (title, image, masks) panels side by side, each with its mask overlay."""
    n = len(panels)
    ncols = ncols or n
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
                             squeeze=False)
    for ax, (title, image, masks) in zip(axes.flat, panels):
        overlay(image, masks, ax=ax, title=title)
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def size_figure(sizes: pd.DataFrame, title: str = "X-ray sizes against the paper's Table 1"):
    """Scatter of image height vs width per class, with the paper's Table 1 ranges as boxes.

    ``sizes`` needs columns ``class_name``, ``height``, ``width``.
    """
    fig, ax = plt.subplots(figsize=(6, 4.5))
    markers = {"Normal": "o", "Damaged": "^"}
    for i, (cls, grp) in enumerate(sizes.groupby("class_name")):
        colour = MASK_COLOURS[i * 4 % len(MASK_COLOURS)]
        ax.scatter(grp["width"], grp["height"], s=14, alpha=0.7, marker=markers.get(cls, "s"),
                   color=colour, label=f"{cls} (n={len(grp)})")
        if cls in PAPER_TABLE1:
            t = PAPER_TABLE1[cls]
            ax.add_patch(plt.Rectangle((t["min_width"], t["min_height"]), t["max_width"] - t["min_width"],
                                       t["max_height"] - t["min_height"], fill=False, ls="--",
                                       color=colour, label=f"paper's Table 1 range, {cls}"))
    ax.set_xlabel("width (pixels)")
    ax.set_ylabel("height (pixels)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def coverage_figure(coverage: pd.DataFrame, title: str = "White pixels per mask (class imbalance)"):
    """Horizontal bars of the mean fraction of white pixels per structure (log scale), ± SD.

    ``coverage`` is indexed by structure (or has a ``structure`` column) with ``mean`` and ``std``.
    Several datasets can be compared with a ``dataset`` column.
    """
    df = coverage.reset_index() if "structure" not in coverage.columns else coverage.copy()
    fig, ax = plt.subplots(figsize=(7, 0.45 * df["structure"].nunique() + 1.5))
    datasets = df["dataset"].unique() if "dataset" in df else [None]
    height = 0.8 / len(datasets)
    structures = list(dict.fromkeys(df["structure"]))
    y = np.arange(len(structures))
    for i, ds in enumerate(datasets):
        sub = df if ds is None else df[df["dataset"] == ds]
        sub = sub.set_index("structure").reindex(structures)
        ax.barh(y + i * height, sub["mean"] * 100, height=height, xerr=sub["std"] * 100,
                color=MASK_COLOURS[(i * 3 + 1) % len(MASK_COLOURS)], hatch=["", "//", ".."][i % 3],
                label=ds, capsize=2)
    ax.set_yticks(y + height * (len(datasets) - 1) / 2)
    ax.set_yticklabels([s.replace("_", " ") for s in structures], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("white pixels in the mask (% of the image, log scale)")
    ax.invert_yaxis()
    ax.set_title(title)
    if datasets[0] is not None:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def cobb_figure(frame: pd.DataFrame, threshold: float = 40.0):
    """Histogram of the maximum Cobb angle with the severity threshold marked."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(frame["cobb_max"], bins=np.arange(0, frame["cobb_max"].max() + 5, 5), color="#0072B2",
            edgecolor="white")
    ax.axvline(threshold, color="#D55E00", ls="--",
               label=f"{threshold:.0f}° threshold: {int((frame['cobb_max'] >= threshold).sum())} of {len(frame)} ≥")
    ax.set_xlabel("maximum Cobb angle (degrees)")
    ax.set_ylabel("X-rays")
    ax.set_title("AASCE training split: curve severity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def landmarks_overlay(image: np.ndarray, landmarks: np.ndarray, mask: np.ndarray | None = None,
                      ax=None, title: str | None = None):
    """An AASCE X-ray with its 17×4 corner landmarks (dots) and the rasterised vertebra mask."""
    ax = overlay(image, {"vertebra mask": mask} if mask is not None else None, ax=ax, title=title,
                 legend=False)
    pts = np.asarray(landmarks).reshape(-1, 2)
    ax.scatter(pts[:, 0], pts[:, 1], s=4, c="#D55E00")
    return ax
