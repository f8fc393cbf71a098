"""Figures used by the book: overlays, size distributions, mask coverage, Cobb angles.

Every function returns a :class:`matplotlib.figure.Figure` (or draws on a given Axes) with
titles and labelled axes; colour maps are chosen to stay readable in grayscale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from spinelib.core.structures import PAPER_TABLE1
from spinelib.data.segdata import SegmentationData
from spinelib.seg.experiment import ExperimentResult

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


def table1_frame(size_table: pd.DataFrame, paper: Mapping[str, Mapping[str, int]] = PAPER_TABLE1) -> pd.DataFrame:
    """The paper's Table 1 beside measured X-ray sizes, one row per class: the number of X-rays
    and the height and width ranges in pixels, ours then the paper's (``size_table``: the
    ``size_table`` of :func:`spinelib.data.audit.audit_clinical`)."""
    def span(lo, hi) -> str:
        return "–" if lo is None or pd.isna(lo) else f"{int(lo)}–{int(hi)}"

    rows = []
    for cls, r in size_table.iterrows():
        p = paper.get(cls, {})
        rows.append({"class": cls, "X-rays": int(r["n_images"]),
                     "height (px)": span(r["min_height"], r["max_height"]),
                     "paper: height (px)": span(p.get("min_height"), p.get("max_height")),
                     "width (px)": span(r["min_width"], r["max_width"]),
                     "paper: width (px)": span(p.get("min_width"), p.get("max_width"))})
    return pd.DataFrame(rows).set_index("class")


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


def plot_history(history: pd.DataFrame, title: str | None = None):
    """Loss and Dice per epoch, training vs validation; returns a matplotlib ``Figure``."""
    import matplotlib.pyplot as plt

    if not isinstance(history, pd.DataFrame) or history.empty:
        raise ValueError("plot_history needs a non-empty history DataFrame (history.csv)")
    pairs = [("loss", "Loss"), ("dice", "Dice")]
    if not any(c in history.columns for c, _ in pairs):
        raise ValueError(f"history has neither 'loss' nor 'dice' columns: {list(history.columns)}")
    epoch = (history["epoch"] + 1) if "epoch" in history.columns else pd.Series(range(1, len(history) + 1))
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.2), constrained_layout=True)
    for ax, (key, label) in zip(axes, pairs):
        for col, style, name in ((key, "-", "train"), (f"val_{key}", "--", "validation")):
            if col in history.columns:
                ax.plot(epoch, history[col], style, marker="o", ms=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if "dice" in history.columns or "val_dice" in history.columns:
        axes[1].set_ylim(0, 1)
    if title:
        fig.suptitle(title)
    return fig


def _case_layers(t: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    return {"found": t & p, "missed": t & ~p, "false alarm": p & ~t}


CASE_COLOURS = ("#E69F00", "#0072B2", "#CC79A7")
"""found, missed, false alarm: orange, dark blue, reddish purple (Okabe-Ito; light, dark and mid
grey in grayscale, so the three stay apart in print and for colour-blind readers)."""


def short_label(name, width: int = 14) -> str:
    """A patient name cut to ``width`` characters (AASCE file names run to 30 and overlap their neighbours)."""
    name = str(name)
    return name if len(name) <= width else name[: width - 1] + "…"


def cases_figure(data: SegmentationData, result: ExperimentResult, structure: str | None = None,
                 n: int = 3, title: str | None = None):
    """The ``n`` best and ``n`` worst validation cases of one structure (by Dice), with the
    found (true and predicted), missed and false-alarm pixels in three colours."""
    import matplotlib.pyplot as plt


    structure = structure or result.structures[0]
    if structure not in result.structures:
        raise ValueError(f"{structure!r} is not one of {result.name}'s structures {result.structures}")
    c_res = result.structures.index(structure)
    c_dat = data.structures.index(structure)
    prob = result.val_prob()[..., c_res]
    cases = result.cases[result.cases["structure"] == structure].sort_values("dice", kind="stable")
    if np.ptp(cases["dice"].to_numpy(float)) < 1e-9:  # all alike (e.g. every mask black): no best or worst
        picks = [("CASE", r) for r in cases.iloc[:2 * n].itertuples()]
    else:
        picks = [("BEST", r) for r in cases.iloc[::-1][:n].itertuples()] + [("WORST", r) for r in cases.iloc[:n].itertuples()]
    # up to 4 cases in a row; more in two rows (best above, worst below), so the figure keeps to the page's width
    cols = len(picks) if len(picks) <= 4 else -(-len(picks) // 2)
    rows = -(-len(picks) // cols) if picks else 1
    fig, axes = plt.subplots(rows, max(cols, 1), figsize=(2.2 * max(cols, 1), 4.4 * rows), squeeze=False)
    for ax in axes.ravel()[len(picks):]:
        ax.axis("off")
    for ax, (label, row) in zip(axes.ravel(), picks):
        i = int(row.case)
        t, p = data.val_masks[i, ..., c_dat] > 0.5, prob[i] > 0.5
        overlay(data.val_images[i, ..., 0], _case_layers(t, p), ax=ax, legend=ax is axes[0][0], colours=CASE_COLOURS,
                title=f"{label}: patient {short_label(row.patient)}\nDice {row.dice:.2f}")
    fig.suptitle(title or f"{data.source.upper()} - {structure.replace('_', ' ')} ({result.name})", fontsize=10)
    fig.tight_layout()
    return fig


def white_fraction_figure(results: Mapping[str, ExperimentResult], true_fraction: float | None = None):
    """Predicted white fraction of the validation images per epoch, one line per experiment,
    against the true fraction (dashed): a collapse to an all-black mask runs along zero."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    markers = "osD^vP*X"
    for k, (label, r) in enumerate(results.items()):
        h = r.history
        if "val_white" in h:  # markers and a small offset keep lines that lie on top of each other visible
            ax.plot(h["epoch"] + 1 + 0.06 * (k - len(results) / 2), 100 * h["val_white"], marker=markers[k % 8],
                    ms=4, lw=1.2, label=label)
        if true_fraction is None:
            true_fraction = float(r.cases["true_fraction"].mean())
    if true_fraction is not None:
        ax.axhline(100 * true_fraction, color="k", ls="--", lw=1, label="true white fraction")
    ax.set_xlabel("epoch")
    ax.set_ylabel("predicted white pixels (% of image)")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_ylim(bottom=0)  # a share of the image is never negative
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Validation: how much does the network paint white?")
    fig.tight_layout()
    return fig


