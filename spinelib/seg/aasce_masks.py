"""How far the AASCE masks can be trusted at a network's input size: the agreement of two ways of
drawing them (:func:`mask_grid_agreement`) and the Dice that a given corner error costs
(:func:`corner_error_dice`, the yardstick of :func:`spinelib.paper.aasce_runs.aasce_error_budget`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from spinelib.core.imageio import check_size
from spinelib.data.aasce import check_landmarks, scale_landmarks, vertebra_mask


def mask_grid_agreement(frame: pd.DataFrame, size: tuple[int, int], max_images: int | None = 40,
                        progress: bool = True) -> pd.DataFrame:
    """How well masks drawn directly at ``size`` agree with the full-size mask resized the way the
    X-ray is (area average, threshold 1/2; :func:`spinelib.core.imageio.resize_mask`), for the naive
    corner scaling :math:`x\\,w/W` and for :func:`scale_landmarks`.

    One row per image (the first ``max_images`` of ``frame``): Dice of each against the reference
    and the shift of each mask's centroid from the reference's, in pixels of ``size``
    (positive = right / down).
    """
    from spinelib.core.imageio import resize_mask
    from spinelib.seg.metrics import dice

    h, w = check_size(size)
    rows = []
    sub = frame if max_images is None else frame.iloc[:max_images]
    for row in tqdm(sub.itertuples(index=False), total=len(sub), desc="mask grids", disable=not progress):
        lm = check_landmarks(row.landmarks)
        ref = resize_mask(vertebra_mask(lm, (row.height, row.width)), (h, w), method="area")
        yr, xr = np.nonzero(ref)
        out = {"image_name": row.image_name}
        for name, pts in (("naive", lm * np.array([w / row.width, h / row.height])),
                          ("aligned", scale_landmarks(lm, (row.height, row.width), (h, w)))):
            m = vertebra_mask(pts, (h, w))
            ys, xs = np.nonzero(m)
            out[f"dice_{name}"] = dice(m, ref)
            out[f"dx_{name}"], out[f"dy_{name}"] = xs.mean() - xr.mean(), ys.mean() - yr.mean()
        rows.append(out)
    return pd.DataFrame(rows)


def corner_error_dice(frame: pd.DataFrame, size: tuple[int, int], sigmas=(0.5, 1.0, 1.5, 2.0, 3.0),
                      max_images: int | None = 60, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """What a corner error costs in Dice: each corner moved by independent Gaussian noise of
    ``sigma`` pixels (per coordinate, in pixels of ``size``), the masks drawn from the moved
    corners, and their Dice with the masks of the true corners.

    A yardstick, not a measurement of anyone's error: it translates a network's Dice into the
    corner error that would cost as much, and shows how precise corners (the annotators' or a
    network's) must be for a given Dice. One row per ``sigma``: mean and SD of the per-image Dice
    over the first ``max_images`` of ``frame``.
    """
    from spinelib.seg.metrics import dice

    h, w = check_size(size)
    sigmas = [float(v) for v in np.atleast_1d(sigmas)]
    if not sigmas or any(not np.isfinite(v) or v < 0 for v in sigmas):
        raise ValueError(f"sigmas must be non-negative numbers, got {sigmas!r}")
    rng = np.random.default_rng(seed)
    sub = frame if max_images is None else frame.iloc[:max_images]
    scores = {v: [] for v in sigmas}
    for row in tqdm(sub.itertuples(index=False), total=len(sub), desc="corner errors", disable=not progress):
        lm = scale_landmarks(check_landmarks(row.landmarks), (row.height, row.width), (h, w))
        true = vertebra_mask(lm, (h, w))
        for v in sigmas:
            scores[v].append(dice(vertebra_mask(lm + rng.normal(0.0, v, lm.shape), (h, w)), true))
    return pd.DataFrame({"sigma_px": sigmas, "dice_mean": [np.mean(scores[v]) for v in sigmas],
                         "dice_sd": [np.std(scores[v]) for v in sigmas], "images": len(sub)})
