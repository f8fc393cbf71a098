"""Anatomy and drawing behind :mod:`spinelib.data.synthetic.generator`: a vertebral column, its pathologies,
and the two X-ray views (AP and lateral) with their eight masks.

The column is a chain of vertebral bodies (quadrilaterals) separated by intervertebral disks,
built from the top down (:func:`build_column`). Every body ``i`` has a front and a back height
and a width; every disk a front and a back height. A body or disk whose front and back heights
differ turns the column by

.. math:: \Delta\psi = \arctan\frac{h_\mathrm{front} - h_\mathrm{back}}{w},

so kyphosis, lordosis, scoliosis and wedge fractures are all the same mechanism, and every
endplate angle in the image is exact. "Front" is the image's left side in both views: the
patient's anterior side in the lateral view (the patient faces left, as in the real examples)
and the patient's right side in the AP view.

Pixel coordinates are ``(x, y) = (column, row)`` with the origin at the top-left corner.
Intensities are built as an X-ray attenuation map ``A`` (air 0, soft tissue about 0.6-1.0,
lungs about 0.3-0.5 lower, bone adds 0.1-0.4), processed as a digital radiograph (dynamic-range
compression and detail gain) and exposed as :math:`I = 1 - e^{-\kappa A}` (bone is bright),
see :func:`expose`. The background (soft tissue, lungs, ribs, bowel gas, pelvis) is drawn at a
quarter of the resolution and upsampled; the vertebrae and all masks at full resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

LEVELS: tuple[str, ...] = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
"""Thoracic and lumbar vertebrae, top to bottom; a synthetic column is a suffix ending at L5."""


PATHOLOGY_KINDS: tuple[str, ...] = ("wedge_fracture", "disk_height_loss", "listhesis", "scoliosis")
"""Pathologies a Damaged synthetic patient carries (1-3 of them)."""


SEVERITY_UNITS: dict[str, str] = {
    "wedge_fracture": "fraction of anterior body height lost",
    "disk_height_loss": "fraction of disk height lost",
    "listhesis": "anterior slip as a fraction of the body's depth",
    "scoliosis": "Cobb angle in degrees",
}


LINE_WIDTH_PX: float = 3.0
"""Width of the LAT anterior/posterior vertebral line masks at scale 1 (real masks: 2-4 px)."""


def unit_vector(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.hypot(v[0], v[1])), 1e-9)


def perpendicular(e: np.ndarray) -> np.ndarray:
    """Rotate a direction by +90 degrees in image coordinates (x right, y down): (1,0) -> (0,1)."""
    return np.array([-e[1], e[0]])


def _angle_deg(front: np.ndarray, back: np.ndarray) -> float:
    """Angle of the segment front->back against the image x axis, degrees (positive = back lower)."""
    d = back - front
    return math.degrees(math.atan2(d[1], d[0]))


def ellipse(center, e, n, a, b, k=28) -> np.ndarray:
    """Ellipse with semi-axis ``a`` along unit ``e`` and ``b`` along unit ``n``, as k points."""
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    return center + np.outer(a * np.cos(t), e) + np.outer(b * np.sin(t), n)


def blob(center, r, rng, k=24) -> np.ndarray:
    """An irregular round outline of mean radius ``r`` (random low harmonics)."""
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    rad = r * (1 + sum(rng.uniform(0, 0.12) * np.cos(j * t + rng.uniform(0, 2 * np.pi)) for j in (2, 3)))
    aspect = rng.uniform(0.6, 1.0)
    return center + np.stack([rad * np.cos(t), aspect * rad * np.sin(t)], axis=1)


def teardrop(center, e, n, a, b, k=32) -> np.ndarray:
    """Teardrop of half-width ``a`` and half-length ``b``, rounded end up (-n), tip down (+n)."""
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    u = a * np.sin(t) * np.abs(np.sin(t / 2)) ** 0.9
    v = b * np.cos(t)
    return center + np.outer(u, e) + np.outer(v, n)


def _curved_edge(p, q, centroid, depth, k=10) -> np.ndarray:
    """Points from p to q (q excluded) bowed towards ``centroid`` by ``depth`` at the middle."""
    t = np.linspace(0.0, 1.0, k, endpoint=False)
    inward = perpendicular(unit_vector(q - p))
    if np.dot(inward, centroid - (p + q) / 2) < 0:
        inward = -inward
    return p + np.outer(t, q - p) + np.outer(depth * np.sin(np.pi * t), inward)


def band_polygon(points: np.ndarray, width) -> np.ndarray:
    """Polygon of a thick polyline (width scalar or per point)."""
    d = np.gradient(points, axis=0)
    d /= np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
    nrm = np.stack([-d[:, 1], d[:, 0]], axis=1)
    w = np.broadcast_to(np.asarray(width, float), (len(points),))[:, None] / 2
    return np.concatenate([points + nrm * w, (points - nrm * w)[::-1]])


def smooth_closed(points, iterations: int = 3) -> np.ndarray:
    """Chaikin corner cutting of a closed polygon: a smooth outline through its control points."""
    p = np.asarray(points, float)
    for _ in range(iterations):
        q = np.roll(p, -1, axis=0)
        p = np.stack([0.75 * p + 0.25 * q, 0.25 * p + 0.75 * q], axis=1).reshape(-1, 2)
    return p


def bezier(p0, p1, p2, k=40) -> np.ndarray:
    t = np.linspace(0, 1, k)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


@dataclass
class SpineAnatomy:
    """A patient's column in anatomy units (about one pixel at a 0.15 mm pixel size).

    Arrays have one entry per vertebra (``n``) or per disk (``n - 1``, disk ``i`` lies between
    vertebrae ``i`` and ``i + 1``).
    """

    levels: tuple[str, ...]
    lat_anterior_height: np.ndarray
    lat_posterior_height: np.ndarray
    ap_width: np.ndarray
    lat_depth: np.ndarray
    disk_height: np.ndarray  # mean height after any disk-height loss
    sagittal_turn: np.ndarray  # radians per disk in LAT; > 0 lordotic (front taller)
    listhesis_shift: np.ndarray  # posterior shift of the lower body vs the upper one (units)
    coronal_shape: np.ndarray  # unit AP tilt profile at each vertebra
    cobb_target_deg: float
    ap_tilt_deg: float
    lat_tilt_deg: float
    pathologies: list[dict] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.levels)

    def disk_names(self) -> list[str]:
        return [f"{a}-{b}" for a, b in zip(self.levels[:-1], self.levels[1:])]


def build_column(widths, front, back, disk_front, disk_back, shift) -> np.ndarray:
    """Chain the bodies top-down; return corners ``(n, 4, 2)``: superior-front, superior-back,
    inferior-back, inferior-front, as ``(x, y)`` in anatomy units (first body at the origin).

    Body ``i`` goes down ``front[i]`` on its front side and ``back[i]`` on its back side, along
    the normal of its superior endplate; disk ``i`` likewise; the next body is centred on the
    disk's lower edge, shifted by ``shift[i]`` towards the back (a listhesis of the upper body
    towards the front).
    """
    n = len(widths)
    bodies = np.zeros((n, 4, 2))
    e, nrm, c = np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.zeros(2)
    for i in range(n):
        sf, sb = c - widths[i] / 2 * e, c + widths[i] / 2 * e
        inf_f, inf_b = sf + front[i] * nrm, sb + back[i] * nrm
        bodies[i] = sf, sb, inf_b, inf_f
        e = unit_vector(inf_b - inf_f)
        nrm = perpendicular(e)
        if i < n - 1:
            bf, bb = inf_f + disk_front[i] * nrm, inf_b + disk_back[i] * nrm
            e = unit_vector(bb - bf)
            nrm = perpendicular(e)
            c = (bf + bb) / 2 + shift[i] * e
    return bodies


def endplate_angles(bodies: np.ndarray) -> np.ndarray:
    """``(n, 2)`` superior and inferior endplate angles in degrees (front->back vs the x axis)."""
    return np.array([[_angle_deg(b[0], b[1]), _angle_deg(b[3], b[2])] for b in bodies])


def cobb_angle(bodies: np.ndarray) -> float:
    """Largest angle between any two endplates, degrees:
    :math:`\\max_{i,j} |\\theta_i - \\theta_j|` over all superior and inferior endplates."""
    a = endplate_angles(bodies).ravel()
    return float(a.max() - a.min())


def _split_wedge(mean, turn, width, cap):
    """Front/back heights of a disk or body of mean height ``mean`` turning the column by
    ``turn`` radians; the half-difference is capped at ``cap * mean``."""
    half = np.clip(width / 2 * np.tan(turn), -cap * mean, cap * mean)
    return mean + half, mean - half


def lat_column(an: SpineAnatomy) -> np.ndarray:
    """Lateral-view column (front = anterior) in anatomy units."""
    df, db = _split_wedge(an.disk_height, an.sagittal_turn, an.lat_depth[:-1], 0.75)
    return build_column(an.lat_depth, an.lat_anterior_height, an.lat_posterior_height, df, db,
                        an.listhesis_shift)


def ap_column(an: SpineAnatomy, amplitude: float) -> np.ndarray:
    """AP-view column (front = image left) whose vertebra tilts follow ``amplitude * shape``;
    half of each turn is taken by the disk, half by the body below (wedged scoliotic bodies)."""
    psi = np.radians(amplitude * an.coronal_shape)
    turn = np.diff(psi)
    h = (an.lat_anterior_height + an.lat_posterior_height) / 2
    df, db = _split_wedge(an.disk_height, turn / 2, an.ap_width[:-1], 0.75)
    bf, bb = h.copy(), h.copy()
    bf[1:], bb[1:] = _split_wedge(h[1:], turn / 2, an.ap_width[1:], 0.3)
    return build_column(an.ap_width, bf, bb, df, db, np.zeros(an.n - 1))


def fit_ap_amplitude(an: SpineAnatomy) -> tuple[float, np.ndarray]:
    """Scale the AP tilt profile until the column's Cobb angle equals ``cobb_target_deg``."""
    if an.cobb_target_deg <= 0:
        return 0.0, ap_column(an, 0.0)
    span = float(np.ptp(an.coronal_shape))
    amp = an.cobb_target_deg / max(span, 1e-6)
    for _ in range(6):
        cobb = cobb_angle(ap_column(an, amp))
        if cobb <= 1e-6 or abs(cobb - an.cobb_target_deg) < 0.05:
            break
        amp *= an.cobb_target_deg / cobb
    return amp, ap_column(an, amp)


