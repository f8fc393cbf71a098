"""Robust reading and writing of X-rays and masks.

Every reader returns a plain NumPy array with one convention, whatever the file holds:

- :func:`read_xray` -> 2-D ``uint8`` grayscale (JPEG, PNG, TIFF, BMP via Pillow; DICOM via pydicom);
- :func:`read_mask` -> 2-D ``bool`` (any grey level above 0 is foreground; transparent pixels are
  background);
- :func:`read_mask_levels` -> the same mask and the distinct grey levels of the file (the audit flags
  masks with more than two levels: anti-aliased or JPEG-compressed);
- :func:`image_size` -> ``(height, width)`` from the file header, without decoding pixels.

Anything that cannot be read (empty, truncated, not an image, too large, DICOM without pixel data
or with a compression no installed decoder handles) raises :class:`ImageReadError`, a
``ValueError`` that names the file and the problem. Size limits are checked from the header
before any pixel is decoded: ``max_pixels`` (default 80 megapixels) is the one limit that decides,
Pillow's own decompression-bomb guard is lifted while a header is parsed.

Writers (:func:`save_png`, :func:`save_jpeg`, :func:`atomic_write_bytes`) write to a temporary file
in the target folder and then ``os.replace`` it, so an interrupted run leaves either the old file or
the new one, never half a file.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS: int = 80_000_000
"""Largest image (height x width) read by default: 80 megapixels, about 80 MB as uint8."""

DICOM_SUFFIXES = (".dcm", ".dicom")
_PIL_GRAY_MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "PA", "La")


class ImageReadError(ValueError):
    """A file that cannot be read as an image: ``cannot read <path>: <problem>``."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"cannot read {self.path}: {problem}")


# --------------------------------------------------------------------------------------------
# helpers shared by the readers


def _check_file(path: str | os.PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}: {path!r}")
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            raise FileNotFoundError(f"cannot read {p}: broken symbolic link (to {os.readlink(p)})")
        raise FileNotFoundError(f"cannot read {p}: no such file")
    if p.is_dir():
        raise ImageReadError(p, "is a directory, not an image file")
    if p.stat().st_size == 0:
        raise ImageReadError(p, "empty file (0 bytes)")
    return p


