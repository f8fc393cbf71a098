"""The clinical-layout loader on a messy fixture tree and on the 2 real example patients."""

from __future__ import annotations

import numpy as np
import pytest

from spinelib.core.config import find_dataset
from spinelib.core.imageio import ImageReadError
from spinelib.core.structures import (
    AP_STRUCTURES,
    LAT_STRUCTURES,
    STRUCTURES,
    STRUCTURES_BY_VIEW,
)
from spinelib.data.clinical import (
    load_classification_pairs,
    load_segmentation_arrays,
    load_view,
    scan_clinical,
)

try:
    from fixtures_clinical import (
        SHAPE,
        build_messy_tree,
        build_patientless_tree,
        expected_mask,
        write_patient,
    )
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.fixtures_clinical import (
        SHAPE,
        build_messy_tree,
        build_patientless_tree,
        expected_mask,
        write_patient,
    )

EXAMPLES = find_dataset("spine-project-examples")
needs_examples = pytest.mark.skipif(EXAMPLES is None, reason="../shared/data/spine-project-examples is absent")


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = build_messy_tree(tmp_path_factory.mktemp("messy"))
    return root, scan_clinical(root, progress=False)


def _patient(ds, pid):
    return next(p for p in ds.patients if p.patient_id == pid)


def _rel(ds, path):
    return path.relative_to(ds.root).as_posix()


def test_usable_and_excluded_patients(messy):
    _, ds = messy
    assert sorted(p.patient_id for p in ds.patients) == ["ID (1)", "ID (2)", "ID (3)", "ID (4)", "ID (5)", "ID (8)"]
    assert {p.patient_id: p.class_name for p in ds.patients}["ID (4)"] == "Damaged"
    assert {p.patient_id: p.label for p in ds.patients} == {
        "ID (1)": 0, "ID (2)": 0, "ID (3)": 0, "ID (8)": 0, "ID (4)": 1, "ID (5)": 1}
    reasons = dict(zip(ds.excluded["patient_id"] + "/" + ds.excluded["class_name"], ds.excluded["reason"]))
    assert reasons["ID (169)/Damaged"] == "missing LAT image"
    assert reasons["ID (6)/Damaged"] == "ambiguous: 2 candidates for AP image: AP/AP.jpg, AP/ap.png"
    assert reasons["ID (7)/Normal"].startswith("duplicate patient id 'ID (7)': also in Damaged")
    assert reasons["ID (7)/Damaged"].startswith("duplicate patient id 'ID (7)': also in Normal")
    assert len(ds.excluded) == 4
    # excluded patients keep what they have, for the audit
    partial = {p.patient_id + p.class_name: p for p in ds.excluded_patients}
    assert set(partial["ID (169)Damaged"].views) == {"AP"}


@pytest.mark.parametrize("pid, view, rel", [
    ("ID (2)", "LAT", "Training/normal/ID (2)/LAT/lat.png"),
    ("ID (3)", "LAT", "Training/normal/ID (3)/LAT/LAT .png"),
    ("ID (4)", "LAT", "Training/DAMAGED/ID (4)/LAT/Lat.JPEG"),
    ("ID (4)", "AP", "Training/DAMAGED/ID (4)/AP/AP.jpg."),
    ("ID (5)", "LAT", "Training/DAMAGED/ID (5)/LAT.jpg"),
    ("ID (5)", "AP", "Training/DAMAGED/ID (5)/ap/AP.jpg"),
    ("ID (1)", "AP", "Training/normal/ID (1)/AP/AP.jpg"),
])
def test_view_images_found_by_name(messy, pid, view, rel):
    _, ds = messy
    assert _rel(ds, _patient(ds, pid).views[view].image_path) == rel


