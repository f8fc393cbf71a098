"""The three Cobb angles of an AP spine from its 68 AASCE corner landmarks, the challenge's way,
and the challenge's error measure (SMAPE).

The AASCE 2019 organisers computed the published angles with a short MATLAB routine released with
the challenge. This module re-implements its rule (our own code, same arithmetic):

1. **Vertebra mid-lines.** For vertebra :math:`v` with corners TL, TR, BL, BR the mid-line joins the
   midpoint of its left edge to the midpoint of its right edge,
   :math:`m_v = \\tfrac12(TR + BR) - \\tfrac12(TL + BL)`.
2. **All pairwise angles.** :math:`A_{uv} = \\arccos\\big(\\operatorname{round}_8(\\hat m_u \\cdot \\hat m_v)\\big)`
   (cosine rounded to 8 decimals as MATLAB's ``roundn(., -8)``; not clipped at 90 degrees, so a
   vertebra whose left and right corners are swapped gives an angle above 90).
3. **Main curve.** The largest :math:`A_{uv}` is the first angle; its two vertebrae ``u < v`` are
   the end vertebrae (ties: the first pair in MATLAB's column-major order).
4. **S test** on the 34 endplate midpoints :math:`p_1 .. p_{34}` (top then bottom endplate of each
   vertebra, T1 first): the spine is S-shaped when the points :math:`p_1 .. p_{32}` lie on *both*
   sides of the straight line :math:`p_1 p_{34}` (strictly). The MATLAB ``linefun`` leaves out
   :math:`p_{33}` (the top endplate of L5); so do we.
5. **Secondary angles.**

   - not S: second = :math:`A_{0,u}` (T1 against the upper end vertebra), third =
     :math:`A_{v,16}` (the lower end vertebra against L5);
   - S and the main curve in the upper half of the image (:math:`y_u + y_v < H` with
     :math:`y` the *bottom*-endplate midpoint of each end vertebra and :math:`H` the image height):
     second = :math:`\\max_{k \\le u} A_{u,k}` (the curve above), third = :math:`\\max_{k \\ge v} A_{v,k}`
     (the curve below);
   - S and the main curve in the lower half: second = :math:`\\max_{k \\le u} A_{u,k}` with its
     vertebra :math:`k^*`, third = :math:`\\max_{k \\le k^*} A_{k^*,k}` (two curves above).

The names ``pt, mt, tl`` follow the three columns of ``angles.csv`` (proximal-thoracic,
main-thoracic, thoracolumbar/lumbar), but by this construction the first column is always the
*largest* curve wherever it lies and the other two are the curves above / below it: they are not
anatomical regions. ``end_vertebrae`` says where each curve actually is.

Measured on the 481 AASCE training images: from the ``.mat`` pixel landmarks this rule gives the
published angles to the rounding of ``angles.csv`` (largest difference 0.0049 deg, SMAPE
0.00045 %); from ``landmarks.csv`` (normalised, 5 decimals) within 0.014 deg (SMAPE 0.0063 %).
Without the image height (the spine-middle fallback of :func:`cobb_angles`) the S-rule branch
changes in some images: SMAPE 0.77 %.

SMAPE (the challenge's ranking measure) over :math:`N` images with three angles each:
:math:`\\mathrm{SMAPE} = \\frac{100}{N} \\sum_i \\frac{\\sum_j |p_{ij} - t_{ij}|}{\\sum_j (p_{ij} + t_{ij})}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

N_VERTEBRAE = 17
N_CORNERS = 4
LEVELS: tuple[str, ...] = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
"""The 17 level names, T1 first (index 0) to L5 (index 16)."""

ANGLE_NAMES: tuple[str, ...] = ("pt", "mt", "tl")
COS_DECIMALS = 8
"""Cosines are rounded to this many decimals before ``arccos`` (MATLAB ``roundn(x, -8)``)."""


@dataclass(frozen=True)
class CobbResult:
    """Three Cobb angles (degrees) and the 0-based end vertebrae of each curve (0 = T1, 16 = L5).

    ``pt`` is the largest angle (the main curve), ``mt`` and ``tl`` the challenge's second and third
    angles (see the module docstring). ``is_s`` is the outcome of the S test and ``upper_half``
    whether the main curve's end vertebrae lie in the upper half of the image (``None`` when the
    rule did not need it, i.e. not S).
    """

    pt: float
    mt: float
    tl: float
    end_vertebrae: dict = field(default_factory=dict)
    is_s: bool = False
    upper_half: bool | None = None

    @property
    def angles(self) -> np.ndarray:
        """``[pt, mt, tl]`` as a float array."""
        return np.array([self.pt, self.mt, self.tl], dtype=float)

    def as_dict(self) -> dict:
        """JSON-ready: the three angles, the end vertebrae as indices and level names, ``is_s``."""
        out: dict = {name: float(getattr(self, name)) for name in ANGLE_NAMES}
        for name in ANGLE_NAMES:
            up, low = self.end_vertebrae[name]
            out[f"{name}_upper"] = int(up)
            out[f"{name}_lower"] = int(low)
            out[f"{name}_levels"] = f"{LEVELS[up]}-{LEVELS[low]}"
        out["is_s"] = bool(self.is_s)
        out["upper_half"] = None if self.upper_half is None else bool(self.upper_half)
        return out


def check_landmarks(landmarks) -> np.ndarray:
    """``landmarks`` as a float (17, 4, 2) array; accepts (68, 2). Wrong shape or non-finite values
    raise ``ValueError``, a non-numeric input ``TypeError``."""
    try:
        lm = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"landmarks must be numeric (17, 4, 2) or (68, 2) x, y pixels, got {type(landmarks).__name__}") from e
    if lm.shape == (N_VERTEBRAE * N_CORNERS, 2):
        lm = lm.reshape(N_VERTEBRAE, N_CORNERS, 2)
    if lm.shape != (N_VERTEBRAE, N_CORNERS, 2):
        raise ValueError(f"landmarks must have shape (17, 4, 2) or (68, 2), got {lm.shape}")
    if not np.isfinite(lm).all():
        bad = sorted({int(v) for v in np.argwhere(~np.isfinite(lm))[:, 0]})
        raise ValueError(f"landmarks contain NaN or infinite values (vertebrae {', '.join(LEVELS[v] for v in bad)})")
    return lm


def midline_vectors(landmarks) -> np.ndarray:
    """(17, 2) mid-line vectors :math:`m_v = \\tfrac12(TR + BR) - \\tfrac12(TL + BL)`."""
    lm = check_landmarks(landmarks)
    left = (lm[:, 0] + lm[:, 2]) / 2
    right = (lm[:, 1] + lm[:, 3]) / 2
    return right - left


def endplate_midpoints(landmarks) -> np.ndarray:
    """(34, 2) endplate midpoints, per vertebra top :math:`\\tfrac12(TL + TR)` then bottom
    :math:`\\tfrac12(BL + BR)`, T1 first."""
    lm = check_landmarks(landmarks)
    return np.stack([(lm[:, 0] + lm[:, 1]) / 2, (lm[:, 2] + lm[:, 3]) / 2], axis=1).reshape(-1, 2)


def pairwise_angles(landmarks) -> np.ndarray:
    """(17, 17) angles in degrees between all vertebra mid-lines,
    :math:`A_{uv} = \\arccos(\\operatorname{round}_8(\\hat m_u \\cdot \\hat m_v))`.
    A mid-line of length 0 raises ``ValueError``."""
    vec = midline_vectors(landmarks)
    norm = np.linalg.norm(vec, axis=1)
    if np.any(norm == 0):
        bad = ", ".join(LEVELS[v] for v in np.flatnonzero(norm == 0))
        raise ValueError(f"vertebra mid-line of length 0 (left and right edge midpoints coincide) at {bad}")
    unit = vec / norm[:, None]
    cos = np.clip(np.round(unit @ unit.T, COS_DECIMALS), -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def is_s_shaped(landmarks) -> bool:
    """The challenge's S test: do the endplate midpoints :math:`p_1..p_{32}` lie strictly on both
    sides of the line from :math:`p_1` (T1 top) to :math:`p_{34}` (L5 bottom)?

    Side of point :math:`p_i`: the sign of the cross product
    :math:`(p_1 - p_{34}) \\times (p_i - p_{34})` (the MATLAB code divides the same quantity by
    :math:`(x_1 - x_{34})(y_1 - y_{34})`, which flips every sign alike and fails on a vertical line).
    """
    p = endplate_midpoints(landmarks)
    first, last = p[0], p[-1]
    d = first - last
    rel = p[: len(p) - 2] - last
    side = d[0] * rel[:, 1] - d[1] * rel[:, 0]
    return bool((side > 0).any() and (side < 0).any())


def _first_max(values: np.ndarray) -> int:
    """Index of the first maximum (MATLAB ``max`` and ``np.argmax`` agree on it)."""
    return int(np.argmax(values))


def cobb_angles(landmarks, image_height: float | None = None) -> CobbResult:
    """The three Cobb angles of the AASCE challenge from 68 corner landmarks (module docstring).

    ``landmarks``: (68, 2) or (17, 4, 2) x, y pixels, corners TL, TR, BL, BR, T1 first.
    ``image_height`` (pixels) is :math:`H` of the S-shape rule "main curve in the upper half":
    :math:`y_u + y_v < H`. Without it the spine's own vertical middle is used,
    :math:`H = y_{\\mathrm{T1\\,top}} + y_{\\mathrm{L5\\,bottom}}` (the mean of the two endplate
    midpoints), so the rule asks whether the main curve lies in the upper half of the spine;
    pass the image height to reproduce the published angles exactly.
    """
    lm = check_landmarks(landmarks)
    if image_height is not None:
        if not np.isscalar(image_height) or not np.isfinite(image_height) or image_height <= 0:
            raise ValueError(f"image_height must be a positive number of pixels, got {image_height!r}")
        height = float(image_height)
    else:
        p = endplate_midpoints(lm)
        height = float(p[0, 1] + p[-1, 1])
    ang = pairwise_angles(lm)
    last = N_VERTEBRAE - 1
    # MATLAB: [maxt, pos1] = max(A); [pt, pos2] = max(maxt) -> first column, then first row, of the max.
    flat = _first_max(ang.T.ravel())
    upper, lower = divmod(flat, N_VERTEBRAE)
    upper, lower = int(upper), int(lower)
    if upper > lower:  # only when the matrix is not exactly symmetric
        upper, lower = lower, upper
    main = float(ang[upper, lower])
    s_shape = is_s_shaped(lm)
    bottom_y = endplate_midpoints(lm)[1::2, 1]
    upper_half: bool | None = None
    if not s_shape:
        second, second_ends = float(ang[0, upper]), (0, upper)
        third, third_ends = float(ang[lower, last]), (lower, last)
    else:
        k1 = _first_max(ang[upper, : upper + 1])
        second, second_ends = float(ang[upper, k1]), (k1, upper)
        upper_half = bool(bottom_y[upper] + bottom_y[lower] < height)
        if upper_half:
            k2 = lower + _first_max(ang[lower, lower:])
            third, third_ends = float(ang[lower, k2]), (lower, k2)
        else:
            k2 = _first_max(ang[k1, : k1 + 1])
            third, third_ends = float(ang[k1, k2]), (k2, k1)
    ends = {"pt": (upper, lower), "mt": second_ends, "tl": third_ends}
    return CobbResult(pt=main, mt=second, tl=third, end_vertebrae=ends, is_s=s_shape, upper_half=upper_half)


def _check_angle_arrays(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.ndim == 1 and p.shape == (3,):
        p = p[None]
    if t.ndim == 1 and t.shape == (3,):
        t = t[None]
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"pred must have shape (N, 3) (pt, mt, tl per image), got {p.shape}")
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and true {t.shape} differ in shape")
    if len(p) == 0:
        raise ValueError("need at least one image")
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError("pred and true must be finite (no NaN or infinite angles)")
    if (p < 0).any() or (t < 0).any():
        raise ValueError("Cobb angles must be non-negative")
    return p, t


def smape_per_image(pred, true) -> np.ndarray:
    """Per image :math:`100 \\cdot \\sum_j |p_j - t_j| / \\sum_j (p_j + t_j)` over the three angles
    (percent; 0 where both sums are 0). ``pred``, ``true``: (N, 3) degrees, or one (3,) row."""
    p, t = _check_angle_arrays(pred, true)
    num = np.abs(p - t).sum(axis=1)
    den = (p + t).sum(axis=1)
    return 100.0 * np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def smape(pred, true) -> float:
    """The challenge's SMAPE in percent: the mean over images of :func:`smape_per_image`."""
    return float(smape_per_image(pred, true).mean())


