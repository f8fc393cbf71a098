"""Dataset audits: counts, Table 1 from headers, mask coverage, AASCE Cobb-angle tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spinelib.core.config import find_dataset
from spinelib.core.structures import STRUCTURES
from spinelib.data.aasce import load_aasce
from spinelib.data.audit import SEVERITY_LABELS, audit_aasce, audit_clinical
from spinelib.data.clinical import scan_clinical

try:
    from fixtures_clinical import build_messy_tree, write_patient
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.fixtures_clinical import build_messy_tree, write_patient

EXAMPLES = find_dataset("spine-project-examples")
AASCE = find_dataset("aasce")
BAR = 3 * 8 / (48 * 24)  # each fixture mask: a 3 x 8 bar in a 48 x 24 image


def test_audit_messy_tree(tmp_path):
    ds = scan_clinical(build_messy_tree(tmp_path), progress=False)
    a = audit_clinical(ds, coverage_size=None, progress=False)
    ppc = a.patients_per_class
    assert ppc.loc["Normal"].tolist() == [5, 4, 1, 3]  # found, usable, excluded, with_all_masks
    assert ppc.loc["Damaged"].tolist() == [5, 2, 3, 2]
    assert len(a.excluded) == 4 and len(a.renamed) == len(ds.renamed) > 10
    # sizes cover excluded patients too (ID 169 has its AP view only)
    s169 = a.sizes[a.sizes.patient_id == "ID (169)"]
    assert s169["view"].tolist() == ["AP"] and s169["excluded"].all()
    assert len(a.sizes) == 2 * 6 + 1 + 1 + 2 * 2  # usable + ID 169 + ID 6 (ambiguous AP left out) + both ID 7
    # coverage: every mask is the same bar, Lat_Spinous_Process missing for one patient
    cov = a.mask_coverage.set_index("structure")
    np.testing.assert_allclose(cov["mean"], BAR)
    assert cov.loc["Lat_Spinous_Process", "n_masks"] == 5 and cov.loc["Ap_Vertebra", "n_masks"] == 6
    assert (cov["n_empty"] == 0).all() and a.problems.empty
    text = a.summary()
    assert "Normal 4 usable / 5 found" in text and "excluded ID (169): missing LAT image" in text
    assert "full resolution" in text


def test_size_table_and_coverage_at_training_size(tmp_path):
    write_patient(tmp_path / "Normal" / "P1", shape=(48, 24))
    write_patient(tmp_path / "Normal" / "P2", shape=(96, 40))
    write_patient(tmp_path / "Damaged" / "P3", shape=(60, 30))
    a = audit_clinical(scan_clinical(tmp_path, progress=False), coverage_size=(24, 12), progress=False)
    t = a.size_table
    assert t.loc["Normal", ["min_height", "max_height", "min_width", "max_width", "n_images"]].tolist() == [48, 96, 24, 40, 4]
    assert t.loc["Damaged", ["min_height", "max_height", "min_width", "max_width"]].tolist() == [60, 60, 30, 30]
    cov = a.mask_coverage
    assert (cov["n_masks"] == 3).all() and cov["mean"].between(0.005, 0.1).all()
    assert "24x12" in a.summary()


def test_audit_records_unreadable_and_mismatched_masks(tmp_path):
    write_patient(tmp_path / "Normal" / "P1", mask_shapes={"Ap_Pedicle": (40, 24)})
    (tmp_path / "Normal" / "P1" / "LAT" / "Lat_Vertebra.png").write_bytes(b"")
    a = audit_clinical(scan_clinical(tmp_path, progress=False), progress=False)
    problems = dict(zip([p.name for p in a.problems["path"]], a.problems["problem"]))
    assert "mask is 40 x 24" in problems["Ap_Pedicle.png"] and "AP.jpg is 48 x 24" in problems["Ap_Pedicle.png"]
    assert "empty file" in problems["Lat_Vertebra.png"]
    kinds = dict(zip([p.name for p in a.problems["path"]], a.problems["kind"]))
    assert kinds == {"Ap_Pedicle.png": "size mismatch", "Lat_Vertebra.png": "unreadable"}
    assert list(a.problems.columns) == ["patient_id", "path", "kind", "problem"]
    assert "file problems: 2 (" in a.summary() and "size mismatch 1" in a.summary()
    cov = a.mask_coverage.set_index("structure")
    assert cov.loc["Ap_Pedicle", "n_masks"] == 0 and np.isnan(cov.loc["Ap_Pedicle", "mean"])


@pytest.mark.skipif(EXAMPLES is None, reason="../shared/data/spine-project-examples is absent")
def test_audit_real_examples():
    a = audit_clinical(scan_clinical(EXAMPLES, progress=False), progress=False)
    t = a.size_table
    assert t.loc["Normal", ["min_height", "max_height", "min_width", "max_width"]].tolist() == [2746, 2792, 1834, 1937]
    assert t.loc["Damaged", ["min_height", "max_height", "min_width", "max_width"]].tolist() == [2946, 2982, 1800, 1950]
    cov = a.mask_coverage.set_index("structure")
    assert list(cov.index) == list(STRUCTURES) and (cov["n_masks"] == 2).all() and (cov["n_empty"] == 0).all()
    # vertebra bodies cover more of the image than the thin vertebral lines
    assert cov.loc["Ap_Vertebra", "mean"] > 0.03 and cov.loc["Lat_Posterior_Vertebral_Line", "mean"] < 0.005


def test_audit_aasce_on_small_frame():
    f = pd.DataFrame({
        "patient_id": ["1", "1", "2", "3"], "height": [100, 120, 90, 200], "width": [50, 60, 40, 80],
        "cobb_pt": [5.0, 30.0, 45.0, 12.0], "cobb_mt": [1.0, 2.0, 3.0, 4.0], "cobb_tl": [0.0, 0.0, 0.0, 0.0],
        "cobb_max": [5.0, 30.0, 45.0, 12.0], "n_clipped": [0, 1, 0, 0],
    })
    a = audit_aasce(f)
    assert (a.n_images, a.n_patients, a.n_severe, a.n_clipped_corners) == (4, 3, 1, 1)
    assert a.severity["images"].tolist() == [1, 1, 1, 1]
    assert a.size_range.loc["height"].tolist() == [90, 200] and a.size_range.loc["width"].tolist() == [40, 80]
    assert a.cobb_table.loc["max", "cobb_max"] == 45.0
    with pytest.raises(ValueError, match="lacks columns"):
        audit_aasce(f.drop(columns="cobb_max"))


@pytest.mark.skipif(AASCE is None, reason="../shared/data/aasce is absent")
def test_audit_real_aasce():
    a = audit_aasce(load_aasce(AASCE))
    assert (a.n_images, a.n_patients, a.n_severe) == (481, 237, 201)
    assert a.severity.loc[SEVERITY_LABELS[0], "images"] == 18
    assert a.size_range.loc["height"].tolist() == [973, 3755] and a.size_range.loc["width"].tolist() == [355, 1427]
    assert "481 images of 237 patients" in a.summary()


def test_audit_flags_files_that_load_but_deserve_a_look(tmp_path):
    from PIL import Image

    from spinelib.data.audit import PROBLEM_KINDS

    write_patient(tmp_path / "Normal" / "P1")
    ap = tmp_path / "Normal" / "P1" / "AP"
    Image.fromarray(np.zeros((48, 24), np.uint8)).save(ap / "Ap_Pedicle.png")  # empty
    Image.fromarray(np.full((48, 24), 255, np.uint8)).save(ap / "Ap_Vertebra.png")  # all foreground
    grey = np.zeros((48, 24), np.uint8)
    grey[10:20, 5:15], grey[10, 5:15] = 255, 128
    Image.fromarray(grey).save(ap / "Ap_Spinous_Process.png")  # three levels
    a = audit_clinical(scan_clinical(tmp_path, progress=False), coverage_size=None, progress=False)
    kinds = dict(zip([p.name for p in a.problems["path"]], a.problems["kind"]))
    assert kinds == {"Ap_Pedicle.png": "empty mask", "Ap_Vertebra.png": "mostly foreground",
                     "Ap_Spinous_Process.png": "non-binary mask"}
    assert set(a.problems["kind"]) <= set(PROBLEM_KINDS)
    assert a.patients_per_class.loc["Normal", "usable"] == 1  # flagged, not excluded
    cov = a.mask_coverage.set_index("structure")
    assert cov.loc["Ap_Pedicle", "n_empty"] == 1 and cov.loc["Ap_Vertebra", "mean"] == 1.0


def test_audit_records_provenance(tmp_path):
    from spinelib.core.provenance import data_fingerprint

    write_patient(tmp_path / "Normal" / "P1")
    ds = scan_clinical(tmp_path, progress=False)
    a = audit_clinical(ds, progress=False)
    info = a.provenance
    assert info["datasets"]["clinical"]["fingerprint"] == data_fingerprint(tmp_path)
    assert info["datasets"]["clinical"]["n_files"] == 10
    assert info["packages"]["numpy"] == np.__version__ and info["timestamp_utc"]
    assert audit_clinical(ds, progress=False, provenance=False).provenance == {}


def test_audit_tables_show_paths_relative_to_the_dataset(tmp_path):
    """No table of the audit names the machine's folders: excluded folders, renamed files, sizes
    and problems are relative to the dataset's root (``audit.root``), and so are the messages."""
    from PIL import Image

    root = build_messy_tree(tmp_path / "data")
    Image.fromarray(np.zeros((48, 24), np.uint8)).save(root / "Training" / "normal" / "ID (1)" / "AP" / "Ap_Pedicle.png")
    a = audit_clinical(scan_clinical(root, progress=False), coverage_size=None, progress=False)
    assert a.root == root
    for name, col in (("excluded", "folder"), ("renamed", "path"), ("sizes", "path"), ("problems", "path")):
        table = getattr(a, name)
        assert len(table), name
        assert not table.astype(str).apply(lambda s: s.str.contains(str(tmp_path), regex=False)).any().any(), name
        assert all((a.root / p).exists() or (a.root / p).is_symlink() for p in table[col]), name
    assert "Training/normal/ID (1)/AP/Ap_Pedicle.png" in set(a.problems["path"].astype(str))  # an empty mask
    assert str(tmp_path) not in a.summary()