@pytest.mark.parametrize("pid, structure, rel", [
    ("ID (2)", "Ap_Vertebra", "Training/normal/ID (2)/AP/ap_vertebra.PNG"),
    ("ID (3)", "Ap_Vertebra", "Training/normal/ID (3)/AP/Ap Vertebra.png"),
    ("ID (3)", "Lat_Disk_Height", "Training/normal/ID (3)/LAT/lat disk height.png"),
    ("ID (4)", "Ap_Vertebra", "Training/DAMAGED/ID (4)/AP/Vertebra.png"),
    ("ID (5)", "Ap_Pedicle", "Training/DAMAGED/ID (5)/Ap_Pedicle.png"),
    ("ID (5)", "Lat_Vertebra", "Training/DAMAGED/ID (5)/Lat/Lat_Vertebra.png"),
])
def test_masks_found_by_name(messy, pid, structure, rel):
    _, ds = messy
    view = "AP" if structure.startswith("Ap") else "LAT"
    assert _rel(ds, _patient(ds, pid).views[view].mask_paths[structure]) == rel


def test_every_usable_patient_but_one_has_all_masks(messy):
    _, ds = messy
    complete = {p.patient_id: p.has_all_masks for p in ds.patients}
    assert complete == {"ID (1)": True, "ID (2)": True, "ID (3)": True, "ID (4)": True, "ID (5)": True, "ID (8)": False}
    lat8 = _patient(ds, "ID (8)").views["LAT"]
    assert lat8.missing_masks == ["Lat_Spinous_Process"]
    assert "Lat_Spinous_Process" not in lat8.mask_paths and len(lat8.mask_paths) == 4


def test_renamed_table(messy):
    _, ds = messy
    r = ds.renamed
    assert list(r.columns[:3]) == ["path", "role", "canonical_name"]
    table = {_rel(ds, p): (role, canon) for p, role, canon in zip(r["path"], r["role"], r["canonical_name"])}
    assert table["Training/normal/ID (2)/LAT/lat.png"] == ("LAT image", "LAT/LAT.jpg")
    assert table["Training/normal/ID (3)/LAT/LAT .png"] == ("LAT image", "LAT/LAT.jpg")
    assert table["Training/normal/ID (3)/AP/Ap Vertebra.png"] == ("Ap_Vertebra", "AP/Ap_Vertebra.png")
    assert table["Training/DAMAGED/ID (4)/AP/AP.jpg."] == ("AP image", "AP/AP.jpg")
    assert table["Training/DAMAGED/ID (4)/LAT/Lat.JPEG"] == ("LAT image", "LAT/LAT.jpg")
    assert table["Training/DAMAGED/ID (5)/Ap_Pedicle.png"] == ("Ap_Pedicle", "AP/Ap_Pedicle.png")
    assert table["Training/DAMAGED/ID (5)/Lat/Lat_Vertebra.png"] == ("Lat_Vertebra", "LAT/Lat_Vertebra.png")
    # canonical files are not listed
    assert not any(k.startswith("Training/normal/ID (1)/") for k in table)


def test_unknown_files_ignored_and_counted(messy):
    _, ds = messy
    names = {p.name for p in ds.ignored}
    assert {"metadata.csv", ".DS_Store", "meta.json", "__MACOSX"} <= names
    assert not any(p.suffix == ".jpg" and "__MACOSX" not in str(p) for p in ds.ignored)


def test_to_frame(messy):
    _, ds = messy
    f = ds.to_frame()
    assert len(f) == 2 * len(ds.patients)
    row = f[(f.patient_id == "ID (8)") & (f.view == "LAT")].iloc[0]
    assert row.n_masks == 4 and row.missing_masks == "Lat_Spinous_Process"


def test_scan_reads_names_only(tmp_path, monkeypatch):
    root = build_messy_tree(tmp_path / "d")
    import PIL.Image

    def boom(*a, **k):
        raise AssertionError("scan_clinical opened an image")

    monkeypatch.setattr(PIL.Image, "open", boom)
    ds = scan_clinical(root, progress=False)
    assert len(ds.patients) == 6


