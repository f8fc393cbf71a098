"""Spine measurements from segmentation masks or landmarks: the features a radiologist reads.

Every measurement works on binary masks (one connected component per vertebral body or disk,
found with ``skimage.measure.label`` / ``regionprops``) or on the AASCE corner landmarks, in
image pixels (``x`` = column, ``y`` = row, pointing down). Masks should keep the X-ray's aspect
ratio: a non-uniform resize changes angles and height ratios.

Local frame of a vertebra
    The spine axis at body ``i`` is :math:`t_i = (c_{i+1} - c_{i-1}) / \\lVert\\cdot\\rVert`
    (one-sided at the ends) from the component centroids :math:`c_i`, sorted top to bottom;
    :math:`e_i` is :math:`t_i` turned by 90 degrees so that it points to the image's right
    (in the lateral view, with the patient facing left, from anterior to posterior).

Wedge ratio (lateral view)
    The body's height is measured in 1-pixel slices across its depth: for each rounded
    across-coordinate :math:`a = (p - c)\\cdot e`, height = pixels in the slice. A line fitted to
    height against :math:`a` is evaluated at the anterior and posterior edges (1st and 99th
    percentile of :math:`a`), so a trapezoid gives its edge heights exactly:

    .. math:: \\text{wedge ratio} = h_\\text{anterior} / h_\\text{posterior}

    (1 for a rectangle; a compression fracture with 40 % anterior loss gives about 0.6).

Disk height (lateral view)
    For each ``Lat_Disk_Height`` component: area / depth (mean height), and the ratio to the
    patient's median disk height (a loss of height shows as a small ratio).

Listhesis offset (lateral view)
    For adjacent bodies ``i`` (upper) and ``i+1`` (lower), in the common frame of the disk
    between them, the anterior edge of the upper body's lowest quarter and of the lower body's
    top quarter (2nd percentile of :math:`a`):

    .. math:: \\text{offset} = a^\\text{lower}_\\text{anterior} - a^\\text{upper}_\\text{anterior}

    positive when the upper body slipped anteriorly (the synthetic ``listhesis_offset_px``
    convention); the fraction divides by the lower body's depth.

Cobb angle (AP view)
    Endplate angles :math:`\\theta = \\operatorname{atan2}(\\Delta y, \\Delta x)` in degrees
    (positive when the right end is lower). From landmarks: superior endplate TL->TR, inferior
    BL->BR; from a mask: lines fitted to the top-most and bottom-most pixel of each column of the
    body. The Cobb angle is the largest angle between two endplates,
    :math:`\\max_{i,j} |\\theta_i - \\theta_j| = \\max\\theta - \\min\\theta`. The AASCE reference
    uses each vertebra's *mid-line* instead (the line through the midpoints of its left and right
    sides), :math:`\\max_{i,j} |\\phi_i - \\phi_j|` (``method="midline"``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from skimage.measure import label, regionprops
from skimage.transform import downscale_local_mean

MIN_AREA_FRACTION = 0.2
"""Components smaller than this fraction of the median component area are noise, not bodies."""


# --------------------------------------------------------------------------------------------
# components and local frames


def _check_mask(mask, name: str = "mask") -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) mask, got shape {np.asarray(mask).shape}")
    return m > 0.5 if m.dtype != bool else m


def components(mask, min_area_fraction: float = MIN_AREA_FRACTION, min_area: int = 4) -> list:
    """``regionprops`` of the 4-connected components of ``mask``, sorted top to bottom by
    centroid row; components smaller than ``min_area`` pixels or ``min_area_fraction`` of the
    median area are dropped."""
    m = _check_mask(mask)
    props = [p for p in regionprops(label(m, connectivity=1)) if p.area >= min_area]
    if not props:
        return []
    median = float(np.median([p.area for p in props]))
    props = [p for p in props if p.area >= min_area_fraction * median]
    return sorted(props, key=lambda p: p.centroid[0])


def _xy(p) -> np.ndarray:
    """Pixel coordinates of a component as (x, y) = (column, row)."""
    return p.coords[:, ::-1].astype(float)


def _centroids(props) -> np.ndarray:
    return np.array([[p.centroid[1], p.centroid[0]] for p in props], dtype=float)


def _bodies(mask, min_area_fraction: float) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """A mask's components top to bottom, their centroids ``(x, y)`` and local frames ``t, e``
    (:func:`spine_frames`): what every per-body measurement starts from."""
    props = components(mask, min_area_fraction)
    cents = _centroids(props)
    t, e = spine_frames(cents) if props else (np.zeros((0, 2)), np.zeros((0, 2)))
    return props, cents, t, e


def spine_frames(centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per body, the unit spine axis ``t`` (pointing down the image) and the unit across
    direction ``e`` (pointing to the image's right), from centroids sorted top to bottom."""
    c = np.asarray(centroids, dtype=float)
    n = len(c)
    if n == 0:
        return np.zeros((0, 2)), np.zeros((0, 2))
    if n == 1:
        t = np.array([[0.0, 1.0]])
    else:
        t = np.empty_like(c)
        t[0] = c[1] - c[0]
        t[-1] = c[-1] - c[-2]
        t[1:-1] = c[2:] - c[:-2]
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
    t[t[:, 1] < 0] *= -1  # point down the image
    e = np.stack([t[:, 1], -t[:, 0]], axis=1)  # t turned by -90 deg: (0, 1) -> (1, 0), to the right
    return t, e


