"""Segmentation metrics per case and per structure, and their summary with spread.

NumPy/SciPy functions on binary masks (anything ``> 0.5`` is foreground):

- :func:`dice`, :func:`iou` - overlap, with an explicit value when both masks are empty;
- :func:`hausdorff95` - 95th-percentile symmetric surface distance;
- :func:`evaluate_masks` - a long table, one row per case and structure;
- :func:`summarise` - mean, SD and a bootstrap 95 % CI over cases, per structure.

:func:`dice_metric` is the Keras (tensor) version used to monitor training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from keras import ops
from scipy import ndimage
from scipy.spatial import cKDTree

from spinelib.core.stats import bootstrap_indices, percentile_interval

METRICS: tuple[str, ...] = ("dice", "iou", "hd95")


def _binary(a, name: str = "mask") -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        return a
    if not np.issubdtype(a.dtype, np.number):
        raise TypeError(f"{name} must be a numeric or boolean array, got dtype {a.dtype}")
    return a > 0.5


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _binary(a, "a"), _binary(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"masks must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def dice(a, b, empty: float = 1.0) -> float:
    """Dice coefficient of two binary masks.

    .. math:: \\mathrm{Dice}(A, B) = \\frac{2|A \\cap B|}{|A| + |B|}

    Returns ``empty`` when both masks are empty (default 1.0: correctly predicting "nothing here"
    is a perfect answer); 0.0 when exactly one is empty.
    """
    a, b = _pair(a, b)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return float(empty)
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def iou(a, b, empty: float = 1.0) -> float:
    """Intersection over union (Jaccard index) of two binary masks.

    .. math:: \\mathrm{IoU}(A, B) = \\frac{|A \\cap B|}{|A \\cup B|} = \\frac{D}{2 - D}\\ (D = \\mathrm{Dice})

    Returns ``empty`` when both masks are empty.
    """
    a, b = _pair(a, b)
    union = int(np.logical_or(a, b).sum())
    if union == 0:
        return float(empty)
    return int(np.logical_and(a, b).sum()) / union


def outline_errors(true, pred, band: float = 1.0) -> dict:
    """Where two masks disagree: on the true outline, or away from it.

    Every wrong pixel (in one mask but not the other) is measured by its Euclidean distance to
    the true outline (1 for the pixels on either side of it, :func:`scipy.ndimage.distance_transform_edt`).
    Returns ``error_pixels``, ``outline_share`` (the share of them within ``band`` pixels of the
    outline: a blurred or shifted edge), ``dice`` and ``dice_outline_fixed``: the Dice if every
    pixel within ``band`` were right, i.e. what edges sharp to ``band`` pixels could give at most;
    the rest lies further out (edges off by more, or gross errors: a body missed, merged or one
    level off). ``true`` and
    ``pred``: binary masks of one image, any shape.
    """
    t, p = _pair(true, pred)
    return outline_errors_from_distance(t, p, distance_to_outline(t), band)


def distance_to_outline(true) -> np.ndarray:
    """Each pixel's Euclidean distance to the outline of the binary mask ``true`` (1 for the
    pixels on either side of it); computed once, it serves :func:`outline_errors` for any band."""
    t = _binary(true, "true")
    return np.where(t, ndimage.distance_transform_edt(t), ndimage.distance_transform_edt(~t))


def outline_errors_from_distance(t: np.ndarray, p: np.ndarray, dist: np.ndarray, band: float) -> dict:
    if band < 0:
        raise ValueError(f"band must be >= 0, got {band}")
    wrong = t ^ p
    near = dist <= band
    fixed = np.where(near, t, p)
    n = int(wrong.sum())
    return {"error_pixels": n, "outline_share": float((wrong & near).sum() / n) if n else 0.0,
            "dice": dice(t, p), "dice_outline_fixed": dice(t, fixed)}


def _surface(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels with at least one background 4-neighbour (image border = background):
    ``mask & ~binary_erosion(mask)`` with the cross as structuring element, by array slices."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = mask.copy()
    for axis in range(mask.ndim):  # inner: both neighbours along every axis are foreground
        before, after = [slice(1, -1)] * mask.ndim, [slice(1, -1)] * mask.ndim
        before[axis], after[axis] = slice(0, -2), slice(2, None)
        inner &= padded[tuple(before)] & padded[tuple(after)]
    return mask & ~inner


def _spacing(spacing, ndim: int) -> tuple[float, ...]:
    sp = np.broadcast_to(np.asarray(spacing, dtype=float), (ndim,))
    if np.any(sp <= 0) or not np.all(np.isfinite(sp)):
        raise ValueError(f"spacing must be positive, got {spacing!r}")
    return tuple(float(s) for s in sp)


def surface_distances(a, b, spacing: float | Sequence[float] = 1.0) -> np.ndarray:
    """Distances from every surface pixel of ``a`` (in row-major order) to the nearest surface
    pixel of ``b``, exact and Euclidean, in the units of the pixel ``spacing`` (a scalar or one per
    axis): a nearest-neighbour query of ``a``'s surface points in a k-d tree of ``b``'s
    (``scipy.spatial.cKDTree``), the values of the distance transform of ``b``'s surface
    complement read at ``a``'s surface, at the cost of the outlines instead of the image.
    """
    a, b = _pair(a, b)
    sp = _spacing(spacing, a.ndim)
    if not a.any() or not b.any():
        raise ValueError("surface_distances needs two non-empty masks")
    return _directed(*_surface_points(a, b, sp))


def _surface_points(a: np.ndarray, b: np.ndarray, sp: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The surface pixels of two non-empty masks as points, scaled by the spacing ``sp``."""
    a, b = _crop_to_union(a, b)
    scale = np.asarray(sp)
    return np.argwhere(_surface(a)) * scale, np.argwhere(_surface(b)) * scale


