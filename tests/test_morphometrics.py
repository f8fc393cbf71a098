"""Spine measurements from masks and landmarks, checked on shapes of known geometry and on the
synthetic generator's own truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.draw import polygon

from spinelib.geometry import morphometrics


def _draw(quads, shape) -> np.ndarray:
    """Fill quadrilaterals given as (4, 2) arrays of (x, y) corners."""
    m = np.zeros(shape, bool)
    for q in quads:
        rr, cc = polygon(np.asarray(q)[:, 1], np.asarray(q)[:, 0], shape=shape)
        m[rr, cc] = True
    return m


def _lateral_column(ant_heights, post_heights, depth=60, gap=14, x0=40, shifts=None):
    """Bodies stacked down the image; anterior edge on the left (x0), posterior at x0 + depth.
    Each body's corners: superior-anterior, superior-posterior, inferior-posterior, inferior-anterior."""
    quads, y = [], 20.0
    shifts = shifts or [0.0] * len(ant_heights)
    for ha, hp, s in zip(ant_heights, post_heights, shifts):
        top = y + max(ha, hp) / 2
        quads.append(np.array([[x0 + s, top - ha / 2], [x0 + depth + s, top - hp / 2],
                               [x0 + depth + s, top + hp / 2], [x0 + s, top + ha / 2]]))
        y += max(ha, hp) + gap
    return quads, int(y + 20)


def _tilted_body(cx, cy, width, height, deg):
    a = np.radians(deg)
    e, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    c = np.array([cx, cy])
    return np.array([c - e * width / 2 - n * height / 2, c + e * width / 2 - n * height / 2,
                     c + e * width / 2 + n * height / 2, c - e * width / 2 + n * height / 2])


def test_wedge_ratios_of_known_trapezoids():
    ant = [40, 24, 40, 40]
    post = [40, 40, 40, 32]
    quads, h = _lateral_column(ant, post)
    v = morphometrics.vertebra_heights(_draw(quads, (h, 160)))
    assert len(v) == 4
    np.testing.assert_allclose(v["wedge_ratio"], np.array(ant) / np.array(post), atol=0.06)
    np.testing.assert_allclose(v["anterior_height"], ant, rtol=0.1)
    # facing right swaps anterior and posterior
    v_right = morphometrics.vertebra_heights(_draw(quads, (h, 160)), anterior="right")
    np.testing.assert_allclose(v_right["wedge_ratio"], np.array(post) / np.array(ant), atol=0.1)
    with pytest.raises(ValueError, match="anterior"):
        morphometrics.vertebra_heights(_draw(quads, (h, 160)), anterior="up")


def test_disk_heights_and_local_loss():
    heights = [12, 12, 5, 13, 13]
    quads, y = [], 10
    for hgt in heights:
        quads.append(np.array([[30, y], [90, y], [90, y + hgt], [30, y + hgt]]))
        y += hgt + 30
    d = morphometrics.disk_heights(_draw(quads, (y + 10, 120)))
    np.testing.assert_allclose(d["height"], np.array(heights) + 1, atol=1.0)  # a filled polygon includes both edges
    assert d["neighbour_ratio"].idxmin() == 2 and d["neighbour_ratio"].min() < 0.6
    assert d["neighbour_ratio"].drop(2).min() > 0.9 or d["neighbour_ratio"].drop(2).min() == pytest.approx(d["neighbour_ratio"][1])


def test_listhesis_offset_of_a_slipped_body():
    # body 1 slipped 12 px anteriorly (to the left = anterior) relative to body 2
    quads, h = _lateral_column([40] * 4, [40] * 4, shifts=[0, -12, 0, 0])
    s = morphometrics.listhesis_offsets(_draw(quads, (h, 160)))
    assert len(s) == 3
    assert s.loc[1, "offset"] == pytest.approx(12, abs=1.5)  # pair (1, 2): upper slipped anteriorly
    assert s.loc[0, "offset"] == pytest.approx(-12, abs=1.5)  # pair (0, 1): the lower one is anterior
    assert s.loc[2, "offset"] == pytest.approx(0, abs=1.5)
    assert s.loc[1, "fraction"] == pytest.approx(12 / 61, abs=0.03)


def test_cobb_angle_from_landmarks_is_the_largest_tilt_difference():
    tilts = np.array([0, 5, 12, 18, 10, 0, -8, -15, -10, -4, 0, 2, 3, 1, 0, -1, -2], float)
    lm = np.stack([_tilted_body(200, 40 + 30 * i, 60, 20, t) for i, t in enumerate(tilts)])
    lm = lm[:, [0, 1, 3, 2]]  # AASCE corner order: TL, TR, BL, BR
    ang = morphometrics.landmark_endplate_angles(lm)
    np.testing.assert_allclose(ang["midline_deg"], tilts, atol=1e-6)
    np.testing.assert_allclose(ang["superior_deg"], tilts, atol=1e-6)
    assert morphometrics.cobb_angle_from_landmarks(lm) == pytest.approx(33.0)
    assert morphometrics.cobb_angle_from_landmarks(lm, "endplates") == pytest.approx(33.0)
    with pytest.raises(ValueError, match="method"):
        morphometrics.cobb_angle_from_landmarks(lm, "median")
    with pytest.raises(ValueError, match="17, 4, 2"):
        morphometrics.cobb_angle_from_landmarks(lm[:5])