# --------------------------------------------------------------------------------------------
# lateral view


def _edge_heights(xy: np.ndarray, center: np.ndarray, t: np.ndarray, e: np.ndarray):
    """Heights at both edges of a body (a line fitted to its 1-pixel slice heights), its depth,
    and the across-coordinates of its pixels."""
    a = (xy - center) @ e
    lo, hi = np.percentile(a, [1, 99])
    depth = float(hi - lo + 1.0)
    slices = np.round(a).astype(int)
    idx, counts = np.unique(slices, return_counts=True)  # pixels per 1-pixel slice = height there
    inner = (idx >= lo + 0.1 * (hi - lo)) & (idx <= hi - 0.1 * (hi - lo))
    if inner.sum() >= 2:
        slope, intercept = np.polyfit(idx[inner].astype(float), counts[inner].astype(float), 1)
        h_lo, h_hi = slope * lo + intercept, slope * hi + intercept
    else:  # a body a few pixels across: one height
        h_lo = h_hi = len(xy) / depth
    return float(h_lo), float(h_hi), depth, a


def vertebra_heights(lat_vertebra_mask, anterior: str = "left",
                     min_area_fraction: float = MIN_AREA_FRACTION) -> pd.DataFrame:
    """One row per vertebral body of a lateral ``Lat_Vertebra`` mask, top to bottom:
    ``x, y`` (centroid), ``anterior_height, posterior_height, wedge_ratio, depth, area``.

    ``anterior``: the image side the patient faces (``"left"`` in the synthetic data and
    usually in clinical lateral films).
    """
    if anterior not in ("left", "right"):
        raise ValueError(f"anterior must be 'left' or 'right', got {anterior!r}")
    props, cents, t, e = _bodies(lat_vertebra_mask, min_area_fraction)
    cols = ["x", "y", "anterior_height", "posterior_height", "wedge_ratio", "depth", "area"]
    if not props:
        return pd.DataFrame(columns=cols)
    rows = []
    for p, c, ti, ei in zip(props, cents, t, e):
        h_left, h_right, depth, _ = _edge_heights(_xy(p), c, ti, ei)
        ant, post = (h_left, h_right) if anterior == "left" else (h_right, h_left)
        rows.append({"x": c[0], "y": c[1], "anterior_height": ant, "posterior_height": post,
                     "wedge_ratio": ant / post if post > 0 else np.nan, "depth": depth, "area": int(p.area)})
    return pd.DataFrame(rows, columns=cols)


