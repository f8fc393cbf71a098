"""A corpus of bad and odd inputs, each made here in a temporary folder, each with a decided behaviour.

:data:`CASES` is the one table: ``(kind, maker, outcome, expected, behaviour)``. Outcomes:

``error``     the call raises the expected exception type, and its message names the file (or the
              parameter) and contains every keyword;
``excluded``  :func:`~spinelib.data.clinical.scan_clinical` excludes the patient, reason has the keywords;
``ignored``   the scan ignores the file or folder, ``ignored_reasons`` has the keywords;
``problem``   :func:`~spinelib.data.audit.audit_clinical` lists the file in ``problems`` with that kind;
``warned``    the loader skips the patient with a warning naming the file and the problem;
``loaded``    the input is read, and a check asserts what was read.

Every call runs inside :func:`spinelib.core.provenance.assert_unchanged` over the input tree: no
loader may add, remove or change an input file. ``python -m scripts.make_reliability_table`` runs the
same table (:func:`run_case`) and writes the book's table of behaviours.
"""

from __future__ import annotations

import os
import shutil
import struct
import time
import tracemalloc
import unicodedata
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spinelib.core.config import check_parameters, get_profile
from spinelib.core.imageio import ImageReadError, image_size, read_mask, read_xray
from spinelib.core.provenance import assert_unchanged
from spinelib.data.aasce import load_aasce
from spinelib.data.audit import PROBLEM_KINDS, audit_clinical
from spinelib.data.clinical import load_segmentation_arrays, load_view, scan_clinical

try:
    from fixtures_aasce import fake_aasce
    from fixtures_clinical import SHAPE, expected_mask, write_patient, xray
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.fixtures_aasce import fake_aasce
    from tests.fixtures_clinical import SHAPE, expected_mask, write_patient, xray

OUTCOMES = ("error", "excluded", "ignored", "problem", "warned", "loaded")


@dataclass(frozen=True)
class Trial:
    """What a maker built: the call to try, what its outcome must name, the trees to protect."""

    call: Callable[[], Any]
    subject: str  # a file path, or a parameter name
    roots: tuple[Path, ...]
    check: Callable[[Any], None] | None = None  # more assertions on the result (loaded, ...)


@dataclass(frozen=True)
class Case:
    kind: str
    make: Callable[[Path], Trial]
    outcome: str
    expected: tuple  # error: (exception type, *keywords); problem: (problem kind, *keywords); else keywords
    behaviour: str


# ============================================================================================
# makers: small helpers


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A 1-bit PNG whose IHDR claims ``width x height`` with one tiny IDAT chunk (~70 bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))
    return path


def _dicom(path: Path, array: np.ndarray | None, photometric: str = "MONOCHROME2", syntax=None,
           shape: tuple[int, int] | None = None, encapsulated: bytes | None = None) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID, "CR"
    h, w = shape if shape is not None else array.shape
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = h, w, 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if encapsulated is not None:
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([encapsulated])
        ds["PixelData"].VR = "OB"
    elif array is not None:
        ds.PixelData = np.ascontiguousarray(array, dtype="<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _noise(shape=(40, 30), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _truncated(path: Path, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_noise((120, 80))).save(path, format=fmt)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _reader(path: Path, fn=read_xray, check=None, **kw) -> Trial:
    return Trial(lambda: fn(path, **kw), str(path), (path.parent,), check)


def _dataset(tmp: Path, **patient_kw) -> Path:
    """``tmp/data/Normal/P1`` in the canonical layout (kwargs to ``write_patient``)."""
    root = tmp / "data"
    write_patient(root / "Normal" / "P1", **patient_kw)
    return root


def _scan(root: Path, subject: Path, check=None) -> Trial:
    return Trial(lambda: scan_clinical(root, progress=False), str(subject), (root,), check)


def _audit(root: Path, subject: Path, check=None) -> Trial:
    return Trial(lambda: audit_clinical(scan_clinical(root, progress=False), coverage_size=None, progress=False),
                 str(subject), (root,), check)


def _replace_mask(root: Path, structure: str, array: np.ndarray, name: str | None = None, **save) -> Path:
    view = "AP" if structure.startswith("Ap") else "LAT"
    folder = root / "Normal" / "P1" / view
    (folder / f"{structure}.png").unlink()
    path = folder / (name or f"{structure}.png")
    Image.fromarray(array).save(path, **save)
    return path


# ============================================================================================
# makers: single image files


def make_truncated_jpeg(tmp):
    return _reader(_truncated(tmp / "x.jpg", "JPEG"))


def make_truncated_png(tmp):
    return _reader(_truncated(tmp / "m.png", "PNG"), fn=read_mask)


def make_zero_byte(tmp):
    p = tmp / "AP.jpg"
    p.write_bytes(b"")
    return _reader(p)


def make_text_as_png(tmp):
    p = tmp / "Ap_Vertebra.png"
    p.write_text("patient 169: images missing\n")
    return _reader(p, fn=read_mask)


def make_jpeg_named_png(tmp):
    p = tmp / "AP.png"
    Image.fromarray(np.full((8, 6), 90, np.uint8)).save(p, format="JPEG", quality=100)
    return _reader(p, check=lambda img: _assert(img.shape == (8, 6) and abs(int(img.mean()) - 90) <= 1))


def make_directory_named_jpg(tmp):
    p = tmp / "AP.jpg"
    p.mkdir()
    return Trial(lambda: read_xray(p), str(p), (tmp,))


def make_missing_file(tmp):
    return Trial(lambda: read_xray(tmp / "gone.jpg"), str(tmp / "gone.jpg"), (tmp,))


def make_png_alpha(tmp):
    p = tmp / "x.png"
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 1] = 255  # green, fully transparent: alpha is dropped from X-rays
    Image.fromarray(rgba, "RGBA").save(p)
    return _reader(p, check=lambda img: _assert(img.shape == (4, 4) and (img == 150).all()))