def _choose(rng, candidates: list[int], weights: list[float]) -> int | None:
    if not candidates:
        return None
    p = np.asarray(weights, float)
    return int(candidates[int(rng.choice(len(candidates), p=p / p.sum()))])


def sample_anatomy(rng: np.random.Generator, damaged: bool, n_vertebrae: tuple[int, int]) -> SpineAnatomy:
    """Draw a column: natural variation for everyone, plus 1-3 pathologies when ``damaged``."""
    lo, hi = n_vertebrae
    n = int(rng.integers(lo, hi + 1))
    levels = LEVELS[len(LEVELS) - n:]
    t = np.array([LEVELS.index(lv) for lv in levels]) / (len(LEVELS) - 1)
    lumbar = np.array([lv.startswith("L") for lv in levels])
    size = rng.uniform(0.92, 1.08)
    h = (150 + 90 * t) * size * rng.uniform(0.96, 1.04, n)
    ap_width = (225 + 150 * t) * size * rng.uniform(0.97, 1.03, n)
    depth = (195 + 125 * t) * size * rng.uniform(0.97, 1.03, n)
    tm = (t[:-1] + t[1:]) / 2
    disk = (34 + 50 * tm) * size * rng.uniform(0.9, 1.1, n - 1)
    # natural wedging: thoracic bodies slightly shorter in front (kyphosis), lumbar ~square
    ratio = np.where(lumbar, rng.uniform(0.98, 1.04, n), rng.uniform(0.9, 0.98, n))
    post = h * rng.uniform(0.99, 1.01, n)
    ant = post * ratio
    # sagittal turn per disk: small kyphotic in the thorax, lordotic in the lumbar spine
    lower_lumbar = np.array([levels[i + 1].startswith("L") and levels[i].startswith("L") for i in range(n - 1)])
    turn = np.where(lower_lumbar, rng.uniform(5, 10, n - 1), rng.uniform(-1.5, 0.3, n - 1))
    sagittal_turn = np.radians(turn)
    shift = np.zeros(n - 1)
    # AP profile: a full sine period (compensatory curve, major curve, compensatory curve)
    centers = np.cumsum(np.r_[0, (h[:-1] + h[1:]) / 2 + disk])
    s = centers / centers[-1]
    period = rng.uniform(0.75, 1.1)
    s0 = rng.uniform(-period / 4 + 0.02, 1 - 3 * period / 4 - 0.02)
    phase = np.clip((s - s0) / period, 0, 1)
    shape = np.sin(2 * np.pi * phase) * rng.choice([-1.0, 1.0])
    cobb_target = float(rng.uniform(0.0, 4.0))
    an = SpineAnatomy(levels, ant, post, ap_width, depth, disk, sagittal_turn, shift, shape,
                      cobb_target, float(rng.uniform(-2, 2)), float(rng.uniform(-7, 7)))
    if damaged:
        _add_pathologies(rng, an, s, s0, period)
    return an


