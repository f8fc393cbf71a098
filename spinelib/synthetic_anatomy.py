"""Anatomy and drawing behind :mod:`spinelib.synthetic`: a vertebral column, its pathologies,
and the two X-ray views (AP and lateral) with their eight masks.

The column is a chain of vertebral bodies (quadrilaterals) separated by intervertebral disks,
built from the top down (:func:`build_column`). Every body ``i`` has a front and a back height
and a width; every disk a front and a back height. A body or disk whose front and back heights
differ turns the column by

.. math:: \\Delta\\psi = \\arctan\\frac{h_\\mathrm{front} - h_\\mathrm{back}}{w},

so kyphosis, lordosis, scoliosis and wedge fractures are all the same mechanism, and every
endplate angle in the image is exact. "Front" is the image's left side in both views: the
patient's anterior side in the lateral view (the patient faces left, as in the real examples)
and the patient's right side in the AP view.

Pixel coordinates are ``(x, y) = (column, row)`` with the origin at the top-left corner.
Intensities are built as an X-ray attenuation map ``A`` (air 0, soft tissue about 0.4-0.9,
bone adds about 0.6-1.1) and exposed as :math:`I = 1 - e^{-\\kappa A}` (bone is bright).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage as ndi
from skimage.draw import line as draw_line
from skimage.draw import polygon as draw_polygon
from skimage.transform import resize

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


# ---------------------------------------------------------------------------------------------
# small geometry helpers


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.hypot(v[0], v[1])), 1e-9)


def _perp(e: np.ndarray) -> np.ndarray:
    """Rotate a direction by +90 degrees in image coordinates (x right, y down): (1,0) -> (0,1)."""
    return np.array([-e[1], e[0]])


def _angle_deg(front: np.ndarray, back: np.ndarray) -> float:
    """Angle of the segment front->back against the image x axis, degrees (positive = back lower)."""
    d = back - front
    return math.degrees(math.atan2(d[1], d[0]))


def _ellipse(center, e, n, a, b, k=28) -> np.ndarray:
    """Ellipse with semi-axis ``a`` along unit ``e`` and ``b`` along unit ``n``, as k points."""
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    return center + np.outer(a * np.cos(t), e) + np.outer(b * np.sin(t), n)


def _teardrop(center, e, n, a, b, k=32) -> np.ndarray:
    """Teardrop of half-width ``a`` and half-length ``b``, rounded end up (-n), tip down (+n)."""
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    u = a * np.sin(t) * np.abs(np.sin(t / 2)) ** 0.9
    v = b * np.cos(t)
    return center + np.outer(u, e) + np.outer(v, n)


def _curved_edge(p, q, centroid, depth, k=10) -> np.ndarray:
    """Points from p to q (q excluded) bowed towards ``centroid`` by ``depth`` at the middle."""
    t = np.linspace(0.0, 1.0, k, endpoint=False)
    inward = _perp(_unit(q - p))
    if np.dot(inward, centroid - (p + q) / 2) < 0:
        inward = -inward
    return p + np.outer(t, q - p) + np.outer(depth * np.sin(np.pi * t), inward)


def _band(points: np.ndarray, width) -> np.ndarray:
    """Polygon of a thick polyline (width scalar or per point)."""
    d = np.gradient(points, axis=0)
    d /= np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
    nrm = np.stack([-d[:, 1], d[:, 0]], axis=1)
    w = np.broadcast_to(np.asarray(width, float), (len(points),))[:, None] / 2
    return np.concatenate([points + nrm * w, (points - nrm * w)[::-1]])


def _bezier(p0, p1, p2, k=40) -> np.ndarray:
    t = np.linspace(0, 1, k)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


# ---------------------------------------------------------------------------------------------
# the column


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

    def level_t(self) -> np.ndarray:
        """Position of each level in the full T1..L5 column, 0 (T1) to 1 (L5)."""
        return np.array([LEVELS.index(lv) for lv in self.levels]) / (len(LEVELS) - 1)


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
        e = _unit(inf_b - inf_f)
        nrm = _perp(e)
        if i < n - 1:
            bf, bb = inf_f + disk_front[i] * nrm, inf_b + disk_back[i] * nrm
            e = _unit(bb - bf)
            nrm = _perp(e)
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


# ---------------------------------------------------------------------------------------------
# placing a column in an image


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
                 back_concavity: float, k: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outline of a body with concave endplates and sides; return (outline, superior edge
    front->back, inferior edge front->back), each edge including both corners."""
    sf, sb, ib, if_ = corners
    cen = corners.mean(axis=0)
    h = (np.hypot(*(if_ - sf)) + np.hypot(*(ib - sb))) / 2
    w = (np.hypot(*(sb - sf)) + np.hypot(*(ib - if_))) / 2
    sup = _curved_edge(sf, sb, cen, end_concavity * h, k)
    back = _curved_edge(sb, ib, cen, back_concavity * w, k)
    inf = _curved_edge(ib, if_, cen, end_concavity * h, k)
    front = _curved_edge(if_, sf, cen, front_concavity * w, k)
    outline = np.concatenate([sup, back, inf, front])
    return outline, np.vstack([sup, sb]), np.vstack([inf, if_])[::-1]