def make_alpha_only_mask(tmp):
    p = tmp / "m.png"
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:5, 3:6, 3] = 255  # black paint, the shape only in the alpha channel
    Image.fromarray(rgba, "RGBA").save(p)
    want = np.zeros((8, 8), bool)
    want[2:5, 3:6] = True
    return _reader(p, fn=read_mask, check=lambda m: np.testing.assert_array_equal(m, want))


def make_transparent_background_mask(tmp):
    p = tmp / "m.png"
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere ...
    rgba[1:4, 1:7, 3] = 255  # ... but opaque only on the structure
    Image.fromarray(rgba, "RGBA").save(p)
    return _reader(p, fn=read_mask, check=lambda m: _assert(m.sum() == 18 and m[1:4, 1:7].all()))


def make_16bit_png(tmp):
    p = tmp / "x.png"
    Image.fromarray(np.linspace(1000, 5000, 30 * 20).reshape(30, 20).astype(np.uint16)).save(p)

    def check(img):
        assert img.dtype == np.uint8 and img.min() == 0 and img.max() == 255
        assert np.all(np.diff(img.ravel().astype(int)) >= 0)
    return _reader(p, check=check)


def make_float_tiff(tmp):
    p = tmp / "x.tif"
    Image.fromarray(np.linspace(-1, 1, 20 * 10, dtype=np.float32).reshape(20, 10)).save(p)
    return _reader(p, check=lambda img: _assert(img[0, 0] == 0 and img[-1, -1] == 255 and img.dtype == np.uint8))


def make_rgb_xray(tmp):
    p = tmp / "AP.jpg"
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # a red-tinted scan
    Image.fromarray(rgb).save(p, quality=100)
    return _reader(p, check=lambda img: _assert(img.ndim == 2 and abs(int(img.mean()) - 60) <= 2))  # 0.299 * 200


def make_rgb_mask(tmp):
    p = tmp / "m.png"
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[1:3, 1:5] = (255, 0, 0)  # a red structure on black
    Image.fromarray(rgb).save(p)
    return _reader(p, fn=read_mask, check=lambda m: _assert(m.dtype == bool and m.sum() == 8 and m[1:3, 1:5].all()))


def make_gray_mask(tmp):
    p = tmp / "m.png"
    a = np.zeros((6, 6), np.uint8)
    a[2:4] = 255
    Image.fromarray(a, "L").save(p)  # 8-bit grayscale where the dataset uses 1-bit
    return _reader(p, fn=read_mask, check=lambda m: _assert(m.sum() == 12 and m[2:4].all()))


def make_palette_mask(tmp):
    p = tmp / "m.png"
    a = np.zeros((6, 6), np.uint8)
    a[:, 2] = 255
    Image.fromarray(a, "L").convert("P").save(p)
    return _reader(p, fn=read_mask, check=lambda m: _assert(m.sum() == 6 and m[:, 2].all()))


def make_cmyk_jpeg(tmp):
    p = tmp / "x.jpg"
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).convert("CMYK").save(p)
    return _reader(p, check=lambda img: _assert(img.shape == (8, 8) and 100 < img.mean() < 160))