def test_cobb_angle_from_a_mask_of_tilted_bodies():
    tilts = [0, 8, 16, 8, 0, -10, -20, -10, 0]
    quads = [_tilted_body(120, 40 + 36 * i, 60, 22, t) for i, t in enumerate(tilts)]
    mask = _draw(quads, (40 + 36 * len(tilts), 240))
    ang = morphometrics.mask_endplate_angles(mask)
    assert len(ang) == len(tilts)
    np.testing.assert_allclose(ang["tilt_deg"], tilts, atol=2.5)
    assert morphometrics.cobb_angle_from_mask(mask, "tilt") == pytest.approx(36, abs=3)
    assert morphometrics.cobb_angle_from_mask(mask, "endplates") == pytest.approx(36, abs=5)
    # the centre line of a straight column has no curve; of this one, a large one
    straight = _draw([_tilted_body(120, 40 + 36 * i, 60, 22, 0) for i in range(9)], mask.shape)
    assert morphometrics.cobb_angle_from_mask(straight, "centerline") < 2
    assert morphometrics.cobb_angle_from_mask(mask, "centerline") > 5
    with pytest.raises(ValueError, match="method"):
        morphometrics.cobb_angle_from_mask(mask, "angles")
    assert np.isnan(morphometrics.cobb_angle_from_mask(np.zeros((20, 20), bool), "tilt"))


def test_square_pixels_restore_the_angle():
    body = [_tilted_body(100, 100, 80, 20, 20)]
    mask = _draw(body, (200, 200))
    squeezed = mask[:, ::2]  # pixels twice as wide as tall
    tilt_wrong = morphometrics.mask_endplate_angles(squeezed)["tilt_deg"].iloc[0]
    tilt_right = morphometrics.mask_endplate_angles(morphometrics.to_square_pixels(squeezed, 2.0))["tilt_deg"].iloc[0]
    assert abs(tilt_right - 20) < 2.5 < abs(tilt_wrong - 20)
    with pytest.raises(ValueError, match="pixel_aspect"):
        morphometrics.to_square_pixels(mask, 0)


def test_measurements_match_the_generator_truth():
    from spinelib.data.synthetic.generator import generate_patient

    patient = generate_patient(1, 1, seed=3, scale=0.5)  # Damaged
    lat_v, f = morphometrics.downscale_mask(patient.masks["Lat_Vertebra"], 1024)
    lat_d, _ = morphometrics.downscale_mask(patient.masks["Lat_Disk_Height"], 1024)
    ap_v, _ = morphometrics.downscale_mask(patient.masks["Ap_Vertebra"], 1024)
    meta = patient.metadata
    v = morphometrics.vertebra_heights(lat_v)
    assert len(v) == len(meta["vertebrae"])
    truth = np.array([x["lat"]["wedge_ratio"] for x in meta["vertebrae"]])
    assert np.abs(v["wedge_ratio"].to_numpy() - truth).max() < 0.08
    d = morphometrics.disk_heights(lat_d)
    assert len(d) == len(meta["disks"])
    truth_d = np.array([x["lat"]["height_px"] for x in meta["disks"]])
    assert np.corrcoef(d["height"] * f, truth_d)[0, 1] > 0.9
    assert morphometrics.cobb_angle_from_mask(ap_v) == pytest.approx(meta["cobb_angle_deg"], abs=3)
    feats = morphometrics.patient_features(ap_v, lat_v, lat_d)
    assert set(feats) == set(morphometrics.SYNTHETIC_FEATURES)
    assert all(np.isfinite(v) for v in feats.values())


def test_aasce_agreement_on_the_fixture(tmp_path):
    from fixtures_aasce import fake_aasce

    from spinelib.data.aasce import load_aasce

    frame = load_aasce(fake_aasce(tmp_path / "aasce", n=3))
    agree = morphometrics.aasce_cobb_agreement(frame)
    assert list(agree["cobb_midline"]) == pytest.approx([0, 0, 0])  # all boxes level
    assert list(agree["error_midline"]) == pytest.approx([-10, -30, -50])
    feats = morphometrics.ap_features(landmarks=frame.landmarks[0])
    assert feats["cobb_angle_deg"] == pytest.approx(0) and feats["n_vertebrae"] == 17
    with pytest.raises(ValueError, match="columns"):
        morphometrics.aasce_cobb_agreement(frame.drop(columns=["landmarks"]))


def test_agreement_summary_and_input_errors():
    s = morphometrics.agreement_summary([10, 22, 29], [10, 20, 30])
    assert s["n"] == 3 and s["mae"] == pytest.approx(1.0) and s["bias"] == pytest.approx(1 / 3)
    assert s["smape"] == pytest.approx(100 * 3 / 121)
    assert morphometrics.agreement_summary([np.nan], [1.0])["n"] == 0
    with pytest.raises(ValueError, match="shape"):
        morphometrics.agreement_summary([1, 2], [1])
    with pytest.raises(ValueError, match="2-D"):
        morphometrics.vertebra_heights(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="exactly one"):
        morphometrics.ap_features()
    with pytest.raises(FileNotFoundError, match="meta.json"):
        morphometrics.synthetic_truth("/nonexistent/patient")
    assert morphometrics.vertebra_heights(np.zeros((10, 10), bool)).empty
    assert isinstance(morphometrics.listhesis_offsets(np.zeros((10, 10), bool)), pd.DataFrame)
