"""What every ``spinelib`` subcommand shares: exit codes, the refused-command-line error, the
files' fingerprints, atomic JSON/CSV writing, the prediction schemas and the input block of a
prediction JSON (what was read and how)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

SUMMARY_CSV = "predictions.csv"
MANIFEST = "spinelib-run.json"
"""Written into every ``predict`` output folder: what ran and which files it wrote (``--overwrite``
removes exactly those before writing again)."""
SCHEMA_NAME = "prediction.schema.json"
SCHEMA_ID = "spinelib-prediction/1"
SEG_SCHEMA_NAME = "segmentation.schema.json"
SEG_SCHEMA_ID = "spinelib-segmentation/1"

LIMITS = ("Research use only: AP (frontal) spine X-rays; the shipped model was trained on one public dataset "
          "(AASCE 2019, scoliosis patients). Not a medical device.")


class UsageError(Exception):
    """A refused command line (exit code 2)."""


def report_error(message: str) -> None:
    """``spinelib: message`` on stderr."""
    print(f"spinelib: {message}", file=sys.stderr)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (the input's fingerprint in every prediction JSON)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path: Path, obj) -> Path:
    """``obj`` as indented JSON (no NaN), written atomically."""
    from spinelib.core.imageio import atomic_write_bytes

    return atomic_write_bytes(path, (json.dumps(obj, indent=1, allow_nan=False) + "\n").encode())


def write_csv(path: Path, frame) -> Path:
    """A data frame as CSV without its index, written atomically."""
    from spinelib.core.imageio import atomic_write_bytes

    return atomic_write_bytes(path, frame.to_csv(index=False).encode())


def prediction_schema(kind: str = "landmarks") -> dict:
    """The JSON schema (draft 2020-12) of ``predict``'s JSON (package data): ``kind="landmarks"``
    (:data:`SCHEMA_NAME`, vertebrae and angles) or ``"segmentation"`` (:data:`SEG_SCHEMA_NAME`)."""
    from importlib import resources

    name = {"landmarks": SCHEMA_NAME, "segmentation": SEG_SCHEMA_NAME}[kind]
    return json.loads(resources.files("spinelib").joinpath("schemas", name).read_text())


def validate_prediction(record: dict) -> None:
    """Raise ``ValueError`` naming the first problem when ``record`` breaks its schema (chosen by
    its ``schema`` field: :data:`SCHEMA_ID` or :data:`SEG_SCHEMA_ID`)."""
    import jsonschema

    kind = "segmentation" if isinstance(record, dict) and record.get("schema") == SEG_SCHEMA_ID else "landmarks"
    validator = jsonschema.Draft202012Validator(prediction_schema(kind))
    errors = sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        name = SEG_SCHEMA_NAME if kind == "segmentation" else SCHEMA_NAME
        raise ValueError(f"prediction JSON breaks {name} at {where}: {e.message}")


def read_input(path: Path) -> tuple[np.ndarray, dict]:
    """``(uint8 image, info)``: DICOM through :func:`spinelib.core.dicom.read_dicom` (pixel spacing
    and its tag in ``info``), anything else through :func:`spinelib.core.imageio.read_xray`."""
    from spinelib.core.dicom import read_dicom
    from spinelib.core.imageio import is_dicom, read_xray

    if is_dicom(path):
        image, info = read_dicom(path)
        return image, {**info, "format": "DICOM"}
    from PIL import Image

    image = read_xray(path)
    try:
        with Image.open(path) as im:
            fmt = im.format
    except Exception:  # noqa: BLE001 - the format is informative only
        fmt = None
    return image, {"format": fmt, "pixel_spacing_mm": None, "pixel_spacing_source": None}


def input_record(path: Path, digest: str, shape: tuple[int, int], info: dict) -> dict:
    """The ``input`` block of a prediction JSON: path, name, SHA-256, bytes, format, size, spacing."""
    spacing = info.get("pixel_spacing_mm")
    return {"path": str(path.resolve()), "name": path.name, "sha256": digest, "bytes": path.stat().st_size,
            "format": info.get("format"), "height": int(shape[0]), "width": int(shape[1]),
            "pixel_spacing_mm": None if spacing is None else [float(spacing[0]), float(spacing[1])],
            "pixel_spacing_source": info.get("pixel_spacing_source")}
