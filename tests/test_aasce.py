"""AASCE loader (real published format and malformed copies) and the patient-level splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spinelib.core.config import find_dataset
from spinelib.data.aasce import (
    load_aasce,
    load_aasce_arrays,
    patient_id_of,
    vertebra_mask,
    vertebra_polygons,
)
from spinelib.data.splits import patient_kfold, patient_split

try:
    from fixtures_aasce import fake_aasce as _fake_aasce
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.fixtures_aasce import fake_aasce as _fake_aasce

AASCE = find_dataset("aasce")
needs_aasce = pytest.mark.skipif(AASCE is None, reason="../shared/data/aasce is absent")


@pytest.fixture(scope="module")
def real():
    if AASCE is None:
        pytest.skip("../shared/data/aasce is absent")
    return load_aasce(AASCE)


# ---------------------------------------------------------------------------------- real data


@needs_aasce
def test_real_rows_and_patients(real):
    assert len(real) == 481
    assert real["patient_id"].nunique() == 237
    assert real.loc[real.image_name == "sunhl-1th-02-Jan-2017-162 A AP.jpg", "patient_id"].item() == "162"
    assert int(real["severe"].sum()) == 201  # PROVENANCE.md: 201 of 481 with max Cobb >= 40
    assert int((real["cobb_max"] < 10).sum()) == 18
    assert real["height"].between(973, 3755).all() and real["width"].between(355, 1427).all()


@needs_aasce
def test_real_landmarks_inside_image_and_match_mat(real):
    for lm, h, w in zip(real["landmarks"], real["height"], real["width"]):
        assert lm.shape == (17, 4, 2)
        assert (lm[..., 0] >= 0).all() and (lm[..., 0] <= w - 1).all()
        assert (lm[..., 1] >= 0).all() and (lm[..., 1] <= h - 1).all()
    assert real["mat_max_diff"].notna().all() and real["mat_max_diff"].max() < 0.5  # CSV vs .mat, pixels
    assert real["n_clipped"].sum() == 2  # one image has 2 corners just outside
    # vertebrae are listed top to bottom except in 24 images (18 list the topmost one last)
    assert (~real["vertebrae_top_down"]).sum() == 24
    rolled = [lm for lm, ok in zip(real["landmarks"], real["vertebrae_top_down"]) if not ok
              and lm[-1, :, 1].mean() < lm[0, :, 1].mean()]
    assert len(rolled) == 18
    fixed = load_aasce(AASCE, max_images=120, sort_vertebrae=True)
    assert fixed["vertebrae_top_down"].sum() < 120  # flag describes the published order
    for lm in fixed["landmarks"]:
        assert np.all(np.diff(lm[:, :, 1].mean(axis=1)) >= 0)


@needs_aasce
def test_real_masks_non_empty(real):
    sub = real.iloc[:6]
    x, y = load_aasce_arrays(sub, (128, 64), progress=False)
    assert x.shape == y.shape == (6, 128, 64, 1) and x.dtype == y.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    cover = y.reshape(6, -1).mean(axis=1)
    assert (cover > 0.02).all() and (cover < 0.5).all()
    # the full-resolution mask covers about the same fraction as the small one
    row = sub.iloc[0]
    full = vertebra_mask(row.landmarks, (row.height, row.width))
    assert abs(full.mean() - cover[0]) < 0.01
    # vertebrae are brighter than the image on average
    assert x[0, ..., 0][y[0, ..., 0] > 0].mean() > x[0].mean()


@needs_aasce
def test_real_split_never_shares_patient(real):
    ids = real["patient_id"].tolist()
    train, val = patient_split(ids, 0.2, seed=0)
    assert set(real.patient_id.iloc[train]).isdisjoint(real.patient_id.iloc[val])
    assert len(train) + len(val) == 481
    folds = list(patient_kfold(ids, real["severe"].astype(int), k=5, seed=0))
    assert len(folds) == 5
    seen = np.concatenate([v for _, v in folds])
    assert sorted(seen.tolist()) == list(range(481))
    for tr, va in folds:
        assert set(real.patient_id.iloc[tr]).isdisjoint(real.patient_id.iloc[va])
        assert abs(real.severe.iloc[va].mean() - real.severe.mean()) < 0.1  # stratified


@needs_aasce
def test_max_images(real):
    small = load_aasce(AASCE, max_images=5)
    assert len(small) == 5 and list(small.image_name) == list(real.image_name[:5])


# ---------------------------------------------------------------------------------- small copies


def test_fake_dataset_loads(tmp_path):
    f = load_aasce(_fake_aasce(tmp_path))
    assert list(f.patient_id) == ["100", "100", "101"]
    lm = f.landmarks[0]
    np.testing.assert_allclose(lm[0], [[10, 2], [20, 2], [10, 4], [20, 4]], atol=1e-3)
    assert list(f.cobb_max) == [10, 30, 50] and list(f.severe) == [False, False, True]
    assert (f.n_clipped == 0).all() and (f.mat_max_diff < 1e-3).all()


def test_wrong_number_of_values(tmp_path):
    root = _fake_aasce(tmp_path)
    p = root / "labels" / "training" / "landmarks.csv"
    lines = p.read_text().splitlines()
    lines[1] = ",".join(lines[1].split(",")[:-1])
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"landmarks.csv: row 2 has 135 values, expected 136"):
        load_aasce(root)


def test_nan_value(tmp_path):
    root = _fake_aasce(tmp_path)
    p = root / "labels" / "training" / "angles.csv"
    p.write_text("10,5,3\n20,nan,3\n30,5,3\n")
    with pytest.raises(ValueError, match=r"angles.csv: row 2 has NaN"):
        load_aasce(root)
    p.write_text("10,5,3\n20,abc,3\n30,5,3\n")
    with pytest.raises(ValueError, match=r"angles.csv: row 2 has a non-numeric value"):
        load_aasce(root)


def test_row_count_mismatch(tmp_path):
    root = _fake_aasce(tmp_path)
    with open(root / "labels" / "training" / "filenames.csv", "a") as fh:
        fh.write("extra.jpg\n")
    with pytest.raises(ValueError, match=r"has 3 rows but .*filenames.csv lists 4 images"):
        load_aasce(root)


def test_mat_disagreement_and_missing_image(tmp_path):
    from scipy.io import savemat

    root = _fake_aasce(tmp_path / "a")
    name = (root / "labels" / "training" / "filenames.csv").read_text().splitlines()[1]
    savemat(root / "labels" / "training" / f"{name}.mat", {"p2": np.zeros((68, 2))})
    with pytest.raises(ValueError, match=r"differ from landmarks.csv row 2"):
        load_aasce(root)
    assert len(load_aasce(root, check_mat=False)) == 3
    root = _fake_aasce(tmp_path / "b", mat=False)
    assert load_aasce(root)["mat_max_diff"].isna().all()
    (root / "data" / "training" / name).unlink()
    with pytest.raises(FileNotFoundError, match="row 2 of filenames.csv"):
        load_aasce(root)
    with pytest.raises(FileNotFoundError):
        load_aasce(tmp_path / "nowhere")


def test_corners_outside_are_clipped(tmp_path):
    root = _fake_aasce(tmp_path, mat=False)
    p = root / "labels" / "training" / "landmarks.csv"
    rows = [r.split(",") for r in p.read_text().splitlines()]
    rows[0][0] = "-0.1"  # x of T1 top-left
    rows[0][68 + 67] = "1.2"  # y of L5 bottom-right
    p.write_text("\n".join(",".join(r) for r in rows) + "\n")
    f = load_aasce(root)
    assert f.n_clipped.tolist() == [2, 0, 0]
    assert f.landmarks[0][0, 0, 0] == 0 and f.landmarks[0][-1, 3, 1] == 59


def test_polygons_and_mask():
    lm = np.zeros((17, 4, 2))
    for v in range(17):
        lm[v] = [(2, 10 * v + 1), (8, 10 * v + 1), (2, 10 * v + 6), (8, 10 * v + 6)]  # TL, TR, BL, BR
    polys = vertebra_polygons(lm)
    assert len(polys) == 17 and polys[0].shape == (4, 2)
    np.testing.assert_array_equal(polys[0], [(2, 1), (8, 1), (8, 6), (2, 6)])  # TL, TR, BR, BL
    m = vertebra_mask(lm, (180, 12))
    assert m.dtype == bool and m.shape == (180, 12)
    assert 17 * 5 * 6 <= m.sum() <= 17 * 6 * 7
    # a vertebra with corners swapped (as in a few real annotations) is still a full box
    bad = lm.copy()
    bad[0] = bad[0][[0, 3, 2, 1]]
    np.testing.assert_array_equal(vertebra_mask(bad, (180, 12)), m)
    with pytest.raises(ValueError, match="shape"):
        vertebra_polygons(np.zeros((16, 4, 2)))


def test_patient_id_of():
    assert patient_id_of("sunhl-1th-21-Nov-2016-138 D AP2.jpg") == "138"
    assert patient_id_of("sunhl-1th-22-Nov-2016-142 A AP (2).jpg") == "142"
    assert patient_id_of("sunhl-1th-20-Jul-2016-coronal7.jpg") == "sunhl-1th-20-Jul-2016-coronal7"


def test_split_functions_validate_and_group():
    ids = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "g"]
    tr, va = patient_split(ids, 0.3, seed=1)
    assert set(np.take(ids, tr)).isdisjoint(np.take(ids, va)) and len(tr) + len(va) == 10
    assert len(set(np.take(ids, va))) == 2  # 30% of 7 patients
    assert patient_split(ids, 0.3, seed=1)[1].tolist() == va.tolist()  # deterministic
    labels = [0, 0, 1, 0, 0, 0, 1, 1, 0, 1]
    for tr, va in patient_kfold(ids, labels, k=3, seed=0):
        assert set(np.take(ids, tr)).isdisjoint(np.take(ids, va))
    with pytest.raises(ValueError, match="val_fraction"):
        patient_split(ids, 1.5)
    with pytest.raises(ValueError, match="at least 2 distinct"):
        patient_split(["x", "x"], 0.5)
    with pytest.raises(ValueError, match="k=9 folds"):
        list(patient_kfold(ids, labels, k=9))
    with pytest.raises(ValueError, match="labels has 2 entries"):
        list(patient_kfold(ids, [0, 1], k=2))


def test_scale_landmarks_aligns_pixel_centres():
    """A mask drawn at the small size from scaled corners matches the full-size mask resized the
    way the X-ray is resized (area average, threshold 1/2); the naive x * w / W is offset."""
    from spinelib.core.imageio import resize_mask
    from spinelib.data.aasce import scale_landmarks

    rng = np.random.default_rng(3)
    H, W, h, w = 1000, 500, 200, 100
    # 17 axis-aligned boxes of random size stacked down the image, corners TL, TR, BL, BR
    lm = []
    for v in range(17):
        x0, y0 = rng.uniform(150, 200), 40 + v * 55 + rng.uniform(0, 5)
        x1, y1 = x0 + rng.uniform(90, 140), y0 + rng.uniform(30, 45)
        lm.append([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
    lm = np.array(lm)
    ref = resize_mask(vertebra_mask(lm, (H, W)), (h, w), method="area")

    def dice(a, b):
        return 2 * (a & b).sum() / (a.sum() + b.sum())

    good = vertebra_mask(scale_landmarks(lm, (H, W), (h, w)), (h, w))
    naive = vertebra_mask(lm * np.array([w / W, h / H]), (h, w))
    assert dice(good, ref) > 0.99
    assert dice(naive, ref) < dice(good, ref) - 0.03
    ys, xs = np.nonzero(good)
    yr, xr = np.nonzero(ref)
    assert abs(xs.mean() - xr.mean()) < 0.15 and abs(ys.mean() - yr.mean()) < 0.15
    # the identity and a shape check
    np.testing.assert_allclose(scale_landmarks(lm, (H, W), (H, W)), lm)
    with pytest.raises(ValueError):
        scale_landmarks(lm, (H, W), (0, w))


@needs_aasce
def test_mask_grid_agreement_on_real_images(real):
    from spinelib.seg.aasce_masks import mask_grid_agreement

    table = mask_grid_agreement(real, (384, 192), max_images=5, progress=False)
    assert len(table) == 5 and table["image_name"].tolist() == real["image_name"].iloc[:5].tolist()
    assert (table["dice_aligned"] > 0.99).all()
    assert (table["dice_aligned"] > table["dice_naive"]).all()
    assert (table["dx_naive"] > 0.2).all() and (table["dx_aligned"].abs() < 0.15).all()  # naive: right of the bodies


@needs_aasce
def test_corner_error_dice_falls_with_the_corner_error(real):
    from spinelib.seg.aasce_masks import corner_error_dice

    table = corner_error_dice(real, (384, 192), sigmas=(0.0, 0.5, 2.0), max_images=6, progress=False)
    assert table["sigma_px"].tolist() == [0.0, 0.5, 2.0] and (table["images"] == 6).all()
    assert table["dice_mean"].iloc[0] == 1.0 and table["dice_sd"].iloc[0] == 0.0  # no error: the same masks
    assert 1.0 > table["dice_mean"].iloc[1] > table["dice_mean"].iloc[2] > 0.5
    again = corner_error_dice(real, (384, 192), sigmas=(0.0, 0.5, 2.0), max_images=6, progress=False)
    pd.testing.assert_frame_equal(table, again)  # seeded
    for bad in ((), (-1.0,), (float("nan"),)):
        with pytest.raises(ValueError, match="sigmas"):
            corner_error_dice(real, (384, 192), sigmas=bad, max_images=2, progress=False)
