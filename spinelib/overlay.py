"""Drawing a vertebra prediction on its X-ray: the picture ``spinelib predict`` writes.

    rgb = draw_prediction(image, corners, cobb)         # (H, W, 3) uint8, the X-ray's own size
    spinelib.core.imageio.save_png("case_overlay.png", rgb)

What is drawn (OpenCV, anti-aliased, line widths scaled to the image, :func:`line_width`):

- each vertebra's quadrilateral TL-TR-BR-BL (green) and its level name (T1..L5) on the left;
- each vertebra's mid-line, from the midpoint of its left edge :math:`\\tfrac12(TL + BL)` to that of
  its right edge :math:`\\tfrac12(TR + BR)` (the lines the Cobb angles are measured between,
  :mod:`spinelib.geometry.cobb`);
- for each of the three curves, the mid-lines of its two end vertebrae extended to both sides in
  the curve's colour (PT red, MT orange, TL magenta), and their quadrilaterals outlined in it (an
  end vertebra shared by two curves shows the main curve's red);
- a legend at the top left (on a darkened patch, lines under it stay visible): the three angles
  in degrees with their end vertebrae.

Vertebrae whose corners are NaN (not found) are left out. Nothing here changes ``image``.
"""

from __future__ import annotations

import numpy as np

LEVELS: tuple[str, ...] = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
"""The 17 level names, T1 first."""

VERTEBRA_COLOR = (60, 220, 60)
MIDLINE_COLOR = (255, 255, 0)
CURVE_COLORS = {"pt": (255, 40, 40), "mt": (255, 150, 0), "tl": (230, 60, 230)}
"""RGB colour of each curve's end-vertebra lines and legend entry."""
CURVE_NAMES = {"pt": "PT", "mt": "MT", "tl": "TL"}


def line_width(shape: tuple[int, int]) -> int:
    """Line width in pixels for an image of ``shape=(H, W)``: :math:`\\max(1, \\operatorname{round}(\\min(H, W) / 300))`."""
    return max(1, int(round(min(int(shape[0]), int(shape[1])) / 300)))


def check_corners(corners, n: int | None = None) -> np.ndarray:
    """``corners`` as float (N, 4, 2) x, y (TL, TR, BL, BR per vertebra); (4N, 2) is reshaped.

    NaN rows (vertebrae not found) are allowed; a wrong shape raises ``ValueError``, non-numbers
    ``TypeError``.
    """
    try:
        c = np.asarray(corners, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"corners must be numeric (N, 4, 2) x, y pixels, got {type(corners).__name__}") from e
    if c.ndim == 2 and c.shape[1] == 2 and c.shape[0] % 4 == 0:
        c = c.reshape(-1, 4, 2)
    if c.ndim != 3 or c.shape[1:] != (4, 2):
        raise ValueError(f"corners must have shape (N, 4, 2) (TL, TR, BL, BR x, y), got {c.shape}")
    if n is not None and c.shape[0] != n:
        raise ValueError(f"expected {n} vertebrae, got {c.shape[0]}")
    return c


