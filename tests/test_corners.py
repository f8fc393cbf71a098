"""Tests of spinelib.geometry.corners: the mask route from a vertebra mask to 17 x 4 corners."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import polygon

from spinelib.data.aasce import VERTEBRA_NAMES, vertebra_mask
from spinelib.geometry.corners import (
    assign_levels,
    corners_from_mask,
    fit_corners,
    landmark_errors,
    mask_route_floor,
    quadrilateral_dice,
    separate_bodies,
    summarise_floor,
)


def quad(centre, width, height, angle_deg=0.0, top_inset=0.0) -> np.ndarray:
    """Corners TL, TR, BL, BR of a rectangle (or, with ``top_inset``, an isosceles trapezoid whose
    top side is ``2 * top_inset`` shorter) centred at ``centre``, turned by ``angle_deg``."""
    a = np.deg2rad(angle_deg)
    u, v = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    c = np.asarray(centre, dtype=float)
    return np.array([c - (width / 2 - top_inset) * u - height / 2 * v, c + (width / 2 - top_inset) * u - height / 2 * v,
                     c - width / 2 * u + height / 2 * v, c + width / 2 * u + height / 2 * v])


def draw(quads, shape) -> np.ndarray:
    """Bool mask of quadrilaterals (TL, TR, BL, BR) filled like vertebra_mask (pixel centres inside)."""
    m = np.zeros(shape, dtype=bool)
    for q in np.asarray(quads, dtype=float).reshape(-1, 4, 2):
        o = q[[0, 1, 3, 2]]
        rr, cc = polygon(o[:, 1], o[:, 0], shape)
        m[rr, cc] = True
    return m


def spine(n=17, top=30.0, pitch=34.0, width=44.0, height=26.0, tilt=(), x=100.0) -> np.ndarray:
    """(n, 4, 2) corners of a straight column of rectangles, gaps of ``pitch - height`` px."""
    tilts = np.zeros(n) if len(tilt) == 0 else np.asarray(tilt, dtype=float)
    return np.array([quad((x, top + k * pitch), width, height, tilts[k]) for k in range(n)])


# ------------------------------------------------------------------ fit_corners
@pytest.mark.parametrize("angle", [0.0, 7.0, -18.0, 33.0])
@pytest.mark.parametrize("method", ["diagonal", "approx_poly", "lsq", "min_area_rect"])
def test_rotated_rectangle_corners_within_a_pixel(method, angle):
    true = quad((101.3, 98.6), 60, 38, angle)
    fit = fit_corners(draw(true, (200, 200)), method=method)
    err = landmark_errors(fit[None], true[None])
    # corner pixels are quantised: up to ~1.5 px for the pixel picks, the fitted lines do better
    assert err.max() < (1.0 if method == "lsq" else 1.5), (method, angle, err)


@pytest.mark.parametrize("method", ["diagonal", "approx_poly", "lsq"])
@pytest.mark.parametrize("angle", [0.0, 12.0, -25.0])
def test_trapezoid_corners_within_a_pixel(method, angle):
    true = quad((99.7, 102.2), 62, 40, angle, top_inset=9.0)
    fit = fit_corners(draw(true, (200, 200)), method=method)
    assert landmark_errors(fit[None], true[None]).max() < (1.0 if method == "lsq" else 1.5)


def test_boxes_miss_the_trapezoid_corners():
    """A box (second moments or minimum-area rectangle) cannot follow a trapezoid's short top: the
    reason the fit matters."""
    true = quad((100, 100), 62, 40, 10.0, top_inset=9.0)
    m = draw(true, (200, 200))
    for method in ("moments", "min_area_rect"):
        assert landmark_errors(fit_corners(m, method=method)[None], true[None]).max() > 4.0


def test_lsq_beats_diagonal_on_tilted_rectangles():
    errs = {m: [] for m in ("diagonal", "lsq")}
    for angle in np.linspace(-30, 30, 9):
        true = quad((100.4, 99.3), 58, 36, angle)
        m = draw(true, (200, 200))
        for method in errs:
            errs[method].append(landmark_errors(fit_corners(m, method=method)[None], true[None]).mean())
    assert np.mean(errs["lsq"]) < np.mean(errs["diagonal"])


def test_corner_order_follows_the_spine_direction():
    """A body tilted 60 degrees is labelled in the frame of the spine at it, not of the image."""
    true = quad((100, 100), 60, 30, 60.0)
    m = draw(true, (200, 200))
    down = np.array([-np.sin(np.deg2rad(60)), np.cos(np.deg2rad(60))])
    fit = fit_corners(m, method="lsq", down=down)
    assert landmark_errors(fit[None], true[None]).max() < 1.0
    # with the image's vertical as "down" the same body gets other labels
    assert landmark_errors(fit_corners(m, method="lsq")[None], true[None]).max() > 10


def test_edge_offset_makes_fits_unbiased():
    true = quad((100.2, 100.7), 60, 40, 14.0)
    m = draw(true, (200, 200))
    area = lambda q: 0.5 * abs(np.cross(q[3] - q[0], q[1] - q[2]))  # noqa: E731 - diagonals' cross product
    with_offset = area(fit_corners(m, method="lsq"))
    without = area(fit_corners(m, method="lsq", edge_offset=0.0))
    assert abs(with_offset - 2400) < abs(without - 2400)
    assert without < 2400 < with_offset + 40


# ------------------------------------------------------------------ separate_bodies / assign_levels
def test_touching_neighbours_are_separated():
    import cv2

    # two tilted bodies whose corners overlap: one component joined by a narrow bridge
    a2, b2 = quad((80, 60), 60, 40, 12.0), quad((118, 104), 60, 40, 12.0)
    m2 = draw([a2, b2], (200, 200))
    assert cv2.connectedComponents(m2.astype(np.uint8), connectivity=8)[0] - 1 == 1
    bodies = separate_bodies(m2, n_expected=2)
    assert len(bodies) == 2
    assert np.nonzero(bodies[0])[0].mean() < np.nonzero(bodies[1])[0].mean()
    assert not np.logical_and(bodies[0], bodies[1]).any()
    assert np.array_equal(bodies[0] | bodies[1], m2)  # every pixel kept
    for body, true in zip(bodies, (a2, b2)):
        assert landmark_errors(fit_corners(body, "lsq")[None], true[None]).max() < 6


def test_merged_pair_split_in_a_column():
    """A whole spine where one pair overlaps at a corner: 17 bodies again."""
    corners = spine()
    corners[8] = quad((100, 30 + 8 * 34 + 4), 44, 26, 15.0)  # T9 tilted: its BR corner dips into T10
    m = vertebra_mask(corners, (620, 200))
    res = corners_from_mask(m)
    assert res.n_bodies == 17 and res.complete and res.n_cut == 0  # split at the neck, not cut
    assert np.nanmedian(landmark_errors(res.corners, corners)) < 1.0


def test_a_speck_is_dropped():
    corners = spine()
    m = vertebra_mask(corners, (620, 200))
    m[5:8, 10:13] = True  # a 9-pixel speck far from the spine
    m[300:302, 180:182] = True
    bodies = separate_bodies(m)
    assert len(bodies) == 17
    assert not any(b[6, 11] or b[300, 180] for b in bodies)


def test_assign_levels_names_top_to_bottom():
    corners = spine()
    bodies = separate_bodies(vertebra_mask(corners, (620, 200)))
    levels = assign_levels(bodies)
    assert list(levels.level) == list(VERTEBRA_NAMES)
    assert levels.attrs["complete"] and levels.attrs["missing"] == ()
    assert np.all(np.diff(levels.y) > 0)


def test_missing_vertebra_gives_nan_row_and_flag():
    corners = spine()
    m = vertebra_mask(corners, (620, 200))
    m[draw(corners[6], m.shape)] = False  # T7 not segmented
    res = corners_from_mask(m)
    assert not res.complete and res.n_found == 16 and res.missing == ("T7",)
    assert np.isnan(res.corners[6]).all()
    assert np.isfinite(np.delete(res.corners, 6, axis=0)).all()
    # the levels below the gap keep their names: L5 is still L5
    assert landmark_errors(res.corners, corners)[7:].max() < 1.0
    corners_, complete = res  # unpacks as (corners, flag)
    assert complete is False and corners_ is res.corners


def test_missing_end_vertebra_is_flagged_not_invented():
    corners = spine()
    m = vertebra_mask(corners, (620, 200))
    m[draw(corners[16], m.shape)] = False  # L5 not segmented
    res = corners_from_mask(m)
    assert not res.complete and res.n_found == 16
    assert np.isnan(res.corners).any(axis=(1, 2)).sum() == 1


def test_extra_body_is_dropped_and_flagged():
    corners = spine()
    # a smaller 18th body below L5 (a sacrum the network also painted)
    m = vertebra_mask(corners, (660, 200)) | draw(quad((100, 30 + 17 * 34), 30, 16), (660, 200))
    res = corners_from_mask(m)
    assert res.n_bodies == 18 and res.n_found == 17 and not res.complete
    assert res.levels.attrs["dropped"] == (17,)
    assert landmark_errors(res.corners, corners).max() < 1.0


def test_probability_map_and_threshold():
    corners = spine()
    m = vertebra_mask(corners, (620, 200))
    prob = np.where(m, 0.8, 0.3)
    assert corners_from_mask(prob).complete
    assert corners_from_mask(prob, threshold=0.9).n_found == 0


def test_several_methods_at_once_match_single_calls():
    corners = spine(tilt=np.linspace(-15, 15, 17))
    m = vertebra_mask(corners, (620, 200))
    both = corners_from_mask(m, method=("diagonal", "lsq"))
    assert np.allclose(both["lsq"].corners, corners_from_mask(m, method="lsq").corners)
    assert set(both) == {"diagonal", "lsq"}


# ------------------------------------------------------------------ Dice, errors
def test_quadrilateral_dice_identical_is_one_and_shift_drops_it():
    corners = spine()
    shape = (620, 200)
    assert quadrilateral_dice(corners, corners, shape) == 1.0
    shifted = corners.copy()
    shifted[3] += [0, 8]
    d = quadrilateral_dice(shifted, corners, shape)
    assert 0.9 < d < 1.0
    missing = corners.copy()
    missing[5] = np.nan
    assert quadrilateral_dice(missing, corners, shape) < 1.0
    full = vertebra_mask(corners, shape)  # the crop gives the same pixels as the full image
    shifted_mask = vertebra_mask(shifted, shape)
    assert d == pytest.approx(2 * (full & shifted_mask).sum() / (full.sum() + shifted_mask.sum()))


def test_landmark_errors_nan_aware():
    t = spine()
    p = t.copy()
    p[0, 0] += [3, 4]
    p[2] = np.nan
    e = landmark_errors(p, t)
    assert e.shape == (17, 4) and e[0, 0] == pytest.approx(5.0)
    assert np.isnan(e[2]).all() and np.nansum(e) == pytest.approx(5.0)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("call", [
    lambda: fit_corners(np.zeros((20, 20), bool)),
    lambda: fit_corners(np.ones((20, 20), bool), method="hough"),
    lambda: fit_corners(np.ones((4, 4, 4), bool)),
    lambda: fit_corners(np.ones((20, 20), bool), down=(0, 0)),
    lambda: separate_bodies(np.ones((10, 10)), n_expected=0),
    lambda: separate_bodies(np.full((10, 10), np.nan)),
    lambda: separate_bodies(np.ones((10, 10)), connectivity=6),
    lambda: corners_from_mask(np.ones((10, 10)), threshold=float("nan")),
    lambda: corners_from_mask(np.ones((10, 10)), method="nope"),
    lambda: assign_levels([np.zeros((5, 5), bool)]),
    lambda: assign_levels([np.ones((5, 5), bool)], n_levels=30),
    lambda: landmark_errors(np.zeros((17, 4, 2)), np.zeros((16, 4, 2))),
    lambda: landmark_errors(np.zeros((17, 3, 2)), np.zeros((17, 3, 2))),
    lambda: quadrilateral_dice(np.zeros((17, 4, 2)), np.full((17, 4, 2), np.nan), (10, 10)),
    lambda: summarise_floor(np.zeros(3)),
])
def test_bad_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError):
        separate_bodies(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(TypeError):
        mask_route_floor([1, 2, 3])


def test_assign_levels_rejects_unsorted_bodies():
    bodies = separate_bodies(vertebra_mask(spine(), (620, 200)))
    with pytest.raises(ValueError, match="sorted"):
        assign_levels(bodies[::-1])


# ------------------------------------------------------------------ real AASCE ground truth
@pytest.mark.needs_shared
def test_floor_on_real_aasce_masks_is_small(aasce_dir):
    from spinelib.data.aasce import load_aasce

    frame = load_aasce(aasce_dir, max_images=5)
    floor = mask_route_floor(frame, size=(512, 256), method=("diagonal", "lsq"))
    assert len(floor) == 10
    lsq = floor[floor.method == "lsq"]
    assert lsq.complete.mean() >= 0.8
    good = lsq[lsq.in_order]
    assert (good.err_median < 5).all()  # original pixels; the 512x256 grid is 4-7 px per pixel
    assert (good.dice > 0.95).all()
    table = summarise_floor(floor).set_index("method")
    assert table.loc["lsq", "err_mean_in_order_px"] <= table.loc["diagonal", "err_mean_in_order_px"]
    if np.isfinite(table.loc["lsq", "smape_vs_true_lm"]):
        assert table.loc["lsq", "smape_vs_true_lm"] < 10


def test_bodies_overlapping_along_their_width_are_cut_and_counted():
    """Two annotations that overlap over their whole width make one convex piece (no neck): it is
    cut across the spine (n_cut = 1) so the levels below keep their names; without the cut the
    level is reported missing."""
    corners = spine()
    corners[9] -= [0, 12]  # T10 moved 12 px up: overlaps T9 by 4 px over the full width
    m = vertebra_mask(corners, (620, 200))
    res = corners_from_mask(m)
    assert res.n_cut == 1 and res.complete
    assert landmark_errors(res.corners, corners)[10:].max() < 1.0  # T11..L5 unaffected
    assert np.nanmedian(landmark_errors(res.corners[8:10], corners[8:10])) < 3.0
    no_cut = corners_from_mask(m, cut_without_neck=False)
    assert no_cut.n_cut == 0 and not no_cut.complete and no_cut.n_found == 16
