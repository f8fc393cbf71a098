"""From a vertebra mask to 17 labelled vertebrae with 4 corners each (the "mask route" to Cobb angles).

A segmentation network gives a binary mask (or a probability map) of the 17 vertebral bodies
T1..L5 on an AP X-ray; Cobb angles need each body's four corners TL, TR, BL, BR, T1 first.

- :func:`separate_bodies`, :func:`assign_levels` - the bodies as separate masks, top to bottom, and
  their level names (:mod:`spinelib.geometry.vertebral_bodies`, re-exported here);
- :func:`fit_corners` - one body's 4 corners, by one of :data:`METHODS`;
- :func:`corners_from_mask` - the whole chain, ``(17, 4, 2)`` with NaN rows for missing levels;
- :func:`quadrilateral_dice`, :func:`landmark_errors` - how close fitted corners are to the truth;
- :func:`mask_route_floor` - the route's floor on real AASCE ground truth: masks drawn from the
  TRUE corners (a perfect mask network), corners fitted back, errors and Cobb angles per image.

Pixel convention: pixel centres sit at integer (x, y); :func:`spinelib.data.aasce.vertebra_mask`
fills the pixels whose centres lie inside a quadrilateral, so the outermost pixel centres of a
body lie on average half a pixel inside its true outline. Every fit therefore pushes its four
sides outwards by ``edge_offset`` (default 0.5 px) before returning the corners.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd

from spinelib.data.aasce import (
    N_CORNERS,
    N_VERTEBRAE,
    scale_landmarks,
    vertebra_mask,
)
from spinelib.geometry.vertebral_bodies import (
    as_binary_mask,
    assign_levels,
    check_fraction,
    check_positive_int,
    separate_bodies,
    unit_down,
)

__all__ = ["METHODS", "DEFAULT_METHOD", "MaskCorners", "assign_levels", "corners_from_mask", "fit_corners",
           "landmark_errors", "mask_route_floor", "quadrilateral_dice", "separate_bodies", "spine_directions",
           "summarise_floor"]


#: corner-fitting methods of :func:`fit_corners`
METHODS: tuple[str, ...] = ("moments", "min_area_rect", "diagonal", "approx_poly", "lsq")
DEFAULT_METHOD = "lsq"


# --------------------------------------------------------------------------- corner fits

def _order_corners(quad: np.ndarray, down=None) -> np.ndarray:
    """Four points (any order) as TL, TR, BL, BR in the frame of the spine direction ``down``
    (unit (dx, dy), default straight down the image).

    The points are put in cyclic order around their centroid; of the two pairs of opposite sides
    the endplates are the pair whose mean direction :math:`a` is closer to perpendicular to
    ``down`` (smallest :math:`|\hat a \cdot \mathrm{down}|`); with :math:`a` turned to point to
    the image's right of ``down`` and :math:`n \perp a` along ``down``, the top side is the one
    whose midpoint has the smallest :math:`n` coordinate, its end with the smaller :math:`a`
    coordinate is TL, TL's other neighbour BL.
    """
    dn = unit_down(down)
    q = np.asarray(quad, dtype=np.float64)
    c = q.mean(axis=0)
    q = q[np.argsort(np.arctan2(q[:, 1] - c[1], q[:, 0] - c[0]))]  # cyclic
    sides = np.roll(q, -1, axis=0) - q
    best = None
    for i, j in ((0, 2), (1, 3)):  # opposite sides run in opposite directions around the cycle
        d = sides[i] / (np.linalg.norm(sides[i]) + 1e-12) - sides[j] / (np.linalg.norm(sides[j]) + 1e-12)
        d = d / (np.linalg.norm(d) + 1e-12)
        if best is None or abs(d @ dn) < abs(best @ dn):
            best = d
    axis = best
    normal = np.array([-axis[1], axis[0]])
    if normal @ dn < 0:
        axis, normal = -axis, -normal
    mids = (q + np.roll(q, -1, axis=0)) / 2 - c
    top = int(np.argmin(mids @ normal))  # side top runs q[top] -> q[top + 1]
    i, j = top, (top + 1) % 4
    tl_i, tr_i = (i, j) if (q[i] - c) @ axis < (q[j] - c) @ axis else (j, i)
    nb = [(tl_i - 1) % 4, (tl_i + 1) % 4]
    bl_i = nb[0] if nb[1] == tr_i else nb[1]
    br_i = ({0, 1, 2, 3} - {tl_i, tr_i, bl_i}).pop()
    return q[[tl_i, tr_i, bl_i, br_i]]


def _line_intersection(p1, d1, p2, d2) -> np.ndarray:
    """Point where lines ``p1 + s d1`` and ``p2 + t d2`` meet (solve ``[d1, -d2] (s, t) = p2 - p1``)."""
    a = np.array([d1, -np.asarray(d2)]).T
    if abs(np.linalg.det(a)) < 1e-9:
        return (np.asarray(p1) + np.asarray(p2)) / 2
    s = np.linalg.solve(a, np.asarray(p2) - np.asarray(p1))[0]
    return np.asarray(p1) + s * np.asarray(d1)


def _offset_quad(corners: np.ndarray, offset: float) -> np.ndarray:
    """Push the four sides of a TL, TR, BL, BR quadrilateral ``offset`` px outwards (each side's
    line moved along its outward normal) and return the new corners where the lines meet."""
    if offset == 0:
        return corners
    cyc = corners[[0, 1, 3, 2]]  # TL, TR, BR, BL
    c = cyc.mean(axis=0)
    lines = []
    for k in range(4):
        p, q = cyc[k], cyc[(k + 1) % 4]
        d = q - p
        nrm = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-12)
        if (p - c) @ nrm < 0:
            nrm = -nrm
        lines.append((p + offset * nrm, d))
    out = np.array([_line_intersection(*lines[k - 1], *lines[k]) for k in range(4)])  # corner k = sides k-1, k
    return out[[0, 1, 3, 2]]


def _contour(body: np.ndarray) -> np.ndarray:
    """(N, 2) float (x, y) pixel centres of the largest outer contour (``cv2.findContours``)."""
    contours, _ = cv2.findContours(body.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        raise ValueError("body mask is empty")
    return max(contours, key=len)[:, 0, :].astype(np.float64)


def _fit_moments(body: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Rectangle with the body's centroid and second moments: principal axes of the pixel
    covariance, side lengths :math:`\\sqrt{12 \\lambda_i}` (a uniform rectangle of side ``L`` has
    variance :math:`L^2/12`)."""
    rr, cc = np.nonzero(body)
    xy = np.stack([cc, rr], axis=1).astype(np.float64)
    c = xy.mean(axis=0)
    lam, vec = np.linalg.eigh(np.cov(xy.T) if len(xy) > 1 else np.eye(2))
    half = np.sqrt(12 * np.maximum(lam, 0)) / 2
    u, v = vec[:, 0] * half[0], vec[:, 1] * half[1]
    return _order_corners(np.array([c + u + v, c + u - v, c - u - v, c - u + v]))