def to_rgb(image) -> np.ndarray:
    from spinelib.core.imageio import to_uint8

    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return np.repeat(to_uint8(a)[..., None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return np.ascontiguousarray(to_uint8(a[..., :3]))
    raise ValueError(f"image must be (H, W) gray or (H, W, 3) RGB, got shape {a.shape}")


def midlines(corners) -> tuple[np.ndarray, np.ndarray]:
    """``(left, right)`` (N, 2) each: mid-line end points :math:`\\tfrac12(TL+BL)` and :math:`\\tfrac12(TR+BR)`."""
    c = check_corners(corners)
    return 0.5 * (c[:, 0] + c[:, 2]), 0.5 * (c[:, 1] + c[:, 3])


def _pt(p) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def _cobb_parts(cobb) -> dict | None:
    """``{curve: (angle, (upper, lower))}`` from a CobbResult or its ``as_dict()``; None if absent."""
    if cobb is None:
        return None
    if isinstance(cobb, dict):
        out = {}
        for k in CURVE_NAMES:
            if k not in cobb:
                return None
            ends = cobb.get("end_vertebrae", {}).get(k) if "end_vertebrae" in cobb else \
                (cobb.get(f"{k}_upper"), cobb.get(f"{k}_lower"))
            out[k] = (float(cobb[k]), ends)
        return out
    return {k: (float(getattr(cobb, k)), cobb.end_vertebrae.get(k)) for k in CURVE_NAMES}


def draw_prediction(image, corners, cobb=None, levels=LEVELS, title: str | None = None) -> np.ndarray:
    """The X-ray with vertebrae, mid-lines, end vertebrae and the three Cobb angles drawn.

    ``image`` (H, W) gray or (H, W, 3) RGB; ``corners`` (N, 4, 2) x, y in the image's pixels,
    TL TR BL BR, NaN rows skipped; ``cobb`` a :class:`spinelib.geometry.cobb.CobbResult` (or its
    ``as_dict()``), or None to draw vertebrae only; ``levels`` the N level names; ``title`` an
    optional first legend line. Returns a new (H, W, 3) ``uint8`` RGB array.
    """
    import cv2

    rgb = to_rgb(image).copy()
    c = check_corners(corners)
    levels = tuple(levels)
    if len(levels) != c.shape[0]:
        raise ValueError(f"{len(levels)} level names for {c.shape[0]} vertebrae")
    h, w = rgb.shape[:2]
    lw = line_width((h, w))
    font_scale = max(0.4, min(h, w) / 900)
    found = np.isfinite(c).all(axis=(1, 2))
    left, right = midlines(c)
    for v in np.flatnonzero(found):
        quad = np.round(c[v][[0, 1, 3, 2]]).astype(np.int32)  # TL TR BR BL: the outline in order
        cv2.polylines(rgb, [quad], True, VERTEBRA_COLOR, lw, cv2.LINE_AA)
        cv2.line(rgb, _pt(left[v]), _pt(right[v]), MIDLINE_COLOR, max(1, lw // 2), cv2.LINE_AA)
        x0 = int(np.min(c[v, :, 0])) - int(40 * font_scale) - 4 * lw
        y0 = int(np.mean(c[v, :, 1])) + int(5 * font_scale)
        cv2.putText(rgb, levels[v], (max(0, x0), y0), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * font_scale,
                    VERTEBRA_COLOR, max(1, lw // 2), cv2.LINE_AA)
    parts = _cobb_parts(cobb)
    lines = [(title, (255, 255, 255))] if title else []
    if parts is not None:
        legend = []
        # the main curve (pt) is drawn last: an end vertebra shared with another curve shows its colour
        for key in ("tl", "mt", "pt"):
            angle, ends = parts[key]
            label = f"{CURVE_NAMES[key]} {angle:5.1f} deg"
            color = CURVE_COLORS[key]
            if ends is not None and None not in ends:
                up, low = (int(e) for e in ends)
                label += f"  {levels[up]}-{levels[low]}"
                for v in (up, low):
                    if not found[v]:
                        continue
                    a, b = left[v], right[v]
                    d = b - a
                    ext = 0.6 * d  # the mid-line extended by 60 % of its length on each side
                    cv2.line(rgb, _pt(a - ext), _pt(b + ext), color, lw + 1, cv2.LINE_AA)
                    quad = np.round(c[v][[0, 1, 3, 2]]).astype(np.int32)
                    cv2.polylines(rgb, [quad], True, color, lw + 1, cv2.LINE_AA)
            legend.insert(0, (label, color))
        lines += legend
    if lines:
        # legend at the top left on a darkened (not hidden) patch: lines under it stay visible
        font, thick = cv2.FONT_HERSHEY_SIMPLEX, max(1, lw // 2 + 1)
        sizes = [cv2.getTextSize(t, font, font_scale, thick)[0] for t, _ in lines]
        step = max(sh for _, sh in sizes) + int(12 * font_scale) + 4
        box_w, box_h = min(w, max(sw for sw, _ in sizes) + 20), min(h, step * len(lines) + 10)
        rgb[:box_h, :box_w] = (rgb[:box_h, :box_w] * 0.4).astype(np.uint8)
        for i, (text, color) in enumerate(lines):
            cv2.putText(rgb, text, (10, step * (i + 1)), font, font_scale, color, thick, cv2.LINE_AA)
    return rgb