def train_val_figure(results: Mapping[str, ExperimentResult]):
    """Training (solid) and validation (dashed) Dice per epoch, one colour per experiment: a
    validation curve that stays flat while the training curve rises points at the inference path
    (e.g. batch-norm moving statistics), not at learning."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for i, (label, r) in enumerate(results.items()):
        colour = f"C{i}"
        h = r.history
        ax.plot(h["epoch"] + 1, h["dice"], "-", color=colour, marker="o", ms=3, label=f"{label}, training")
        ax.plot(h["epoch"] + 1, h["val_dice"], "--", color=colour, marker="s", ms=3, label=f"{label}, validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def dice_history_figure(results: Mapping[str, ExperimentResult]):
    """Validation Dice per epoch, one line per experiment."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for label, r in results.items():
        if "val_dice" in r.history:
            ax.plot(r.history["epoch"] + 1, r.history["val_dice"], marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def table3_dot_figure(table3: pd.DataFrame, final: pd.DataFrame | None = None,
                      ceiling: pd.Series | None = None, title: str = "Table 3: Dice per structure"):
    """Table 3 as a dot plot, one row per structure: the paper's Dice (a reference: clinical
    X-rays), the paper's recipe here (``table3``: ``paper_dice``, ``dice``, ``ci_low``, ``ci_high``;
    in the network's frame), and with ``final`` (:func:`spinelib.paper.table3_unet.final_table3`) the
    final pipeline in the network's frame and at the original size; ``ceiling`` (structure ->
    Dice) marks the resolution ceiling at the original size where it was measured."""
    structures = list(table3.index)
    y = np.arange(len(structures))
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(structures) + 1.6))
    ax.scatter(table3["paper_dice"], y, marker="s", s=42, facecolors="none", edgecolors="black",
               label="paper (clinical X-rays, reference)", zorder=3)
    err = np.vstack([table3["dice"] - table3["ci_low"], table3["ci_high"] - table3["dice"]]).clip(min=0)
    ax.errorbar(table3["dice"], y - 0.15, xerr=err, fmt="o", ms=5, color=MASK_COLOURS[4], capsize=2,
                label="paper's recipe here, network's frame (95% CI)", zorder=3)
    if final is not None:
        f = final.reindex(structures)
        if "input_frame_dice" in f:
            ax.scatter(f["input_frame_dice"], y + 0.15, marker="D", s=30, color=MASK_COLOURS[0],
                       label="crop + Dice loss, network's frame", zorder=3)
        ax.scatter(f["final_dice"], y + 0.15, marker="^", s=40, color=MASK_COLOURS[5],
                   label="crop + Dice loss, original size", zorder=3)
    if ceiling is not None:
        c = pd.Series(ceiling).reindex(structures)
        ax.scatter(c, y + 0.15, marker="|", s=160, color="grey", label="resolution ceiling, original size", zorder=2)
    ax.set_yticks(y)
    ax.set_yticklabels([s.replace("_", " ") for s in structures], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("Dice (mean over validation patients)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16 - 1.2 / (0.42 * len(structures) + 1.6) * 0.5),
              ncol=2, borderaxespad=0)
    fig.tight_layout()
    return fig


HEADLINE_ABBREVIATIONS = {"Dice, AASCE vertebral bodies T1-L5": "AASCE Dice", "normal/damaged accuracy": "normal/damaged",
                          "severity (Cobb >= 40°) AUROC": "severity AUROC", "Lite0 encoder, ImageNet": "Lite0",
                          "EfficientNet-Lite0": "Lite0", "; cosine LR; flip TTA": ", cosine, TTA",
                          "stride-1 skip (16 ch)": "skip", "decoder 192-96-48-32-24": "wide decoder"}
"""Shorter names for the forest plot's labels (the table above it has the full ones)."""


def headline_forest_figure(frame: pd.DataFrame, title: str = "Every headline on a 0-1 scale", width: int = 64):
    """A forest plot of the headlines (:func:`spinelib.paper.report.collect_headlines`) measured on
    a 0-1 scale (Dice, accuracy, AUROC): ours with its 95% CI, coloured by data (real: blue,
    synthetic: orange), the paper's number as an open square where it has one. Quantities on
    other scales (SMAPE in %, counts) are left out and named in the title."""
    f = frame.copy()
    f["ours"] = pd.to_numeric(f["ours"], errors="coerce")
    keep = f["ours"].between(0, 1) & ~f["quantity"].astype(str).str.contains("SMAPE|flagged", regex=True)
    left_out = int((~keep).sum())
    f = f[keep].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8.4, 0.22 * len(f) + 1.4))
    y = np.arange(len(f))
    colours = np.where(f["data"] == "real", "#0072B2", "#D55E00")
    lo = pd.to_numeric(f["ci_low"], errors="coerce")
    hi = pd.to_numeric(f["ci_high"], errors="coerce")
    for i, r in f.iterrows():
        if pd.notna(lo[i]) and pd.notna(hi[i]):
            ax.plot([lo[i], hi[i]], [i, i], color=colours[i], lw=1.2)
    ax.scatter(f["ours"], y, color=colours, s=16, zorder=3)
    paper = pd.to_numeric(f["paper"], errors="coerce")
    ax.scatter(paper, y, marker="s", s=22, facecolors="none", edgecolors="black", zorder=2)
    labels = []
    for _, r in f.iterrows():
        q = str(r["quantity"])
        for long, short in HEADLINE_ABBREVIATIONS.items():
            q = q.replace(long, short)
        final = "final, " if str(r["section"]).endswith("final pipeline") else ""
        labels.append(short_label(f"{str(r['page']).split('_')[0]} {final}{q}", width))
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("this book (dot, 95% CI) and the paper (open square, a reference)")
    handles = [plt.matplotlib.lines.Line2D([], [], color="#0072B2", marker="o", ls="-", label="REAL (AASCE)"),
               plt.matplotlib.lines.Line2D([], [], color="#D55E00", marker="o", ls="-", label="SYNTHETIC"),
               plt.matplotlib.lines.Line2D([], [], color="black", marker="s", mfc="none", ls="", label="paper")]
    ax.legend(handles=handles, fontsize=7, loc="lower left")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title + (f" ({left_out} on other scales not shown)" if left_out else ""), fontsize=9)
    fig.tight_layout()
    return fig


