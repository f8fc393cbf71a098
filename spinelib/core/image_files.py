"""What every image reader shares (:mod:`spinelib.core.imageio`, :mod:`spinelib.core.dicom`): the
one error, :class:`ImageReadError`; the file and size checks made before any pixel is decoded;
DICOM detection; scaling any numeric pixels to ``uint8``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DEFAULT_MAX_PIXELS: int = 80_000_000
"""Largest image (height x width) read by default: 80 megapixels, about 80 MB as uint8."""

DICOM_SUFFIXES = (".dcm", ".dicom")


class ImageReadError(ValueError):
    """A file that cannot be read as an image: ``cannot read <path>: <problem>``."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"cannot read {self.path}: {problem}")


def check_file(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path` of a non-empty file; ``TypeError`` for a non-path,
    ``FileNotFoundError`` (no file, broken link), :class:`ImageReadError` (a folder, 0 bytes)."""
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


def check_pixels(path: Path, height: int, width: int, max_pixels: float | None) -> None:
    """Raise :class:`ImageReadError` when ``height x width`` is above ``max_pixels`` (None: no limit)."""
    if max_pixels is not None and height * width > max_pixels:
        raise ImageReadError(
            path,
            f"image is {height} x {width} = {height * width:,} pixels, above the limit of "
            f"{int(max_pixels):,} pixels (max_pixels); not decoded to protect memory",
        )


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