def _fit_min_area_rect(body: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``cv2.minAreaRect`` of the contour's pixel centres, as 4 corners (``cv2.boxPoints``)."""
    return _order_corners(cv2.boxPoints(cv2.minAreaRect(pts.astype(np.float32))).astype(np.float64))


def _diagonal_extremes(pts: np.ndarray) -> np.ndarray:
    """The contour pixels extreme along the diagonals of the ``cv2.minAreaRect`` box: with the box's
    unit axes ``u`` (width, rightwards) and ``v`` (height, downwards) and centred coordinates
    :math:`a = p\\cdot u`, :math:`b = p\\cdot v`: TL minimises :math:`a/W + b/H`, BR maximises it,
    TR maximises :math:`a/W - b/H`, BL minimises it (``W``, ``H`` the box's side lengths)."""
    box = _order_corners(cv2.boxPoints(cv2.minAreaRect(pts.astype(np.float32))).astype(np.float64))
    u, v = box[1] - box[0], box[2] - box[0]
    wid, hei = np.linalg.norm(u) + 1e-9, np.linalg.norm(v) + 1e-9
    u, v = u / wid, v / hei
    rel = pts - box.mean(axis=0)
    a, b = rel @ u / wid, rel @ v / hei
    s, t = a + b, a - b
    return pts[[np.argmin(s), np.argmax(t), np.argmin(t), np.argmax(s)]]


def _fit_diagonal(body: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return _order_corners(_diagonal_extremes(pts))


def _fit_approx_poly(body: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``cv2.approxPolyDP`` of the convex hull with the smallest tolerance (bisection on
    :math:`\\varepsilon` between 0 and the perimeter) that leaves 4 vertices; if no tolerance gives
    exactly 4, the diagonal-extreme pixels."""
    hull = cv2.convexHull(pts.astype(np.float32))
    if len(hull) < 4:
        return _fit_diagonal(body, pts)
    lo, hi = 0.0, float(cv2.arcLength(hull, True))
    best = None
    for _ in range(40):
        eps = (lo + hi) / 2
        poly = cv2.approxPolyDP(hull, eps, True)
        if len(poly) > 4:
            lo = eps
        else:
            if len(poly) == 4:
                best = poly
            hi = eps
    if best is None:
        return _fit_diagonal(body, pts)
    return _order_corners(best[:, 0, :].astype(np.float64))


def _fit_lsq(body: np.ndarray, pts: np.ndarray, trim: float = 0.15, n_iter: int = 3) -> np.ndarray:
    """Least-squares quadrilateral: the contour is cut into four sides at the diagonal-extreme
    pixels; each side, without ``trim`` of its length at either end (corners are rounded in a
    pixel mask), gets a total-least-squares line (``cv2.fitLine``, L2: the principal axis of its
    points); the corners are where consecutive lines meet. Repeated ``n_iter`` times with the
    sides re-cut at the contour points nearest to the new corners."""
    n = len(pts)
    cyc = _diagonal_extremes(pts)
    if n < 12:
        return _order_corners(cyc)
    size = float(np.ptp(pts, axis=0).max())
    for _ in range(n_iter):
        cut = np.sort([int(np.argmin(((pts - q) ** 2).sum(axis=1))) for q in cyc])
        if len(np.unique(cut)) < 4:
            break
        lines = []
        for k in range(4):  # side k runs along the contour from cut[k] to cut[k + 1]
            a, b = cut[k], cut[(k + 1) % 4]
            side = pts[np.arange(a, a + ((b - a) % n) + 1) % n]
            m = len(side)
            lo, hi = int(np.floor(trim * m)), int(np.ceil((1 - trim) * m))
            core = side[lo:hi] if hi - lo >= 3 else side
            if len(core) < 2 or np.ptp(core, axis=0).max() < 1e-9:
                return _order_corners(cyc)
            vx, vy, x0, y0 = cv2.fitLine(core.astype(np.float32), cv2.DIST_L2, 0, 0.01, 0.01).ravel()
            lines.append((np.array([x0, y0], dtype=np.float64), np.array([vx, vy], dtype=np.float64)))
        new = np.array([_line_intersection(*lines[k - 1], *lines[k]) for k in range(4)])  # corner at cut[k]
        # a near-parallel pair of sides can throw a corner far away: keep the previous corners then
        if not np.isfinite(new).all() or np.abs(new - pts[cut]).max() > 0.25 * size:
            break
        cyc = new
    return _order_corners(cyc)


_FITS = {"moments": _fit_moments, "min_area_rect": _fit_min_area_rect, "diagonal": _fit_diagonal,
         "approx_poly": _fit_approx_poly, "lsq": _fit_lsq}


def fit_corners(body_mask, method: str = DEFAULT_METHOD, edge_offset: float = 0.5, down=None) -> np.ndarray:
    """The four corners ``(4, 2)`` (x, y) of one body mask, in the order TL, TR, BL, BR.

    ``method`` (see :data:`METHODS`):

    - ``"moments"`` - rectangle with the body's second moments (sides :math:`\\sqrt{12\\lambda}`);
    - ``"min_area_rect"`` - ``cv2.minAreaRect`` of the outline;
    - ``"diagonal"`` - the outline pixels extreme along the diagonals of that box;
    - ``"approx_poly"`` - ``cv2.approxPolyDP`` of the convex hull down to 4 vertices;
    - ``"lsq"`` - four total-least-squares lines fitted to the outline's four sides, intersected.

    The fitted sides are then pushed ``edge_offset`` px outwards (the outline runs through the
    outermost pixel centres, on average half a pixel inside the drawn quadrilateral); 0 turns it
    off (the moments box is left as it is: a run of ``n`` pixel centres already has the variance
    of a segment of length ``n``). "Top" and "left" are in the frame of ``down``, the spine's
    direction at this body (unit (dx, dy); default (0, 1), straight down the image, which labels
    bodies tilted by less than 45 degrees right); :func:`corners_from_mask` passes the direction
    from the neighbouring bodies' centroids.
    """
    if method not in _FITS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    edge_offset = check_fraction(edge_offset, "edge_offset", 0.0, 5.0)
    body = as_binary_mask(body_mask, name="body_mask")
    if not body.any():
        raise ValueError("body_mask is empty: no foreground pixel")
    pts = _contour(body)
    if len(pts) < 3 or np.ptp(pts, axis=0).min() < 1:
        raise ValueError(f"body_mask is too thin to fit a quadrilateral ({int(body.sum())} pixels)")
    # the moments box already spans whole pixels (variance of n pixel centres ~ n^2 / 12)
    dn = unit_down(down)
    quad = _order_corners(_FITS[method](body, pts), dn)
    return _order_corners(_offset_quad(quad, 0.0 if method == "moments" else edge_offset), dn)


# --------------------------------------------------------------------------- whole mask
def spine_directions(bodies) -> np.ndarray:
    """Unit direction ``(n, 2)`` of the spine at each body (sorted top to bottom): the central
    difference of the centroids :math:`c_{k+1} - c_{k-1}` (one-sided at the ends, ``np.gradient``);
    straight down ``(0, 1)`` with fewer than two bodies."""
    if len(bodies) < 2:
        return np.tile([0.0, 1.0], (len(bodies), 1))
    cent = np.array([np.argwhere(b).mean(axis=0)[::-1] for b in bodies])  # (x, y)
    t = np.gradient(cent, axis=0)
    norm = np.linalg.norm(t, axis=1, keepdims=True)
    t = np.where(norm > 1e-9, t / np.maximum(norm, 1e-9), [0.0, 1.0])
    return np.where(t[:, 1:2] < 0, -t, t)  # always pointing down the image


@dataclass
class MaskCorners:
    """Result of :func:`corners_from_mask`: ``corners`` (17, 4, 2) with NaN rows for missing
    levels, ``n_found`` levels found, ``n_bodies`` bodies separated, ``missing`` level names,
    ``complete`` (all levels, one body each, no extra body), ``levels`` (the
    :func:`assign_levels` table) and ``n_cut`` (bodies cut apart without a neck, step 5 of
    :func:`separate_bodies`: their inner corners are guesses)."""

    corners: np.ndarray
    n_found: int
    n_bodies: int
    missing: tuple[str, ...]
    complete: bool
    levels: pd.DataFrame = field(repr=False)
    n_cut: int = 0

    def __iter__(self):  # ``corners, complete = corners_from_mask(...)``
        return iter((self.corners, self.complete))


def corners_from_mask(mask, method: str | tuple[str, ...] = DEFAULT_METHOD, threshold: float = 0.5,
                      n_levels: int = 17, edge_offset: float = 0.5, **separate_kw):
    """The mask route: ``mask`` (bool, 0/1 or a probability map thresholded at ``threshold``) ->
    :func:`separate_bodies` -> :func:`assign_levels` -> :func:`fit_corners` per level, each body
    labelled in the frame of the spine direction at it (:func:`spine_directions`).

    Returns a :class:`MaskCorners` (it unpacks as ``corners, complete``); missing levels are NaN
    rows, never invented. ``method`` may also be a tuple of methods: then a dict method ->
    :class:`MaskCorners` (the bodies are separated once). The work is done in the foreground's
    bounding box (2 px margin), the corners returned in the full image's pixels.
    """
    methods = (method,) if isinstance(method, str) else tuple(method)
    for m in methods:
        if m not in _FITS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {m!r}")
    fg = as_binary_mask(mask, threshold)
    n_levels = check_positive_int(n_levels, "n_levels")
    rows, cols = np.nonzero(fg.any(axis=1))[0], np.nonzero(fg.any(axis=0))[0]
    if rows.size:
        y0, x0 = max(int(rows[0]) - 2, 0), max(int(cols[0]) - 2, 0)
        fg = fg[y0:int(rows[-1]) + 3, x0:int(cols[-1]) + 3]
    else:
        y0 = x0 = 0
    bodies, n_cut = separate_bodies(fg, n_expected=n_levels, return_cuts=True, **separate_kw)
    levels = assign_levels(bodies, n_levels=n_levels)
    downs = spine_directions(bodies)
    a = levels.attrs
    out = {}
    for m in methods:
        corners = np.full((n_levels, N_CORNERS, 2), np.nan)
        for lev, k in enumerate(levels.body):
            if k >= 0:
                corners[lev] = fit_corners(bodies[k], method=m, edge_offset=edge_offset, down=downs[k])
        corners += np.array([x0, y0], dtype=np.float64)
        out[m] = MaskCorners(corners, a["n_found"], a["n_bodies"], a["missing"], a["complete"], levels, n_cut)
    return out[method] if isinstance(method, str) else out


# --------------------------------------------------------------------------- agreement with the truth
def _check_corners(a, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (N_CORNERS, 2):
        raise ValueError(f"{name} must have shape (n_vertebrae, 4, 2), got {arr.shape}")
    return arr


def landmark_errors(pred, true) -> np.ndarray:
    """Per-corner Euclidean distances :math:`\\lVert p - t \\rVert_2`, shape (n, 4); NaN where
    either point is NaN (a missing level)."""
    p, t = _check_corners(pred, "pred"), _check_corners(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"pred and true must have the same shape, got {p.shape} and {t.shape}")
    return np.sqrt(((p - t) ** 2).sum(axis=-1))


def quadrilateral_dice(pred_corners, true_corners, shape) -> float:
    """Dice :math:`2|P \\cap T| / (|P| + |T|)` of the 17 quadrilaterals drawn from the predicted
    corners (P) and from the true corners (T), both with :func:`spinelib.data.aasce.vertebra_mask` on
    an image of ``shape=(H, W)``. A missing (NaN) predicted level draws nothing. The masks are
    drawn in the integer bounding box of all corners (clipped to the image), which gives the same
    pixels as the full image and is much faster."""
    from spinelib.core.imageio import check_size

    p, t = _check_corners(pred_corners, "pred_corners"), _check_corners(true_corners, "true_corners")
    if p.shape != (N_VERTEBRAE, N_CORNERS, 2) or t.shape != p.shape:
        raise ValueError(f"pred_corners and true_corners must both have shape (17, 4, 2), got {p.shape} and {t.shape}")
    if not np.isfinite(t).all():
        raise ValueError("true_corners contain NaN or infinite values")
    h, w = check_size(shape)
    allpts = np.concatenate([t.reshape(-1, 2), p[np.isfinite(p).all(axis=(1, 2))].reshape(-1, 2)])
    x0, y0 = np.clip(np.floor(allpts.min(axis=0)).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(allpts.max(axis=0)).astype(int) + 1, 1, [w, h])
    crop = (int(y1 - y0), int(x1 - x0))
    off = np.array([x0, y0], dtype=np.float64)
    missing = ~np.isfinite(p).all(axis=(1, 2))
    p = p - off
    p[missing] = -10.0  # a degenerate quadrilateral outside the image draws no pixel
    pm, tm = vertebra_mask(p, crop), vertebra_mask(t - off, crop)
    total = pm.sum() + tm.sum()
    return float(2 * np.logical_and(pm, tm).sum() / total) if total else 1.0


def _cobb_module():
    """:mod:`spinelib.geometry.cobb` if it exists yet, else None."""
    try:
        from spinelib.geometry import cobb
    except ImportError:
        return None
    return cobb if hasattr(cobb, "cobb_angles") else None


def _angles(cobb, landmarks, height: float) -> np.ndarray:
    """``(pt, mt, tl)`` degrees from ``cobb.cobb_angles`` (image height as its H, as ``cobb_table``
    does); NaN without the module or with a missing level."""
    if cobb is None or not np.isfinite(landmarks).all():
        return np.full(3, np.nan)
    r = cobb.cobb_angles(landmarks, image_height=float(height))
    return np.array([r.pt, r.mt, r.tl], dtype=np.float64)


def mask_route_floor(frame: pd.DataFrame, size: tuple[int, int] | None = None, method: str = DEFAULT_METHOD,
                     edge_offset: float = 0.5, dice: bool = True) -> pd.DataFrame:
    """The mask route's floor: for each image of ``frame`` (from :func:`spinelib.data.aasce.load_aasce`)
    draw the mask of its TRUE corners (:func:`spinelib.data.aasce.vertebra_mask`) - at the original
    resolution (``size=None``) or in a network frame ``size=(h, w)`` from
    :func:`spinelib.data.aasce.scale_landmarks` - fit the corners back with :func:`corners_from_mask`,
    scale them back to the original pixels and compare with the truth.

    One row per image: ``image_name, patient_id, n_found, n_bodies, complete, in_order``
    (complete and every fitted centre lies inside the true quadrilateral of its own level),
    ``err_mean, err_median, err_max`` (corner error, original px), ``dice`` (quadrilateral Dice in
    the original image, NaN when ``dice=False``), the fitted-corner angles ``pt, mt, tl``, those
    of the true landmarks ``true_pt, true_mt, true_tl`` (both with
    :func:`spinelib.geometry.cobb.cobb_angles`; NaN while that module does not exist or when a
    level is missing), ``csv_pt, csv_mt, csv_tl`` (angles.csv), the per-image ``smape`` of
    fitted against true-landmark angles, ``top_down`` (load_aasce's flag: the published vertebrae
    go down the image; where not, fitted levels cannot match the published order) and ``method``,
    ``frame``. ``method`` may be a tuple of methods: one row per image and method, the mask drawn
    and separated once. ``corners`` holds each row's fitted (17, 4, 2) array (original pixels).
    :func:`summarise_floor` turns it into a table, one line per method.
    """
    if not isinstance(frame, pd.DataFrame) or not {"landmarks", "height", "width"} <= set(frame.columns):
        raise TypeError("frame must be a DataFrame from load_aasce (columns landmarks, height, width)")
    if size is not None:
        from spinelib.core.imageio import check_size

        size = check_size(size)
    cobb = _cobb_module()
    methods = (method,) if isinstance(method, str) else tuple(method)
    rows, all_corners = [], []
    for r in frame.itertuples(index=False):
        true = np.asarray(r.landmarks, dtype=np.float64)
        orig = (int(r.height), int(r.width))
        shape = orig if size is None else size
        lm = true if size is None else scale_landmarks(true, orig, size)
        results = corners_from_mask(vertebra_mask(lm, shape), method=methods, edge_offset=edge_offset)
        a_true = _angles(cobb, true, r.height)
        for m, res in results.items():
            pred = res.corners if size is None else scale_landmarks(res.corners, size, orig)
            err = landmark_errors(pred, true)
            has = np.isfinite(err).any()
            inside = [bool(np.isfinite(c).all()) and cv2.pointPolygonTest(
                true[v][[0, 1, 3, 2]].astype(np.float32), (float(c[0]), float(c[1])), False) >= 0
                for v, c in enumerate(pred.mean(axis=1))]
            a_pred = _angles(cobb, pred, r.height)
            rows.append({
                "image_name": getattr(r, "image_name", None), "patient_id": getattr(r, "patient_id", None),
                "method": m, "frame": "original" if size is None else f"{size[0]}x{size[1]}",
                "n_found": res.n_found, "n_bodies": res.n_bodies, "n_cut": res.n_cut, "complete": res.complete,
                "in_order": res.complete and all(inside),
                "top_down": getattr(r, "vertebrae_top_down", np.nan),
                "err_mean": float(np.nanmean(err)) if has else np.nan,
                "err_median": float(np.nanmedian(err)) if has else np.nan,
                "err_max": float(np.nanmax(err)) if has else np.nan,
                "dice": quadrilateral_dice(pred, true, orig) if dice else np.nan,
                "pt": a_pred[0], "mt": a_pred[1], "tl": a_pred[2],
                "true_pt": a_true[0], "true_mt": a_true[1], "true_tl": a_true[2],
                "csv_pt": getattr(r, "cobb_pt", np.nan), "csv_mt": getattr(r, "cobb_mt", np.nan),
                "csv_tl": getattr(r, "cobb_tl", np.nan),
                "smape": (float(cobb.smape_per_image(a_pred, a_true)[0])
                          if cobb is not None and np.isfinite(a_pred).all() else np.nan),
            })
            all_corners.append(pred)
    out = pd.DataFrame(rows)
    out["corners"] = pd.Series(all_corners, index=out.index, dtype=object)
    return out


def _summary_line(floor: pd.DataFrame, cobb) -> dict:
    ok = floor[["pt", "mt", "tl"]].notna().all(axis=1).to_numpy()
    good = floor.in_order.to_numpy(dtype=bool)
    out = {"images": len(floor), "complete": float(floor.complete.mean()), "in_order": float(good.mean()),
           "err_mean_px": float(floor.err_mean.mean()), "err_median_px": float(floor.err_median.median()),
           "err_mean_in_order_px": float(floor.err_mean[good].mean()) if good.any() else np.nan,
           "dice": float(floor.dice.mean()), "n_angles": int(ok.sum())}
    cols = {"fit": ["pt", "mt", "tl"], "lm": ["true_pt", "true_mt", "true_tl"], "csv": ["csv_pt", "csv_mt", "csv_tl"]}
    for key, (a, b) in {"smape_vs_true_lm": ("fit", "lm"), "smape_vs_csv": ("fit", "csv"),
                        "smape_lm_vs_csv": ("lm", "csv")}.items():
        out[key] = (float(cobb.smape(floor.loc[ok, cols[a]].to_numpy(), floor.loc[ok, cols[b]].to_numpy()))
                    if cobb is not None and ok.any() else np.nan)
    return out


def summarise_floor(floor: pd.DataFrame) -> pd.DataFrame:
    """The floor table, one line per ``method`` and ``frame`` of :func:`mask_route_floor` rows:
    ``images``; shares ``complete`` and ``in_order``; corner error in original pixels
    ``err_mean_px`` (mean of the per-image means), ``err_median_px`` (median of the per-image
    medians), ``err_mean_in_order_px`` (mean over the images found in order); mean quadrilateral
    ``dice``; and SMAPE (%, :func:`spinelib.geometry.cobb.smape`, over the ``n_angles`` images with
    all 17 levels) of the fitted-corner angles against the true-landmark angles
    (``smape_vs_true_lm``) and against angles.csv (``smape_vs_csv``), and of the true-landmark
    angles against angles.csv (``smape_lm_vs_csv``, the angle code's own floor). SMAPE columns are
    NaN while :mod:`spinelib.geometry.cobb` does not exist."""
    need = {"method", "frame", "complete", "in_order", "err_mean", "err_median", "dice", "pt", "mt", "tl"}
    if not isinstance(floor, pd.DataFrame) or not need <= set(floor.columns):
        raise ValueError("floor must be a DataFrame from mask_route_floor")
    cobb = _cobb_module()
    lines = [{"method": m, "frame": f, **_summary_line(g, cobb)}
             for (m, f), g in floor.groupby(["method", "frame"], sort=False)]
    return pd.DataFrame(lines)
