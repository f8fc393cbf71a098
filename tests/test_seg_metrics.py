"""Per-case metrics against hand-computed values, and their summary."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from spinelib.seg.metrics import (
    bootstrap_ci,
    dice,
    dice_metric,
    evaluate_masks,
    hausdorff95,
    iou,
    summarise,
)


def square(top: int, left: int, side: int = 10, shape=(40, 40)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top:top + side, left:left + side] = True
    return m


A = square(5, 5)
B = square(5, 8)  # shifted 3 columns: intersection 10 x 7 = 70, union 130


def test_dice_and_iou_by_hand():
    assert dice(A, B) == pytest.approx(2 * 70 / 200)
    assert iou(A, B) == pytest.approx(70 / 130)
    assert dice(A, A) == 1.0 and iou(A, A) == 1.0
    assert dice(A, square(25, 25)) == 0.0 and iou(A, square(25, 25)) == 0.0
    empty = np.zeros_like(A)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert math.isnan(dice(empty, empty, empty=float("nan")))
    assert dice(empty, A) == 0.0 and iou(A, empty) == 0.0
    assert dice(A.astype(float) * 0.9, B) == pytest.approx(0.7)  # probabilities are thresholded at 0.5
    with pytest.raises(ValueError, match="same shape"):
        dice(A, A[:10])


def test_hausdorff95_of_offset_squares_is_the_offset():
    assert hausdorff95(A, B) == pytest.approx(3.0)
    assert hausdorff95(A, A) == 0.0
    down = square(9, 5)  # 4 rows down
    assert hausdorff95(A, down) == pytest.approx(4.0)
    assert hausdorff95(A, down, spacing=(2.0, 1.0)) == pytest.approx(8.0)  # rows are 2 mm apart
    assert hausdorff95(A, B, spacing=(2.0, 0.5)) == pytest.approx(1.5)



def test_surface_distances_are_those_of_the_distance_transform():
    """The k-d tree query gives the exact Euclidean distance transform of the other outline's
    complement, read at this outline (the definition), for irregular blobs and a pixel spacing;
    the outline is the mask minus its erosion by the cross."""
    from scipy import ndimage

    from spinelib.seg.metrics import _surface, surface_distances

    rng = np.random.default_rng(1)
    for spacing in (1.0, (2.0, 0.5)):
        a = ndimage.gaussian_filter(rng.random((90, 70)), 3) > 0.5
        b = ndimage.gaussian_filter(rng.random((90, 70)), 3) > 0.52
        for m in (a, b):
            assert np.array_equal(_surface(m), m & ~ndimage.binary_erosion(m, border_value=0))
        sa, sb = _surface(a), _surface(b)
        want = ndimage.distance_transform_edt(~sb, sampling=np.broadcast_to(spacing, 2))[sa]
        assert np.allclose(surface_distances(a, b, spacing), want, rtol=0, atol=1e-12)
        assert hausdorff95(a, b, spacing) == pytest.approx(
            max(np.percentile(want, 95), np.percentile(surface_distances(b, a, spacing), 95)))


def test_hausdorff95_conventions_for_empty_masks():
    empty = np.zeros_like(A)
    assert hausdorff95(empty, empty) == 0.0
    assert math.isnan(hausdorff95(A, empty)) and math.isnan(hausdorff95(empty, A))
    with pytest.raises(ValueError, match="spacing"):
        hausdorff95(A, B, spacing=0)


def test_evaluate_masks_long_table():
    y_true = np.stack([np.stack([A, A], -1), np.stack([A, np.zeros_like(A)], -1)]).astype(np.float32)
    y_pred = np.stack([np.stack([B, A], -1), np.stack([A, A], -1)]).astype(np.float32) * 0.8
    df = evaluate_masks(y_true, y_pred, ["Ap_Vertebra", "Ap_Pedicle"], case_ids=["p1", "p2"])
    assert list(df.columns) == ["case", "structure", "dice", "iou", "hd95", "true_fraction", "pred_fraction"]
    assert len(df) == 4
    row = df[(df.case == "p1") & (df.structure == "Ap_Vertebra")].iloc[0]
    assert row.dice == pytest.approx(0.7) and row.iou == pytest.approx(70 / 130) and row.hd95 == pytest.approx(3)
    assert row.true_fraction == pytest.approx(100 / 1600)
    empty_row = df[(df.case == "p2") & (df.structure == "Ap_Pedicle")].iloc[0]
    assert empty_row.dice == 0.0 and math.isnan(empty_row.hd95) and empty_row.true_fraction == 0.0
    with pytest.raises(ValueError, match="structure name"):
        evaluate_masks(y_true, y_pred, ["Ap_Vertebra"])
    with pytest.raises(ValueError, match="case id"):
        evaluate_masks(y_true, y_pred, ["a", "b"], case_ids=["p1"])


def test_evaluate_masks_gives_the_values_of_dice_iou_and_hausdorff95():
    """The table's counts come from whole-array sums; every value equals the per-mask functions',
    the empty conventions included (both empty, one empty)."""
    rng = np.random.default_rng(3)
    t = rng.random((3, 40, 24, 4)) > 0.7
    p = rng.random((3, 40, 24, 4)) > 0.6
    t[0, ..., 1] = p[0, ..., 1] = False  # both empty
    t[1, ..., 2] = False  # only the prediction has pixels
    df = evaluate_masks(t, p, ["s0", "s1", "s2", "s3"])
    for row in df.itertuples():
        a, b = t[row.case, ..., int(row.structure[1])], p[row.case, ..., int(row.structure[1])]
        assert row.dice == dice(a, b) and row.iou == iou(a, b) and row.true_fraction == a.mean()
        assert row.pred_fraction == b.mean()
        assert row.hd95 == hausdorff95(a, b) or (math.isnan(row.hd95) and math.isnan(hausdorff95(a, b)))


def test_summarise_mean_sd_ci_n():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({
        "case": list(range(30)) * 2,
        "structure": ["Ap_Vertebra"] * 30 + ["Ap_Pedicle"] * 30,
        "dice": np.r_[rng.uniform(0.6, 0.9, 30), rng.uniform(0.3, 0.7, 30)],
        "iou": rng.uniform(0, 1, 60),
        "hd95": np.r_[rng.uniform(1, 5, 29), np.nan, rng.uniform(1, 5, 30)],
    })
    s = summarise(df, n_boot=500, seed=0)
    assert list(s.columns) == ["structure", "metric", "mean", "sd", "ci_low", "ci_high", "n"]
    assert len(s) == 6
    assert (s.ci_low <= s["mean"]).all() and (s["mean"] <= s.ci_high).all()
    assert (s.ci_high - s.ci_low > 0).all()
    v = s[(s.structure == "Ap_Vertebra") & (s.metric == "dice")].iloc[0]
    assert v["mean"] == pytest.approx(df.dice[:30].mean()) and v.sd == pytest.approx(df.dice[:30].std())
    # the 95 % CI of a mean is about +-1.96 SD / sqrt(n)
    assert v.ci_high - v.ci_low == pytest.approx(2 * 1.96 * v.sd / np.sqrt(30), rel=0.25)
    assert s[(s.structure == "Ap_Vertebra") & (s.metric == "hd95")].n.item() == 29  # NaN dropped
    assert s.equals(summarise(df, n_boot=500, seed=0))  # seeded
    with pytest.raises(ValueError, match="not in the table"):
        summarise(df.drop(columns="hd95"))


def test_bootstrap_ci_edge_cases():
    assert bootstrap_ci([0.5]) == (0.5, 0.5)
    assert all(math.isnan(x) for x in bootstrap_ci([np.nan]))


def test_keras_dice_metric_by_hand():
    y = np.zeros((2, 4, 4, 1), np.float32)
    p = np.zeros_like(y)
    y[0, :2, :2] = 1  # 4 white pixels
    p[0, :2, :1] = 0.9  # 2 predicted, both right; 0.4 elsewhere is below the threshold
    p[0, 2:, :] = 0.4
    # image 0: 2*2 / (4 + 2) = 2/3; image 1: both empty = 1
    assert float(dice_metric(y, p)) == pytest.approx((2 / 3 + 1) / 2)
    assert float(dice_metric(y[:1], y[:1])) == pytest.approx(1.0)


def _full_image_surface_distances(a, b):
    """The definition, over the whole image (no cropping): the reference for the fast version."""
    from scipy import ndimage

    sa = a & ~ndimage.binary_erosion(a, border_value=0)
    sb = b & ~ndimage.binary_erosion(b, border_value=0)
    return ndimage.distance_transform_edt(~sb)[sa]


def test_surface_distances_cropped_to_the_structures_equal_the_full_image_ones():
    from spinelib.seg.metrics import surface_distances

    rng = np.random.default_rng(0)
    for _ in range(40):
        shape = tuple(rng.integers(8, 60, size=2))
        a, b = rng.random(shape) > rng.uniform(0.6, 0.99), np.zeros(shape, bool)
        r0, c0 = rng.integers(0, shape[0] - 2), rng.integers(0, shape[1] - 2)
        b[r0:r0 + rng.integers(1, 10), c0:c0 + rng.integers(1, 10)] = True  # a blob, maybe on the border
        if not a.any():
            continue
        np.testing.assert_allclose(np.sort(surface_distances(a, b)), np.sort(_full_image_surface_distances(a, b)))
        np.testing.assert_allclose(np.sort(surface_distances(b, a)), np.sort(_full_image_surface_distances(b, a)))


def test_outline_errors_split_edge_from_gross_errors():
    from spinelib.seg.metrics import outline_errors

    t = np.zeros((40, 40), bool)
    t[10:20, 10:30] = True
    shifted = np.roll(t, 1, axis=0)  # the edge one pixel off: every error on the outline
    r = outline_errors(t, shifted)
    assert r["error_pixels"] == 40 and r["outline_share"] == 1.0
    assert r["dice"] == pytest.approx(2 * 180 / 400) and r["dice_outline_fixed"] == 1.0
    far = t.copy()
    far[30:35, 10:30] = True  # a second body painted far away: a gross error, no edge can fix it
    r = outline_errors(t, far)
    assert r["outline_share"] < 0.2 and r["dice_outline_fixed"] == pytest.approx(2 * 200 / 500)
    assert outline_errors(t, t) == {"error_pixels": 0, "outline_share": 0.0, "dice": 1.0, "dice_outline_fixed": 1.0}
    with pytest.raises(ValueError):
        outline_errors(t, t, band=-1)