def disk_heights(lat_disk_mask, min_area_fraction: float = MIN_AREA_FRACTION) -> pd.DataFrame:
    """One row per disk of a ``Lat_Disk_Height`` mask, top to bottom: ``x, y, height``
    (area / depth, the mean height), ``depth``, ``height_ratio`` (to the median disk height) and
    ``neighbour_ratio``: :math:`h_i / \\tfrac12(h_{i-1} + h_{i+1})` (one neighbour at the ends), a
    local loss of height that ignores the natural growth of disks down the spine."""
    props, cents, _, e = _bodies(lat_disk_mask, min_area_fraction)
    cols = ["x", "y", "height", "depth", "height_ratio", "neighbour_ratio"]
    if not props:
        return pd.DataFrame(columns=cols)
    rows = []
    for p, c, ei in zip(props, cents, e):
        a = (_xy(p) - c) @ ei
        depth = float(np.ptp(a) + 1.0)
        rows.append({"x": c[0], "y": c[1], "height": p.area / depth, "depth": depth})
    df = pd.DataFrame(rows)
    df["height_ratio"] = df["height"] / df["height"].median()
    h = df["height"].to_numpy(float)
    if len(h) >= 2:
        padded = np.concatenate([[np.nan], h, [np.nan]])
        neighbours = np.nanmean(np.stack([padded[:-2], padded[2:]]), axis=0)
        df["neighbour_ratio"] = h / neighbours
    else:
        df["neighbour_ratio"] = 1.0
    return df[cols]


def listhesis_offsets(lat_vertebra_mask, anterior: str = "left",
                      min_area_fraction: float = MIN_AREA_FRACTION) -> pd.DataFrame:
    """One row per pair of adjacent bodies (upper ``i``, lower ``i+1``): ``upper, lower,
    offset`` (pixels; positive = the upper body slipped anteriorly) and ``fraction`` (offset /
    the lower body's depth). The slip is measured along the disk between them: the mean
    direction of the upper body's inferior and the lower body's superior endplate (lines fitted
    to their boundaries), which a slip does not turn."""
    if anterior not in ("left", "right"):
        raise ValueError(f"anterior must be 'left' or 'right', got {anterior!r}")
    props, cents, t_all, e_all = _bodies(lat_vertebra_mask, min_area_fraction)
    cols = ["upper", "lower", "offset", "fraction"]
    if len(props) < 2:
        return pd.DataFrame(columns=cols)
    sign = 1.0 if anterior == "left" else -1.0
    rows = []
    for i in range(len(props) - 1):
        # the frame of the disk between them: the mean direction of the upper body's inferior
        # and the lower body's superior endplate (a slip moves bodies, not their endplates)
        up_xy, lo_xy = _xy(props[i]), _xy(props[i + 1])
        angles = [_endplate_angle(up_xy, cents[i], t_all[i], e_all[i], "inferior"),
                  _endplate_angle(lo_xy, cents[i + 1], t_all[i + 1], e_all[i + 1], "superior")]
        angles = [a for a in angles if np.isfinite(a)]
        if not angles:
            angles = [float(np.degrees(np.arctan2(e_all[i][1], e_all[i][0])))]
        e = np.mean([[np.cos(np.radians(a)), np.sin(np.radians(a))] for a in angles], axis=0)
        e /= max(np.linalg.norm(e), 1e-9)
        t = np.array([-e[1], e[0]])  # down the image
        e = e * sign  # from anterior to posterior
        mid = (cents[i] + cents[i + 1]) / 2
        up, lo = up_xy - mid, lo_xy - mid
        up_along, lo_along = up @ t, lo @ t
        up_band = up[up_along >= np.percentile(up_along, 75)]
        lo_band = lo[lo_along <= np.percentile(lo_along, 25)]
        ant_up = np.percentile(up_band @ e, 2)
        ant_lo = np.percentile(lo_band @ e, 2)
        depth_lo = float(np.ptp(lo @ e) + 1.0)
        offset = float(ant_lo - ant_up)
        rows.append({"upper": i, "lower": i + 1, "offset": offset, "fraction": offset / depth_lo})
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------------------------
# AP view: endplates and Cobb angle


def _angle_deg(dx, dy) -> np.ndarray:
    """Angle of a direction against the x axis, degrees in (-90, 90] (a line, not a vector)."""
    ang = np.degrees(np.arctan2(dy, dx))
    ang = np.where(ang > 90, ang - 180, ang)
    return np.where(ang <= -90, ang + 180, ang)