def test_load_view_gives_the_right_mask_for_each_structure(messy):
    _, ds = messy
    for pid in ("ID (1)", "ID (2)", "ID (3)", "ID (4)", "ID (5)"):
        for view in ("AP", "LAT"):
            img, masks = load_view(_patient(ds, pid), view)
            assert img.dtype == np.uint8 and img.shape == SHAPE
            assert masks.dtype == bool and masks.shape == (*SHAPE, len(STRUCTURES_BY_VIEW[view]))
            for i, s in enumerate(STRUCTURES_BY_VIEW[view]):
                np.testing.assert_array_equal(masks[..., i], expected_mask(s), err_msg=f"{pid} {s}")


def test_load_view_structure_order_and_resize(messy):
    _, ds = messy
    p = _patient(ds, "ID (1)")
    img, masks = load_view(p, "LAT", size=(24, 12), structures=["lat_disk_height", "Lat_Vertebra"])
    assert img.shape == (24, 12) and masks.shape == (24, 12, 2)
    assert masks[..., 0].sum() > 0 and masks[..., 1].sum() > 0
    assert masks[..., 0].nonzero()[0].min() > masks[..., 1].nonzero()[0].min()  # disk bar lies below
    with pytest.raises(ValueError, match="belongs to the AP view"):
        load_view(p, "LAT", structures=["Ap_Pedicle"])
    with pytest.raises(ValueError, match="no mask for Lat_Spinous_Process"):
        load_view(_patient(ds, "ID (8)"), "LAT")


def test_load_view_rejects_mask_of_other_size(tmp_path):
    write_patient(tmp_path / "Normal" / "P1", mask_shapes={"Ap_Pedicle": (40, 24)})
    ds = scan_clinical(tmp_path, progress=False)
    with pytest.raises(ImageReadError) as e:
        load_view(ds.patients[0], "AP")
    msg = str(e.value)
    assert "Ap_Pedicle.png" in msg and "AP.jpg" in msg and "40 x 24" in msg and "48 x 24" in msg


def test_segmentation_arrays_skip_patients_without_masks(messy):
    _, ds = messy
    with pytest.warns(UserWarning, match=r"1 patient\(s\) skipped.*ID \(8\)"):
        x, y, ids = load_segmentation_arrays(ds, "LAT", (32, 16), progress=False)
    assert "ID (8)" not in ids and len(ids) == 5
    assert x.shape == (5, 32, 16, 1) and y.shape == (5, 32, 16, len(LAT_STRUCTURES))
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
    assert set(np.unique(y)) == {0.0, 1.0}
    x, y, ids = load_segmentation_arrays(ds, "AP", (32, 16), structures=["Ap_Pedicle"], progress=False)
    assert len(ids) == 6 and y.shape[-1] == 1


def test_classification_pairs(messy):
    _, ds = messy
    ap, lat, labels, ids = load_classification_pairs(ds, (32, 16), progress=False)
    assert ap.shape == lat.shape == (6, 32, 16, 1)
    assert labels.tolist() == [_patient(ds, i).label for i in ids]
    assert sorted(labels.tolist()) == [0, 0, 0, 0, 1, 1]
    assert not np.allclose(ap, lat)


def test_patientless_layout(tmp_path):
    ds = scan_clinical(build_patientless_tree(tmp_path), progress=False)
    assert sorted((p.patient_id, p.class_name) for p in ds.patients) == [("Damaged", "Damaged"), ("Normal", "Normal")]
    assert all(p.has_all_masks for p in ds.patients) and ds.excluded.empty and ds.renamed.empty


def test_scan_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_clinical(tmp_path / "nope", progress=False)
    (tmp_path / "empty" / "stuff").mkdir(parents=True)
    with pytest.raises(ValueError, match="no class folders"):
        scan_clinical(tmp_path / "empty", progress=False)