def cobb_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per image of a :func:`spinelib.data.aasce.load_aasce` frame: ``image_name, patient_id``,
    the published ``true_pt, true_mt, true_tl``, the recomputed ``pt, mt, tl`` (image height as
    :math:`H`), end vertebrae ``pt_levels`` etc. (e.g. ``"T5-T11"``) and their indices, ``is_s``,
    ``upper_half``, the per-image ``smape`` and ``max_abs_diff`` (largest of the three
    differences, degrees)."""
    need = {"image_name", "landmarks", "cobb_pt", "cobb_mt", "cobb_tl"}
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame from load_aasce, got {type(frame).__name__}")
    if not need <= set(frame.columns):
        raise ValueError(f"frame lacks columns {sorted(need - set(frame.columns))}; use spinelib.data.aasce.load_aasce()")
    rows = []
    for r in frame.itertuples(index=False):
        height = getattr(r, "height", None)
        res = cobb_angles(r.landmarks, image_height=None if height is None else float(height))
        row = {"image_name": r.image_name, "patient_id": getattr(r, "patient_id", ""),
               "true_pt": float(r.cobb_pt), "true_mt": float(r.cobb_mt), "true_tl": float(r.cobb_tl)}
        row.update(res.as_dict())
        rows.append(row)
    out = pd.DataFrame(rows)
    true = out[["true_pt", "true_mt", "true_tl"]].to_numpy()
    pred = out[["pt", "mt", "tl"]].to_numpy()
    out["smape"] = smape_per_image(pred, true)
    out["max_abs_diff"] = np.abs(pred - true).max(axis=1)
    return out