def landmark_endplate_angles(landmarks) -> pd.DataFrame:
    """Per vertebra of the AASCE landmarks (17 x 4 x 2, corners TL, TR, BL, BR, pixels):
    ``superior_deg`` (TL->TR), ``inferior_deg`` (BL->BR), ``midline_deg`` (midpoint of the left
    side -> midpoint of the right side), ``x, y`` (centre). Positive = right end lower."""
    from spinelib.data.aasce import check_landmarks

    lm = check_landmarks(landmarks)
    tl, tr, bl, br = lm[:, 0], lm[:, 1], lm[:, 2], lm[:, 3]
    left, right = (tl + bl) / 2, (tr + br) / 2
    return pd.DataFrame({
        "x": lm[:, :, 0].mean(1), "y": lm[:, :, 1].mean(1),
        "superior_deg": _angle_deg(*(tr - tl).T), "inferior_deg": _angle_deg(*(br - bl).T),
        "midline_deg": _angle_deg(*(right - left).T),
    })


def cobb_angle_from_landmarks(landmarks, method: str = "midline") -> float:
    """Largest angle (degrees) between two vertebrae of the AASCE landmarks.

    ``method="midline"``: between vertebra mid-lines (the AASCE reference's construction);
    ``"endplates"``: between any two endplates (superior or inferior).
    """
    ang = landmark_endplate_angles(landmarks)
    if method == "midline":
        a = ang["midline_deg"].to_numpy()
    elif method == "endplates":
        a = ang[["superior_deg", "inferior_deg"]].to_numpy().ravel()
    else:
        raise ValueError(f"method must be 'midline' or 'endplates', got {method!r}")
    return float(a.max() - a.min())


