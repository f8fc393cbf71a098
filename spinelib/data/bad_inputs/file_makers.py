"""Makers of the bad-input corpus, single files: truncated, empty, misnamed and odd images and masks,
DICOM files; and the small helpers every maker uses (:class:`Trial`, :func:`clinical_dataset`,
:func:`scan_trial`, :func:`audit_trial`, :func:`check_that`). Each maker takes a temporary folder
and returns the :class:`Trial` to run there."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from spinelib.core.imageio import (
    image_size,
    read_mask,
    read_xray,
)
from spinelib.data.audit import audit_clinical
from spinelib.data.clinical import scan_clinical
from spinelib.data.clinical_arrays import load_view
from spinelib.data.tiny_datasets import (
    SHAPE,
    expected_mask,
    write_patient,
)


@dataclass(frozen=True)
class Trial:
    """What a maker built: the call to try, what its outcome must name, the trees to protect."""

    call: Callable[[], Any]
    subject: str  # a file path, or a parameter name
    roots: tuple[Path, ...]
    check: Callable[[Any], None] | None = None  # more assertions on the result (loaded, ...)


# makers: small helpers


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A 1-bit PNG whose IHDR claims ``width x height`` with one tiny IDAT chunk (~70 bytes): a
    decompression bomb's header without its pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))
    return path


def write_dicom(path: Path, frames: np.ndarray | None, *, bits: int = 16, bits_stored: int | None = None,
                signed: bool = False, photometric: str = "MONOCHROME2", syntax=None, encapsulated: bytes | None = None,
                shape: tuple[int, int] | None = None, preamble: bool = True, modality: str = "DX", **tags) -> Path:
    """Write a DICOM file with pydicom (the corpus's and the tests' one writer).

    ``frames``: ``(H, W)`` or ``(N, H, W)`` pixels, or ``None`` with ``shape`` for a file without
    pixel data (or with ``encapsulated`` bytes, e.g. a compressed stream, as its one fragment);
    ``bits`` allocated (8 or 16, ``signed`` for 16), ``bits_stored`` (default ``bits``); ``syntax``:
    the transfer syntax (default explicit VR little endian); ``preamble=False`` leaves out the
    128-byte preamble and ``DICM``; extra ``tags`` as pydicom keywords (``PixelSpacing=[0.2, 0.2]``).
    """
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
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    if frames is not None:
        frames = np.asarray(frames)
        shape = frames.shape[-2:]
        if frames.ndim == 3:
            ds.NumberOfFrames = frames.shape[0]
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    for key, value in tags.items():
        setattr(ds, key, value)
    if encapsulated is not None:
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([encapsulated])
        ds["PixelData"].VR = "OB"
    elif frames is not None:
        dtype = {(8, False): "u1", (16, False): "<u2", (16, True): "<i2"}[(bits, signed)]
        ds.PixelData = np.ascontiguousarray(frames, dtype=dtype).tobytes()
        ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=preamble)
    return path


def _dicom(path: Path, array: np.ndarray | None, **kw) -> Path:
    """The corpus's DICOM: a 12-bit computed radiograph (CR)."""
    return write_dicom(path, array, bits_stored=12, modality="CR", **kw)


def noise_image(shape=(40, 30), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _truncated(path: Path, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noise_image((120, 80))).save(path, format=fmt)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _reader(path: Path, fn=read_xray, check=None, **kw) -> Trial:
    return Trial(lambda: fn(path, **kw), str(path), (path.parent,), check)


def clinical_dataset(tmp: Path, **patient_kw) -> Path:
    """``tmp/data/Normal/P1`` in the canonical layout (kwargs to ``write_patient``)."""
    root = tmp / "data"
    write_patient(root / "Normal" / "P1", **patient_kw)
    return root


def scan_trial(root: Path, subject: Path, check=None) -> Trial:
    return Trial(lambda: scan_clinical(root, progress=False), str(subject), (root,), check)


def audit_trial(root: Path, subject: Path, check=None) -> Trial:
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
    return _reader(p, check=lambda img: check_that(img.shape == (8, 6) and abs(int(img.mean()) - 90) <= 1))


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
    return _reader(p, check=lambda img: check_that(img.shape == (4, 4) and (img == 150).all()))


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
    return _reader(p, fn=read_mask, check=lambda m: check_that(m.sum() == 18 and m[1:4, 1:7].all()))


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
    return _reader(p, check=lambda img: check_that(img[0, 0] == 0 and img[-1, -1] == 255 and img.dtype == np.uint8))


def make_rgb_xray(tmp):
    p = tmp / "AP.jpg"
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # a red-tinted scan
    Image.fromarray(rgb).save(p, quality=100)
    return _reader(p, check=lambda img: check_that(img.ndim == 2 and abs(int(img.mean()) - 60) <= 2))  # 0.299 * 200


def make_rgb_mask(tmp):
    p = tmp / "m.png"
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[1:3, 1:5] = (255, 0, 0)  # a red structure on black
    Image.fromarray(rgb).save(p)
    return _reader(p, fn=read_mask, check=lambda m: check_that(m.dtype == bool and m.sum() == 8 and m[1:3, 1:5].all()))


def make_gray_mask(tmp):
    p = tmp / "m.png"
    a = np.zeros((6, 6), np.uint8)
    a[2:4] = 255
    Image.fromarray(a, "L").save(p)  # 8-bit grayscale where the dataset uses 1-bit
    return _reader(p, fn=read_mask, check=lambda m: check_that(m.sum() == 12 and m[2:4].all()))


def make_palette_mask(tmp):
    p = tmp / "m.png"
    a = np.zeros((6, 6), np.uint8)
    a[:, 2] = 255
    Image.fromarray(a, "L").convert("P").save(p)
    return _reader(p, fn=read_mask, check=lambda m: check_that(m.sum() == 6 and m[:, 2].all()))


def make_cmyk_jpeg(tmp):
    p = tmp / "x.jpg"
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).convert("CMYK").save(p)
    return _reader(p, check=lambda img: check_that(img.shape == (8, 8) and 100 < img.mean() < 160))


