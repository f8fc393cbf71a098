"""Which AASCE labels are wrong: geometric checks on each image's 68 corner landmarks and on its
published Cobb angles.

Every check gives one row per (image, check) in :func:`audit_labels`, naming the vertebrae (by
their *published* slot, T1 .. L5) and the numbers behind the flag. The checks:

``corner_order``
    within a vertebra TL left of TR and BL left of BR, TL above BL and TR above BR (image
    coordinates, y down).
``vertebra_order``
    the 17 centres do not go strictly down the image in the published order (e.g. the topmost box
    stored last, in the L5 slot); the vertebrae named are the fewest slots off the longest top-down
    run (:func:`out_of_order_slots`). The detail gives the top-down order of the slots and the Cobb
    angles recomputed on it, since the published angles were computed on the published order.
``height``, ``width``
    a vertebra out of line both with its own image and with its neighbours:
    :math:`a_v = \\log(s_v / \\operatorname{median}_u s_u) - P_v` (the image-relative size minus the
    typical value :math:`P_v` of that level) and :math:`r_v = a_v - \\tfrac12(a_{v-1} + a_{v+1})` (one
    neighbour at T1 and L5) both beyond :data:`SIZE_Z_TOL` robust standard deviations. Height is
    the mean length of the left and right edges, width that of the top and bottom edges.
``overlap``
    two consecutive boxes (top-down) share more than :data:`OVERLAP_TOL` of the smaller one's area
    (``cv2.intersectConvexConvex`` on the convex hulls).
``spacing``
    a jump in the distance between consecutive centres,
    :math:`r_v = \\log d_v - \\tfrac12(\\log d_{v-1} + \\log d_{v+1})` beyond :data:`SPACING_Z_TOL`
    robust SDs: a skipped or doubled level, a box placed a level off.
``box_spacing``
    the image's boxes are small for their spacing: the median of centre distance / mean height
    of the pair is beyond :data:`BOX_SPACING_Z_TOL` robust SDs of its typical value (boxes that
    do not cover the bodies, or levels missing throughout).
``clipped``
    corners outside the image, clipped by the loader (``n_clipped`` of :func:`spinelib.data.aasce.load_aasce`).
``angle``
    a published angle differs from :func:`spinelib.geometry.cobb.cobb_angles` on the published
    landmarks (image height as :math:`H`) by more than :data:`ANGLE_TOL_DEG`, or cannot be
    recomputed (a mid-line of length 0).

The geometric checks except ``corner_order`` and ``vertebra_order`` run on the vertebrae sorted top
to bottom, so one box stored in the wrong slot does not make all its "neighbours" look wrong.

Tolerances come from the 481 AASCE training images (8,177 vertebrae), measured with the functions
below: the typical level profiles :data:`HEIGHT_PROFILE`, :data:`WIDTH_PROFILE` are the per-level
medians of :math:`\\log(s_v / \\operatorname{median} s)`; the robust SDs
(:math:`1.4826 \\cdot \\mathrm{MAD}`) are the ``*_RSD`` constants. A whole labelling shifted by one
level (started at C7 instead of T1) keeps its spacing and sizes smooth and is *not* detected: a
test fitting the size profile one level up or down gave a continuous distribution with no
separate tail on these images.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from spinelib.geometry.cobb import LEVELS, check_landmarks, cobb_angles

CHECKS: tuple[str, ...] = ("corner_order", "vertebra_order", "height", "width", "overlap", "spacing",
                           "box_spacing", "clipped", "angle")

CHECK_DESCRIPTIONS: dict[str, str] = {
    "corner_order": "corners of a vertebra out of order (TL right of TR, top below bottom, ...)",
    "vertebra_order": "vertebrae not stored top to bottom (e.g. the topmost box in the L5 slot)",
    "height": "a box far taller or flatter than its image's and its neighbours' boxes",
    "width": "a box far wider or narrower than its image's and its neighbours' boxes",
    "overlap": "two consecutive boxes share much of their area (a body drawn twice)",
    "spacing": "a jump in the distance between consecutive centres (level skipped, doubled or off)",
    "box_spacing": "boxes small for their spacing throughout the image (bodies not fully outlined)",
    "clipped": "corners outside the image",
    "angle": "published Cobb angle differs from the angle recomputed from the landmarks",
}
"""One line per check, for tables."""

SEVERE_Z = 10.0
"""Size or spacing flags at or beyond this robust z count as ``error``, below it as ``suspect``."""
OVERLAP_ERROR = 0.5
"""Overlap flags sharing at least this fraction of the smaller box count as ``error``."""
SEVERITIES: tuple[str, ...] = ("suspect", "error")

HEIGHT_PROFILE: tuple[float, ...] = (-0.423, -0.310, -0.198, -0.145, -0.080, -0.056, -0.048, -0.039, 0.000,
                                     0.026, 0.079, 0.127, 0.148, 0.157, 0.205, 0.235, 0.169)
"""Per-level median of :math:`\\log(h_v / \\operatorname{median} h)` on the 481 training images (T1 first)."""
WIDTH_PROFILE: tuple[float, ...] = (-0.025, -0.104, -0.164, -0.187, -0.168, -0.137, -0.094, -0.051, -0.001,
                                    0.015, 0.072, 0.116, 0.160, 0.195, 0.240, 0.296, 0.357)
"""Per-level median of :math:`\\log(w_v / \\operatorname{median} w)` on the 481 training images."""
HEIGHT_IMAGE_RSD = 0.114
"""Robust SD of :math:`a_v` for heights (log units) over the 8,177 training vertebrae."""
HEIGHT_NEIGHBOUR_RSD = 0.099
"""Robust SD of the neighbour residual :math:`r_v` for heights."""
WIDTH_IMAGE_RSD = 0.084
WIDTH_NEIGHBOUR_RSD = 0.044
SPACING_NEIGHBOUR_RSD = 0.061
"""Robust SD of the centre-spacing jump :math:`\\log d_v - \\tfrac12(\\log d_{v-1} + \\log d_{v+1})`."""
BOX_SPACING_MEDIAN = 1.376
"""Typical median (over an image's 16 gaps) of centre distance / mean box height."""
BOX_SPACING_LOG_RSD = 0.100
"""Robust SD of the log of that ratio over the 481 images."""

SIZE_Z_TOL = 6.0
"""Robust z beyond which a size is flagged (both image-relative and neighbour z). At 6 robust SDs,
10 vertebrae (10 images) are flagged for height and 3 for width on the training images;
at 4 it would be 56 and 6, mostly real anatomy (wedged or rotated vertebrae)."""
SPACING_Z_TOL = 6.0
"""Robust z of a spacing jump beyond which it is flagged (a doubled gap is
:math:`\\log 2 / 0.061 \\approx 11` SDs)."""
BOX_SPACING_Z_TOL = 5.0
"""Robust z of the image's log box-spacing ratio beyond which it is flagged: ratios above
:math:`1.376\\,e^{5 \\cdot 0.1} = 2.27` or below 0.83."""
OVERLAP_TOL = 0.10
"""Largest shared area of two consecutive boxes, as a fraction of the smaller box. On the training
images 49 of 7,696 pairs touch at all, half of those by under 3.2 %; 15 pairs share more than 10 %
(11 % to 100 %), 10 of them at least half a box (one body drawn twice, or a box a level off)."""
ANGLE_TOL_DEG = 0.1
"""Largest |published - recomputed| Cobb angle counted as agreement: the challenge's rule
reproduces all 1,443 training angles within 0.014 deg (angles.csv keeps 5 significant digits),
so 0.1 deg is 7 times the largest difference seen."""


def _sizes(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heights (mean left and right edge length) and widths (mean top and bottom edge length)."""
    tl, tr, bl, br = lm[:, 0], lm[:, 1], lm[:, 2], lm[:, 3]
    h = (np.linalg.norm(bl - tl, axis=1) + np.linalg.norm(br - tr, axis=1)) / 2
    w = (np.linalg.norm(tr - tl, axis=1) + np.linalg.norm(br - bl, axis=1)) / 2
    return h, w


def neighbour_residual(x: np.ndarray) -> np.ndarray:
    """:math:`r_v = x_v - \\tfrac12(x_{v-1} + x_{v+1})`; at the two ends :math:`x_v` minus its one neighbour."""
    x = np.asarray(x, dtype=float)
    r = np.empty_like(x)
    r[1:-1] = x[1:-1] - (x[:-2] + x[2:]) / 2
    r[0], r[-1] = x[0] - x[1], x[-1] - x[-2]
    return r


def top_down_order(landmarks) -> np.ndarray:
    """Published slot indices sorted by centre height (top first, stable)."""
    lm = check_landmarks(landmarks)
    return np.argsort(lm[:, :, 1].mean(axis=1), kind="stable")


def vertebra_features(landmarks) -> pd.DataFrame:
    """Per vertebra *in top-down order*: ``slot`` (published index), ``level`` (its name),
    ``height, width`` (pixels), ``height_z_image, height_z_neighbour, width_z_image,
    width_z_neighbour`` (robust z of :math:`a_v` and :math:`r_v`), ``spacing_z`` (robust z of the jump
    of the distance to the next centre; NaN for the last) and ``overlap_next`` (area shared with the
    next box / smaller box area)."""
    lm = check_landmarks(landmarks)
    order = top_down_order(lm)
    s = lm[order]
    h, w = _sizes(s)
    if np.any(h <= 0) or np.any(w <= 0):
        raise ValueError("a vertebra has zero height or width (corners coincide)")
    out = pd.DataFrame({"slot": order, "level": [LEVELS[v] for v in order], "height": h, "width": w})
    for name, size, prof, rsd_img, rsd_nb in (("height", h, HEIGHT_PROFILE, HEIGHT_IMAGE_RSD, HEIGHT_NEIGHBOUR_RSD),
                                              ("width", w, WIDTH_PROFILE, WIDTH_IMAGE_RSD, WIDTH_NEIGHBOUR_RSD)):
        a = np.log(size / np.median(size)) - np.asarray(prof)
        out[f"{name}_z_image"] = a / rsd_img
        out[f"{name}_z_neighbour"] = neighbour_residual(a) / rsd_nb
    centres = s.mean(axis=1)
    dist = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    spacing_z = np.full(len(s), np.nan)
    if np.all(dist > 0):
        spacing_z[:-1] = neighbour_residual(np.log(dist)) / SPACING_NEIGHBOUR_RSD
    out["spacing_z"] = spacing_z
    out["spacing"] = np.append(dist, np.nan)
    out["overlap_next"] = np.append([_overlap_fraction(s[v], s[v + 1]) for v in range(len(s) - 1)], np.nan)
    return out


def _overlap_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Area shared by the convex hulls of two boxes / the smaller hull's area (0 for degenerate boxes)."""
    pa = cv2.convexHull(a.astype(np.float32))
    pb = cv2.convexHull(b.astype(np.float32))
    smaller = min(cv2.contourArea(pa), cv2.contourArea(pb))
    if smaller <= 0:
        return 0.0
    area, _ = cv2.intersectConvexConvex(pa, pb)
    return float(area / smaller)


def box_spacing_ratio(landmarks) -> float:
    """Median over the 16 gaps (top-down) of centre distance / mean height of the two boxes."""
    lm = check_landmarks(landmarks)
    s = lm[top_down_order(lm)]
    h, _ = _sizes(s)
    dist = np.linalg.norm(np.diff(s.mean(axis=1), axis=0), axis=1)
    return float(np.median(dist / ((h[1:] + h[:-1]) / 2)))


def out_of_order_slots(y) -> np.ndarray:
    """Slots not on the longest strictly increasing run of centre heights ``y`` (published order):
    the fewest vertebrae whose removal leaves the rest top-down (dynamic programming over the 17
    slots; ties go to the earliest chain)."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    length = np.ones(n, dtype=int)
    prev = np.full(n, -1)
    for i in range(1, n):
        below = np.flatnonzero(y[:i] < y[i])
        if len(below):
            j = below[np.argmax(length[below])]
            length[i], prev[i] = length[j] + 1, j
    keep = set()
    i = int(np.argmax(length))
    while i >= 0:
        keep.add(i)
        i = int(prev[i])
    return np.array([v for v in range(n) if v not in keep], dtype=int)


def corner_order_errors(landmarks) -> list[tuple[int, str]]:
    """(slot, what) for every vertebra whose corners break TL-left-of-TR, BL-left-of-BR,
    TL-above-BL or TR-above-BR."""
    lm = check_landmarks(landmarks)
    x, y = lm[..., 0], lm[..., 1]
    tests = {"TL not left of TR": x[:, 0] >= x[:, 1], "BL not left of BR": x[:, 2] >= x[:, 3],
             "TL not above BL": y[:, 0] >= y[:, 2], "TR not above BR": y[:, 1] >= y[:, 3]}
    return [(int(v), "; ".join(k for k, bad in tests.items() if bad[v]))
            for v in np.flatnonzero(np.any(np.stack(list(tests.values())), axis=0))]


def _fmt(values) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


def audit_image(landmarks, cobb=None, image_height: float | None = None, n_clipped: int = 0) -> list[dict]:
    """The failed checks of one image: a list of ``{"check", "vertebra", "detail", "severity"}``.

    ``severity`` is ``"error"`` for corner order, vertebra order, angle, overlaps of at least
    :data:`OVERLAP_ERROR` and size / spacing flags at or beyond :data:`SEVERE_Z`; the rest
    (milder size, spacing and overlap flags, ``box_spacing``, ``clipped``) are ``"suspect"``.

    ``cobb`` (published pt, mt, tl) and ``image_height`` enable the ``angle`` check; ``n_clipped``
    the ``clipped`` check.
    """
    lm = check_landmarks(landmarks)
    flags: list[dict] = []

    def add(check, slots, detail, severe=True):
        flags.append({"check": check, "vertebra": ",".join(LEVELS[int(v)] for v in slots), "detail": detail,
                      "severity": "error" if severe else "suspect"})

    bad_corners = corner_order_errors(lm)
    if bad_corners:
        add("corner_order", [v for v, _ in bad_corners], " | ".join(f"{LEVELS[v]}: {w}" for v, w in bad_corners))
    cy = lm[:, :, 1].mean(axis=1)
    breaks = np.flatnonzero(np.diff(cy) <= 0) + 1
    if len(breaks):
        order = top_down_order(lm)
        misplaced = out_of_order_slots(cy)
        detail = "; ".join(f"{LEVELS[v]} centre y={cy[v]:.0f} not below {LEVELS[v - 1]} y={cy[v - 1]:.0f}" for v in breaks)
        detail += "; top-down slots: " + ",".join(LEVELS[v] for v in order)
        if image_height is not None:
            try:
                resorted = cobb_angles(lm[order], image_height=image_height)
                detail += f"; Cobb on top-down order pt/mt/tl = {_fmt(resorted.angles)}"
            except ValueError as e:
                detail += f"; Cobb on top-down order not computable ({e})"
        add("vertebra_order", misplaced, detail)
    feats = vertebra_features(lm)
    for name in ("height", "width"):
        zi, zn = feats[f"{name}_z_image"], feats[f"{name}_z_neighbour"]
        bad = (zi.abs() > SIZE_Z_TOL) & (zn.abs() > SIZE_Z_TOL)
        if bad.any():
            worst = float(np.minimum(zi[bad].abs(), zn[bad].abs()).max())
            add(name, feats.slot[bad], " | ".join(f"{r.level}: {getattr(r, name):.0f} px, z image {zi[i]:+.1f}, "
                                                  f"z neighbours {zn[i]:+.1f}" for i, r in feats[bad].iterrows()),
                severe=worst >= SEVERE_Z)
    ov = feats["overlap_next"] > OVERLAP_TOL
    if ov.any():
        pairs = [(feats.slot[i], feats.slot[i + 1], feats.overlap_next[i]) for i in np.flatnonzero(ov)]
        add("overlap", sorted({int(v) for p in pairs for v in p[:2]}),
            " | ".join(f"{LEVELS[a]}/{LEVELS[b]} share {f:.0%} of the smaller box" for a, b, f in pairs),
            severe=max(p[2] for p in pairs) >= OVERLAP_ERROR)
    sp = feats["spacing_z"].abs() > SPACING_Z_TOL
    if sp.any():
        rows = [(feats.slot[i], feats.slot[i + 1], feats.spacing[i], feats.spacing_z[i]) for i in np.flatnonzero(sp)]
        add("spacing", sorted({int(v) for r in rows for v in r[:2]}),
            " | ".join(f"{LEVELS[a]}-{LEVELS[b]}: {d:.0f} px, z {z:+.1f}" for a, b, d, z in rows),
            severe=max(abs(r[3]) for r in rows) >= SEVERE_Z)
    ratio = box_spacing_ratio(lm)
    z = np.log(ratio / BOX_SPACING_MEDIAN) / BOX_SPACING_LOG_RSD
    if abs(z) > BOX_SPACING_Z_TOL:
        add("box_spacing", [], f"centre distance / box height {ratio:.2f} (typical {BOX_SPACING_MEDIAN}), z {z:+.1f}",
            severe=False)
    if n_clipped and int(n_clipped) > 0:
        add("clipped", [], f"{int(n_clipped)} corners outside the image", severe=False)
    if cobb is not None:
        published = np.asarray(cobb, dtype=float)
        if published.shape != (3,):
            raise ValueError(f"cobb must be the 3 published angles (pt, mt, tl), got shape {published.shape}")
        try:
            res = cobb_angles(lm, image_height=image_height)
        except ValueError as e:  # e.g. a mid-line of length 0 from swapped corners
            add("angle", [], f"published {_fmt(published)}, not recomputable: {e}")
            return flags
        diff = res.angles - published
        if np.any(np.abs(diff) > ANGLE_TOL_DEG):
            add("angle", [], f"published {_fmt(published)}, recomputed {_fmt(res.angles)}, "
                             f"largest difference {np.abs(diff).max():.2f} deg")
    return flags


_COLUMNS = ["image_name", "patient_id", "check", "vertebra", "severity", "detail"]


def _check_frame(frame) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame from load_aasce, got {type(frame).__name__}")
    need = {"image_name", "landmarks"}
    if not need <= set(frame.columns):
        raise ValueError(f"frame lacks columns {sorted(need - set(frame.columns))}; use spinelib.data.aasce.load_aasce()")


def audit_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (image, failed check) of a :func:`spinelib.data.aasce.load_aasce` frame:
    ``image_name, patient_id, check, vertebra`` (published level names, comma-separated, or
    ``""``), ``severity`` (``"error"`` or ``"suspect"``, see :func:`audit_image`), ``detail``. The ``angle`` check needs ``cobb_pt, cobb_mt, cobb_tl`` (and uses
    ``height``), ``clipped`` needs ``n_clipped``. Load the frame with ``sort_vertebrae=False``
    (the default) so the checks see the published order; on a reordered frame ``vertebra_order``
    falls back to the ``vertebrae_top_down`` column (without naming vertebrae) and the ``angle``
    check then compares the published angles with angles of the reordered landmarks."""
    _check_frame(frame)
    has_angles = {"cobb_pt", "cobb_mt", "cobb_tl"} <= set(frame.columns)
    rows = []
    for r in frame.itertuples(index=False):
        cobb = (r.cobb_pt, r.cobb_mt, r.cobb_tl) if has_angles else None
        height = getattr(r, "height", None)
        flags = audit_image(r.landmarks, cobb=cobb, image_height=None if height is None else float(height),
                            n_clipped=int(getattr(r, "n_clipped", 0) or 0))
        published_top_down = getattr(r, "vertebrae_top_down", True)
        if not bool(published_top_down) and not any(fl["check"] == "vertebra_order" for fl in flags):
            flags.insert(0, {"check": "vertebra_order", "vertebra": "", "severity": "error",
                             "detail": "published order not top-down (vertebrae_top_down is False; the frame's "
                                       "landmarks were reordered, e.g. load_aasce(sort_vertebrae=True))"})
        for fl in flags:
            rows.append({"image_name": r.image_name, "patient_id": getattr(r, "patient_id", ""), **fl})
    return pd.DataFrame(rows, columns=_COLUMNS)


def _min_severity(audit: pd.DataFrame, min_severity: str) -> pd.DataFrame:
    if min_severity not in SEVERITIES:
        raise ValueError(f"min_severity must be one of {SEVERITIES}, got {min_severity!r}")
    return audit[audit["severity"].map(SEVERITIES.index) >= SEVERITIES.index(min_severity)]


def flagged_images(frame: pd.DataFrame, audit: pd.DataFrame | None = None, min_severity: str = "suspect") -> set[str]:
    """Names of the images with at least one failed check (``min_severity="error"``: only gross
    errors). Pass ``audit`` to reuse an :func:`audit_labels` result."""
    audit = audit_labels(frame) if audit is None else audit
    return set(_min_severity(audit, min_severity)["image_name"])


def flagged_table(frame: pd.DataFrame, audit: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per flagged image, in the frame's order: ``image_name, patient_id, row`` (0-based
    row of the frame, i.e. of ``filenames.csv``), ``severity`` (the worst), ``checks``,
    ``vertebrae`` (both ``;``-separated, one entry per check) and ``details`` (`` || ``-separated)."""
    audit = audit_labels(frame) if audit is None else audit
    cols = ["image_name", "patient_id", "row", "severity", "checks", "vertebrae", "details"]
    if audit.empty:
        return pd.DataFrame(columns=cols)
    row_of = {n: i for i, n in enumerate(frame["image_name"])}
    out = audit.groupby("image_name", sort=False).agg(
        patient_id=("patient_id", "first"),
        severity=("severity", lambda s: max(s, key=SEVERITIES.index)),
        checks=("check", ";".join), vertebrae=("vertebra", ";".join), details=("detail", " || ".join)).reset_index()
    out["row"] = out["image_name"].map(row_of)
    return out.sort_values("row").reset_index(drop=True)[cols]


def audit_summary(frame: pd.DataFrame, audit: pd.DataFrame | None = None) -> pd.DataFrame:
    """Images per check: ``check, n_images, n_error`` (images with an ``error`` flag of that
    check), ``n_vertebrae`` (vertebrae named), ``description``; one row for every check in
    :data:`CHECKS` (zeros included) and a last row ``any`` (images with any flag)."""
    audit = audit_labels(frame) if audit is None else audit
    rows = []
    for check in CHECKS:
        sub = audit[audit["check"] == check]
        n_vert = int(sum(len([v for v in s.split(",") if v]) for s in sub["vertebra"]))
        rows.append({"check": check, "n_images": int(sub["image_name"].nunique()),
                     "n_error": int(sub.loc[sub["severity"] == "error", "image_name"].nunique()),
                     "n_vertebrae": n_vert, "description": CHECK_DESCRIPTIONS[check]})
    rows.append({"check": "any", "n_images": int(audit["image_name"].nunique()),
                 "n_error": int(audit.loc[audit["severity"] == "error", "image_name"].nunique()),
                 "n_vertebrae": int(sum(r["n_vertebrae"] for r in rows)), "description": "any check"})
    return pd.DataFrame(rows)