def _fit_angle(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan")
    slope = np.polyfit(x, y, 1)[0]
    return float(np.degrees(np.arctan(slope)))


def _endplate_angle(xy: np.ndarray, center: np.ndarray, t: np.ndarray, e: np.ndarray, which: str) -> float:
    """Image angle (degrees, positive = right end lower) of a body's superior or inferior
    endplate: a line fitted to the first/last pixel along ``t`` of every 1-pixel slice across
    the inner 80 % of the body (slices along ``e``)."""
    rel = xy - center
    a = np.round(rel @ e).astype(int)
    s = rel @ t
    lo, hi = np.percentile(a, [10, 90])
    keep = (a >= lo) & (a <= hi)
    order = np.argsort(a[keep], kind="stable")
    slices, along = a[keep][order], s[keep][order]
    keys, starts = np.unique(slices, return_index=True)  # per slice: its first and last pixel along t
    reduce = np.minimum if which == "superior" else np.maximum
    edge = reduce.reduceat(along, starts) if len(starts) else along
    axis = float(np.degrees(np.arctan2(e[1], e[0])))
    return _fit_angle(keys.astype(float), edge) + axis


def mask_endplate_angles(ap_vertebra_mask, min_area_fraction: float = MIN_AREA_FRACTION) -> pd.DataFrame:
    """Per vertebral body of an AP vertebra mask, top to bottom: ``x, y, superior_deg,
    inferior_deg, tilt_deg`` (mean of both), ``width, height``.

    In each body's local frame (see the module docstring) the top-most and bottom-most pixel of
    every slice across its inner 80 % are fitted with straight lines; their angles are turned
    back into image angles (positive = right end lower).
    """
    props, cents, t, e = _bodies(ap_vertebra_mask, min_area_fraction)
    cols = ["x", "y", "superior_deg", "inferior_deg", "tilt_deg", "width", "height"]
    if not props:
        return pd.DataFrame(columns=cols)
    rows = []
    for p, c, ti, ei in zip(props, cents, t, e):
        xy = _xy(p)
        sup = _endplate_angle(xy, c, ti, ei, "superior")
        inf = _endplate_angle(xy, c, ti, ei, "inferior")
        a, s = (xy - c) @ ei, (xy - c) @ ti
        rows.append({"x": c[0], "y": c[1], "superior_deg": sup, "inferior_deg": inf,
                     "tilt_deg": (sup + inf) / 2, "width": float(np.ptp(a) + 1),
                     "height": float(np.ptp(s) + 1)})
    return pd.DataFrame(rows, columns=cols)


def to_square_pixels(mask, pixel_aspect: float = 1.0) -> np.ndarray:
    """Resample a mask whose pixels are ``pixel_aspect`` times wider than tall (e.g. an X-ray of
    ``H x W`` resized to ``h x w``: ``pixel_aspect = (W / w) / (H / h)``) to square pixels, by
    stretching its width (nearest neighbour), so that angles and ratios are measured right."""
    from skimage.transform import resize

    m = _check_mask(mask)
    if not pixel_aspect > 0:
        raise ValueError(f"pixel_aspect must be > 0, got {pixel_aspect!r}")
    if abs(pixel_aspect - 1.0) < 1e-6:
        return m
    width = max(1, int(round(m.shape[1] * pixel_aspect)))
    return resize(m, (m.shape[0], width), order=0, preserve_range=True, anti_aliasing=False).astype(bool)


def spine_centerline(ap_vertebra_mask, smooth: float = 0.04) -> pd.DataFrame:
    """The spine's centre line in an AP mask: for every row with mask pixels, ``y`` and the mean
    column ``x``, smoothed with a Gaussian of ``smooth`` x the column's height (rows), and the
    tangent angle ``angle_deg`` :math:`= \\arctan(dx/dy)` (0 = vertical, positive = leaning to
    the image's right going down)."""
    from scipy.ndimage import gaussian_filter1d

    m = _check_mask(ap_vertebra_mask)
    rows = np.flatnonzero(m.any(axis=1))
    if len(rows) < 3:
        return pd.DataFrame(columns=["y", "x", "angle_deg"])
    y = np.arange(rows[0], rows[-1] + 1)
    counts = m[y].sum(axis=1)
    xs = np.where(counts > 0, (m[y] * np.arange(m.shape[1])).sum(axis=1) / np.maximum(counts, 1), np.nan)
    good = np.isfinite(xs)
    xs = np.interp(y, y[good], xs[good])  # rows without pixels (gaps between bodies)
    sigma = max(1.0, smooth * len(y))
    x_s = gaussian_filter1d(xs, sigma, mode="nearest")
    angle = np.degrees(np.arctan(np.gradient(x_s)))
    return pd.DataFrame({"y": y, "x": x_s, "angle_deg": angle})


def centerline_cobb(ap_vertebra_mask, smooth: float = 0.04, trim: float = 0.05) -> float:
    """Cobb angle from the centre line: :math:`\\max\\alpha - \\min\\alpha` over its tangent
    angles, ignoring ``trim`` of its length at each end (where the smoothing is one-sided).
    Endplates are about perpendicular to the column, so this approximates the Cobb angle
    without separating the bodies."""
    line = spine_centerline(ap_vertebra_mask, smooth)
    if len(line) < 5:
        return float("nan")
    k = int(trim * len(line))
    a = line["angle_deg"].to_numpy()[k: len(line) - k]
    return float(a.max() - a.min()) if len(a) >= 2 else float("nan")


def cobb_angle_from_mask(ap_vertebra_mask, method: str = "endplates",
                         min_area_fraction: float = MIN_AREA_FRACTION) -> float:
    """Cobb angle (degrees) from an AP vertebra mask.

    ``"endplates"``: :math:`\\max\\theta - \\min\\theta` over all fitted endplates;
    ``"tilt"``: over each body's mean endplate angle (closest to the AASCE mid-line reference);
    ``"centerline"``: :func:`centerline_cobb` (robust when predicted bodies merge into one
    column; ignores wedging). NaN with fewer than 2 bodies (``"endplates"``, ``"tilt"``).
    """
    if method == "centerline":
        return centerline_cobb(ap_vertebra_mask)
    ang = mask_endplate_angles(ap_vertebra_mask, min_area_fraction)
    if len(ang) < 2:
        return float("nan")
    if method == "endplates":
        a = ang[["superior_deg", "inferior_deg"]].to_numpy().ravel()
    elif method == "tilt":
        a = ang["tilt_deg"].to_numpy()
    else:
        raise ValueError(f"method must be 'endplates', 'tilt' or 'centerline', got {method!r}")
    a = a[np.isfinite(a)]
    return float(a.max() - a.min()) if len(a) >= 2 else float("nan")


def lateral_deviation(centroids) -> float:
    """Largest distance of a body centre from the straight line through the first and last
    centres, divided by that line's length (a scale-free measure of the curve's size)."""
    c = np.asarray(centroids, dtype=float)
    if len(c) < 3:
        return float("nan")
    d = c[-1] - c[0]
    length = float(np.linalg.norm(d))
    if length == 0:
        return float("nan")
    dist = np.abs(d[0] * (c[:, 1] - c[0, 1]) - d[1] * (c[:, 0] - c[0, 0])) / length
    return float(dist.max() / length)


# --------------------------------------------------------------------------------------------
# patient-level feature vectors


SYNTHETIC_FEATURES: tuple[str, ...] = (
    "min_wedge_ratio", "min_relative_wedge_ratio", "min_disk_height_ratio",
    "max_listhesis_fraction", "cobb_angle_deg", "lateral_deviation",
)
"""Morphometric features of a patient with AP + LAT masks (see :func:`patient_features`)."""

AASCE_FEATURES: tuple[str, ...] = ("cobb_angle_deg", "max_abs_tilt_deg", "lateral_deviation", "n_vertebrae")
"""Morphometric features of an AP X-ray (see :func:`ap_features`)."""


def patient_features(ap_vertebra, lat_vertebra, lat_disk, anterior: str = "left") -> dict[str, float]:
    """The features of :data:`SYNTHETIC_FEATURES` from one patient's masks:

    - ``min_wedge_ratio``: :math:`\\min_i h^a_i / h^p_i` (LAT);
    - ``min_relative_wedge_ratio``: the same divided by the patient's median ratio (removes the
      natural wedging of a kyphotic segment);
    - ``min_disk_height_ratio``: smallest disk height relative to its neighbours
      (``neighbour_ratio`` of :func:`disk_heights`, LAT);
    - ``max_listhesis_fraction``: largest ``|offset| / depth`` between adjacent bodies (LAT);
    - ``cobb_angle_deg``: endplate Cobb angle (AP); ``lateral_deviation``: :func:`lateral_deviation` (AP).
    """
    v = vertebra_heights(lat_vertebra, anterior=anterior)
    d = disk_heights(lat_disk)
    s = listhesis_offsets(lat_vertebra, anterior=anterior)
    ratios = v["wedge_ratio"].to_numpy(float) if len(v) else np.array([np.nan])
    ap_c = _centroids(components(ap_vertebra))
    return {
        "min_wedge_ratio": float(np.nanmin(ratios)) if np.isfinite(ratios).any() else np.nan,
        "min_relative_wedge_ratio": float(np.nanmin(ratios) / np.nanmedian(ratios)) if np.isfinite(ratios).any() else np.nan,
        "min_disk_height_ratio": float(d["neighbour_ratio"].min()) if len(d) else np.nan,
        "max_listhesis_fraction": float(s["fraction"].abs().max()) if len(s) else 0.0,
        "cobb_angle_deg": cobb_angle_from_mask(ap_vertebra, method="endplates"),
        "lateral_deviation": lateral_deviation(ap_c),
    }


def ap_features(ap_vertebra=None, landmarks=None, method: str = "centerline",
                pixel_aspect: float = 1.0) -> dict[str, float]:
    """The features of :data:`AASCE_FEATURES` from an AP vertebra mask or from landmarks:
    Cobb angle (``method`` of :func:`cobb_angle_from_mask`; landmarks always use the mid-line),
    largest absolute vertebra tilt, :func:`lateral_deviation` of the body centres, and the number
    of bodies found. With ``method="centerline"`` (the default, for predicted masks whose bodies
    may merge), tilt and deviation come from :func:`spine_centerline` (tilt = the centre line's
    angle to the vertical). ``pixel_aspect``: see :func:`to_square_pixels` (masks only)."""
    if (ap_vertebra is None) == (landmarks is None):
        raise ValueError("give exactly one of ap_vertebra or landmarks")
    if landmarks is not None:
        ang = landmark_endplate_angles(landmarks)
        tilt, cents = ang["midline_deg"].to_numpy(), ang[["x", "y"]].to_numpy()
        cobb = float(tilt.max() - tilt.min())
    else:
        ap_vertebra = to_square_pixels(ap_vertebra, pixel_aspect)
        ang = mask_endplate_angles(ap_vertebra)
        tilt, cents = ang["tilt_deg"].to_numpy(float), ang[["x", "y"]].to_numpy(float)
        cobb = cobb_angle_from_mask(ap_vertebra, method=method)
        if method == "centerline":  # bodies may be merged: read tilt and deviation off the centre line
            line = spine_centerline(ap_vertebra)
            tilt = line["angle_deg"].to_numpy(float)
            cents = line[["x", "y"]].to_numpy(float)[:: max(1, len(line) // 17)]
    tilt = tilt[np.isfinite(tilt)]
    return {"cobb_angle_deg": cobb,
            "max_abs_tilt_deg": float(np.abs(tilt).max()) if len(tilt) else np.nan,
            "lateral_deviation": lateral_deviation(cents), "n_vertebrae": float(len(cents))}


def downscale_mask(mask, max_side: int = 1024) -> tuple[np.ndarray, int]:
    """Shrink a mask by an integer factor (same on both axes: angles and ratios are kept) until
    its longer side is at most ``max_side``; return ``(mask, factor)``."""
    m = _check_mask(mask)
    f = max(1, int(np.ceil(max(m.shape) / max_side)))
    if f == 1:
        return m, 1
    return downscale_local_mean(m.astype(np.float32), (f, f)) >= 0.5, f


def synthetic_truth(patient_folder: str | os.PathLike) -> dict:
    """The generator's truth from ``<patient>/meta.json``: per-vertebra wedge ratios, per-disk
    heights and listhesis offsets (pixels), the Cobb angle and the pathologies."""
    path = Path(patient_folder) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"no synthetic truth at {path} (only spinelib.data.synthetic.generator writes meta.json)")
    meta = json.loads(path.read_text())
    return {
        "levels": [v["level"] for v in meta["vertebrae"]],
        "wedge_ratio": np.array([v["lat"]["wedge_ratio"] for v in meta["vertebrae"]]),
        "ap_endplates_deg": np.array([[v["ap"]["superior_endplate_deg"], v["ap"]["inferior_endplate_deg"]]
                                      for v in meta["vertebrae"]]),
        "disk_height_px": np.array([d["lat"]["height_px"] for d in meta["disks"]]),
        "listhesis_offset_px": np.array([d["lat"]["listhesis_offset_px"] for d in meta["disks"]]),
        "cobb_angle_deg": float(meta["cobb_angle_deg"]),
        "pathologies": meta["pathologies"],
    }


def aasce_cobb_agreement(frame: pd.DataFrame) -> pd.DataFrame:
    """Cobb angles recomputed from each AASCE image's landmarks next to the published maximum:
    ``image_name, patient_id, cobb_max, cobb_midline, cobb_endplates, error_midline,
    error_endplates`` (computed minus published, degrees)."""
    need = {"landmarks", "cobb_max", "image_name"}
    if not need <= set(frame.columns):
        raise ValueError(f"frame lacks columns {sorted(need - set(frame.columns))}; use spinelib.data.aasce.load_aasce()")
    rows = []
    for r in frame.itertuples(index=False):
        mid = cobb_angle_from_landmarks(r.landmarks, "midline")
        end = cobb_angle_from_landmarks(r.landmarks, "endplates")
        rows.append({"image_name": r.image_name, "patient_id": getattr(r, "patient_id", ""),
                     "cobb_max": float(r.cobb_max), "cobb_midline": mid, "cobb_endplates": end,
                     "error_midline": mid - float(r.cobb_max), "error_endplates": end - float(r.cobb_max)})
    return pd.DataFrame(rows)


def agreement_summary(measured: Sequence[float], truth: Sequence[float]) -> dict[str, float]:
    """``n, mae, median_abs_error, bias`` (mean of measured - truth), ``pearson_r`` and
    ``smape`` (the AASCE challenge's symmetric mean absolute percentage error,
    :math:`100 \\cdot \\sum|m - t| / \\sum(m + t)`)."""
    m = np.asarray(measured, dtype=float)
    t = np.asarray(truth, dtype=float)
    if m.shape != t.shape:
        raise ValueError(f"measured {m.shape} and truth {t.shape} differ in shape")
    ok = np.isfinite(m) & np.isfinite(t)
    m, t = m[ok], t[ok]
    if len(m) == 0:
        return {"n": 0, "mae": np.nan, "median_abs_error": np.nan, "bias": np.nan, "pearson_r": np.nan, "smape": np.nan}
    err = m - t
    r = float(np.corrcoef(m, t)[0, 1]) if len(m) > 1 and np.std(m) > 0 and np.std(t) > 0 else np.nan
    return {"n": int(len(m)), "mae": float(np.abs(err).mean()), "median_abs_error": float(np.median(np.abs(err))),
            "bias": float(err.mean()), "pearson_r": r, "smape": float(100 * np.abs(err).sum() / max((m + t).sum(), 1e-9))}