# ---------------------------------------------------------------------------------------------
# painting


class Painter:
    """A float32 attenuation image plus window-by-window rasterisation of polygons into it
    and into boolean masks (only the polygon's bounding box is touched)."""

    def __init__(self, image: np.ndarray, texture: np.ndarray):
        self.image = image
        self.shape = image.shape
        self.texture = texture

    def _window(self, poly: np.ndarray, pad: int = 1):
        H, W = self.shape
        x0 = max(int(math.floor(poly[:, 0].min())) - pad, 0)
        x1 = min(int(math.ceil(poly[:, 0].max())) + pad + 1, W)
        y0 = max(int(math.floor(poly[:, 1].min())) - pad, 0)
        y1 = min(int(math.ceil(poly[:, 1].max())) + pad + 1, H)
        if x1 <= x0 or y1 <= y0:
            return None
        return y0, y1, x0, x1

    def rasterize(self, poly: np.ndarray):
        win = self._window(poly)
        if win is None:
            return None, None
        y0, y1, x0, x1 = win
        m = np.zeros((y1 - y0, x1 - x0), bool)
        rr, cc = draw_polygon(poly[:, 1] - y0, poly[:, 0] - x0, shape=m.shape)
        m[rr, cc] = True
        return win, m

    def bone(self, poly: np.ndarray, fill: float, rim: float = 0.0, rim_width: float = 1.0,
             texture: float = 0.0, mask: np.ndarray | None = None) -> None:
        """Add ``fill + rim * exp(-d / rim_width) + texture * noise`` inside the polygon, where
        ``d`` is the distance to its outline (a bright cortex); mark the polygon in ``mask``."""
        win, m = self.rasterize(poly)
        if win is None or not m.any():
            return
        y0, y1, x0, x1 = win
        if mask is not None:
            mask[y0:y1, x0:x1] |= m
        val = np.full(m.shape, fill, np.float32)
        if rim:
            d = ndi.distance_transform_edt(m)
            val += (rim * np.exp(-d / max(rim_width, 0.5))).astype(np.float32)
        if texture:
            T = self.texture.shape[0]
            val += texture * self.texture[np.ix_(np.arange(y0, y1) % T, np.arange(x0, x1) % T)]
        self.image[y0:y1, x0:x1] += val * m

    def line_mask(self, points: np.ndarray, width: float, mask: np.ndarray) -> None:
        """Mark a polyline of ``width`` pixels in ``mask``."""
        H, W = self.shape
        if width <= 1.5:
            for p, q in zip(points[:-1], points[1:]):
                rr, cc = draw_line(int(round(p[1])), int(round(p[0])), int(round(q[1])), int(round(q[0])))
                ok = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
                mask[rr[ok], cc[ok]] = True
            return
        for p, q in zip(points[:-1], points[1:]):
            nrm = _perp(_unit(q - p)) * width / 2
            self._mark(np.array([p + nrm, q + nrm, q - nrm, p - nrm]), mask)
        for p in points:
            self._mark(_ellipse(p, np.array([1.0, 0]), np.array([0, 1.0]), width / 2, width / 2, 12), mask)

    def _mark(self, poly, mask):
        win, m = self.rasterize(poly)
        if win is not None:
            y0, y1, x0, x1 = win
            mask[y0:y1, x0:x1] |= m


