"""DICOM X-rays read as the scanner meant them to be displayed (:func:`read_dicom`): the modality
LUT, then the VOI LUT or the first window, then MONOCHROME1 inverted; only the first frame is
decoded. :func:`dicom_pixel_spacing` gives the pixel spacing and the tag it came from. Compressed
transfer syntaxes need the decoders of ``spinelib[dicom]`` (:data:`DICOM_EXTRA_HINT`). The readers
of :mod:`spinelib.core.imageio` call these for DICOM files, which re-exports them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from spinelib.core.image_files import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    check_file,
    check_pixels,
    has_dicm_magic,
    to_uint8,
)

DICOM_EXTRA_HINT = 'pip install "spinelib[dicom]"'
"""How to get the decoders of the compressed transfer syntaxes (pylibjpeg and its two plugins)."""


def _dicom_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception as e:  # noqa: BLE001 - pydicom raises many types on garbage
            raise ImageReadError(path, f"not a readable DICOM file ({e})") from e
        if "Rows" not in ds or "Columns" not in ds:
            raise ImageReadError(path, "not a DICOM image (no DICM preamble and no Rows/Columns)")
        return ds
    except Exception as e:  # noqa: BLE001
        raise ImageReadError(path, f"not a readable DICOM file ({e})") from e


def dicom_size(path: Path) -> tuple[int, int]:
    """``(rows, columns)`` from the DICOM header alone."""
    ds = _dicom_header(path)
    if "Rows" not in ds or "Columns" not in ds:
        raise ImageReadError(path, "DICOM header has no Rows/Columns (no image)")
    return int(ds.Rows), int(ds.Columns)


def _transfer_syntax(ds):
    """The file's Transfer Syntax UID (Implicit VR Little Endian when the file meta has none)."""
    from pydicom.uid import UID, ImplicitVRLittleEndian

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return UID(str(syntax)) if syntax else ImplicitVRLittleEndian


def _syntax_name(syntax) -> str:
    name = getattr(syntax, "name", "") or ""
    return f"{name} ({syntax})" if name and name != str(syntax) else str(syntax)


def _check_decoder(path: Path, syntax) -> None:
    """Raise :class:`ImageReadError` naming the syntax and ``spinelib[dicom]`` when no installed
    plugin decodes it (JPEG Lossless and JPEG-LS need pylibjpeg-libjpeg or GDCM)."""
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as e:
        raise ImageReadError(path, f"cannot decode DICOM pixel data (transfer syntax {_syntax_name(syntax)}): "
                                   f"pydicom has no decoder for it ({e})") from e
    if not decoder.is_available:
        raise ImageReadError(
            path,
            f"cannot decode DICOM pixel data (transfer syntax {_syntax_name(syntax)}): no decoder installed; "
            f"{DICOM_EXTRA_HINT} installs pylibjpeg, pylibjpeg-libjpeg and pylibjpeg-openjpeg for the "
            "compressed transfer syntaxes",
        )


def dicom_pixel_spacing(ds) -> tuple[tuple[float, float] | None, str | None]:
    """``((row_mm, column_mm), tag)``: the spacing between pixel centres in mm and the tag it came from.

    (0028,0030) *Pixel Spacing* (calibrated to the patient) is preferred; else (0018,1164)
    *Imager Pixel Spacing* (at the detector plane, not corrected for the X-ray's geometric
    magnification). ``(None, None)`` when neither is present or valid. Row spacing is the vertical
    distance between rows (a y step), column spacing the horizontal one (an x step).
    """
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(tag, None)
        if value is None:
            continue
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0:
            return (row, col), tag
    return None, None


def _voi_output_range(ds) -> tuple[float, float] | None:
    """Output range of the VOI transform :func:`pydicom.pixels.apply_voi_lut` applies (None: none).

    VOI LUT sequence: :math:`[0, 2^{n} - 1]`, ``n`` the third LUT Descriptor value; window:
    :math:`[y_{min}, y_{max}]`, the stored-value range (unsigned :math:`[0, 2^{b}-1]`, signed
    :math:`[-2^{b-1}, 2^{b-1}-1]`, ``b`` = Bits Stored) mapped through Rescale Slope/Intercept, or
    the modality LUT's range, as pydicom's ``apply_windowing`` does.
    """
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2 ** bits - 1)
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2 ** bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope", None), ds.get("RescaleIntercept", None)
    if slope is not None and intercept is not None:
        lo, hi = sorted((lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)))
    return lo, hi


def _widen_8_bit_voi_lut(ds):
    """A copy of ``ds`` whose first VOI LUT is declared 16-bit when it is 8-bit (same entries).

    pydicom 3.0's ``apply_voi`` indexes an 8-bit LUT through a ``uint8`` array, so input values
    above 255 wrap around (a 4096-entry 8-bit LUT maps stored 2048 like 0); declaring the same
    entries 16-bit gives the correct lookup. The output range stays the 8-bit one
    (:func:`_voi_output_range` reads the original descriptor).
    """
    seq = ds.get("VOILUTSequence")
    if not seq or int(seq[0].LUTDescriptor[2]) != 8:
        return ds
    import copy

    item = copy.deepcopy(seq[0])
    n, first, _ = item.LUTDescriptor
    item.LUTDescriptor = [n, first, 16]
    out = copy.copy(ds)
    out.VOILUTSequence = [item]
    return out