RUN_ABBREVIATIONS = {"long run (committed): ": "", "Lite0 encoder, ImageNet": "Lite0", "; cosine LR; flip TTA": ", cosine, TTA",
                     "stride-1 skip (16 ch)": "skip", "decoder 192-96-48-32-24": "wide decoder", "512x256 input": "512x256",
                     "spine crop": "crop"}
"""Shorter run names for figure labels (the tables beside them keep the full ones)."""


def short_run_label(label, width: int = 34) -> str:
    """A run's label (:func:`spinelib.seg.long_runs.long_run_label`) shortened with
    :data:`RUN_ABBREVIATIONS`, then cut to ``width`` characters."""
    text = str(label)
    for long, short in RUN_ABBREVIATIONS.items():
        text = text.replace(long, short)
    return short_label(text, width)


def run_dice_figure(table: pd.DataFrame, per_patient: pd.DataFrame | None = None, target: float | None = 0.90,
                    title: str = "Dice per run (95% CI)", width: float = 6.8):
    """Every run's mean Dice with its 95% CI, one row per run (``table``: index = run label, columns
    ``dice``, ``ci_low``, ``ci_high``), against ``target`` (a dashed line; ``None``: none). With
    ``per_patient`` (columns ``run`` as in ``table``'s index, ``patient``, ``dice``) each
    patient's Dice is drawn behind its run's mean as a seaborn strip, so the spread shows too."""
    import seaborn as sns

    runs = list(table.index)
    if not runs:
        raise ValueError("run_dice_figure: no run to draw")
    labels = [short_run_label(r) for r in runs]
    fig, ax = plt.subplots(figsize=(width, 0.42 * len(runs) + 1.3))
    if per_patient is not None and len(per_patient):
        shown = per_patient[per_patient["run"].isin(runs)].assign(
            label=lambda f: f["run"].map(dict(zip(runs, labels))))
        sns.stripplot(data=shown, x="dice", y="label", order=labels, ax=ax, size=2.5, alpha=0.35, color="#56B4E9",
                      jitter=0.25, zorder=1)
    y = np.arange(len(runs))
    err = np.vstack([table["dice"] - table["ci_low"], table["ci_high"] - table["dice"]]).clip(min=0)
    ax.errorbar(table["dice"], y, xerr=err, fmt="o", ms=5, color="black", capsize=3, zorder=3,
                label="mean over validation patients (95% CI)")
    if target is not None:
        ax.axvline(target, ls="--", lw=1, color="#D55E00", label=f"target {target:g}")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(len(runs) - 0.5, -0.5)
    ax.set_ylabel("")
    ax.set_xlabel("Dice" + (" (dots: one validation patient each)" if per_patient is not None else ""))
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def level_heatmap(table: pd.DataFrame, title: str = "Dice per vertebra and run", width: float = 6.8,
                  vmin: float | None = None, vmax: float = 1.0):
    """A seaborn heat map of Dice per vertebra (columns, in the order of ``table``'s rows) and run
    (rows, one per column of ``table``), each cell annotated with its Dice at 2 decimals. Rows of
    ``table`` that are not vertebrae (``all``, ``within labelled span``) are left out."""
    import seaborn as sns

    from spinelib.data.aasce import VERTEBRA_NAMES

    levels = table.loc[[v for v in table.index if v in VERTEBRA_NAMES]].T
    if levels.empty:
        raise ValueError("level_heatmap: the table has no vertebra rows or no run")
    levels.index = [short_run_label(r, 30) for r in levels.index]
    values = levels.to_numpy(dtype=float)
    low = vmin if vmin is not None else float(np.floor(np.nanmin(values) * 20) / 20)
    fig, ax = plt.subplots(figsize=(width, 0.38 * len(levels) + 1.5))
    sns.heatmap(levels.astype(float), ax=ax, annot=True, fmt=".2f", annot_kws={"fontsize": 6}, cmap="viridis",
                vmin=low, vmax=vmax, cbar_kws={"label": "Dice", "shrink": 0.8}, linewidths=0.3, linecolor="white")
    ax.set_xlabel("vertebra (mean Dice over validation patients)")
    ax.set_ylabel("")
    ax.tick_params(axis="x", labelsize=7, rotation=0)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def per_patient_dice_figure(cases: pd.DataFrame, title: str = "Dice per validation patient", width: float = 6.8):
    """Per-patient Dice (``cases``: one row per validation image and structure, with ``patient``,
    ``structure``, ``dice``; a patient's images averaged first) as a seaborn box plot per
    structure with every patient drawn as a dot: the spread a mean with its CI hides."""
    import seaborn as sns

    need = {"patient", "structure", "dice"}
    if not need <= set(cases.columns):
        raise ValueError(f"per_patient_dice_figure: cases needs columns {sorted(need)}, has {list(cases.columns)}")
    per_patient = cases.groupby(["structure", "patient"], sort=False)["dice"].mean().reset_index()
    order = list(dict.fromkeys(per_patient["structure"]))
    per_patient["label"] = per_patient["structure"].str.replace("_", " ")
    labels = [s.replace("_", " ") for s in order]
    fig, ax = plt.subplots(figsize=(width, 0.4 * len(order) + 1.3))
    sns.boxplot(data=per_patient, x="dice", y="label", order=labels, ax=ax, color="#E8E8E8", fliersize=0,
                linewidth=0.8, width=0.6)
    sns.stripplot(data=per_patient, x="dice", y="label", order=labels, ax=ax, size=3, alpha=0.6, color="#0072B2",
                  jitter=0.2)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("Dice (one dot per validation patient)")
    ax.set_ylabel("")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def feature_by_class_figure(features: pd.DataFrame, labels: Sequence, columns: Sequence[str] | None = None,
                            title: str = "Measured features by class", width: float = 6.8, max_columns: int = 6):
    """The distribution of each feature (columns of ``features``, at most ``max_columns``; default the
    first ones) by class (``labels``, one per row), one small seaborn violin + strip panel per feature,
    each on its own scale."""
    import seaborn as sns

    columns = list(columns or features.columns[:max_columns])
    if not columns:
        raise ValueError("feature_by_class_figure: no feature to draw")
    if len(labels) != len(features):
        raise ValueError(f"feature_by_class_figure: {len(labels)} labels for {len(features)} rows")
    frame = features[columns].assign(cls=list(labels))
    n = len(columns)
    ncols = min(n, 3)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 2.2 * nrows + 0.4), squeeze=False)
    for ax, col in zip(axes.flat, columns):
        sns.violinplot(data=frame, x="cls", y=col, ax=ax, inner=None, color="#E8E8E8", linewidth=0.6, cut=0)
        sns.stripplot(data=frame, x="cls", y=col, ax=ax, size=2.5, alpha=0.7, hue="cls", palette="colorblind",
                      legend=False, jitter=0.2)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.set_title(short_label(col.replace("_", " "), 34), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