class Background:
    """A low-resolution attenuation map (``factor`` times smaller) drawn in full-resolution
    pixel coordinates, upsampled bilinearly at the end."""

    def __init__(self, shape: tuple[int, int], factor: int):
        H, W = shape
        self.full = shape
        self.shape = (max(2, math.ceil(H / factor)), max(2, math.ceil(W / factor)))
        self.sy, self.sx = self.shape[0] / H, self.shape[1] / W
        self.f = 1 / self.sx
        self.a = np.zeros(self.shape, np.float32)
        yy, xx = np.mgrid[0:self.shape[0], 0:self.shape[1]].astype(np.float32)
        self.Y, self.X = (yy + 0.5) / self.sy - 0.5, (xx + 0.5) / self.sx - 0.5  # full-res coords

    def mask(self, poly: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        m = np.zeros(self.shape, bool) if out is None else out
        rr, cc = draw_polygon((poly[:, 1] + 0.5) * self.sy - 0.5, (poly[:, 0] + 0.5) * self.sx - 0.5,
                              shape=self.shape)
        m[rr, cc] = True
        return m

    def bone(self, m: np.ndarray, fill: float, rim: float, rim_width_px: float) -> None:
        if not m.any():
            return
        d = ndi.distance_transform_edt(m) * self.f
        self.a += (m * (fill + rim * np.exp(-d / max(rim_width_px, 0.5)))).astype(np.float32)

    def soft(self, m: np.ndarray, amount: float, sigma_px: float) -> None:
        self.a += amount * ndi.gaussian_filter(m.astype(np.float32), sigma_px * self.sy)

    def smooth_field(self, rng, amplitude: float, cells: int = 6) -> None:
        coarse = rng.standard_normal((cells, max(2, round(cells * self.shape[1] / self.shape[0]))))
        self.a += (amplitude * resize(coarse, self.shape, order=3, mode="edge")).astype(np.float32)

    def upsample(self) -> np.ndarray:
        H, W = self.full
        img = Image.fromarray(self.a.astype(np.float32))
        return np.array(img.resize((W, H), Image.Resampling.BILINEAR), dtype=np.float32)


def texture_tile(rng, scale: float, size: int = 256) -> np.ndarray:
    """Trabecular-like band-passed noise tile (zero mean, unit-ish std), periodic."""
    fine = ndi.gaussian_filter(rng.standard_normal((size, size)), max(0.7, 2.2 * scale), mode="wrap")
    coarse = ndi.gaussian_filter(rng.standard_normal((size, size)), max(2.0, 9.0 * scale), mode="wrap")
    t = fine / fine.std() + 0.6 * coarse / coarse.std()
    return (t / t.std()).astype(np.float32)


def expose(a: np.ndarray, rng, scale: float) -> np.ndarray:
    """Attenuation -> 8-bit image: quantum-like noise, :math:`I = 1 - e^{-\\kappa A}`, a random
    window (brightness/contrast) and gamma, then a slight blur.

    .. math:: g = 255\\,\\mathrm{clip}\\left(\\frac{I - lo}{hi - lo}, 0, 1\\right)^{\\gamma}
    """
    kappa = rng.uniform(0.95, 1.35)
    gamma = rng.uniform(0.8, 1.25)
    lo = rng.uniform(0.0, 0.1)
    hi = rng.uniform(0.86, 1.0)
    sigma = rng.uniform(0.02, 0.045)
    blur = rng.uniform(0.6, 1.2) * scale
    nb, amax = 4096, 4.0
    grid = np.linspace(0, amax, nb)
    level = np.clip(((1 - np.exp(-kappa * grid)) - lo) / (hi - lo), 0, 1) ** gamma
    lut = np.round(255 * level).astype(np.uint8)
    noise = rng.standard_normal(a.shape, dtype=np.float32)
    noise *= np.sqrt(a + 0.2, dtype=np.float32)
    a += sigma * noise
    a *= (nb - 1) / amax
    np.clip(a, 0, nb - 1, out=a)
    img = lut[a.astype(np.uint16)]
    if blur >= 0.3:
        img = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(blur)))
    return img


# ---------------------------------------------------------------------------------------------
# view geometry shared by the background and the spine


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
        e = _unit((b[1] - b[0]) + (b[2] - b[3]))
        return e, _perp(e)

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


# ---------------------------------------------------------------------------------------------
# AP view


