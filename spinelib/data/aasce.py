"""AASCE 2019 / SpineWeb Dataset 16: AP spine X-rays with 68 vertebra-corner landmarks.

The published layout (kept as is)::

    data/<split>/<image>.jpg
    labels/<split>/filenames.csv      one image name per line
    labels/<split>/landmarks.csv      136 numbers per row: 68 x then 68 y, normalised to [0, 1]
    labels/<split>/angles.csv         3 Cobb angles (deg): proximal-thoracic, main-thoracic, thoraco-lumbar
    labels/<split>/<image>.mat        key ``p2``: the same 68 points in pixels, shape (68, 2)

The 68 points are 17 vertebrae (T1 to L5) x 4 corners in the order top-left, top-right,
bottom-left, bottom-right. Pixel coordinates are :math:`x = x_n W`, :math:`y = y_n H` with
:math:`W, H` the image width and height.

Measured on the 481 training images: the first angle column is the largest of the three in every
row (the challenge's procedure finds the largest angle first), so ``cobb_max == cobb_pt`` there;
names with the same number (``... 162 A AP.jpg``, ``... 162 B AP.jpg``) give 237 patients.
In 24 images the vertebrae are not listed strictly top to bottom (in 18 of them the topmost
vertebra comes last); the ``vertebrae_top_down`` column flags them and ``sort_vertebrae=True``
reorders them by centre height. 6 vertebrae break the corner order (PROVENANCE.md).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from spinelib.core.imageio import check_size, image_size, read_xray

N_VERTEBRAE = 17
N_CORNERS = 4
N_POINTS = N_VERTEBRAE * N_CORNERS  # 68
VERTEBRA_NAMES: tuple[str, ...] = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
SEVERE_COBB = 40.0
"""Maximum Cobb angle (degrees) from which scoliosis is called severe (surgery is usually considered)."""

MAT_TOLERANCE_PX = 2.0
"""Largest CSV-vs-.mat landmark difference (pixels) counted as agreement."""

_PATIENT_RE = re.compile(r"-(\d+)\s+(?:[A-Za-z]\s+)?AP", re.IGNORECASE)


def patient_id_of(image_name: str) -> str:
    """Patient number of an AASCE image name, else its stem.

    >>> patient_id_of("sunhl-1th-02-Jan-2017-162 A AP.jpg")
    '162'
    >>> patient_id_of("sunhl-1th-20-Jul-2016-coronal1.jpg")
    'sunhl-1th-20-Jul-2016-coronal1'
    """
    m = _PATIENT_RE.search(image_name)
    return m.group(1) if m else Path(image_name).stem


def _read_numeric_csv(path: Path, n_values: int) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"AASCE label file {path} does not exist")
    rows = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != n_values:
                raise ValueError(f"{path}: row {i} has {len(row)} values, expected {n_values}")
            try:
                values = [float(c) for c in row]
            except ValueError as e:
                raise ValueError(f"{path}: row {i} has a non-numeric value ({e})") from e
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{path}: row {i} has NaN or infinite values")
            rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(-1, n_values)


def _read_names(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"AASCE label file {path} does not exist")
    with open(path, newline="") as f:
        names = [row[0].strip() for row in csv.reader(f) if row and row[0].strip()]
    if not names:
        raise ValueError(f"{path}: no image names")
    return names


def _resolve(root: Path, split: str) -> tuple[Path, Path]:
    images, labels = root / "data" / split, root / "labels" / split
    for p in (images, labels):
        if not p.is_dir():
            raise FileNotFoundError(f"AASCE folder {p} does not exist (expected data/{split} and labels/{split} in {root})")
    return images, labels


def load_aasce(root: str | os.PathLike, max_images: int | None = None, split: str = "training",
               check_mat: bool = True, sort_vertebrae: bool = False) -> pd.DataFrame:
    """One row per image: ``image_name, image_path, patient_id, height, width, landmarks,
    cobb_pt, cobb_mt, cobb_tl, cobb_max, severe, n_clipped, mat_max_diff, vertebrae_top_down``.

    ``landmarks`` is a (17, 4, 2) float array of (x, y) pixels, corners TL, TR, BL, BR, from
    ``landmarks.csv`` scaled by the image size (read from the JPEG header). Corners outside the
    image are clipped to :math:`[0, W-1] \\times [0, H-1]`, counted in ``n_clipped``.
    ``mat_max_diff`` is the largest absolute difference (pixels) to the ``.mat`` file (NaN
    without one); a difference above :data:`MAT_TOLERANCE_PX` raises ``ValueError``.
    ``cobb_max`` is the largest of the three angles; ``severe`` is ``cobb_max >= 40``.
    ``vertebrae_top_down`` is True when the 17 vertebra centres go strictly down the image in the
    published order; ``sort_vertebrae=True`` reorders each image's vertebrae by centre height
    (the flag still describes the published order). ``max_images`` keeps the first N rows
    (in ``filenames.csv`` order).
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, got {type(root).__name__}: {root!r}")
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"AASCE dataset folder {root} does not exist")
    if max_images is not None and (not isinstance(max_images, (int, np.integer)) or max_images < 1):
        raise ValueError(f"max_images must be a positive integer or None, got {max_images!r}")
    image_dir, label_dir = _resolve(root, split)
    names = _read_names(label_dir / "filenames.csv")
    marks = _read_numeric_csv(label_dir / "landmarks.csv", 2 * N_POINTS)
    angles = _read_numeric_csv(label_dir / "angles.csv", 3)
    for what, arr in (("landmarks.csv", marks), ("angles.csv", angles)):
        if len(arr) != len(names):
            raise ValueError(f"{label_dir / what} has {len(arr)} rows but {label_dir / 'filenames.csv'} "
                             f"lists {len(names)} images; rows must correspond one to one")
    n = len(names) if max_images is None else min(int(max_images), len(names))
    rows = []
    for i in range(n):
        name = names[i]
        path = image_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"AASCE image {path} (row {i + 1} of filenames.csv) does not exist")
        h, w = image_size(path)
        pts = np.stack([marks[i, :N_POINTS] * w, marks[i, N_POINTS:] * h], axis=1)  # (68, 2) x, y
        mat_diff = np.nan
        mat_path = label_dir / f"{name}.mat"
        if check_mat and mat_path.is_file():
            mat_diff = _mat_difference(mat_path, pts)
            if mat_diff > MAT_TOLERANCE_PX:
                raise ValueError(f"{mat_path}: landmarks differ from landmarks.csv row {i + 1} by "
                                 f"{mat_diff:.1f} px (tolerance {MAT_TOLERANCE_PX} px)")
        clipped = np.stack([np.clip(pts[:, 0], 0, w - 1), np.clip(pts[:, 1], 0, h - 1)], axis=1)
        n_clipped = int(np.any(clipped != pts, axis=1).sum())
        lm = clipped.reshape(N_VERTEBRAE, N_CORNERS, 2)
        centre_y = lm[:, :, 1].mean(axis=1)
        top_down = bool(np.all(np.diff(centre_y) > 0))
        if sort_vertebrae and not top_down:
            lm = lm[np.argsort(centre_y, kind="stable")]
        pt, mt, tl = (float(a) for a in angles[i])
        rows.append({
            "image_name": name, "image_path": path, "patient_id": patient_id_of(name),
            "height": h, "width": w, "landmarks": lm,
            "cobb_pt": pt, "cobb_mt": mt, "cobb_tl": tl, "cobb_max": max(pt, mt, tl),
            "severe": max(pt, mt, tl) >= SEVERE_COBB, "n_clipped": n_clipped, "mat_max_diff": mat_diff,
            "vertebrae_top_down": top_down,
        })
    return pd.DataFrame(rows)