def _add_pathologies(rng, an: SpineAnatomy, s, s0, period) -> None:
    n = an.n
    count = int(rng.integers(1, 4))
    kinds: list[str] = []
    while len(kinds) < count:
        k = str(rng.choice(PATHOLOGY_KINDS, p=[0.35, 0.25, 0.2, 0.2]))
        if k == "scoliosis" and k in kinds:
            continue
        kinds.append(k)
    kinds.sort(key=lambda k: k == "scoliosis")  # local lesions first, the curve last
    used_vertebrae: set[int] = set()
    used_disks: set[int] = set()
    names = an.disk_names()

    def level_weight(i: int, peak: str, spread: float) -> float:
        return math.exp(-(((LEVELS.index(an.levels[i]) - LEVELS.index(peak)) / spread) ** 2)) + 0.05

    for kind in kinds:
        if kind == "wedge_fracture":
            cand = [i for i in range(1, n - 1) if i not in used_vertebrae]
            i = _choose(rng, cand, [level_weight(j, "T12", 3.0) for j in cand])
            if i is None:
                continue
            r = float(rng.uniform(0.3, 0.6))
            an.lat_anterior_height[i] = an.lat_anterior_height[i] * (1 - r)
            an.lat_posterior_height[i] *= rng.uniform(0.92, 1.0)
            used_vertebrae.add(i)
            an.pathologies.append({"kind": kind, "level": an.levels[i], "severity": round(r, 4),
                                   "severity_unit": SEVERITY_UNITS[kind], "vertebra_index": i})
        elif kind == "disk_height_loss":
            cand = [i for i in range(n - 1) if i not in used_disks]
            i = _choose(rng, cand, [level_weight(j, "L4", 2.5) for j in cand])
            if i is None:
                continue
            r = float(rng.uniform(0.5, 0.8))
            an.disk_height[i] *= 1 - r
            an.sagittal_turn[i] *= 1 - r  # a collapsed disk loses its wedge too
            used_disks.add(i)
            an.pathologies.append({"kind": kind, "level": names[i], "severity": round(r, 4),
                                   "severity_unit": SEVERITY_UNITS[kind], "disk_index": i})
        elif kind == "listhesis":
            cand = [i for i in range(1, n - 1) if i not in used_vertebrae and i not in used_disks]
            i = _choose(rng, cand, [level_weight(j, "L4", 2.0) for j in cand])
            if i is None:
                continue
            f = float(rng.uniform(0.15, 0.4))
            an.listhesis_shift[i] = f * an.lat_depth[i]
            used_vertebrae.add(i)
            used_disks.add(i)
            an.pathologies.append({"kind": kind, "level": an.levels[i], "severity": round(f, 4),
                                   "severity_unit": SEVERITY_UNITS[kind], "vertebra_index": i,
                                   "relative_to": an.levels[i + 1]})
        elif kind == "scoliosis":
            an.cobb_target_deg = float(rng.uniform(15.5, 45))
            apex = int(np.argmin(np.abs(s - (s0 + period / 2))))
            an.pathologies.append({"kind": kind, "level": an.levels[apex], "severity": None,
                                   "severity_unit": SEVERITY_UNITS[kind], "apex_index": apex})