def render_ap(an: SpineAnatomy, ap_bodies: np.ndarray, shape: tuple[int, int], rng,
              scale: float) -> tuple[np.ndarray, dict[str, np.ndarray], ViewGeometry]:
    """Draw the AP view; return (uint8 image, masks, geometry)."""
    H, W = shape
    bodies, px = place_column(ap_bodies, shape, rng, an.ap_tilt_deg, (0.46, 0.54))
    g = make_geometry(an.levels, bodies, px, 0.025, 0.05, 0.05)
    bg = Background(shape, 4 if H >= 1200 else (2 if H >= 400 else 1))
    _ap_background(bg, g, rng)
    img = bg.upsample()
    painter = Painter(img, texture_tile(rng, scale))
    masks = {s: np.zeros(shape, bool) for s in ("Ap_Vertebra", "Ap_Pedicle", "Ap_Spinous_Process")}
    rotation = _axial_rotation(g, an)
    for i in range(an.n):
        _ap_vertebra(painter, g, i, rotation[i], masks, rng)
    return expose(img, rng, scale), masks, g


def _axial_rotation(g: ViewGeometry, an: SpineAnatomy) -> np.ndarray:
    """Axial rotation (-1..1 of the maximum) following the lateral displacement of each body
    from the chord of the column; zero for a straight column."""
    c = g.centers
    chord = _unit(c[-1] - c[0])
    rel = c - c[0]
    disp = rel[:, 0] * chord[1] - rel[:, 1] * chord[0]  # signed distance, + = towards image right
    length = np.hypot(*(c[-1] - c[0]))
    strength = min(an.cobb_target_deg / 45.0, 1.0)
    return np.clip(disp / (0.04 * length + 1e-9), -1, 1) * strength


def _ap_vertebra(p: Painter, g: ViewGeometry, i: int, rot: float, masks, rng) -> None:
    e, n = g.frame(i)
    c = g.centers[i]
    w, h = g.width(i), g.height(i)
    t = LEVELS.index(g.levels[i]) / (len(LEVELS) - 1)
    lumbar = g.levels[i].startswith("L")
    # body: trabecular fill, bright cortex (endplates and lateral walls)
    p.bone(g.outlines[i], 0.5, 0.55, 0.03 * w, texture=0.05, mask=masks["Ap_Vertebra"])
    # posterior arch seen through the body: laminae, transverse processes
    shift = -rot * 0.22 * w  # rotation moves the posterior elements towards the concavity
    lam = np.array([c - 0.28 * w * e - 0.02 * h * n, c + 0.28 * w * e - 0.02 * h * n,
                    c + 0.12 * w * e + 0.5 * h * n, c - 0.12 * w * e + 0.5 * h * n]) + shift * e
    p.bone(lam, 0.08, 0.0)
    for side in (-1, 1):
        reach = 0.88 if lumbar else 0.72
        lift = -0.05 * h if lumbar else -0.3 * h
        base = c + side * 0.4 * w * e - 0.1 * h * n + shift * e
        tip = c + side * reach * w * e + lift * n + shift * 0.5 * e
        pts = np.array([base - 0.13 * h * n, tip - 0.07 * h * n, tip + 0.07 * h * n, base + 0.13 * h * n])
        p.bone(pts, 0.22, 0.2, 0.04 * w)
        # pedicles: oval rings in the upper lateral part; the convex side one thins with rotation
        narrow = 1.0 - 0.45 * max(0.0, side * rot)
        pc = c + (side * 0.3 * w + shift * 0.55) * e - 0.13 * h * n
        ped = _ellipse(pc, e, n, 0.075 * w * narrow * rng.uniform(0.92, 1.08), 0.2 * h * rng.uniform(0.92, 1.08))
        p.bone(ped, 0.12, 0.5, 0.022 * w, mask=masks["Ap_Pedicle"])
    # spinous process: a teardrop at the midline, over the lower half of the body
    sp_len = (0.3 if lumbar else 0.36 - 0.1 * t) * h
    sp = _teardrop(c + 0.2 * h * n + shift * e, e, n, 0.085 * w, sp_len)
    p.bone(sp, 0.2, 0.45, 0.02 * w, mask=masks["Ap_Spinous_Process"])