def make_multipage_tiff(tmp):
    p = tmp / "x.tif"
    pages = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (10, 200)]
    pages[0].save(p, save_all=True, append_images=pages[1:])
    return _reader(p, check=lambda img: _assert((img == 10).all()))


def make_huge_png(tmp):
    p = _png_header_only(tmp / "huge.png", 20_000, 20_000)

    def call():
        assert image_size(p) == (20_000, 20_000)  # the header alone still gives the size
        tracemalloc.start()
        try:
            read_xray(p)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak < 8 * 2**20, f"read_xray allocated {peak / 2**20:.0f} MiB before refusing"
    return Trial(call, str(p), (tmp,))


def make_dicom_compressed(tmp):
    from pydicom.uid import JPEGLSLossless

    p = _dicom(tmp / "jls.dcm", None, shape=(8, 8), syntax=JPEGLSLossless, encapsulated=b"\xff\xd8garbage")
    return _reader(p)


def make_dicom_monochrome1(tmp):
    a = np.tile(np.linspace(100, 4000, 16), (8, 1)).astype(np.uint16)
    p = _dicom(tmp / "m1.dcm", a, photometric="MONOCHROME1")
    # MONOCHROME1: high values are dark; inverted so bone is bright as in MONOCHROME2
    return _reader(p, check=lambda img: _assert(img[0, 0] == 255 and img[0, -1] == 0))


def make_dicom_no_pixels(tmp):
    return _reader(_dicom(tmp / "nopix.dcm", None, shape=(8, 8)))


def make_dicom_garbage(tmp):
    p = tmp / "bad.dcm"
    p.write_bytes(b"not a dicom file at all")
    return _reader(p)


# ============================================================================================
# makers: a dataset tree, scanned or audited


def make_mask_other_size_audit(tmp):
    root = _dataset(tmp, mask_shapes={"Ap_Pedicle": (40, 24)})
    return _audit(root, root / "Normal" / "P1" / "AP" / "Ap_Pedicle.png")


def make_mask_other_size_load(tmp):
    root = _dataset(tmp, mask_shapes={"Ap_Pedicle": (40, 24)})
    path = root / "Normal" / "P1" / "AP" / "Ap_Pedicle.png"
    return Trial(lambda: load_view(scan_clinical(root, progress=False).patients[0], "AP"), str(path), (root,))


def make_mask_0_1(tmp):
    root = _dataset(tmp, mask_mode="L01")
    path = root / "Normal" / "P1" / "AP" / "Ap_Vertebra.png"

    def check(audit):
        assert audit.problems.empty, audit.problems.to_string()
        np.testing.assert_allclose(audit.mask_coverage["mean"], 3 * 8 / (48 * 24))  # as the 0/255 bars
    return _audit(root, path, check)


def make_mask_0_128_255(tmp):
    root = _dataset(tmp)
    a = expected_mask("Ap_Vertebra").astype(np.uint8) * 255
    a[2, :] = 128  # a grey row: three levels
    return _audit(root, _replace_mask(root, "Ap_Vertebra", a))


def make_mask_antialiased(tmp):
    from skimage.filters import gaussian

    root = _dataset(tmp)
    a = np.clip(np.rint(255 * gaussian(expected_mask("Lat_Vertebra").astype(float), 1.0) * 2), 0, 255).astype(np.uint8)
    return _audit(root, _replace_mask(root, "Lat_Vertebra", a))


def make_mask_jpeg(tmp):
    root = _dataset(tmp)
    a = expected_mask("Ap_Pedicle").astype(np.uint8) * 255
    return _audit(root, _replace_mask(root, "Ap_Pedicle", a, name="Ap_Pedicle.jpg", quality=75))


def make_empty_mask(tmp):
    root = _dataset(tmp)
    path = _replace_mask(root, "Lat_Disk_Height", np.zeros(SHAPE, np.uint8))

    def check(audit):  # flagged, and still loaded (all zeros)
        _, masks = load_view(scan_clinical(root, progress=False).patients[0], "LAT")
        assert masks.shape[-1] == 5 and not masks[..., 1].any() and masks[..., 0].any()
    return _audit(root, path, check)


def make_inverted_mask(tmp):
    root = _dataset(tmp)
    a = (~expected_mask("Ap_Spinous_Process")).astype(np.uint8) * 255
    return _audit(root, _replace_mask(root, "Ap_Spinous_Process", a))


def make_blank_xray(tmp):
    root = _dataset(tmp, names={"AP image": None})
    path = root / "Normal" / "P1" / "AP" / "AP.jpg"
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(path)
    return _audit(root, path)