@needs_examples
def test_real_examples_scan():
    ds = scan_clinical(EXAMPLES, progress=False)
    assert sorted(p.patient_id for p in ds.patients) == ["Damaged", "Normal"]
    assert all(p.has_all_masks for p in ds.patients)
    assert ds.excluded.empty and ds.renamed.empty
    assert {p.name for p in ds.ignored} == {"LICENSE", "PROVENANCE.md"}


@needs_examples
@pytest.mark.parametrize("view", ["AP", "LAT"])
def test_real_masks_aligned_to_xray(view):
    from skimage.filters import gaussian

    ds = scan_clinical(EXAMPLES, progress=False)
    for p in ds.patients:
        img, masks = load_view(p, view)  # full resolution: sizes checked against the X-ray header
        assert masks.shape[:2] == img.shape and masks.shape[2] == len(STRUCTURES_BY_VIEW[view])
        assert img.shape[0] > 2500 and img.shape[1] > 1700
        assert masks.reshape(-1, masks.shape[2]).sum(axis=0).min() > 1000  # every mask non-empty
        # body area = not air (smoothed intensity above 10% of full scale), at 512 x 256
        small, small_masks = load_view(p, view, size=(512, 256))
        body = gaussian(small / 255.0, 2) > 0.1
        union = small_masks.any(axis=-1)
        assert body[union].mean() > 0.9, f"{p.patient_id} {view}"
        for i, s in enumerate(STRUCTURES_BY_VIEW[view]):
            assert body[small_masks[..., i]].mean() > 0.6, f"{p.patient_id} {s}"


@needs_examples
def test_real_examples_arrays():
    ds = scan_clinical(EXAMPLES, progress=False)
    x, y, ids = load_segmentation_arrays(ds, "AP", (64, 32), progress=False)
    assert x.shape == (2, 64, 32, 1) and y.shape == (2, 64, 32, len(AP_STRUCTURES))
    assert (y.reshape(2, -1, 3).sum(axis=1) > 0).all()
    ap, lat, labels, ids = load_classification_pairs(ds, (64, 32), progress=False)
    assert dict(zip(ids, labels.tolist())) == {"Normal": 0, "Damaged": 1}
    assert len(STRUCTURES) == 8


def test_ignored_files_have_reasons(messy):
    _, ds = messy
    f = ds.ignored_frame()
    assert list(f.columns) == ["path", "reason"] and len(f) == len(ds.ignored)
    reasons = {p.name: r for p, r in zip(f["path"], f["reason"])}
    assert reasons["metadata.csv"].startswith("outside the class folders")
    assert reasons[".DS_Store"] == reasons["__MACOSX"] == "hidden or system file/folder"
    assert reasons["meta.json"].startswith("name is neither a view image")
    assert all(reasons.values()) and ds.problems.empty


def test_classification_pairs_skip_unreadable(tmp_path):
    write_patient(tmp_path / "Normal" / "P1")
    write_patient(tmp_path / "Damaged" / "P2", seed=2)
    bad = tmp_path / "Normal" / "P1" / "LAT" / "LAT.jpg"
    bad.write_bytes(b"")
    ds = scan_clinical(tmp_path, progress=False)
    with pytest.raises(ImageReadError, match="empty file"):
        load_classification_pairs(ds, (16, 8), progress=False)
    with pytest.warns(UserWarning, match=r"1 patient\(s\) skipped for classification.*P1: cannot read .*LAT.jpg"):
        ap, lat, labels, ids = load_classification_pairs(ds, (16, 8), progress=False, on_error="skip")
    assert ids == ["P2"] and labels.tolist() == [1] and ap.shape == lat.shape == (1, 16, 8, 1)
    bad2 = tmp_path / "Damaged" / "P2" / "AP" / "AP.jpg"
    bad2.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="no AP\\+LAT pair .* could be read"), pytest.warns(UserWarning):
        load_classification_pairs(scan_clinical(tmp_path, progress=False), (16, 8), progress=False, on_error="skip")