def make_multipage_tiff(tmp):
    p = tmp / "x.tif"
    pages = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (10, 200)]
    pages[0].save(p, save_all=True, append_images=pages[1:])
    return _reader(p, check=lambda img: check_that((img == 10).all()))


def make_huge_png(tmp):
    p = png_header_only(tmp / "huge.png", 20_000, 20_000)

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
    return _reader(p, check=lambda img: check_that(img[0, 0] == 255 and img[0, -1] == 0))


def make_dicom_no_pixels(tmp):
    return _reader(_dicom(tmp / "nopix.dcm", None, shape=(8, 8)))


def make_dicom_garbage(tmp):
    p = tmp / "bad.dcm"
    p.write_bytes(b"not a dicom file at all")
    return _reader(p)


# ============================================================================================
# makers: a dataset tree, scanned or audited


def make_mask_other_size_audit(tmp):
    root = clinical_dataset(tmp, mask_shapes={"Ap_Pedicle": (40, 24)})
    return audit_trial(root, root / "Normal" / "P1" / "AP" / "Ap_Pedicle.png")


def make_mask_other_size_load(tmp):
    root = clinical_dataset(tmp, mask_shapes={"Ap_Pedicle": (40, 24)})
    path = root / "Normal" / "P1" / "AP" / "Ap_Pedicle.png"
    return Trial(lambda: load_view(scan_clinical(root, progress=False).patients[0], "AP"), str(path), (root,))


def make_mask_0_1(tmp):
    root = clinical_dataset(tmp, mask_mode="L01")
    path = root / "Normal" / "P1" / "AP" / "Ap_Vertebra.png"

    def check(audit):
        assert audit.problems.empty, audit.problems.to_string()
        np.testing.assert_allclose(audit.mask_coverage["mean"], 3 * 8 / (48 * 24))  # as the 0/255 bars
    return audit_trial(root, path, check)


def make_mask_0_128_255(tmp):
    root = clinical_dataset(tmp)
    a = expected_mask("Ap_Vertebra").astype(np.uint8) * 255
    a[2, :] = 128  # a grey row: three levels
    return audit_trial(root, _replace_mask(root, "Ap_Vertebra", a))


def make_mask_antialiased(tmp):
    from skimage.filters import gaussian

    root = clinical_dataset(tmp)
    a = np.clip(np.rint(255 * gaussian(expected_mask("Lat_Vertebra").astype(float), 1.0) * 2), 0, 255).astype(np.uint8)
    return audit_trial(root, _replace_mask(root, "Lat_Vertebra", a))


def make_mask_jpeg(tmp):
    root = clinical_dataset(tmp)
    a = expected_mask("Ap_Pedicle").astype(np.uint8) * 255
    return audit_trial(root, _replace_mask(root, "Ap_Pedicle", a, name="Ap_Pedicle.jpg", quality=75))


def make_empty_mask(tmp):
    root = clinical_dataset(tmp)
    path = _replace_mask(root, "Lat_Disk_Height", np.zeros(SHAPE, np.uint8))

    def check(audit):  # flagged, and still loaded (all zeros)
        _, masks = load_view(scan_clinical(root, progress=False).patients[0], "LAT")
        assert masks.shape[-1] == 5 and not masks[..., 1].any() and masks[..., 0].any()
    return audit_trial(root, path, check)


def make_inverted_mask(tmp):
    root = clinical_dataset(tmp)
    a = (~expected_mask("Ap_Spinous_Process")).astype(np.uint8) * 255
    return audit_trial(root, _replace_mask(root, "Ap_Spinous_Process", a))


def make_blank_xray(tmp):
    root = clinical_dataset(tmp, names={"AP image": None})
    path = root / "Normal" / "P1" / "AP" / "AP.jpg"
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(path)
    return audit_trial(root, path)


def check_that(condition: bool) -> None:
    assert condition
