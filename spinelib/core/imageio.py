"""Robust reading and writing of X-rays and masks.

Every reader returns a plain NumPy array with one convention, whatever the file holds:

- :func:`read_xray` -> 2-D ``uint8`` grayscale (JPEG, PNG, TIFF, BMP via Pillow; DICOM via
  :func:`spinelib.core.dicom.read_dicom`);
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

The DICOM reader lives in :mod:`spinelib.core.dicom`, the error and the checks every reader shares
in :mod:`spinelib.core.image_files`; both are re-exported here, so ``spinelib.core.imageio.read_dicom``
and ``spinelib.core.imageio.ImageReadError`` keep working.
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

from spinelib.core.dicom import (  # re-exported: DICOM's public names keep this import path too
    DICOM_EXTRA_HINT,
    dicom_pixel_spacing,
    dicom_size,
    read_dicom,
    read_dicom_pixels,
)
from spinelib.core.image_files import (  # re-exported: every reader's shared ground
    DEFAULT_MAX_PIXELS,
    DICOM_SUFFIXES,
    ImageReadError,
    check_file,
    check_pixels,
    has_dicm_magic,
    is_dicom,
    to_uint8,
)

__all__ = ["DEFAULT_MAX_PIXELS", "DICOM_EXTRA_HINT", "DICOM_SUFFIXES", "ImageReadError", "atomic_write_bytes",
           "check_size", "dicom_pixel_spacing", "has_dicm_magic", "image_size", "is_dicom", "read_dicom", "read_mask",
           "read_mask_levels", "read_xray", "resize_image", "resize_mask", "save_jpeg", "save_png", "to_uint8"]

_PIL_GRAY_MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "PA", "La")


# --------------------------------------------------------------------------------------------
# Pillow: headers and pixels


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
# public readers


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header only (no pixel decoding); DICOM too."""
    p = check_file(path)
    if is_dicom(p):
        return dicom_size(p)
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
    p = check_file(path)
    if is_dicom(p):
        img = read_dicom_pixels(p, max_pixels)
    else:
        with _open_pil(p) as im:
            w, h = im.size
            check_pixels(p, h, w, max_pixels)
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
        h, w = dicom_size(path)
        _check_mask_shape(path, (h, w), shape)
        raw = np.asarray(read_dicom_pixels(path, max_pixels, raw=True))
        return raw, raw > 0
    with _open_pil(path) as im:
        w, h = im.size
        _check_mask_shape(path, (h, w), shape)
        check_pixels(path, h, w, max_pixels)
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
    return _mask_gray(check_file(path), shape, max_pixels)[1]


def read_mask_levels(
    path: str | os.PathLike,
    shape: tuple[int, int] | None = None,
    max_pixels: float | None = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, levels)``: the mask of :func:`read_mask` and the sorted distinct grey values of the
    file (after colour-to-luminance conversion; a 1-bit mask has levels ``[0, 255]``).

    A clean binary mask has at most two levels; more means anti-aliased edges or lossy compression.
    """
    gray, fg = _mask_gray(check_file(path), shape, max_pixels)
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


def sampling_matrix(n_out: int, n_in: int, offset: float, scale: float, order: int = 1,
                    mode: str = "edge") -> np.ndarray:
    """``(n_out, n_in)`` weights that resample a 1-D signal: output pixel ``i`` (centre at relative
    position :math:`u = (i + \\tfrac12)/n_{out}`) reads the input at relative position
    :math:`t = \\mathrm{offset} + u\\,\\mathrm{scale}`, i.e. input index :math:`t\\,n_{in} - \\tfrac12`
    (pixel centres aligned, the convention of ``skimage.transform.resize``). Linear (``order=1``) or
    nearest (``order=0``); rows whose :math:`t` falls outside [0, 1] are zero.

    ``mode``: how an index between the outermost pixel centre and the edge is read: ``"edge"``
    repeats the outermost pixel, ``"mirror"`` mirrors the signal about it (``skimage.transform.resize``'s
    default ``mode="reflect"``)."""
    if mode not in ("edge", "mirror"):
        raise ValueError(f"mode must be 'edge' or 'mirror', got {mode!r}")
    u = (np.arange(n_out) + 0.5) / n_out
    t = offset + u * scale
    v = t * n_in - 0.5
    if mode == "mirror" and n_in > 1:
        v = np.where(v < 0, -v, v)
        v = np.where(v > n_in - 1, 2.0 * (n_in - 1) - v, v)
    v = np.clip(v, 0.0, n_in - 1.0)
    w = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    if order == 0:
        w[rows, np.minimum(np.floor(v + 0.5).astype(int), n_in - 1)] = 1.0
    else:
        lo = np.floor(v).astype(int)
        f = (v - lo).astype(np.float32)
        w[rows, lo] += 1.0 - f
        w[rows, np.minimum(lo + 1, n_in - 1)] += f
    w[(t < -1e-9) | (t > 1 + 1e-9)] = 0.0
    return w


def resize_probabilities(prob: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(h, w)`` or ``(h, w, C)`` probabilities to ``size=(H, W)`` bilinearly, pixel centres
    aligned and the border mirrored, without anti-aliasing: the values of
    ``skimage.transform.resize(prob, ..., order=1, anti_aliasing=False)`` (to float32 round-off),
    as two matrix products per channel (:func:`sampling_matrix`) instead of a spline filter in
    float64. Bringing a network's output back to a full-size X-ray (thousands of pixels a side)
    costs a tenth of a second. Returns ``float32`` of shape ``(H, W)`` or ``(H, W, C)`` (a transposed view)."""
    H, W = check_size(size)
    p = np.asarray(prob, dtype=np.float32)
    if p.ndim not in (2, 3):
        raise ValueError(f"resize_probabilities expects (h, w) or (h, w, C) probabilities, got shape {p.shape}")
    flat = p.ndim == 2
    p = p[..., None] if flat else p
    h, w, c = p.shape
    rows = sampling_matrix(H, h, 0.0, 1.0, mode="mirror")
    cols = sampling_matrix(W, w, 0.0, 1.0, mode="mirror")
    tall = (rows @ p.reshape(h, w * c)).reshape(H, w, c)  # rows first: (H, w, C)
    out = np.tensordot(tall, cols, axes=([1], [1])).transpose(0, 2, 1)  # then columns: (H, C, W) -> (H, W, C)
    return out[..., 0] if flat else out


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