def place_column(bodies: np.ndarray, shape: tuple[int, int], rng, tilt_deg: float,
                 x_range: tuple[float, float]) -> tuple[np.ndarray, float]:
    """Rotate the chain so its chord makes ``tilt_deg`` with the vertical, scale it to 60-80 %
    of the image height and put it in the image; return pixel corners and the pixel scale."""
    H, W = shape
    top = (bodies[0, 0] + bodies[0, 1]) / 2
    bottom = (bodies[-1, 2] + bodies[-1, 3]) / 2
    chord = bottom - top
    rot = math.radians(tilt_deg) - math.atan2(chord[0], chord[1])
    c, s_ = math.cos(rot), math.sin(rot)
    R = np.array([[c, s_], [-s_, c]])
    pts = (bodies.reshape(-1, 2) - top) @ R.T
    frac = rng.uniform(0.62, 0.8)
    top_margin = rng.uniform(0.04, min(0.12, 0.92 - frac))
    extent = pts[:, 1].max() - pts[:, 1].min()
    px = frac * H / extent
    cx = (pts[:, 0].max() + pts[:, 0].min()) / 2
    pts = (pts - [cx, pts[:, 1].min()]) * px
    half_w = (pts[:, 0].max() - pts[:, 0].min()) / 2
    x = rng.uniform(*x_range) * W
    x = float(np.clip(x, min(half_w * 1.2, W / 2), max(W - half_w * 1.2, W / 2)))
    pts += [x, top_margin * H]
    return pts.reshape(bodies.shape), px