def _directed(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Each point of ``pa``'s distance to the nearest point of ``pb`` (a k-d tree query)."""
    return cKDTree(pb).query(pa)[0]


def _crop_to_union(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of ``a | b`` plus one background pixel per side (or the
    image border). Exact for surface distances: every surface pixel, and the nearest surface
    pixel of the other mask, lie inside the box, and the padding keeps the border convention of
    :func:`_surface`. A small structure in a full-resolution X-ray costs its box, not the image."""
    union = a | b
    box = []
    for axis in range(union.ndim):
        hit = np.flatnonzero(union.any(axis=tuple(i for i in range(union.ndim) if i != axis)))
        box.append(slice(max(int(hit[0]) - 1, 0), int(hit[-1]) + 2))
    box = tuple(box)
    return a[box], b[box]


def hausdorff95(a, b, spacing: float | Sequence[float] = 1.0) -> float:
    """95th-percentile Hausdorff distance between the surfaces of two binary masks.

    .. math:: \\mathrm{HD95}(A, B) = \\max\\big(P_{95}\\{d(x, \\partial B): x \\in \\partial A\\},\\
        P_{95}\\{d(y, \\partial A): y \\in \\partial B\\}\\big)

    the maximum of the two directed 95th percentiles (the MONAI convention; NumPy's linear
    percentile), in the units of ``spacing`` (pixels by default). Surfaces are the foreground
    pixels with a background 4-neighbour.

    Convention for empty masks: both empty -> ``0.0`` (nothing to find, nothing found); exactly one
    empty -> ``nan`` (the distance is undefined; :func:`summarise` drops it and reports ``n``).
    """
    a, b = _pair(a, b)
    ea, eb = not a.any(), not b.any()
    if ea and eb:
        return 0.0
    if ea or eb:
        return float("nan")
    pa, pb = _surface_points(a, b, _spacing(spacing, a.ndim))
    d_ab, d_ba = _directed(pa, pb), _directed(pb, pa)
    return float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))


def _as_nhwc(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"{name} must be (N, H, W, C) or (N, H, W), got shape {x.shape}")
    return x


def evaluate_masks(
    y_true,
    y_pred,
    structures: Sequence[str],
    case_ids: Sequence | None = None,
    threshold: float = 0.5,
    spacing: float | Sequence[float] = 1.0,
) -> pd.DataFrame:
    """Dice, IoU and HD95 for every case and structure, as a long table.

    ``y_true``, ``y_pred``: ``(N, H, W, C)`` masks or probabilities (channel ``c`` is
    ``structures[c]``); both are binarised with ``> threshold``. Returns one row per (case,
    structure) with columns ``case, structure, dice, iou, hd95, true_fraction, pred_fraction``
    (fractions of the image that are foreground).
    """
    t, p = _as_nhwc(y_true, "y_true"), _as_nhwc(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {t.shape} and {p.shape}")
    structures = [structures] if isinstance(structures, str) else list(structures)
    if len(structures) != t.shape[-1]:
        raise ValueError(f"{len(structures)} structure name(s) {structures} for {t.shape[-1]} channel(s)")
    case_ids = list(range(len(t))) if case_ids is None else list(case_ids)
    if len(case_ids) != len(t):
        raise ValueError(f"{len(case_ids)} case id(s) for {len(t)} image(s)")
    # one structure per contiguous (H, W) plane, and the three pixel counts per plane in one pass each
    t = np.ascontiguousarray(np.moveaxis(t > threshold, -1, 1))
    p = np.ascontiguousarray(np.moveaxis(p > threshold, -1, 1))
    n_true, n_pred = t.sum(axis=(2, 3)), p.sum(axis=(2, 3))
    n_both = np.logical_and(t, p).sum(axis=(2, 3))
    size = t.shape[2] * t.shape[3]
    rows = []
    for i, case in enumerate(case_ids):
        for c, structure in enumerate(structures):
            na, nb, both = int(n_true[i, c]), int(n_pred[i, c]), int(n_both[i, c])
            rows.append({  # the values of dice() and iou() (same integer counts), and their empty convention
                "case": case,
                "structure": structure,
                "dice": 2.0 * both / (na + nb) if na + nb else 1.0,
                "iou": both / (na + nb - both) if na + nb else 1.0,
                "hd95": hausdorff95(t[i, c], p[i, c], spacing),
                "true_fraction": na / size,
                "pred_fraction": nb / size,
            })
    return pd.DataFrame(rows, columns=["case", "structure", "dice", "iou", "hd95", "true_fraction", "pred_fraction"])


def bootstrap_ci(values, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values`` (NaNs dropped).

    Resamples the values with replacement ``n_boot`` times and returns the
    :math:`(1-\\text{level})/2` and :math:`(1+\\text{level})/2` quantiles of the resampled means.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    means = v[bootstrap_indices(v.size, n_boot, seed)].mean(axis=1)
    return percentile_interval(means, level=level)


def summarise(
    df: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    metrics: Sequence[str] = METRICS,
    by: str = "structure",
) -> pd.DataFrame:
    """Per structure (``by``) and metric: mean, SD, percentile-bootstrap 95 % CI over cases, n.

    ``df`` is the long table of :func:`evaluate_masks`. NaN values (HD95 with one empty mask) are
    dropped, so ``n`` can differ between metrics. Columns:
    ``structure, metric, mean, sd, ci_low, ci_high, n`` (SD with ``ddof=1``; NaN when n < 2).
    """
    missing = [c for c in (by, *metrics) if c not in df.columns]
    if missing:
        raise ValueError(f"summarise: column(s) {missing} not in the table (columns: {list(df.columns)})")
    rows = []
    for key, group in df.groupby(by, sort=False):
        for metric in metrics:
            v = group[metric].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
            rows.append({
                by: key,
                "metric": metric,
                "mean": float(v.mean()) if v.size else float("nan"),
                "sd": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
                "ci_low": lo,
                "ci_high": hi,
                "n": int(v.size),
            })
    return pd.DataFrame(rows, columns=[by, "metric", "mean", "sd", "ci_low", "ci_high", "n"])


def dice_metric(y_true, y_pred):
    """Keras metric: hard Dice at threshold 0.5, per image and channel, then the mean.

    .. math:: \\frac{1}{BC}\\sum_{b,c} \\frac{2|T_{bc} \\cap P_{bc}|}{|T_{bc}| + |P_{bc}|},\\quad
        T = [y > 0.5],\\ P = [\\hat y > 0.5]

    An image-channel where both masks are empty counts as 1. Wrap it as
    ``keras.metrics.MeanMetricWrapper(dice_metric, name="dice")`` to log ``dice``/``val_dice``.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    t = ops.cast(ops.convert_to_tensor(y_true) > 0.5, "float32")
    p = ops.cast(y_pred > 0.5, "float32")
    intersection = ops.sum(t * p, axis=(1, 2))
    total = ops.sum(t, axis=(1, 2)) + ops.sum(p, axis=(1, 2))
    score = ops.where(total > 0, 2.0 * intersection / ops.maximum(total, 1.0), 1.0)
    return ops.mean(score)


def white_fraction_metric(y_true, y_pred):
    """Keras metric: the fraction of pixels predicted white (``y_pred > 0.5``), over the batch.

    .. math:: \\frac{1}{BHWC}\\sum_{b,i,c} [\\hat y_{bic} > 0.5]

    Logged as ``white``/``val_white`` by :func:`spinelib.seg.training.train_segmentation`; next to
    the true fraction it shows a network collapsing to an all-black mask (``white`` -> 0).
    """
    del y_true  # the prediction alone
    return ops.mean(ops.cast(ops.convert_to_tensor(y_pred) > 0.5, "float32"))