def _dicom_first_frame(path: Path, max_pixels: float | None):
    """``(header dataset, first frame as stored)``; only the first frame is decoded."""
    from pydicom.pixels import pixel_array

    h, w = dicom_size(path)
    check_pixels(path, h, w, max_pixels)
    try:
        import pydicom

        ds = pydicom.dcmread(path, force=True, defer_size=1024)  # pixel data stays on disk
    except Exception as e:  # noqa: BLE001
        raise ImageReadError(path, f"not a readable DICOM file ({e})") from e
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageReadError(path, "DICOM file has no pixel data (PixelData element missing)")
    syntax = _transfer_syntax(ds)
    _check_decoder(path, syntax)
    try:
        # a Part 10 file is read from disk frame by frame (only frame 0's bytes are read and
        # decoded); a file without the DICM preamble is decoded from the dataset, frame 0 only
        arr = pixel_array(path, index=0) if has_dicm_magic(path) else pixel_array(ds, index=0)
    except Exception as e:  # noqa: BLE001 - corrupt streams raise RuntimeError/ValueError/...
        raise ImageReadError(path, f"cannot decode DICOM pixel data (transfer syntax {_syntax_name(syntax)}): {e}") from e
    return ds, arr


def read_dicom(path: str | os.PathLike, max_pixels: float | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, dict]:
    """Read a DICOM X-ray as it is meant to be displayed: ``(uint8 image, info)``.

    pydicom's documented order (first frame only, decoded alone):

    1. modality LUT: Modality LUT Sequence, else Rescale Slope/Intercept, :math:`v = m\\,s + b`;
    2. VOI: the VOI LUT Sequence (preferred), else the first Window Center/Width
       (:math:`y = ((v - (c - 0.5)) / (w - 1) + 0.5)(y_{max} - y_{min}) + y_{min}`, clipped),
       scaled to 0..255 over the VOI's output range; without either, the modality values are
       scaled by their own min/max (:func:`to_uint8`);
    3. MONOCHROME1 (0 = white) is inverted, :math:`255 - u`, so bone is bright as in MONOCHROME2.

    Colour (RGB/YBR) files become luminance :math:`0.299R + 0.587G + 0.114B` without LUTs.

    ``info``: ``pixel_spacing_mm`` ``(row, column)`` or None and ``pixel_spacing_source``
    (``"PixelSpacing"``, ``"ImagerPixelSpacing"`` or None; see :func:`dicom_pixel_spacing`),
    ``transfer_syntax``, ``photometric``, ``frames`` (in the file), ``bits_stored``,
    ``modality_lut`` (``"rescale"``, ``"lut"`` or None), ``voi`` (``"lut"``, ``"window"`` or None).
    Compressed syntaxes without an installed decoder raise :class:`ImageReadError` naming the
    syntax and ``spinelib[dicom]``.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    p = check_file(path)
    ds, arr = _dicom_first_frame(p, max_pixels)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    spacing, source = dicom_pixel_spacing(ds)
    info = {"pixel_spacing_mm": spacing, "pixel_spacing_source": source,
            "transfer_syntax": _syntax_name(_transfer_syntax(ds)), "photometric": photometric or None,
            "frames": int(ds.get("NumberOfFrames", 1) or 1), "bits_stored": ds.get("BitsStored", None),
            "modality_lut": None, "voi": None}
    if arr.ndim == 3 and int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        rgb = arr[..., :3].astype(np.float64)
        return to_uint8(rgb @ np.array([0.299, 0.587, 0.114])), info  # ITU-R 601-2 luminance
    if arr.ndim != 2:
        raise ImageReadError(p, f"unexpected DICOM pixel array shape {arr.shape}")
    try:
        if ds.get("ModalityLUTSequence"):
            info["modality_lut"] = "lut"
        elif "RescaleSlope" in ds or "RescaleIntercept" in ds:
            info["modality_lut"] = "rescale"
        values = apply_modality_lut(arr, ds)
        out_range = _voi_output_range(ds)
        if out_range is not None and photometric in ("MONOCHROME1", "MONOCHROME2"):
            info["voi"] = "lut" if ds.get("VOILUTSequence") else "window"
            values = apply_voi_lut(values, _widen_8_bit_voi_lut(ds), index=0, prefer_lut=True)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise ImageReadError(p, f"invalid DICOM LUT or window ({e})") from e
    if info["voi"] is not None:
        lo, hi = out_range
        scaled = (np.asarray(values, np.float64) - lo) * (255.0 / max(hi - lo, 1e-12))
        out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    else:
        out = to_uint8(values)
    if photometric == "MONOCHROME1":
        out = 255 - out  # MONOCHROME1: 0 is white; invert so bone is bright as in MONOCHROME2
    return out, info


def read_dicom_pixels(path: Path, max_pixels: float | None, raw: bool = False) -> np.ndarray:
    """DICOM -> 2-D array (first frame). ``raw=False``: :func:`read_dicom`'s display image (uint8);
    ``raw=True``: the stored values of the first frame (masks), no LUT applied."""
    if not raw:
        return read_dicom(path, max_pixels)[0]
    ds, arr = _dicom_first_frame(path, max_pixels)
    if arr.ndim == 3 and int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if arr.ndim != 2:
        raise ImageReadError(path, f"unexpected DICOM pixel array shape {arr.shape}")
    return arr