def _mat_difference(mat_path: Path, pts: np.ndarray) -> float:
    from scipy.io import loadmat

    try:
        mat = loadmat(mat_path)
    except Exception as e:  # noqa: BLE001 - scipy raises several types on corrupt files
        raise ValueError(f"{mat_path}: not a readable MATLAB file ({e})") from e
    if "p2" not in mat:
        raise ValueError(f"{mat_path}: no key 'p2' (found {', '.join(k for k in mat if not k.startswith('__'))})")
    p2 = np.asarray(mat["p2"], dtype=np.float64)
    if p2.shape != (N_POINTS, 2):
        raise ValueError(f"{mat_path}: p2 has shape {p2.shape}, expected ({N_POINTS}, 2)")
    return float(np.abs(p2 - pts).max())


def vertebra_polygons(landmarks: np.ndarray) -> list[np.ndarray]:
    """17 polygons of shape (4, 2) (x, y) in drawing order TL, TR, BR, BL."""
    lm = check_landmarks(landmarks)
    return [lm[v][[0, 1, 3, 2]].copy() for v in range(N_VERTEBRAE)]


def check_landmarks(landmarks) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape == (N_POINTS, 2):
        lm = lm.reshape(N_VERTEBRAE, N_CORNERS, 2)
    if lm.shape != (N_VERTEBRAE, N_CORNERS, 2):
        raise ValueError(f"landmarks must have shape (17, 4, 2) or (68, 2), got {lm.shape}")
    if not np.isfinite(lm).all():
        bad = sorted({int(v) for v in np.argwhere(~np.isfinite(lm))[:, 0]})
        raise ValueError(f"landmarks contain NaN or infinite values (vertebrae {', '.join(VERTEBRA_NAMES[v] for v in bad)})")
    return lm