def _ap_background(bg: Background, g: ViewGeometry, rng) -> None:
    H, W = bg.full
    c, w_mid = g.level_center(g.levels[len(g.levels) // 2])
    spine_x = float(np.mean(g.centers[:, 0]))
    sp = float(np.median(np.diff(g.centers[:, 1])))  # level spacing
    # soft-tissue envelope: an elliptic cross-section, chest -> waist -> hips
    y_t10 = g.level_center("T10")[0][1]
    y_l5 = g.centers[-1][1]
    half_chest = W * rng.uniform(0.42, 0.5)
    keys_y = [y_t10 - 8 * sp, y_t10, (y_t10 + y_l5) / 2, y_l5 + 2 * sp]
    keys_w = [half_chest * 0.95, half_chest, half_chest * rng.uniform(0.8, 0.9), half_chest * rng.uniform(0.95, 1.08)]
    hw = np.interp(bg.Y, keys_y, keys_w)
    xc = spine_x + rng.uniform(-0.02, 0.02) * W
    u = np.clip(1 - ((bg.X - xc) / hw) ** 2, 0, None)
    bg.a += rng.uniform(0.55, 0.75) * np.sqrt(u) + 0.03
    bg.a += 0.15 * (u > 0) * np.clip((bg.Y - y_t10) / (4 * sp), 0, 1)  # abdomen denser than thorax
    # lungs: dark fields either side of the mediastinum, above the diaphragm domes
    y_top = g.level_center("T1")[0][1] - 1.2 * sp
    lungs = np.zeros(bg.shape, bool)
    for side in (-1, 1):  # -1: patient's right (image left)
        y_dia = y_t10 + (0.2 if side < 0 else 0.6) * sp + rng.uniform(-0.4, 0.4) * sp
        x_apex = xc + side * 0.9 * w_mid
        x_lat = xc + side * half_chest * 0.9
        x_med_low = xc + side * (0.8 if side < 0 else 1.7) * w_mid  # the heart on the patient's left
        pts = []
        for yy in np.linspace(y_top, y_dia + 0.9 * sp, 16):  # lateral border, apex to costophrenic angle
            k = np.clip((yy - y_top) / (3.0 * sp), 0, 1)
            pts.append([x_apex + (x_lat - x_apex) * np.sqrt(k), yy])
        for k in np.linspace(0, 1, 14):  # diaphragm dome, lateral to medial
            yy = y_dia + 0.9 * sp * (1 - k) + 0.3 * sp * k - 1.3 * sp * np.sin(np.pi * k)
            pts.append([x_lat + (x_med_low - x_lat) * k, yy])
        pts.append([xc + side * 0.8 * w_mid, y_top + 3 * sp])  # mediastinal border
        bg.mask(np.array(pts), lungs)
    bg.soft(lungs, -rng.uniform(0.38, 0.5), 0.35 * sp)
    vessels = ndi.gaussian_filter(rng.standard_normal(bg.shape), 0.12 * sp * bg.sy)
    bg.a += (0.5 * vessels / (vessels.std() + 1e-9) * 0.05 * ndi.gaussian_filter(lungs.astype(np.float32), 2)).astype(np.float32)
    # ribs: posterior arcs (bright) and anterior arcs (faint) for the twelve thoracic levels
    post, ant = np.zeros(bg.shape, bool), np.zeros(bg.shape, bool)
    for k in range(1, 13):
        cv, wv = g.level_center(f"T{k}")
        reach = half_chest * (0.62 + 0.3 * min(1, k / 5)) * (1 - 0.1 * max(0, k - 9))
        for side in (-1, 1):
            p0 = cv + [side * 0.6 * wv, 0]
            p2 = cv + [side * reach, 0.8 * sp]
            p1 = cv + [side * reach * 0.6, -1.1 * sp]
            arc = _bezier(p0, p1, p2, 30)
            bg.mask(_band(arc, 0.42 * sp), post)
            if k <= 10:
                q2 = cv + [side * reach * 0.35, 3.6 * sp]
                q1 = cv + [side * reach * 1.05, 2.8 * sp]
                bg.mask(_band(_bezier(p2, q1, q2, 30), 0.45 * sp), ant)
    bg.bone(post, 0.08, 0.14, 0.06 * sp)
    bg.bone(ant, 0.04, 0.06, 0.08 * sp)
    # bowel gas below the diaphragm
    for _ in range(int(rng.integers(5, 14))):
        gc = [xc + rng.uniform(-0.7, 0.7) * half_chest, rng.uniform(y_t10 + 2 * sp, y_l5 + 2 * sp)]
        blob = _ellipse(np.array(gc), np.array([1.0, 0]), np.array([0, 1.0]),
                        rng.uniform(0.3, 1.0) * sp, rng.uniform(0.25, 0.7) * sp, 20)
        bg.soft(bg.mask(blob), -rng.uniform(0.12, 0.3), 0.12 * sp)
    # pelvis: sacrum, iliac wings, femoral heads
    _ap_pelvis(bg, g, rng, sp)
    bg.smooth_field(rng, 0.06)
    bg.a += (rng.uniform(-0.08, 0.08) * (bg.Y / H - 0.5)).astype(np.float32)  # heel effect


def _ap_pelvis(bg: Background, g: ViewGeometry, rng, sp: float) -> None:
    i = len(g.levels) - 1
    e, n = g.frame(i)
    b = g.bodies[i]
    w, h = g.width(i), g.height(i)
    c = (b[2] + b[3]) / 2 + 0.25 * h * n  # top of S1
    sacrum = np.array([c - 0.55 * w * e, c + 0.55 * w * e, c + 0.18 * w * e + 2.4 * h * n, c - 0.18 * w * e + 2.4 * h * n])
    m = bg.mask(sacrum)
    bg.bone(m, 0.22, 0.2, 0.05 * w)
    foramina = np.zeros(bg.shape, bool)
    for k in range(4):
        for side in (-1, 1):
            fc = c + side * (0.3 - 0.04 * k) * w * e + (0.45 + 0.45 * k) * h * n
            bg.mask(_ellipse(fc, e, n, 0.06 * w, 0.07 * w, 12), foramina)
    bg.soft(foramina, -0.12, 0.01 * w)
    wings = np.zeros(bg.shape, bool)
    heads = np.zeros(bg.shape, bool)
    y_crest = g.level_center("L4")[0][1] - 0.2 * h
    for side in (-1, 1):
        s = side
        si_top = c + s * 0.5 * w * e
        pts = [si_top,
               np.array([c[0] + s * 0.75 * w, y_crest + 0.3 * h]),
               np.array([c[0] + s * 1.5 * w, y_crest - 0.15 * h]),
               np.array([c[0] + s * 2.3 * w, y_crest + 0.1 * h]),
               np.array([c[0] + s * 2.75 * w, y_crest + 0.9 * h]),
               np.array([c[0] + s * 2.6 * w, c[1] + 1.4 * h]),
               np.array([c[0] + s * 2.05 * w, c[1] + 2.2 * h]),
               np.array([c[0] + s * 1.45 * w, c[1] + 2.6 * h]),
               np.array([c[0] + s * 0.9 * w, c[1] + 2.0 * h]),
               c + s * 0.42 * w * e + 1.3 * h * n]
        bg.mask(np.array(pts), wings)
        bg.mask(_ellipse(np.array([c[0] + s * 1.95 * w, c[1] + 3.0 * h]), np.array([1.0, 0]), np.array([0, 1.0]),
                         0.6 * w, 0.6 * w), heads)
    bg.bone(wings, 0.2, 0.3, 0.06 * w)
    bg.bone(heads, 0.3, 0.3, 0.06 * w)


# ---------------------------------------------------------------------------------------------
# lateral view


def render_lat(an: SpineAnatomy, lat_bodies: np.ndarray, shape: tuple[int, int], rng,
               scale: float) -> tuple[np.ndarray, dict[str, np.ndarray], ViewGeometry]:
    """Draw the lateral view (patient facing left); return (uint8 image, masks, geometry)."""
    H, W = shape
    bodies, px = place_column(lat_bodies, shape, rng, an.lat_tilt_deg, (0.48, 0.6))
    g = make_geometry(an.levels, bodies, px, 0.04, 0.03, 0.015)
    bg = Background(shape, 4 if H >= 1200 else (2 if H >= 400 else 1))
    _lat_background(bg, g, rng)
    img = bg.upsample()
    painter = Painter(img, texture_tile(rng, scale))
    names = ("Lat_Vertebra", "Lat_Disk_Height", "Lat_Spinous_Process",
             "Lat_Anterior_Vertebral_Line", "Lat_Posterior_Vertebral_Line")
    masks = {s: np.zeros(shape, bool) for s in names}
    for i in range(an.n):
        _lat_vertebra(painter, g, i, masks)
    for poly in g.disk_polygons():
        painter.bone(poly, 0.03, 0.0, mask=masks["Lat_Disk_Height"])
    width = max(1.0, LINE_WIDTH_PX * scale)
    painter.line_mask(g.bodies[:, [0, 3]].reshape(-1, 2), width, masks["Lat_Anterior_Vertebral_Line"])
    painter.line_mask(g.bodies[:, [1, 2]].reshape(-1, 2), width, masks["Lat_Posterior_Vertebral_Line"])
    return expose(img, rng, scale), masks, g


def _lat_vertebra(p: Painter, g: ViewGeometry, i: int, masks) -> None:
    e, n = g.frame(i)
    b = g.bodies[i]
    D, h = g.width(i), g.height(i)
    t = LEVELS.index(g.levels[i]) / (len(LEVELS) - 1)
    lumbar = g.levels[i].startswith("L")
    p.bone(g.outlines[i], 0.45, 0.6, 0.035 * D, texture=0.06, mask=masks["Lat_Vertebra"])
    sb = b[1]
    back_dir = _unit(b[2] - b[1])  # down the posterior wall
    # pedicle and articular processes
    ped = np.array([sb + 0.1 * h * back_dir, sb + 0.12 * h * back_dir + 0.42 * D * e,
                    sb + 0.5 * h * back_dir + 0.42 * D * e, sb + 0.52 * h * back_dir])
    p.bone(ped, 0.2, 0.25, 0.03 * D)
    for dv in (-0.08, 0.78):
        p.bone(_ellipse(sb + 0.45 * D * e + dv * h * n, e, n, 0.12 * D, 0.2 * h, 20), 0.15, 0.3, 0.025 * D)
    # spinous process: from the lamina, pointing backwards and down (steep in the thorax)
    ang = math.radians(float(np.interp(t, [0, 0.35, 0.6, 0.7, 1.0], [35, 50, 35, 14, 6])))
    d = math.cos(ang) * e + math.sin(ang) * n
    m = -math.sin(ang) * e + math.cos(ang) * n
    base = sb + 0.48 * D * e + 0.35 * h * n
    L = (0.72 if lumbar else 0.9) * D
    hb, ht = (0.3 * h, 0.27 * h) if lumbar else (0.2 * h, 0.09 * h)
    tipc = base + L * d
    arc = [tipc + ht * (math.cos(a) * -m + math.sin(a) * d) for a in np.linspace(0, np.pi, 9)]
    sp_poly = np.array([base - hb * m, *arc, base + hb * m])
    p.bone(sp_poly, 0.22, 0.35, 0.04 * D, mask=masks["Lat_Spinous_Process"])


def _lat_background(bg: Background, g: ViewGeometry, rng) -> None:
    H, W = bg.full
    c = g.centers
    sp = float(np.median(np.diff(c[:, 1])))
    D = float(np.mean([g.width(i) for i in range(len(g.levels))]))
    ys = c[:, 1]
    x_spine = np.interp(bg.Y, ys, c[:, 0])
    y_t10 = g.level_center("T10")[0][1]
    y_l5 = c[-1][1]
    front = rng.uniform(2.6, 3.6) * D
    belly = front * rng.uniform(1.0, 1.25)
    x_front = x_spine - np.interp(bg.Y, [y_t10 - 6 * sp, y_t10, y_l5], [front, front * 1.05, belly])
    x_back = x_spine + np.interp(bg.Y, [y_t10 - 6 * sp, y_l5, y_l5 + 3 * sp], [1.6 * D, 1.5 * D, 2.3 * D]) * rng.uniform(0.9, 1.15)
    mid, half = (x_front + x_back) / 2, (x_back - x_front) / 2
    u = np.clip(1 - ((bg.X - mid) / half) ** 2, 0, None)
    bg.a += rng.uniform(0.75, 0.95) * np.sqrt(u) + 0.03
    # lungs: anterior to and overlapping the thoracic spine, down to the sloping diaphragm
    y_top = g.level_center("T1")[0][1] - 1.5 * sp
    xs_t = g.level_center("T6")[0][0]
    x_ant = xs_t - 0.85 * front
    x_post = xs_t + 0.9 * D
    y_dia_front = y_t10 - rng.uniform(0.5, 1.5) * sp
    y_dia_back = y_t10 + rng.uniform(1.5, 2.5) * sp
    pts = [[x_ant + 0.3 * D, y_top], [x_post - 0.4 * D, y_top - 0.3 * sp], [x_post, y_top + 2 * sp]]
    pts += [[x_post, y_dia_back + 0.8 * sp]]
    for k in np.linspace(0, 1, 14):
        xx = x_post + (x_ant - x_post) * k
        pts.append([xx, y_dia_back + (y_dia_front - y_dia_back) * k - 1.0 * sp * np.sin(np.pi * k)])
    pts += [[x_ant, y_top + 2 * sp]]
    lungs = bg.mask(np.array(pts))
    bg.soft(lungs, -rng.uniform(0.42, 0.55), 0.45 * sp)
    heart = _ellipse(np.array([x_ant + 0.6 * (xs_t - x_ant) * 0.6, y_dia_front - 1.5 * sp]), np.array([1.0, 0]),
                     np.array([0, 1.0]), 0.35 * front, 2.2 * sp)
    bg.soft(bg.mask(heart), 0.18, 0.5 * sp)
    vessels = ndi.gaussian_filter(rng.standard_normal(bg.shape), 0.12 * sp * bg.sy)
    bg.a += (0.05 * vessels / (vessels.std() + 1e-9) * ndi.gaussian_filter(lungs.astype(np.float32), 2)).astype(np.float32)
    # ribs: faint arcs from the costovertebral joints forwards and down, both sides offset
    ribs = np.zeros(bg.shape, bool)
    for k in range(1, 13):
        cv, _ = g.level_center(f"T{k}")
        for off in (0.0, rng.uniform(0.2, 0.5) * sp):
            p0 = cv + [0.7 * D, off]
            p2 = cv + [-0.8 * front, 2.8 * sp + off]
            p1 = cv + [0.1 * front, 2.2 * sp + off]
            bg.mask(_band(_bezier(p0, p1, p2, 30), 0.3 * sp), ribs)
    bg.bone(ribs & (bg.Y < y_dia_back + 2 * sp), 0.03, 0.08, 0.08 * sp)
    # bowel gas anterior to the lumbar spine
    for _ in range(int(rng.integers(4, 10))):
        gc = np.array([rng.uniform(c[-1][0] - 0.9 * belly, c[-1][0] - 0.8 * D), rng.uniform(y_t10 + 2 * sp, y_l5 + 2 * sp)])
        blob = _ellipse(gc, np.array([1.0, 0]), np.array([0, 1.0]), rng.uniform(0.3, 0.9) * sp, rng.uniform(0.25, 0.6) * sp, 20)
        bg.soft(bg.mask(blob), -rng.uniform(0.12, 0.28), 0.12 * sp)
    # pelvis: sacrum continuing posteriorly, iliac wing overlapping L5-S1, femoral heads
    i = len(g.levels) - 1
    e, n = g.frame(i)
    b = g.bodies[i]
    Dl, h = g.width(i), g.height(i)
    top_f, top_b = b[3] + 0.28 * h * n, b[2] + 0.2 * h * n
    slope = math.radians(rng.uniform(30, 45))
    down = math.cos(slope) * n + math.sin(slope) * e
    sac = np.array([top_f, top_b, top_b + 2.6 * h * down + 0.1 * Dl * e, top_f + 2.7 * h * down + 0.55 * Dl * e])
    bg.bone(bg.mask(sac), 0.2, 0.3, 0.05 * Dl)
    wing = _ellipse(b.mean(axis=0) + 0.45 * Dl * e + 1.9 * h * n, e, n, 1.6 * Dl, 1.5 * h, 40)
    bg.bone(bg.mask(wing), 0.1, 0.18, 0.05 * Dl)
    head = _ellipse(b[3] - 0.6 * Dl * e + 3.6 * h * n, e, n, 0.55 * Dl, 0.55 * Dl)
    bg.bone(bg.mask(head), 0.25, 0.25, 0.05 * Dl)
    bg.smooth_field(rng, 0.06)
    bg.a += (rng.uniform(-0.08, 0.08) * (bg.Y / H - 0.5)).astype(np.float32)
