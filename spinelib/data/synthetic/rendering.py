"""Drawing a synthetic column as an X-ray: the AP and lateral views and their masks (anatomy in
:mod:`spinelib.data.synthetic.anatomy`; the painter, background and exposure in
:mod:`spinelib.data.synthetic.painting`)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from spinelib.data.synthetic.anatomy import (
    LEVELS,
    LINE_WIDTH_PX,
    SpineAnatomy,
    ViewGeometry,
    band_polygon,
    bezier,
    blob,
    ellipse,
    make_geometry,
    perpendicular,
    place_column,
    smooth_closed,
    teardrop,
    unit_vector,
)
from spinelib.data.synthetic.painting import Background, Painter, expose, texture_tile

_EX, _EY = np.array([1.0, 0.0]), np.array([0.0, 1.0])


def _bg_factor(height: int) -> int:
    return 4 if height >= 1200 else (2 if height >= 400 else 1)


def render_ap(an: SpineAnatomy, ap_bodies: np.ndarray, shape: tuple[int, int], rng,
              scale: float) -> tuple[np.ndarray, dict[str, np.ndarray], ViewGeometry]:
    """Draw the AP view; return (uint8 image, masks, geometry)."""
    bodies, px = place_column(ap_bodies, shape, rng, an.ap_tilt_deg, (0.46, 0.54))
    g = make_geometry(an.levels, bodies, px, 0.025, 0.05, 0.05)
    bg = Background(shape, _bg_factor(shape[0]))
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
    chord = unit_vector(c[-1] - c[0])
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
    p.bone(g.outlines[i], 0.08 + 0.05 * t, 0.13, 0.02 * w, texture=0.025, mask=masks["Ap_Vertebra"])
    for edge in (g.sup_edges[i], g.inf_edges[i]):  # endplates seen slightly obliquely: bright bands
        p.bone(band_polygon(edge[1:-1], 0.05 * h), 0.05, 0.0)
    shift = -rot * 0.22 * w  # axial rotation moves the posterior elements towards the concavity
    # laminae and the arch, seen through the body
    lam = np.array([c - 0.3 * w * e - 0.05 * h * n, c + 0.3 * w * e - 0.05 * h * n,
                    c + 0.1 * w * e + 0.55 * h * n, c - 0.1 * w * e + 0.55 * h * n]) + shift * e
    p.bone(lam, 0.04, 0.03, 0.05 * w)
    for side in (-1, 1):
        # transverse processes: long and level in the lumbar spine, short and raised in the thorax
        reach = 0.9 if lumbar else 0.7
        lift = -0.05 * h if lumbar else -0.25 * h
        base = c + side * 0.38 * w * e - 0.12 * h * n + shift * e
        tip = c + side * reach * w * e + lift * n + shift * 0.5 * e
        thick = (0.13 if lumbar else 0.16) * h
        tp = np.array([base - thick * n, tip - 0.5 * thick * n, tip + 0.5 * thick * n, base + thick * n])
        p.bone(tp, 0.035, 0.09, 0.05 * w)
        # pedicles: oval rings in the upper lateral part; the convex-side one thins with rotation
        narrow = 1.0 - 0.45 * max(0.0, side * rot)
        pc = c + (side * 0.3 * w + shift * 0.55) * e - 0.13 * h * n
        ped = ellipse(pc, e, n, 0.085 * w * narrow * rng.uniform(0.92, 1.08), 0.22 * h * rng.uniform(0.92, 1.08))
        p.bone(ped, 0.04, 0.22, 0.02 * w, mask=masks["Ap_Pedicle"])
    # spinous process: a teardrop at the midline over the lower half of the body
    sp_len = (0.3 if lumbar else 0.36 - 0.1 * t) * h
    sp = teardrop(c + 0.22 * h * n + shift * e, e, n, 0.085 * w, sp_len)
    p.bone(sp, 0.04, 0.18, 0.02 * w, mask=masks["Ap_Spinous_Process"])


def _ap_background(bg: Background, g: ViewGeometry, rng) -> None:
    H = bg.full[0]
    sp = float(np.median(np.diff(g.centers[:, 1])))  # level spacing
    xs = float(np.mean(g.centers[:, 0]))
    w_mid = g.width(len(g.levels) // 2)

    def y(level):
        return float(g.level_center(level)[0][1])

    y_t1, y_t7, y_t10, y_t12, y_l2, y_l3, y_l5 = (y(lv) for lv in ("T1", "T7", "T10", "T12", "L2", "L3", "L5"))
    half = rng.uniform(3.0, 3.6) * w_mid  # half chest width
    xc = xs + rng.uniform(-0.1, 0.1) * w_mid
    # soft-tissue envelope: an elliptic cross-section, chest -> waist -> hips
    keys_y = [y_t1 - 3 * sp, y_t10, y_l3, y_l5 + 2 * sp]
    w_l5 = g.width(len(g.levels) - 1)  # the hips must hold the iliac wings (about 2.9 L5 widths)
    keys_w = [half * rng.uniform(1.1, 1.25), half, max(half * rng.uniform(0.82, 0.92), 2.7 * w_l5),
              max(half * rng.uniform(1.0, 1.15), 3.5 * w_l5)]
    hw = bg.profile(keys_y, keys_w, 1.5 * sp)
    thick = np.sqrt(np.clip(1 - ((bg.X - xc) / hw) ** 2, 0, None))
    field = bg.smooth_field(rng)
    abdomen = np.clip((bg.Y - y_t10) / (3 * sp), 0, 1)
    spine_band = np.exp(-(((bg.X - xs) / (1.3 * w_mid)) ** 2))
    bg.a += thick * (rng.uniform(0.6, 0.75) + 0.04 * field + 0.12 * abdomen + 0.12 * spine_band)
    # lungs: dark fields either side of the mediastinum, above the diaphragm domes
    y_top = y_t1 - 1.2 * sp
    polys = []
    for side in (-1, 1):  # -1: patient's right (image left)
        y_dia = y_t10 + (-0.2 if side < 0 else 0.4) * sp + rng.uniform(-0.5, 0.5) * sp
        x_apex = xc + side * 1.5 * w_mid
        x_lat = xc + side * 0.93 * half
        x_med_low = xc + side * (1.0 if side < 0 else 2.1) * w_mid  # the heart on the patient's left
        pts = []
        for yy in np.linspace(y_top, y_dia + 1.2 * sp, 16):  # lateral border, apex -> costophrenic angle
            k = np.clip((yy - y_top) / (3.5 * sp), 0, 1)
            pts.append([x_apex + (x_lat - x_apex) * np.sqrt(k), yy])
        for k in np.linspace(0, 1, 14):  # diaphragm dome, lateral -> medial
            pts.append([x_lat + (x_med_low - x_lat) * k,
                        y_dia + 1.2 * sp * (1 - k) + 0.4 * sp * k - 1.5 * sp * np.sin(np.pi * k)])
        pts.append([xc + side * (1.0 if side < 0 else 1.6) * w_mid, y_t7])  # mediastinal border
        pts.append([xc + side * 0.9 * w_mid, y_top + 1.5 * sp])
        polys.append(np.array(pts))
    lungs = bg.mask(*polys)
    lung_soft = bg.blur(lungs, 0.3 * sp)
    hila = sum(np.exp(-(((bg.X - (xc + s * 1.5 * w_mid)) / (1.6 * w_mid)) ** 2 + ((bg.Y - y_t7) / (2.5 * sp)) ** 2))
               for s in (-1, 1))
    vessels = bg.fine_noise(rng, 0.07 * sp)
    bg.a += lung_soft * (-rng.uniform(0.3, 0.42) + 0.12 * hila + 0.012 * vessels * (0.4 + hila))
    # gastric bubble under the left dome
    bubble = ellipse(np.array([xc + 1.8 * w_mid, y_t10 + 1.6 * sp]), _EX, _EY, 0.9 * w_mid, 0.5 * sp, 20)
    bg.soft(bg.mask(bubble), -rng.uniform(0.05, 0.25), 0.2 * sp)
    # ribs: posterior arcs (bright) and anterior arcs (faint), clavicles
    post, ant = [], []
    for k in range(1, 13):
        cv, wv = g.level_center(f"T{k}")
        reach = half * (0.5 + 0.42 * math.sin(math.pi / 2 * min(1.0, k / 6))) * (1 - 0.18 * max(0, k - 10))
        for side in (-1, 1):
            p0 = cv + [side * 0.6 * wv, 0.1 * sp]
            p1 = cv + [side * reach * rng.uniform(0.5, 0.6), (-rng.uniform(0.5, 0.9) + 0.08 * k) * sp]
            p2 = cv + [side * reach, (0.8 + 0.22 * k) * sp]
            post.append(band_polygon(bezier(p0, p1, p2, 30), 0.36 * sp * rng.uniform(0.9, 1.1)))
            if k <= 10:
                q2 = cv + [side * reach * 0.4, (3.3 + 0.1 * k) * sp]
                q1 = cv + [side * reach * 1.02, (2.6 + 0.1 * k) * sp]
                ant.append(band_polygon(bezier(p2, q1, q2, 30)[:24], 0.42 * sp))
    bg.bone(bg.mask(*post), 0.015, 0.07, 0.06 * sp)
    bg.bone(bg.mask(*ant), 0.006, 0.025, 0.08 * sp)
    clav = []
    for side in (-1, 1):
        y3 = y("T3")
        a0 = np.array([xc + side * 0.7 * w_mid, y3])
        a2 = np.array([xc + side * 1.05 * half, y_t1 - 1.8 * sp])
        a1 = np.array([xc + side * 0.5 * half, y3 - 0.1 * sp])
        clav.append(band_polygon(bezier(a0, a1, a2, 30), 0.5 * sp))
    bg.bone(bg.mask(*clav), 0.05, 0.1, 0.1 * sp, 0.3, rng)
    # bowel gas along the colon frame, a few small-bowel loops
    colon = np.array([[xc - 0.6 * half, y_l5 + 0.5 * sp], [xc - 0.62 * half, y_l2], [xc - 0.5 * half, y_t12 + 0.5 * sp],
                      [xc - 0.1 * half, y_l2 + 0.6 * sp], [xc + 0.3 * half, y_l2], [xc + 0.62 * half, y_t12],
                      [xc + 0.62 * half, y_l3], [xc + 0.5 * half, y_l5 + 1.0 * sp]])
    tt = np.linspace(0, len(colon) - 1, 60)
    path = np.stack([np.interp(tt, np.arange(len(colon)), colon[:, j]) for j in (0, 1)], axis=1)
    gas = Image.new("L", (bg.shape[1], bg.shape[0]), 0)
    draw = ImageDraw.Draw(gas)
    sc = np.array([bg.sx, bg.sy])
    keep = rng.random(len(path)) < rng.uniform(0.2, 0.6)
    blobs = [(pt, rng.uniform(0.35, 0.8) * sp) for pt, k in zip(path, keep) if k]
    blobs += [(np.array([xc + rng.uniform(-0.35, 0.35) * half, rng.uniform(y_l2, y_l5 + sp)]), rng.uniform(0.3, 0.5) * sp)
              for _ in range(int(rng.integers(0, 5)))]
    for pt, r in blobs:
        poly = blob(pt, r, rng) * sc
        draw.polygon(poly.ravel().tolist(), fill=int(rng.integers(60, 200)))
    gas_map = bg.blur(np.asarray(gas), 0.12 * sp)
    bg.a -= gas_map * (0.18 + 0.015 * bg.fine_noise(rng, 0.06 * sp))
    _ap_pelvis(bg, g, rng)
    bg.a += (rng.uniform(-0.08, 0.08) * (bg.Y / H - 0.5)).astype(np.float32)  # heel effect


def _ap_pelvis(bg: Background, g: ViewGeometry, rng) -> None:
    i = len(g.levels) - 1
    e, n = g.frame(i)
    b = g.bodies[i]
    w, h = g.width(i), g.height(i)
    c = (b[2] + b[3]) / 2
    cx, cy = float(c[0]), float(c[1])
    y_l4 = float(g.level_center("L4")[0][1])
    s1 = c + 0.25 * h * n
    sacrum = smooth_closed([s1 - 0.5 * w * e, s1 - 1.0 * w * e + 0.3 * h * n, s1 - 0.6 * w * e + 1.5 * h * n,
                             s1 - 0.15 * w * e + 2.8 * h * n, s1 + 0.15 * w * e + 2.8 * h * n,
                             s1 + 0.6 * w * e + 1.5 * h * n, s1 + 1.0 * w * e + 0.3 * h * n, s1 + 0.5 * w * e])
    bg.bone(bg.mask(sacrum), 0.07, 0.1, 0.1 * w, 0.3, rng)
    foramina = [ellipse(s1 + side * (0.32 - 0.05 * k) * w * e + (0.55 + 0.5 * k) * h * n, e, n, 0.07 * w, 0.08 * w, 12)
                for k in range(4) for side in (-1, 1)]
    bg.soft(bg.mask(*foramina), -0.06, 0.03 * w)
    wings, rings, femora = [], [], []
    for s in (-1, 1):
        def P(dx, yy):
            return np.array([cx + s * dx * w, yy])

        wings.append(smooth_closed([s1 + s * 0.8 * w * e + 0.2 * h * n, P(1.2, y_l4 + 0.2 * h), P(1.9, y_l4 - 0.4 * h),
                                     P(2.6, y_l4 + 0.1 * h), P(2.9, cy + 0.6 * h), P(2.55, cy + 1.5 * h),
                                     P(2.3, cy + 2.5 * h), P(1.5, cy + 2.6 * h), P(1.1, cy + 1.9 * h),
                                     s1 + s * 0.6 * w * e + 1.4 * h * n]))
        ring = smooth_closed([P(0.35, cy + 3.5 * h), P(1.3, cy + 3.2 * h), P(1.8, cy + 3.9 * h),
                               P(1.4, cy + 4.9 * h), P(0.5, cy + 4.8 * h)])
        rings.append(band_polygon(np.vstack([ring, ring[:2]]), 0.28 * w))
        head = np.array([cx + s * 2.0 * w, cy + 3.0 * h])
        femora.append(ellipse(head, _EX, _EY, 0.62 * w, 0.62 * w, 32))
        femora.append(band_polygon(np.array([head, head + [s * 0.5 * w, 0.55 * h], head + [s * 0.85 * w, 1.1 * h]]), 0.5 * w))
        femora.append(ellipse(head + [s * 0.95 * w, 1.1 * h], _EX, _EY, 0.42 * w, 0.6 * h, 24))
        femora.append(band_polygon(np.array([head + [s * 0.7 * w, 1.2 * h], head + [s * 0.6 * w, 4.5 * h]]), 0.65 * w))
    brim = ellipse(np.array([cx, cy + 2.0 * h]), _EX, _EY, 1.5 * w, 1.8 * h, 48)
    rings.append(band_polygon(brim[3:22], 0.1 * w))
    bg.bone(bg.mask(*wings), 0.02, 0.18, 0.2 * w, 0.4, rng)
    bg.bone(bg.mask(*rings), 0.05, 0.1, 0.1 * w, 0.3, rng)
    bg.bone(bg.mask(*femora), 0.1, 0.15, 0.12 * w, 0.3, rng)


def render_lat(an: SpineAnatomy, lat_bodies: np.ndarray, shape: tuple[int, int], rng,
               scale: float) -> tuple[np.ndarray, dict[str, np.ndarray], ViewGeometry]:
    """Draw the lateral view (patient facing left); return (uint8 image, masks, geometry)."""
    bodies, px = place_column(lat_bodies, shape, rng, an.lat_tilt_deg, (0.5, 0.62))
    g = make_geometry(an.levels, bodies, px, 0.04, 0.03, 0.015)
    bg = Background(shape, _bg_factor(shape[0]))
    _lat_background(bg, g, rng)
    img = bg.upsample()
    painter = Painter(img, texture_tile(rng, scale))
    names = ("Lat_Vertebra", "Lat_Disk_Height", "Lat_Spinous_Process",
             "Lat_Anterior_Vertebral_Line", "Lat_Posterior_Vertebral_Line")
    masks = {s: np.zeros(shape, bool) for s in names}
    for i in range(an.n):
        _lat_vertebra(painter, g, i, masks)
    for poly in g.disk_polygons():
        painter.bone(poly, 0.02, 0.0, mask=masks["Lat_Disk_Height"])
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
    p.bone(g.outlines[i], 0.08 + 0.05 * t, 0.16, 0.025 * D, texture=0.03, mask=masks["Lat_Vertebra"])
    for edge in (g.sup_edges[i], g.inf_edges[i]):
        p.bone(band_polygon(edge[1:-1], 0.04 * h), 0.04, 0.0)
    sb = b[1]
    down = unit_vector(b[2] - b[1])  # down the posterior wall
    # pedicle, then the articular pillar (superior and inferior facets)
    ped = np.array([sb + 0.08 * h * down, sb + 0.1 * h * down + 0.42 * D * e,
                    sb + 0.5 * h * down + 0.42 * D * e, sb + 0.55 * h * down])
    p.bone(ped, 0.03, 0.07, 0.04 * D)
    for dv in (-0.1, 0.8):
        p.bone(ellipse(sb + 0.46 * D * e + dv * h * n, e, n, 0.12 * D, 0.22 * h, 20), 0.02, 0.07, 0.03 * D)
    # spinous process: from the lamina, pointing backwards and down (steep in the thorax)
    ang = math.radians(float(np.interp(t, [0, 0.35, 0.6, 0.7, 1.0], [35, 50, 35, 14, 6])))
    d = math.cos(ang) * e + math.sin(ang) * n
    m = -math.sin(ang) * e + math.cos(ang) * n
    base = sb + 0.5 * D * e + 0.35 * h * n
    L = (0.72 if lumbar else 0.9) * D
    hb, ht = (0.3 * h, 0.27 * h) if lumbar else (0.2 * h, 0.09 * h)
    tipc = base + L * d
    arc = [tipc + ht * (math.cos(a) * -m + math.sin(a) * d) for a in np.linspace(0, np.pi, 9)]
    sp_poly = np.array([base - hb * m, *arc, base + hb * m])
    p.bone(sp_poly, 0.02 + 0.03 * t, 0.04 + 0.1 * t, 0.05 * D, mask=masks["Lat_Spinous_Process"])


def _lat_background(bg: Background, g: ViewGeometry, rng) -> None:
    H = bg.full[0]
    c = g.centers
    sp = float(np.median(np.diff(c[:, 1])))
    D = float(np.mean([g.width(i) for i in range(len(g.levels))]))

    def at(level):
        return g.level_center(level)[0]

    y_t1, y_t6, y_t9, y_t10, y_t12, y_l3, y_l5 = (float(at(lv)[1]) for lv in ("T1", "T6", "T9", "T10", "T12", "L3", "L5"))
    x_spine = np.interp(bg.Y, c[:, 1], c[:, 0])
    front = rng.uniform(4.5, 5.5) * D
    back = rng.uniform(2.3, 2.8) * D
    front_keys = ([y_t1, y_t10, y_l3, y_l5 + 2 * sp], [0.95, 1.0, rng.uniform(1.0, 1.3), 1.0])

    def skin_front(yy):
        return np.interp(yy, c[:, 1], c[:, 0]) - front * np.interp(yy, *front_keys)

    x_front = x_spine - front * bg.profile(*front_keys, 1.5 * sp)
    x_back = x_spine + back * bg.profile([y_t1, y_t10, y_l3, y_l5 + 2 * sp], [1.0, 0.95, 0.9, rng.uniform(1.3, 1.6)], 1.5 * sp)
    mid, half = (x_front + x_back) / 2, (x_back - x_front) / 2
    thick = np.sqrt(np.clip(1 - ((bg.X - mid) / half) ** 2, 0, None))
    field = bg.smooth_field(rng)
    abdomen = np.clip((bg.Y - y_t10) / (3 * sp), 0, 1)
    bg.a += thick * (rng.uniform(0.75, 0.9) + 0.05 * field + 0.12 * abdomen)
    # lungs: anterior to and behind the thoracic bodies, down to the sloping diaphragm
    xs = float(at("T7")[0])
    x_ant = xs - 0.85 * front
    y_top = y_t1 - 1.0 * sp
    y_df = y_t9 + rng.uniform(-0.5, 0.5) * sp
    y_db = y_t12 + rng.uniform(0.0, 1.0) * sp
    def spine_x(yy):
        return float(np.interp(yy, c[:, 1], c[:, 0]))

    pts = [[spine_x(y_top) - 1.0 * D, y_top - 0.6 * sp]]
    pts += [[spine_x(yy) + 1.1 * D, yy] for yy in np.linspace(y_top + 0.8 * sp, y_db, 8)]  # posterior recess
    x_df = float(skin_front(y_df)) + 0.12 * front
    for k in np.linspace(0, 1, 10)[1:]:  # diaphragm dome, posterior (low) -> anterior (high)
        pts.append([spine_x(y_db) + 1.1 * D + (x_df - spine_x(y_db) - 1.1 * D) * k,
                    y_db + (y_df - y_db) * k - 1.4 * sp * np.sin(np.pi * k)])
    pts += [[float(skin_front(yy)) + 0.12 * front, yy] for yy in np.linspace(y_df, y_top + 0.8 * sp, 8)[1:]]
    lungs = bg.mask(smooth_closed(pts, 2))
    lung_soft = bg.blur(lungs, 0.4 * sp)
    heart = bg.blur(bg.mask(ellipse(np.array([x_ant + 0.42 * (xs - x_ant), y_df - 1.8 * sp]), _EX, _EY,
                                     0.3 * front, 2.6 * sp)), 0.8 * sp)
    hilum = np.exp(-(((bg.X - (xs - 1.5 * D)) / (1.5 * D)) ** 2 + ((bg.Y - y_t6) / (2.5 * sp)) ** 2))
    vessels = bg.fine_noise(rng, 0.07 * sp)
    bg.a += lung_soft * (-rng.uniform(0.35, 0.47) + 0.25 * heart + 0.12 * hilum + 0.012 * vessels * (0.4 + hilum))
    # ribs: faint paired arcs from the costovertebral joints, forwards and down; the sternum
    ribs = []
    for k in range(1, 13):
        cv = at(f"T{k}")
        for off in (0.0, rng.uniform(0.25, 0.5)):
            p0 = cv + [0.9 * D + off * D, off * sp]
            p1 = cv + [-0.3 * front, (2.2 + off) * sp]
            p2 = cv + [-0.75 * front, (3.4 + off) * sp]
            ribs.append(band_polygon(bezier(p0, p1, p2, 30), 0.28 * sp))
    bg.bone(bg.mask(*ribs), 0.006, 0.025, 0.08 * sp)
    sternum = band_polygon(bezier(np.array([xs - 0.8 * front, y_t1 + 1.2 * sp]), np.array([xs - 0.95 * front, y_t6]),
                            np.array([xs - 0.88 * front, y_t9]), 20), 0.35 * D)
    bg.bone(bg.mask(sternum), 0.012, 0.04, 0.1 * D)
    # bowel gas anterior to the lumbar spine
    blobs = []
    for _ in range(int(rng.integers(3, 10))):
        gc = np.array([float(c[-1][0]) - rng.uniform(1.3 * D, 0.8 * front), rng.uniform(y_t12, y_l5 + 2 * sp)])
        blobs.append(blob(gc, rng.uniform(0.35, 0.8) * sp, rng))
    gas = bg.blur(bg.mask(*blobs), 0.12 * sp)
    bg.a -= gas * (0.16 + 0.015 * bg.fine_noise(rng, 0.06 * sp))
    _lat_pelvis(bg, g, rng)
    bg.a += (rng.uniform(-0.08, 0.08) * (bg.Y / H - 0.5)).astype(np.float32)


def _lat_pelvis(bg: Background, g: ViewGeometry, rng) -> None:
    i = len(g.levels) - 1
    e, n = g.frame(i)
    b = g.bodies[i]
    D, h = g.width(i), g.height(i)
    # sacrum: a curved wedge below the L5-S1 disk, tilted backwards (sacral slope)
    tilt = math.radians(rng.uniform(10, 20))
    d0 = math.cos(tilt) * n + math.sin(tilt) * e
    top = (b[2] + b[3]) / 2 + 0.3 * h * n + 0.05 * D * e
    axis, widths = [], []
    for k in np.linspace(0, 1, 12):
        bend = math.radians(30) * k
        d = math.cos(bend) * d0 - math.sin(bend) * perpendicular(d0)  # curving backwards
        axis.append(top + 3.4 * h * k * d)
        widths.append(D * (0.95 - 0.7 * k))
    sac = band_polygon(np.array(axis), np.array(widths))
    bg.bone(bg.mask(sac), 0.07, 0.1, 0.1 * D, 0.3, rng)
    # iliac wings (two, slightly offset by magnification), femoral heads and shafts
    wing_c = b.mean(axis=0) + 0.3 * D * e + 1.7 * h * n
    wings = [smooth_closed(ellipse(wing_c + off, e, n, 2.0 * D, 1.7 * h, 10) + rng.normal(0, 0.12 * h, (10, 2)))
             for off in (np.zeros(2), rng.uniform(0.05, 0.15) * D * e)]
    bg.bone(bg.mask(*wings), 0.02, 0.08, 0.18 * D, 0.4, rng)
    head_c = b[3] - 0.4 * D * e + 4.0 * h * n
    femora = []
    for off in (np.zeros(2), 0.12 * D * (e + n)):
        hc = head_c + off
        femora.append(ellipse(hc, e, n, 0.62 * D, 0.62 * D, 28))
        femora.append(band_polygon(np.array([hc, hc + 1.0 * h * n + 0.1 * D * e, hc + 2.5 * h * n + 0.1 * D * e]), 0.75 * D))
    bg.bone(bg.mask(*femora), 0.05, 0.08, 0.12 * D, 0.3, rng)
