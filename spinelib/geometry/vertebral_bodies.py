"""From a vertebra mask to its vertebral bodies, top to bottom, with their level names: the first
half of the mask route (:mod:`spinelib.geometry.corners` fits each body's corners).

- :func:`separate_bodies` - the bodies as separate masks, top to bottom: connected components,
  merged neighbours split by distance transform + watershed, specks dropped;
- :func:`assign_levels` - level names T1..L5 top to bottom, missing levels named, never invented;
- :func:`as_binary_mask`, :func:`check_positive_int`, :func:`check_fraction`, :func:`unit_down` -
  the input checks both halves share.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from spinelib.data.aasce import VERTEBRA_NAMES


# --------------------------------------------------------------------------- input checks (shared with corners)
def as_binary_mask(mask, threshold: float = 0.5, name: str = "mask") -> np.ndarray:
    """A 2-D bool array: bool input as is, numbers ``> threshold`` (a probability map or 0/1)."""
    a = np.asarray(mask)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if a.dtype == bool:
        return a
    if not np.issubdtype(a.dtype, np.number):
        raise TypeError(f"{name} must be a numeric or boolean array, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return a > threshold


def check_positive_int(value, name: str) -> int:
    """``value`` as an int; ``ValueError`` unless it is an integer of at least 1 (no bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_fraction(value, name: str, low: float = 0.0, high: float = 1.0) -> float:
    """``value`` as a float; ``ValueError`` unless it is a number in ``[low, high]`` (no bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not low <= float(value) <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def unit_down(down) -> np.ndarray:
    """The spine direction ``down`` (dx, dy) as a unit vector; None: straight down the image."""
    d = np.asarray((0.0, 1.0) if down is None else down, dtype=np.float64)
    if d.shape != (2,) or not np.isfinite(d).all() or np.linalg.norm(d) < 1e-9:
        raise ValueError(f"down must be a finite non-zero (dx, dy) direction, got {down!r}")
    return d / np.linalg.norm(d)


# --------------------------------------------------------------------------- separate bodies
def _split_component(comp: np.ndarray, h_fraction: float, min_core_px: int, n_max: int | None = None,
                     down=None) -> list[np.ndarray]:
    """Split one connected component at its necks: distance transform ``d``; the markers are the
    connected parts of ``{d > h_fraction * max d}`` with at least ``min_core_px`` pixels (for a
    convex body that set is convex, so one marker: only non-convex unions split); with two or
    more markers the component is divided by a watershed of ``-d`` (every pixel kept).

    With ``n_max``, more markers than that are grouped into ``n_max`` groups along ``down`` (the
    spine direction): sorted by the projection of their centroids on it and cut at the
    ``n_max - 1`` largest gaps, so cores side by side stay one body.
    """
    from skimage.segmentation import watershed

    u8 = comp.astype(np.uint8)
    dist = cv2.distanceTransform(u8, cv2.DIST_L2, 5)
    peak = float(dist.max())
    if peak < 2.0:
        return [comp]
    n, markers, stats, cents = cv2.connectedComponentsWithStats((dist > h_fraction * peak).astype(np.uint8),
                                                                connectivity=4)
    keep = np.array([i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_core_px], dtype=int)
    if len(keep) < 2:
        return [comp]
    group = np.arange(1, len(keep) + 1)
    if n_max is not None and len(keep) > n_max:
        proj = cents[keep] @ unit_down(down)
        order = np.argsort(proj)
        cuts = np.sort(np.argsort(-np.diff(proj[order]))[: n_max - 1])
        sorted_group = np.searchsorted(cuts, np.arange(len(keep)), side="left") + 1
        group = np.empty(len(keep), dtype=int)
        group[order] = sorted_group
    relabel = np.zeros(n, dtype=np.int32)
    relabel[keep] = group
    labels = watershed(-dist, relabel[markers], mask=comp)
    return [labels == g for g in np.unique(group)]


def separate_bodies(mask, n_expected: int = 17, threshold: float = 0.5, speck_fraction: float = 0.15,
                    split_fraction: float = 0.4, merge_ratio: float = 1.5,
                    cut_without_neck: bool = True, connectivity: int = 4, return_cuts: bool = False):
    """The vertebral bodies of a mask as separate bool masks, sorted top to bottom (centroid y).

    Rule, in this order:

    1. foreground = ``mask > threshold`` (bool masks as they are); connected components
       (``cv2.connectedComponentsWithStats``, 4-connectivity by default so bodies touching only
       at a diagonal pixel are already two);
    2. split merged bodies: each component's distance transform :math:`d` (L2) is thresholded at
       ``split_fraction`` :math:`\\cdot \\max d`; two or more cores of at least
       :math:`\\max(4, A_{ref}/50)` pixels mean two or more bodies joined by a neck narrower than
       ``2 * split_fraction * max d``; a watershed of :math:`-d` from those cores divides it
       (every pixel goes to one body);
    3. drop specks: pieces smaller than ``speck_fraction`` :math:`\\cdot A_{ref}`, where
       :math:`A_{ref}` is the median area of the ``n_expected`` largest pieces;
    4. only while fewer than ``n_expected`` pieces remain: the piece whose area is the largest
       multiple (above ``merge_ratio``) of the median area of its up to 4 neighbours (2 above,
       2 below) is split again with the cores at 0.5, 0.6, 0.7 then 0.8 :math:`\\max d`, the
       first that gives two or more cores; at most round(ratio) bodies, cores side by side
       across the spine (its direction from the neighbours' centroids) count as one;
    5. a piece so chosen that has no neck at all (two bodies overlapping along their width, as
       some AASCE annotations do) is, with ``cut_without_neck``, cut straight across the spine
       into round(ratio) pieces of equal area (:func:`_cut_across`); otherwise it stays one
       piece and is not tried again. ``return_cuts=True`` returns ``(bodies, n_cut)``, the
       number of such cuts, so a caller can say the corners next to a cut are guesses.

    Without step 5, bodies merged along their whole width stay one piece: the level assignment
    then reports a level as missing (at the bottom: it cannot know where) rather than guessing.
    """
    fg = as_binary_mask(mask, threshold)
    n_expected = check_positive_int(n_expected, "n_expected")
    speck_fraction = check_fraction(speck_fraction, "speck_fraction")
    split_fraction = check_fraction(split_fraction, "split_fraction", 0.05, 0.95)
    merge_ratio = check_fraction(merge_ratio, "merge_ratio", 1.0, 100.0)
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=connectivity)
    if n <= 1:
        return ([], 0) if return_cuts else []
    areas = stats[1:, cv2.CC_STAT_AREA]
    a_ref = float(np.median(np.sort(areas)[::-1][:n_expected]))
    min_core = max(4, int(a_ref / 50))
    pieces: list[np.ndarray] = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area < speck_fraction * a_ref:
            continue
        # work in the component's bounding box (padded by 1 px so the distance transform sees the border)
        y0, x0 = max(y - 1, 0), max(x - 1, 0)
        y1, x1 = min(y + h + 1, fg.shape[0]), min(x + w + 1, fg.shape[1])
        comp = labels[y0:y1, x0:x1] == i
        for part in _split_component(comp, split_fraction, min_core):
            full = np.zeros(fg.shape, dtype=bool)
            full[y0:y1, x0:x1] = part
            pieces.append(full)
    if not pieces:
        return ([], 0) if return_cuts else []
    areas = np.array([p.sum() for p in pieces])
    a_ref = float(np.median(np.sort(areas)[::-1][:n_expected]))
    pieces = [p for p, a in zip(pieces, areas) if a >= speck_fraction * a_ref]
    pieces = _sort_top_down(pieces)
    # second pass, only while bodies are missing: the piece largest against its neighbours
    # (area / median area of up to 2 pieces either side > merge_ratio) is split at a deeper level
    tried: set[int] = set()
    n_cut = 0
    while len(pieces) < n_expected and len(pieces) >= 3:
        areas = np.array([p.sum() for p in pieces], dtype=float)
        ratio = np.array([areas[k] / np.median(np.delete(areas[max(k - 2, 0):k + 3], min(k, 2)))
                          for k in range(len(pieces))])
        ratio[list(tried)] = 0
        k = int(np.argmax(ratio))
        if ratio[k] < merge_ratio:
            break
        cent = np.array([np.argwhere(p).mean(axis=0)[::-1] for p in pieces[max(k - 1, 0):k + 2]])
        down = cent[-1] - cent[0]
        n_max = max(2, int(np.rint(ratio[k])))
        for frac in (0.5, 0.6, 0.7, 0.8):
            parts = _split_component(pieces[k], frac, min_core, n_max=n_max, down=down)
            if len(parts) > 1:
                break
        if len(parts) == 1 and cut_without_neck:
            parts = _cut_across(pieces[k], n_max, down)
            n_cut += 1
        if len(parts) == 1:
            tried.add(k)
            continue
        pieces = _sort_top_down(pieces[:k] + parts + pieces[k + 1:])
        tried = set()
    return (pieces, n_cut) if return_cuts else pieces


def _cut_across(piece: np.ndarray, n: int, down) -> list[np.ndarray]:
    """``n`` bodies of equal area from one piece without a neck: the pixels' projections
    :math:`s = p \cdot \widehat{down}` on the spine direction cut at their ``j/n`` quantiles,
    i.e. straight cuts across the spine."""
    rr, cc = np.nonzero(piece)
    s = np.stack([cc, rr], axis=1) @ unit_down(down)
    edges = np.quantile(s, np.arange(1, n) / n)
    group = np.searchsorted(edges, s, side="right")
    parts = []
    for g in range(n):
        part = np.zeros(piece.shape, dtype=bool)
        part[rr[group == g], cc[group == g]] = True
        if part.any():
            parts.append(part)
    return parts


def _sort_top_down(pieces: list[np.ndarray]) -> list[np.ndarray]:
    centre_y = [np.nonzero(p)[0].mean() for p in pieces]
    return [pieces[k] for k in np.argsort(centre_y, kind="stable")]


# --------------------------------------------------------------------------- level assignment
def assign_levels(bodies, n_levels: int = 17, gap_factor: float = 1.6) -> pd.DataFrame:
    """Level names T1..L5 for bodies sorted top to bottom: one row per level with ``level``,
    ``body`` (index into ``bodies``, -1 when the level is missing), ``found``, centroid
    ``x``, ``y`` and ``area`` (NaN when missing). ``DataFrame.attrs`` holds ``n_found``,
    ``n_bodies``, ``missing`` (tuple of level names), ``dropped`` (body indices not used) and
    ``complete`` (all ``n_levels`` found, one body each).

    Rule: with exactly ``n_levels`` bodies they are T1..L5 in order. With fewer, a gap between
    consecutive centroids larger than ``gap_factor`` times the median gap holds
    :math:`\\mathrm{round}(\\mathrm{gap}/\\mathrm{median}) - 1` missing levels (largest gaps
    first, never more than are missing); levels still unaccounted for are put at the bottom (L5
    upwards) - a mask alone cannot tell a missing T1 from a missing L5, so ``complete`` is False
    and the missing names are only the best guess. With more, the run of ``n_levels``
    consecutive bodies with the largest total area is kept and the others are ``dropped``.
    """
    n_levels = check_positive_int(n_levels, "n_levels")
    if n_levels > len(VERTEBRA_NAMES):
        raise ValueError(f"n_levels must be at most {len(VERTEBRA_NAMES)}, got {n_levels}")
    gap_factor = check_fraction(gap_factor, "gap_factor", 1.0, 10.0)
    bodies = [as_binary_mask(b, name=f"bodies[{k}]") for k, b in enumerate(bodies)]
    if len({b.shape for b in bodies}) > 1:
        raise ValueError(f"bodies must all have one shape, got {sorted({b.shape for b in bodies})}")
    cy, cx, area = [], [], []
    for k, b in enumerate(bodies):
        rr, cc = np.nonzero(b)
        if rr.size == 0:
            raise ValueError(f"bodies[{k}] is empty")
        cy.append(rr.mean()), cx.append(cc.mean()), area.append(rr.size)
    cy, cx, area = np.array(cy), np.array(cx), np.array(area, dtype=float)
    if np.any(np.diff(cy) < 0):
        raise ValueError("bodies must be sorted top to bottom (increasing centroid y), as separate_bodies returns them")
    idx = np.arange(len(bodies))
    dropped: list[int] = []
    if len(bodies) > n_levels:
        run_area = np.convolve(area, np.ones(n_levels), mode="valid")
        start = int(np.argmax(run_area))
        dropped = [int(i) for i in idx if not start <= i < start + n_levels]
        idx = idx[start:start + n_levels]
    slots = list(idx)  # body index per level slot, -1 = missing
    n_missing = n_levels - len(slots)
    if 0 < n_missing and len(slots) >= 3:
        gaps = np.diff(cy[idx])
        med = float(np.median(gaps))
        extra = np.where(gaps > gap_factor * med, np.rint(gaps / med).astype(int) - 1, 0)
        insert = np.zeros(len(gaps), dtype=int)
        for g in np.argsort(-gaps, kind="stable"):
            take = min(int(extra[g]), n_missing - int(insert.sum()))
            if take <= 0:
                break
            insert[g] = take
        slots = [int(idx[0])]
        for g in range(len(gaps)):
            slots += [-1] * int(insert[g]) + [int(idx[g + 1])]
    slots += [-1] * (n_levels - len(slots))
    slots = np.array(slots, dtype=int)
    found = slots >= 0
    safe = np.where(found, slots, 0)
    frame = pd.DataFrame({
        "level": list(VERTEBRA_NAMES[:n_levels]), "body": slots, "found": found,
        "x": np.where(found, cx[safe] if len(bodies) else np.nan, np.nan),
        "y": np.where(found, cy[safe] if len(bodies) else np.nan, np.nan),
        "area": np.where(found, area[safe] if len(bodies) else np.nan, np.nan),
    })
    frame.attrs.update(n_found=int(found.sum()), n_bodies=len(bodies),
                       missing=tuple(frame.level[~found]), dropped=tuple(dropped),
                       complete=bool(found.all()) and not dropped)
    return frame