def body_outline(corners: np.ndarray, end_concavity: float, front_concavity: float,
                 back_concavity: float, k: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outline of a body with concave endplates and sides and rounded corners; return
    (outline, superior edge front->back, inferior edge front->back), each edge including both
    corners (the edges bound the disk spaces)."""
    sf, sb, ib, if_ = corners
    cen = corners.mean(axis=0)
    h = (np.hypot(*(if_ - sf)) + np.hypot(*(ib - sb))) / 2
    w = (np.hypot(*(sb - sf)) + np.hypot(*(ib - if_))) / 2
    sup = _curved_edge(sf, sb, cen, end_concavity * h, k)
    back = _curved_edge(sb, ib, cen, back_concavity * w, k)
    inf = _curved_edge(ib, if_, cen, end_concavity * h, k)
    front = _curved_edge(if_, sf, cen, front_concavity * w, k)
    outline = smooth_closed(np.concatenate([sup, back, inf, front]), 3)
    return outline, np.vstack([sup, sb]), np.vstack([inf, if_])[::-1]


@dataclass
class ViewGeometry:
    """A column placed in one view, in pixels, with the per-level quantities the drawing needs."""

    levels: tuple[str, ...]
    bodies: np.ndarray  # (n, 4, 2)
    px: float
    outlines: list[np.ndarray]
    sup_edges: list[np.ndarray]
    inf_edges: list[np.ndarray]

    @property
    def centers(self) -> np.ndarray:
        return self.bodies.mean(axis=1)

    def width(self, i: int) -> float:
        b = self.bodies[i]
        return float((np.hypot(*(b[1] - b[0])) + np.hypot(*(b[2] - b[3]))) / 2)

    def height(self, i: int) -> float:
        b = self.bodies[i]
        return float((np.hypot(*(b[3] - b[0])) + np.hypot(*(b[2] - b[1]))) / 2)

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors (front->back along the superior endplate, and its downward normal)."""
        b = self.bodies[i]
        e = unit_vector((b[1] - b[0]) + (b[2] - b[3]))
        return e, perpendicular(e)

    def level_center(self, level: str) -> tuple[np.ndarray, float]:
        """Centre of a level (extrapolated above the first drawn one) and its body width."""
        if level in self.levels:
            i = self.levels.index(level)
            return self.centers[i], self.width(i)
        k = LEVELS.index(self.levels[0]) - LEVELS.index(level)
        c = self.centers
        step = (c[min(3, len(c) - 1)] - c[0]) / max(min(3, len(c) - 1), 1)
        return c[0] - k * step, self.width(0) * 0.96**k

    def disk_polygons(self) -> list[np.ndarray]:
        return [np.vstack([self.inf_edges[i], self.sup_edges[i + 1][::-1]]) for i in range(len(self.levels) - 1)]



def make_geometry(levels, bodies, px, end_c, front_c, back_c) -> ViewGeometry:
    outs, sups, infs = [], [], []
    for b in bodies:
        o, s, i = body_outline(b, end_c, front_c, back_c)
        outs.append(o)
        sups.append(s)
        infs.append(i)
    return ViewGeometry(tuple(levels), bodies, px, outs, sups, infs)