def has_dicm_magic(path: Path) -> bool:
    """``DICM`` at byte 128: a DICOM Part 10 file with its preamble."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_dicom(path: Path) -> bool:
    """DICOM by suffix or by the ``DICM`` magic at byte 128 (part 10 files)."""
    if path.suffix.lower().strip(". ") in {s.strip(".") for s in DICOM_SUFFIXES}:
        return True
    return has_dicm_magic(path)


def _check_pixels(path: Path, height: int, width: int, max_pixels: float | None) -> None:
    if max_pixels is not None and height * width > max_pixels:
        raise ImageReadError(
            path,
            f"image is {height} x {width} = {height * width:,} pixels, above the limit of "
            f"{int(max_pixels):,} pixels (max_pixels); not decoded to protect memory",
        )


_PIL_OPEN_LOCK = threading.Lock()


def _open_pil(path: Path) -> Image.Image:
    """Open lazily (header only). Pillow's decompression-bomb guard is lifted while the header is
    parsed (under a lock, then restored), so a huge image can report its size and the caller's
    ``max_pixels`` check, made right after, is the one that decides."""
    try:
        with _PIL_OPEN_LOCK:
            limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except UnidentifiedImageError as e:
        raise ImageReadError(path, "not a recognised image format (JPEG, PNG, TIFF, BMP or DICOM)") from e
    except PermissionError as e:
        raise ImageReadError(path, f"permission denied ({e.strerror})") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(path, f"corrupt image header ({e})") from e


def _load_pil(path: Path, im: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
    except Image.DecompressionBombError as e:
        raise ImageReadError(path, f"image too large to decode safely: {e}") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageReadError(path, f"truncated or corrupt image data ({e})") from e


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale any numeric array to ``uint8`` by its own range.

    .. math:: u = \\operatorname{round}\\left(255\\,\\frac{x - \\min x}{\\max x - \\min x}\\right)

    A constant image becomes all zeros; NaN becomes 0. ``uint8`` input is returned unchanged.
    """
    a = np.asarray(array)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    a = a.astype(np.float64, copy=False)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    out = np.where(finite, (a - lo) * (255.0 / (hi - lo)), 0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _pil_to_gray(path: Path, im: Image.Image) -> np.ndarray:
    """Pillow image -> 2-D array: colour by luminance, 16-bit/float kept as numbers."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return np.asarray(im)
    if mode in _PIL_GRAY_MODES:
        if mode not in ("L", "1"):
            # ITU-R 601-2 luminance, L = 0.299 R + 0.587 G + 0.114 B; alpha is dropped
            im = im.convert("RGB").convert("L") if mode in ("RGBA", "LA", "PA", "La") else im.convert("L")
        return np.asarray(im)
    raise ImageReadError(path, f"unsupported pixel mode {mode!r}")


# --------------------------------------------------------------------------------------------
# DICOM


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


def _dicom_size(path: Path) -> tuple[int, int]:
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

    h, w = _dicom_size(path)
    _check_pixels(path, h, w, max_pixels)
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

    p = _check_file(path)
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


def _read_dicom(path: Path, max_pixels: float | None, raw: bool = False) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# public readers


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header only (no pixel decoding); DICOM too."""
    p = _check_file(path)
    if is_dicom(p):
        return _dicom_size(p)
    with _open_pil(p) as im:
        w, h = im.size
    return int(h), int(w)


def read_xray(
    path: str | os.PathLike,
    size: tuple[int, int] | None = None,
    max_pixels: float | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read an X-ray as a 2-D ``uint8`` grayscale array, optionally resized to ``size=(h, w)``.

    - RGB/RGBA/palette images become luminance :math:`L = 0.299R + 0.587G + 0.114B` (alpha dropped);
    - 16-bit and float images are scaled to 0..255 by their own min/max (see :func:`to_uint8`);
    - DICOM: first frame, modality LUT (rescale), VOI LUT or first window, ``MONOCHROME1``
      inverted so bone is bright (:func:`read_dicom`, which also returns the pixel spacing);
    - images above ``max_pixels`` pixels raise :class:`ImageReadError` before any decoding;
    - EXIF orientation is not applied (masks carry none, so X-ray and masks stay aligned);
    - with ``size``, the image is resized with anti-aliasing (:func:`resize_image`); large JPEGs
      are first decoded at a reduced DCT scale that stays at least twice ``size`` (much faster,
      same result up to rounding).
    """
    p = _check_file(path)
    if is_dicom(p):
        img = _read_dicom(p, max_pixels)
    else:
        with _open_pil(p) as im:
            w, h = im.size
            _check_pixels(p, h, w, max_pixels)
            if size is not None and im.format == "JPEG":
                check_size(size)
                im.draft(im.mode if im.mode in ("L", "RGB") else None, (2 * size[1], 2 * size[0]))
            _load_pil(p, im)
            img = to_uint8(_pil_to_gray(p, im))
    if size is not None:
        img = resize_image(img, size)
    return img


def _mask_gray(path: Path, shape: tuple[int, int] | None, max_pixels: float | None) -> tuple[np.ndarray, np.ndarray]:
    """``(grey levels as a 2-D array, foreground bool)`` of a mask file (see :func:`read_mask`)."""
    if is_dicom(path):
        h, w = _dicom_size(path)
        _check_mask_shape(path, (h, w), shape)
        raw = np.asarray(_read_dicom(path, max_pixels, raw=True))
        return raw, raw > 0
    with _open_pil(path) as im:
        w, h = im.size
        _check_mask_shape(path, (h, w), shape)
        _check_pixels(path, h, w, max_pixels)
        _load_pil(path, im)
        if im.mode == "1":
            fg = np.asarray(im, dtype=bool).copy()
            return fg.astype(np.uint8) * 255, fg
        if im.mode in ("RGBA", "LA", "PA", "La"):
            rgba = im.convert("RGBA")
            alpha = np.asarray(rgba)[..., 3]
            gray = np.asarray(rgba.convert("RGB").convert("L"))
            if alpha.min() == alpha.max():  # constant alpha: it carries nothing
                return gray, gray > 0
            opaque = alpha > 0
            if not (gray[opaque] > 0).any():
                return alpha, opaque  # black paint everywhere: the alpha channel is the mask
            return np.where(opaque, gray, 0).astype(np.uint8), (gray > 0) & opaque
        gray = _pil_to_gray(path, im)
        return gray, gray > 0


def read_mask(
    path: str | os.PathLike,
    shape: tuple[int, int] | None = None,
    max_pixels: float | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read a binary mask as a 2-D ``bool`` array: any grey value above 0 is foreground.

    - 1-bit, 0/255, 0/1 or 0/128 masks are all read the same way (foreground = non-zero);
    - grey levels in between (anti-aliased edges, JPEG noise) count as foreground too, so a thin
      line is never lost; :func:`read_mask_levels` tells such masks apart;
    - colour masks are converted to luminance first, so any non-black pixel counts;
    - with an alpha channel, transparent pixels (alpha 0) are background; if every opaque pixel is
      black (a mask painted in the alpha channel only), the alpha channel is the mask;
    - if ``shape=(h, w)`` is given, the header size is checked before decoding and a different size
      raises :class:`ImageReadError` naming both sizes.
    """
    return _mask_gray(_check_file(path), shape, max_pixels)[1]


def read_mask_levels(
    path: str | os.PathLike,
    shape: tuple[int, int] | None = None,
    max_pixels: float | None = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, levels)``: the mask of :func:`read_mask` and the sorted distinct grey values of the
    file (after colour-to-luminance conversion; a 1-bit mask has levels ``[0, 255]``).

    A clean binary mask has at most two levels; more means anti-aliased edges or lossy compression.
    """
    gray, fg = _mask_gray(_check_file(path), shape, max_pixels)
    if gray.dtype == np.uint8:
        levels = np.flatnonzero(np.bincount(gray.ravel(), minlength=256)).astype(np.uint8)
    else:
        levels = np.unique(gray)
    return fg, levels


def _check_mask_shape(path: Path, actual: tuple[int, int], expected: tuple[int, int] | None) -> None:
    if expected is not None and tuple(int(s) for s in expected[:2]) != tuple(actual):
        raise ImageReadError(
            path,
            f"mask is {actual[0]} x {actual[1]} (h x w) but {expected[0]} x {expected[1]} was expected",
        )


# --------------------------------------------------------------------------------------------
# resizing


def check_size(size) -> tuple[int, int]:
    """Validate ``size=(height, width)`` (positive integers) and return it as a tuple."""
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError) as e:
        raise TypeError(f"size must be (height, width) integers, got {size!r}") from e
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive (height, width), got {size!r}")
    return h, w


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D grayscale image to ``size=(h, w)`` (bilinear, Gaussian anti-aliasing when
    shrinking, as ``skimage.transform.resize``); returns ``uint8``."""
    from skimage.transform import resize

    h, w = check_size(size)
    img = np.asarray(img)
    if img.ndim != 2:
        raise ValueError(f"resize_image expects a 2-D image, got shape {img.shape}")
    if img.shape == (h, w):
        return to_uint8(img)
    src = to_uint8(img).astype(np.float32)
    out = resize(src, (h, w), order=1, anti_aliasing=img.shape[0] > h or img.shape[1] > w,
                 preserve_range=True, mode="edge")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_mask(mask: np.ndarray, size: tuple[int, int], method: str = "nearest",
                threshold: float = 0.5) -> np.ndarray:
    """Resize a 2-D binary mask to ``size=(h, w)``; returns ``bool``.

    ``method="nearest"``: each output pixel takes the input pixel at its centre. It keeps the
    expected foreground area of every structure, thin lines included (they may become dotted).

    ``method="area"``: the foreground fraction :math:`f` of each output pixel (bilinear with
    Gaussian anti-aliasing) is thresholded, :math:`f \\ge` ``threshold``. Smoother outlines, but at
    ``threshold=0.5`` lines thinner than about half an output pixel vanish (the LAT vertebral
    lines of the clinical masks, 3-6 px wide at ~2900 px height, mostly disappear at 256 x 128).
    """
    from skimage.transform import resize

    h, w = check_size(size)
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"resize_mask expects a 2-D mask, got shape {m.shape}")
    m = m > 0
    if m.shape == (h, w):
        return m.copy()
    if method == "nearest":
        return resize(m, (h, w), order=0, anti_aliasing=False, preserve_range=True, mode="edge").astype(bool)
    if method == "area":
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        frac = resize(m.astype(np.float32), (h, w), order=1,
                      anti_aliasing=m.shape[0] > h or m.shape[1] > w, preserve_range=True, mode="edge")
        return frac >= threshold
    raise ValueError(f"unknown resize method {method!r}; use 'nearest' or 'area'")


# --------------------------------------------------------------------------------------------
# atomic writers


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    An interruption leaves either the previous file or the complete new one; the temporary file is
    removed on any error. Returns the path written.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        mode = (p.stat().st_mode & 0o777) if p.exists() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p


def _to_pil(array: np.ndarray, for_jpeg: bool = False) -> Image.Image:
    a = np.asarray(array)
    if a.dtype == bool:
        if for_jpeg:
            raise TypeError("a boolean mask should be saved as PNG (JPEG would blur its edges)")
        return Image.fromarray(a.astype(np.uint8) * 255).convert("1")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.dtype == np.uint8 and a.ndim == 2:
        return Image.fromarray(a, "L")
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] in (3, 4):
        if for_jpeg and a.shape[2] == 4:
            a = a[..., :3]
        return Image.fromarray(np.ascontiguousarray(a), "RGB" if a.shape[2] == 3 else "RGBA")
    if a.dtype == np.uint16 and a.ndim == 2 and not for_jpeg:
        return Image.fromarray(a.astype("<u2"))
    raise TypeError(
        f"cannot save an array of dtype {a.dtype} and shape {a.shape}; expected uint8 (H,W) or "
        f"(H,W,3/4){'' if for_jpeg else ', uint16 (H,W) or bool (H,W)'}; "
        "convert floats with spinelib.core.imageio.to_uint8 first"
    )


def save_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save a ``bool`` mask (1-bit PNG, as the clinical masks), ``uint8`` gray/RGB(A) or ``uint16``
    image as PNG, atomically (see :func:`atomic_write_bytes`)."""
    buf = io.BytesIO()
    _to_pil(array).save(buf, format="PNG", optimize=False)
    return atomic_write_bytes(path, buf.getvalue())


def save_jpeg(path: str | os.PathLike, array: np.ndarray, quality: int = 95) -> Path:
    """Save a ``uint8`` gray or RGB image as JPEG at ``quality`` (1-100), atomically."""
    if not isinstance(quality, (int, np.integer)) or not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be an integer in 1..100, got {quality!r}")
    buf = io.BytesIO()
    _to_pil(array, for_jpeg=True).save(buf, format="JPEG", quality=int(quality))
    return atomic_write_bytes(path, buf.getvalue())
