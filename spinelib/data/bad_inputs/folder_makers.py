"""Makers of the bad-input corpus, dataset folders: unreadable X-rays inside a dataset, odd patient
folders and names, links, unknown files and roots; AASCE labels that disagree or are missing; bad
parameters and profile overrides. Each maker takes a temporary folder and returns the
:class:`~spinelib.data.bad_inputs.file_makers.Trial` to run there."""

from __future__ import annotations

import os
import shutil
import unicodedata
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from spinelib.core.config import check_parameters, get_profile
from spinelib.data.aasce import load_aasce
from spinelib.data.clinical import scan_clinical
from spinelib.data.clinical_arrays import load_segmentation_arrays, load_view
from spinelib.data.bad_inputs.file_makers import (
    Trial,
    audit_trial,
    check_that,
    clinical_dataset,
    noise_image,
    scan_trial,
)
from spinelib.data.tiny_datasets import (
    SHAPE,
    fake_aasce,
    write_patient,
    xray,
)


def _truncated_xray(path: Path) -> Path:
    """A fixture-size (48 x 24) noisy JPEG X-ray cut in half."""
    Image.fromarray(noise_image(SHAPE)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def make_truncated_xray_in_dataset(tmp):
    root = clinical_dataset(tmp, names={"LAT image": None})
    path = root / "Normal" / "P1" / "LAT" / "LAT.jpg"
    _truncated_xray(path)
    return audit_trial(root, path)


def make_truncated_xray_training(tmp):
    root = clinical_dataset(tmp, names={"AP image": None})
    write_patient(root / "Normal" / "P2", seed=2)
    path = _truncated_xray(root / "Normal" / "P1" / "AP" / "AP.jpg")

    def call():
        x, y, ids = load_segmentation_arrays(scan_clinical(root, progress=False), "AP", (16, 8),
                                             progress=False, on_error="skip")
        assert ids == ["P2"] and x.shape == (1, 16, 8, 1)
        return ids
    return Trial(call, str(path), (root,))


def make_empty_patient_folder(tmp):
    root = clinical_dataset(tmp)
    (root / "Normal" / "P2").mkdir()
    return scan_trial(root, root / "Normal" / "P2")


def make_one_view_only(tmp):
    root = tmp / "data"
    write_patient(root / "Damaged" / "P2", names={"LAT image": None})
    return scan_trial(root, root / "Damaged" / "P2")


def make_two_candidates(tmp):
    root = clinical_dataset(tmp)
    Image.fromarray(xray()).save(root / "Normal" / "P1" / "AP" / "ap.png")
    return scan_trial(root, root / "Normal" / "P1")


def make_duplicate_ids(tmp):
    root = clinical_dataset(tmp)
    write_patient(root / "Damaged" / "P1", seed=3)
    return scan_trial(root, root / "Damaged" / "P1")


def make_duplicate_ids_unicode(tmp):
    root = tmp / "data"
    write_patient(root / "Normal" / unicodedata.normalize("NFC", "José"))
    write_patient(root / "Damaged" / unicodedata.normalize("NFD", "josé"), seed=3)
    return scan_trial(root, root / "Damaged" / unicodedata.normalize("NFD", "josé"))


def make_names_with_spaces(tmp):
    root = tmp / "data"
    write_patient(root / "Normal" / " ID  (3) ", names={"LAT image": "LAT/LAT .png", "Ap_Vertebra": "AP/Ap Vertebra.png"})
    path = root / "Normal" / " ID  (3) " / "LAT" / "LAT .png"

    def check(ds):
        (p,) = ds.patients
        assert p.patient_id == "ID (3)" and p.views["LAT"].image_path == path
        assert set(ds.renamed["path"]) >= {path, root / "Normal" / " ID  (3) " / "AP" / "Ap Vertebra.png"}
    return scan_trial(root, path, check)


def make_unicode_names(tmp):
    root = tmp / "data"
    write_patient(root / "Normal" / "Пациент 李 №1")

    def check(ds):
        (p,) = ds.patients
        assert p.patient_id == "Пациент 李 №1" and p.has_all_masks
        img, masks = load_view(p, "AP")
        assert img.shape == SHAPE and masks.any()
    return scan_trial(root, root / "Normal" / "Пациент 李 №1", check)


def make_trailing_dots(tmp):
    root = tmp / "data"
    write_patient(root / "Normal" / "P1.", names={"AP image": "AP/AP.jpg.", "Lat_Vertebra": "LAT/Lat_Vertebra.png.."})
    path = root / "Normal" / "P1." / "AP" / "AP.jpg."

    def check(ds):
        (p,) = ds.patients
        assert p.views["AP"].image_path == path and p.has_all_masks
        assert path in set(ds.renamed["path"])
    return scan_trial(root, path, check)


def make_broken_link_xray(tmp):
    root = clinical_dataset(tmp, names={"AP image": None})
    path = root / "Normal" / "P1" / "AP" / "AP.jpg"
    os.symlink(tmp / "nowhere" / "AP.jpg", path)
    return scan_trial(root, root / "Normal" / "P1")


def make_broken_link_mask(tmp):
    root = clinical_dataset(tmp, names={"Lat_Vertebra": None})
    path = root / "Normal" / "P1" / "LAT" / "Lat_Vertebra.png"
    os.symlink(tmp / "nowhere.png", path)

    def check(audit):
        assert audit.patients_per_class.loc["Normal", "usable"] == 1  # the patient stays, without that mask
        assert audit.mask_coverage.set_index("structure").loc["Lat_Vertebra", "n_masks"] == 0
    return audit_trial(root, path, check)


def make_symlink_loop(tmp):
    root = clinical_dataset(tmp)
    loop = root / "Normal" / "P1" / "AP" / "again"
    os.symlink("..", loop)
    return scan_trial(root, loop, lambda ds: check_that(len(ds.patients) == 1 and ds.patients[0].has_all_masks))


def make_unknown_class_folder(tmp):
    root = clinical_dataset(tmp)
    write_patient(root / "Abnormal" / "P9")
    return scan_trial(root, root / "Abnormal", lambda ds: check_that([p.patient_id for p in ds.patients] == ["P1"]))


def make_unknown_file(tmp):
    root = clinical_dataset(tmp)
    path = root / "Normal" / "P1" / "notes.txt"
    path.write_text("scoliosis follow-up\n")
    return scan_trial(root, path)


def make_empty_root(tmp):
    (tmp / "data").mkdir()
    return Trial(lambda: scan_clinical(tmp / "data", progress=False), str(tmp / "data"), (tmp,))


def make_missing_root(tmp):
    return Trial(lambda: scan_clinical(tmp / "nope", progress=False), str(tmp / "nope"), (tmp,))


def make_root_is_file(tmp):
    p = tmp / "data.zip"
    p.write_bytes(b"PK\x03\x04")
    return Trial(lambda: scan_clinical(p, progress=False), str(p), (tmp,))


# ============================================================================================
# makers: AASCE


def _aasce(tmp, **kw) -> tuple[Path, Path]:
    root = fake_aasce(tmp / "aasce", **kw)
    return root, root / "labels" / "training"


def _edit_csv(path: Path, edit) -> None:
    rows = [r.split(",") for r in path.read_text().splitlines()]
    edit(rows)
    path.write_text("".join(",".join(r) + "\n" for r in rows))


def _load_aasce(root: Path, subject: Path, check=None) -> Trial:
    return Trial(lambda: load_aasce(root), str(subject), (root,), check)


def make_aasce_wrong_count(tmp):
    root, lab = _aasce(tmp)
    _edit_csv(lab / "landmarks.csv", lambda rows: rows[1].pop())
    return _load_aasce(root, lab / "landmarks.csv")


def make_aasce_nan(tmp):
    root, lab = _aasce(tmp)
    _edit_csv(lab / "landmarks.csv", lambda rows: rows[2].__setitem__(5, "nan"))
    return _load_aasce(root, lab / "landmarks.csv")


def make_aasce_non_numeric(tmp):
    root, lab = _aasce(tmp)
    _edit_csv(lab / "angles.csv", lambda rows: rows[0].__setitem__(1, "n/a"))
    return _load_aasce(root, lab / "angles.csv")


def make_aasce_outside_corners(tmp):
    root, lab = _aasce(tmp, mat=False)

    def edit(rows):
        rows[0][0] = "-0.1"  # x of T1 top-left, left of the image
        rows[0][68 + 67] = "1.2"  # y of L5 bottom-right, below the image

    _edit_csv(lab / "landmarks.csv", edit)

    def check(frame):
        assert frame.n_clipped.tolist() == [2, 0, 0]
        lm = frame.landmarks[0]
        assert lm[0, 0, 0] == 0 and lm[-1, 3, 1] == 59
    return _load_aasce(root, lab / "landmarks.csv", check)


def make_aasce_row_mismatch(tmp):
    root, lab = _aasce(tmp)
    with open(lab / "filenames.csv", "a") as f:
        f.write("sunhl-1th-09-Jan-2017-199 A AP.jpg\n")
    return _load_aasce(root, lab / "landmarks.csv")


def make_aasce_missing_image(tmp):
    root, lab = _aasce(tmp)
    name = (lab / "filenames.csv").read_text().splitlines()[1]
    (root / "data" / "training" / name).unlink()
    return _load_aasce(root, root / "data" / "training" / name)


def make_aasce_no_labels(tmp):
    root, lab = _aasce(tmp)
    shutil.rmtree(root / "labels")
    return _load_aasce(root, lab)


def make_aasce_mat_disagrees(tmp):
    from scipy.io import savemat

    root, lab = _aasce(tmp)
    name = (lab / "filenames.csv").read_text().splitlines()[0]
    savemat(lab / f"{name}.mat", {"p2": np.zeros((68, 2))})
    return _load_aasce(root, lab / f"{name}.mat")


def make_landmarks_nan(tmp):
    from spinelib.data.aasce import vertebra_mask

    lm = np.zeros((17, 4, 2))
    lm[3, 1, 0] = np.nan
    return Trial(lambda: vertebra_mask(lm, (60, 30)), "landmarks", (tmp,))


# ============================================================================================
# makers: papermill parameters


def parameter_maker(subject: str, **params) -> Callable[[Path], Trial]:
    def make(tmp):
        return Trial(lambda: check_parameters(**params), subject, (tmp,))
    make.__name__ = f"make_param_{subject}"
    return make


def make_profile_override_unknown(tmp):
    return Trial(lambda: get_profile("tiny", epochs=3), "epochs", (tmp,))