def _truncated_xray(path: Path) -> Path:
    """A fixture-size (48 x 24) noisy JPEG X-ray cut in half."""
    Image.fromarray(_noise(SHAPE)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def make_truncated_xray_in_dataset(tmp):
    root = _dataset(tmp, names={"LAT image": None})
    path = root / "Normal" / "P1" / "LAT" / "LAT.jpg"
    _truncated_xray(path)
    return _audit(root, path)


def make_truncated_xray_training(tmp):
    root = _dataset(tmp, names={"AP image": None})
    write_patient(root / "Normal" / "P2", seed=2)
    path = _truncated_xray(root / "Normal" / "P1" / "AP" / "AP.jpg")

    def call():
        x, y, ids = load_segmentation_arrays(scan_clinical(root, progress=False), "AP", (16, 8),
                                             progress=False, on_error="skip")
        assert ids == ["P2"] and x.shape == (1, 16, 8, 1)
        return ids
    return Trial(call, str(path), (root,))


def make_empty_patient_folder(tmp):
    root = _dataset(tmp)
    (root / "Normal" / "P2").mkdir()
    return _scan(root, root / "Normal" / "P2")


def make_one_view_only(tmp):
    root = tmp / "data"
    write_patient(root / "Damaged" / "P2", names={"LAT image": None})
    return _scan(root, root / "Damaged" / "P2")


def make_two_candidates(tmp):
    root = _dataset(tmp)
    Image.fromarray(xray()).save(root / "Normal" / "P1" / "AP" / "ap.png")
    return _scan(root, root / "Normal" / "P1")


def make_duplicate_ids(tmp):
    root = _dataset(tmp)
    write_patient(root / "Damaged" / "P1", seed=3)
    return _scan(root, root / "Damaged" / "P1")


def make_duplicate_ids_unicode(tmp):
    root = tmp / "data"
    write_patient(root / "Normal" / unicodedata.normalize("NFC", "José"))
    write_patient(root / "Damaged" / unicodedata.normalize("NFD", "josé"), seed=3)
    return _scan(root, root / "Damaged" / unicodedata.normalize("NFD", "josé"))


def make_names_with_spaces(tmp):
    root = tmp / "data"
    write_patient(root / "Normal" / " ID  (3) ", names={"LAT image": "LAT/LAT .png", "Ap_Vertebra": "AP/Ap Vertebra.png"})
    path = root / "Normal" / " ID  (3) " / "LAT" / "LAT .png"

    def check(ds):
        (p,) = ds.patients
        assert p.patient_id == "ID (3)" and p.views["LAT"].image_path == path
        assert set(ds.renamed["path"]) >= {path, root / "Normal" / " ID  (3) " / "AP" / "Ap Vertebra.png"}
    return _scan(root, path, check)


def make_unicode_names(tmp):
    root = tmp / "data"
    write_patient(root / "Normal" / "Пациент 李 №1")

    def check(ds):
        (p,) = ds.patients
        assert p.patient_id == "Пациент 李 №1" and p.has_all_masks
        img, masks = load_view(p, "AP")
        assert img.shape == SHAPE and masks.any()
    return _scan(root, root / "Normal" / "Пациент 李 №1", check)


def make_trailing_dots(tmp):
    root = tmp / "data"
    write_patient(root / "Normal" / "P1.", names={"AP image": "AP/AP.jpg.", "Lat_Vertebra": "LAT/Lat_Vertebra.png.."})
    path = root / "Normal" / "P1." / "AP" / "AP.jpg."

    def check(ds):
        (p,) = ds.patients
        assert p.views["AP"].image_path == path and p.has_all_masks
        assert path in set(ds.renamed["path"])
    return _scan(root, path, check)


def make_broken_link_xray(tmp):
    root = _dataset(tmp, names={"AP image": None})
    path = root / "Normal" / "P1" / "AP" / "AP.jpg"
    os.symlink(tmp / "nowhere" / "AP.jpg", path)
    return _scan(root, root / "Normal" / "P1")


def make_broken_link_mask(tmp):
    root = _dataset(tmp, names={"Lat_Vertebra": None})
    path = root / "Normal" / "P1" / "LAT" / "Lat_Vertebra.png"
    os.symlink(tmp / "nowhere.png", path)

    def check(audit):
        assert audit.patients_per_class.loc["Normal", "usable"] == 1  # the patient stays, without that mask
        assert audit.mask_coverage.set_index("structure").loc["Lat_Vertebra", "n_masks"] == 0
    return _audit(root, path, check)


def make_symlink_loop(tmp):
    root = _dataset(tmp)
    loop = root / "Normal" / "P1" / "AP" / "again"
    os.symlink("..", loop)
    return _scan(root, loop, lambda ds: _assert(len(ds.patients) == 1 and ds.patients[0].has_all_masks))


def make_unknown_class_folder(tmp):
    root = _dataset(tmp)
    write_patient(root / "Abnormal" / "P9")
    return _scan(root, root / "Abnormal", lambda ds: _assert([p.patient_id for p in ds.patients] == ["P1"]))


def make_unknown_file(tmp):
    root = _dataset(tmp)
    path = root / "Normal" / "P1" / "notes.txt"
    path.write_text("scoliosis follow-up\n")
    return _scan(root, path)


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


def _params(subject: str, **params) -> Callable[[Path], Trial]:
    def make(tmp):
        return Trial(lambda: check_parameters(**params), subject, (tmp,))
    make.__name__ = f"make_param_{subject}"
    return make


def make_profile_override_unknown(tmp):
    return Trial(lambda: get_profile("tiny", epochs=3), "epochs", (tmp,))


def _assert(condition: bool) -> None:
    assert condition


# ============================================================================================
# the table

E, X, I, P, W, L = OUTCOMES[0], OUTCOMES[1], OUTCOMES[2], OUTCOMES[3], OUTCOMES[4], OUTCOMES[5]

CASES: list[Case] = [
    # --- single image files
    Case("truncated JPEG", make_truncated_jpeg, E, (ImageReadError, "truncated"),
         "error: the file and 'truncated or corrupt image data'"),
    Case("truncated PNG (mask)", make_truncated_png, E, (ImageReadError, "truncated"),
         "error: the file and 'truncated or corrupt image data'"),
    Case("zero-byte image", make_zero_byte, E, (ImageReadError, "empty file", "0 bytes"),
         "error: 'empty file (0 bytes)'"),
    Case("text file named .png", make_text_as_png, E, (ImageReadError, "not a recognised image"),
         "error: 'not a recognised image format'"),
    Case("JPEG content under a .png name", make_jpeg_named_png, L, (),
         "loaded: the content decides the format, not the suffix"),
    Case("folder named like an image (AP.jpg/)", make_directory_named_jpg, E, (ImageReadError, "directory"),
         "error: 'is a directory, not an image file'"),
    Case("file that does not exist", make_missing_file, E, (FileNotFoundError, "no such file"),
         "FileNotFoundError naming the file"),
    Case("PNG X-ray with an alpha channel", make_png_alpha, L, (),
         "loaded: luminance 0.299R+0.587G+0.114B, alpha dropped"),
    Case("mask painted in the alpha channel only", make_alpha_only_mask, L, (),
         "loaded: when every opaque pixel is black, the alpha channel is the mask"),
    Case("colour mask with a transparent background", make_transparent_background_mask, L, (),
         "loaded: transparent pixels are background"),
    Case("16-bit PNG X-ray", make_16bit_png, L, (), "loaded: scaled to 0-255 by its own min/max, order kept"),
    Case("float32 TIFF X-ray", make_float_tiff, L, (), "loaded: scaled to 0-255 by its own min/max"),
    Case("RGB X-ray where grayscale is expected", make_rgb_xray, L, (), "loaded: converted to luminance"),
    Case("RGB (colour-coded) mask", make_rgb_mask, L, (), "loaded: any non-black pixel is foreground"),
    Case("8-bit grayscale mask where 1-bit is expected", make_gray_mask, L, (), "loaded: value > 0 is foreground"),
    Case("palette (P mode) mask", make_palette_mask, L, (), "loaded: palette resolved, value > 0 is foreground"),
    Case("CMYK JPEG", make_cmyk_jpeg, L, (), "loaded: converted to luminance"),
    Case("multi-page TIFF", make_multipage_tiff, L, (), "loaded: the first page"),
    Case("20000 x 20000 image (header-only PNG)", make_huge_png, E, (ImageReadError, "400,000,000 pixels", "max_pixels"),
         "error from the header before decoding (max_pixels, default 80 MP); image_size still works; < 8 MiB allocated"),
    Case("DICOM with a compressed transfer syntax (JPEG-LS)", make_dicom_compressed, E,
         (ImageReadError, "cannot decode dicom pixel data", "jpeg-ls"),
         "error naming the transfer syntax no installed decoder handles"),
    Case("DICOM MONOCHROME1", make_dicom_monochrome1, L, (), "loaded: inverted so bone is bright (as MONOCHROME2)"),
    Case("DICOM without pixel data", make_dicom_no_pixels, E, (ImageReadError, "no pixel data"),
         "error: 'DICOM file has no pixel data'"),
    Case("garbage with a .dcm suffix", make_dicom_garbage, E, (ImageReadError, "dicom"),
         "error: 'not a DICOM image (no DICM preamble ...)'"),
    # --- masks and X-rays inside a dataset
    Case("mask of another size than its X-ray (audit)", make_mask_other_size_audit, P, ("size mismatch", "40 x 24", "48 x 24"),
         "audit problem 'size mismatch' naming both sizes and the X-ray"),
    Case("mask of another size than its X-ray (loading)", make_mask_other_size_load, E,
         (ImageReadError, "mask is 40 x 24", "its x-ray"), "error naming the mask, the X-ray and both sizes"),
    Case("mask with values 0/1", make_mask_0_1, L, (), "loaded like 0/255 (value > 0); not flagged"),
    Case("mask with values 0/128/255", make_mask_0_128_255, P, ("non-binary mask", "3 grey levels"),
         "loaded (value > 0); audit problem 'non-binary mask'"),
    Case("anti-aliased mask", make_mask_antialiased, P, ("non-binary mask", "grey levels"),
         "loaded (value > 0, thin lines kept); audit problem 'non-binary mask'"),
    Case("mask saved as JPEG (lossy)", make_mask_jpeg, P, ("non-binary mask",),
         "loaded (value > 0); audit problem 'non-binary mask'"),
    Case("all-empty mask", make_empty_mask, P, ("empty mask",),
         "loaded as all zeros; audit problem 'empty mask'"),
    Case("inverted mask (white background)", make_inverted_mask, P, ("mostly foreground", "inverted"),
         "loaded; audit problem 'mostly foreground' (inverted?)"),
    Case("blank (constant) X-ray", make_blank_xray, P, ("blank X-ray", "same value"),
         "loaded; audit problem 'blank X-ray'"),
    Case("truncated X-ray inside a dataset", make_truncated_xray_in_dataset, P, ("unreadable", "truncated"),
         "audit problem 'unreadable' (the audit decodes every X-ray, not only its header)"),
    Case("truncated X-ray when building training arrays", make_truncated_xray_training, W, ("truncated", "skipped"),
         "on_error='raise' (default): error; on_error='skip': patient dropped with a warning naming the file"),
    # --- folder layout
    Case("patient folder with no files", make_empty_patient_folder, X, ("empty patient folder",),
         "patient excluded: 'empty patient folder (no files)'"),
    Case("patient folder with only one view", make_one_view_only, X, ("missing LAT image",),
         "patient excluded: 'missing LAT image'"),
    Case("two candidate files for one view", make_two_candidates, X, ("ambiguous", "2 candidates for AP image"),
         "patient excluded: 'ambiguous: 2 candidates for AP image: ...'"),
    Case("duplicate patient IDs (Normal and Damaged)", make_duplicate_ids, X, ("duplicate patient id", "also in Normal"),
         "both patients excluded: 'duplicate patient id'"),
    Case("duplicate IDs differing in case and Unicode form (NFC/NFD)", make_duplicate_ids_unicode, X,
         ("duplicate patient id",), "both excluded: IDs compared after NFC normalisation and case folding"),
    Case("names with spaces (' ID  (3) ', 'LAT .png')", make_names_with_spaces, L, (),
         "loaded: spaces collapsed in the ID, file listed in 'renamed'"),
    Case("unicode patient folder name", make_unicode_names, L, (), "loaded: the ID is kept as written"),
    Case("trailing dots (AP.jpg., P1.)", make_trailing_dots, L, (), "loaded: listed in 'renamed'"),
    Case("X-ray that is a broken symbolic link", make_broken_link_xray, X, ("broken symbolic link", "ap/ap.jpg"),
         "patient excluded: 'AP image AP/AP.jpg is a broken symbolic link (to ...)'"),
    Case("mask that is a broken symbolic link", make_broken_link_mask, P, ("broken link", "lat_vertebra"),
         "audit problem 'broken link'; the patient stays usable without that mask"),
    Case("symbolic link loop in a patient folder", make_symlink_loop, I, ("symbolic link loop",),
         "ignored: 'symbolic link loop'; the scan terminates"),
    Case("class folder with an unknown name (Abnormal/)", make_unknown_class_folder, I, ("not a class folder",),
         "ignored: 'not a class folder (expected Normal or Damaged)'"),
    Case("unknown file in a patient folder (notes.txt)", make_unknown_file, I, ("neither a view image",),
         "ignored: 'name is neither a view image (AP, LAT) nor a known mask'"),
    Case("empty dataset root", make_empty_root, E, (ValueError, "no class folders", "empty"),
         "error: 'no class folders ... (the folder is empty)'"),
    Case("dataset root that does not exist", make_missing_root, E, (FileNotFoundError, "does not exist"),
         "FileNotFoundError naming the folder"),
    Case("dataset root that is a file", make_root_is_file, E, (ValueError, "is a file"),
         "error: 'is a file, not a folder'"),
    # --- AASCE labels
    Case("AASCE landmarks row with 135 values", make_aasce_wrong_count, E, (ValueError, "row 2 has 135 values", "expected 136"),
         "error naming the CSV, the row and both counts"),
    Case("AASCE landmarks with NaN", make_aasce_nan, E, (ValueError, "row 3", "nan"),
         "error naming the CSV and the row"),
    Case("AASCE non-numeric angle", make_aasce_non_numeric, E, (ValueError, "row 1", "non-numeric"),
         "error naming the CSV and the row"),
    Case("AASCE corners outside the image", make_aasce_outside_corners, L, (),
         "loaded: corners clipped to the image, counted in n_clipped"),
    Case("AASCE filenames/landmarks row-count mismatch", make_aasce_row_mismatch, E,
         (ValueError, "3 rows", "lists 4 images"), "error naming both files and both counts"),
    Case("AASCE image listed but absent", make_aasce_missing_image, E, (FileNotFoundError, "row 2 of filenames.csv"),
         "FileNotFoundError naming the image and its row"),
    Case("AASCE root without labels/", make_aasce_no_labels, E, (FileNotFoundError, "does not exist"),
         "FileNotFoundError naming the missing folder"),
    Case("AASCE .mat landmarks disagree with the CSV", make_aasce_mat_disagrees, E, (ValueError, "differ from landmarks.csv"),
         "error naming the .mat file, the row and the difference"),
    Case("vertebra landmarks with NaN (array)", make_landmarks_nan, E, (ValueError, "nan", "T4"),
         "error naming the vertebra (no silently empty mask)"),
    # --- papermill parameters
    Case("parameter seed as a string", _params("seed", seed="0"), E, (TypeError, "integer", "str"),
         "TypeError naming the parameter and the type"),
    Case("parameter seed negative", _params("seed", seed=-1), E, (ValueError, "non-negative"),
         "ValueError: 'seed must be a non-negative integer'"),
    Case("unknown profile name", _params("profile", profile="fast"), E, (ValueError, "unknown profile", "tiny, ci, paper"),
         "ValueError listing the known profiles"),
    Case("profile given as a number", _params("profile", profile=3), E, (TypeError, "int"),
         "TypeError: 'profile must be a name (str)'"),
    Case("output_dir given as a number", _params("output_dir", output_dir=5), E, (TypeError, "path"),
         "TypeError: 'parameter output_dir must be a path (str) or None'"),
    Case("unknown profile field override", make_profile_override_unknown, E, (ValueError, "unknown profile field"),
         "ValueError naming the field"),
]
"""The corpus: one row per kind of bad or odd input."""


def case_table() -> pd.DataFrame:
    """The table as a frame: ``kind, outcome, expected, behaviour`` (for the book's page)."""
    rows = []
    for c in CASES:
        exp = ([c.expected[0].__name__] + list(c.expected[1:])) if c.outcome == "error" else list(c.expected)
        rows.append({"kind": c.kind, "outcome": c.outcome, "expected": ", ".join(map(str, exp)),
                     "behaviour": c.behaviour})
    return pd.DataFrame(rows)


# ============================================================================================
# running one case


@dataclass
class CaseResult:
    kind: str
    outcome: str
    message: str  # the error, reason, problem or warning text (empty for loaded)
    seconds: float


def _has_keywords(text: str, keywords, workdir: Path) -> None:
    """Every keyword in ``text``, searched with the temporary folder's path blanked out (pytest
    names that folder after the test, so a keyword could match the path instead of the problem)."""
    low = text.replace(str(workdir), "<tmp>").lower()
    missing = [k for k in keywords if k.lower() not in low]
    assert not missing, f"missing {missing} in: {text}"


def run_case(case: Case, workdir: Path) -> CaseResult:
    """Make the input under ``workdir``, run the call inside :func:`assert_unchanged`, and assert the
    decided outcome; returns what was observed. Raises ``AssertionError`` on any deviation
    (:class:`~spinelib.core.provenance.InputsChangedError` when an input file changed)."""
    assert case.outcome in OUTCOMES, case.outcome
    workdir.mkdir(parents=True, exist_ok=True)
    trial = case.make(workdir)
    t0 = time.perf_counter()
    message = ""
    with assert_unchanged(*trial.roots):
        if case.outcome == "error":
            exc_type, *keywords = case.expected
            try:
                trial.call()
            except exc_type as e:
                message = str(e)
            else:
                raise AssertionError(f"{case.kind}: no {exc_type.__name__} raised")
            assert trial.subject in message, f"{case.kind}: {trial.subject!r} not named in: {message}"
            _has_keywords(message, keywords, workdir)
        elif case.outcome == "warned":
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = trial.call()
            texts = [str(w.message) for w in caught if trial.subject in str(w.message)]
            assert texts, f"{case.kind}: no warning names {trial.subject}: {[str(w.message) for w in caught]}"
            message = texts[0]
            _has_keywords(message, case.expected, workdir)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = trial.call()
            if case.outcome == "excluded":
                rows = result.excluded[result.excluded["folder"] == Path(trial.subject)]
                assert len(rows) == 1, f"{case.kind}: {trial.subject} not excluded:\n{result.excluded}"
                assert Path(trial.subject) not in {p.folder for p in result.patients}
                message = rows["reason"].iloc[0]
                _has_keywords(message, case.expected, workdir)
            elif case.outcome == "ignored":
                assert Path(trial.subject) in result.ignored, f"{case.kind}: {trial.subject} not ignored"
                message = result.ignored_reasons[Path(trial.subject)]
                _has_keywords(message, case.expected, workdir)
            elif case.outcome == "problem":
                kind, *keywords = case.expected
                assert kind in PROBLEM_KINDS, kind
                rows = result.problems[result.problems["path"] == Path(trial.subject)]
                rows = rows[rows["kind"] == kind]
                assert len(rows) == 1, f"{case.kind}: no {kind!r} problem for {trial.subject}:\n{result.problems}"
                message = f"{kind}: {rows['problem'].iloc[0]}"
                _has_keywords(message, keywords, workdir)
        if case.outcome != "error" and trial.check is not None:
            trial.check(result)
    return CaseResult(case.kind, case.outcome, message, time.perf_counter() - t0)


# ============================================================================================
# tests


def test_the_corpus_is_broad_and_well_formed():
    assert len(CASES) >= 30
    kinds = [c.kind for c in CASES]
    assert len(set(kinds)) == len(kinds), "duplicate kinds"
    assert {c.outcome for c in CASES} == set(OUTCOMES)
    for c in CASES:
        if c.outcome == "error":
            assert isinstance(c.expected[0], type) and issubclass(c.expected[0], Exception) and len(c.expected) > 1
        elif c.outcome == "problem":
            assert c.expected[0] in PROBLEM_KINDS
        elif c.outcome != "loaded":
            assert c.expected, f"{c.kind}: no keyword to check"
    assert list(case_table().columns) == ["kind", "outcome", "expected", "behaviour"]


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_bad_input(case, tmp_path):
    result = run_case(case, tmp_path)
    assert result.outcome == case.outcome


def test_the_book_page_lists_every_kind():
    page = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
    if not page.exists():
        pytest.skip("docs/reliability.md not generated yet (python -m scripts.make_reliability_table)")
    text = page.read_text()
    missing = [c.kind for c in CASES if " ".join(c.kind.split()).replace("|", "\\|") not in text]
    assert not missing, f"docs/reliability.md is stale, rerun python -m scripts.make_reliability_table: {missing}"


def test_assert_unchanged_catches_a_loader_that_writes(tmp_path):
    root = _dataset(tmp_path)
    bad = Case("a loader that writes", lambda tmp: Trial(lambda: (root / "Normal" / "P1" / "x.txt").write_text("x"),
                                                         "", (root,)), "loaded", (), "")
    from spinelib.core.provenance import InputsChangedError

    with pytest.raises(InputsChangedError, match="added Normal/P1/x.txt"):
        run_case(bad, tmp_path)


def test_training_arrays_raise_by_default_on_unreadable_xray(tmp_path):
    trial = make_truncated_xray_training(tmp_path)
    with assert_unchanged(*trial.roots):
        ds = scan_clinical(tmp_path / "data", progress=False)
        with pytest.raises(ImageReadError, match="truncated") as e:
            load_segmentation_arrays(ds, "AP", (16, 8), progress=False)
        assert trial.subject in str(e.value)
        with pytest.raises(ValueError, match="on_error"):
            load_segmentation_arrays(ds, "AP", (16, 8), progress=False, on_error="ignore")