def vertebra_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Filled vertebra bodies as a bool (H, W) mask (``skimage.draw.polygon``).

    Corners may lie outside the image: the polygons are clipped to it. Non-finite landmarks raise
    ``ValueError``. Each vertebra's 4 corners are ordered by angle around their centroid before filling, so the
    few annotations that break the TL, TR, BL, BR order still give a quadrilateral, not a bow tie.
    """
    from skimage.draw import polygon

    lm = check_landmarks(landmarks)
    h, w = check_size(shape)
    mask = np.zeros((h, w), dtype=bool)
    for quad in lm:
        c = quad.mean(axis=0)
        order = np.argsort(np.arctan2(quad[:, 1] - c[1], quad[:, 0] - c[0]))
        q = quad[order]
        rr, cc = polygon(q[:, 1], q[:, 0], shape=(h, w))
        mask[rr, cc] = True
    return mask


def scale_landmarks(landmarks: np.ndarray, from_shape: tuple[int, int], to_shape: tuple[int, int]) -> np.ndarray:
    """Landmarks ``(..., 2)`` (x, y) of an image of ``from_shape=(H, W)`` in the pixel grid of the
    same image resized to ``to_shape=(h, w)``.

    Pixel centres sit at integer coordinates in both grids, the convention of
    ``skimage.transform.resize`` (which makes the small X-ray) and of ``skimage.draw.polygon``
    (which fills the mask), so :math:`x' = (x + \\tfrac12)\\,w/W - \\tfrac12` (and the same for
    :math:`y`). The naive :math:`x' = x\\,w/W` puts the mask :math:`\\tfrac12(1 - w/W)` pixels
    (0.4 px at 384x192) right of and below the bodies it outlines; with horizontal flips in
    training that offset cannot even be learnt.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    H, W = check_size(from_shape)
    h, w = check_size(to_shape)
    scale = np.array([w / W, h / H])
    return (lm + 0.5) * scale - 0.5


def load_aasce_arrays(frame: pd.DataFrame, size: tuple[int, int], progress: bool = True):
    """``(images float32 NxHxWx1 in [0, 1], masks float32 NxHxWx1)`` of the vertebra bodies.

    Images are resized with anti-aliasing; landmarks are scaled to ``size``
    (:func:`scale_landmarks`, pixel centres aligned with the resized image) and the mask is drawn
    directly at that size.
    """
    needed = {"image_path", "landmarks", "height", "width"}
    if not needed <= set(frame.columns):
        raise ValueError(f"frame lacks columns {sorted(needed - set(frame.columns))}; use load_aasce()")
    h, w = check_size(size)
    images = np.zeros((len(frame), h, w, 1), np.float32)
    masks = np.zeros((len(frame), h, w, 1), np.float32)
    it = tqdm(frame.itertuples(index=False), total=len(frame), desc="load AASCE", unit="image", disable=not progress)
    for i, row in enumerate(it):
        images[i, ..., 0] = read_xray(row.image_path, size=(h, w)) / np.float32(255.0)
        lm = scale_landmarks(check_landmarks(row.landmarks), (row.height, row.width), (h, w))
        masks[i, ..., 0] = vertebra_mask(lm, (h, w))
    return images, masks
