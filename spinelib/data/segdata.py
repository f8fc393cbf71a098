"""Segmentation data: train/validation arrays of one view or of the AASCE X-rays, split by patient."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from spinelib.data.splits import patient_split

AASCE_STRUCTURE = "AASCE_Vertebra"
"""Name of the single AASCE structure: the 17 vertebral bodies T1-L5, drawn from the corners."""


@dataclass
class SegmentationData:
    """Train/validation arrays of one segmentation problem, split by patient.

    Images ``float32 (N, H, W, 1)`` in [0, 1]; masks ``float32 (N, H, W, C)``, channel ``c`` is
    ``structures[c]``. ``val_sources`` lets :func:`full_resolution_dice` and the spine crop go back
    to the original files (one entry per validation image; ``train_sources`` likewise).
    """

    name: str
    source: str  # "synthetic", "clinical" or "real AASCE"
    view: str  # "AP" or "LAT"
    structures: tuple[str, ...]
    train_images: np.ndarray
    train_masks: np.ndarray
    val_images: np.ndarray
    val_masks: np.ndarray
    train_ids: list[str]
    val_ids: list[str]
    train_sources: list = field(default_factory=list, repr=False)
    val_sources: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        self.structures = tuple(self.structures)
        for split in ("train", "val"):
            x, y = getattr(self, f"{split}_images"), getattr(self, f"{split}_masks")
            ids = getattr(self, f"{split}_ids")
            if x.ndim != 4 or x.shape[-1] != 1 or y.ndim != 4 or x.shape[:3] != y.shape[:3]:
                raise ValueError(f"{self.name}: {split} images {x.shape} / masks {y.shape} must be (N, H, W, 1) / (N, H, W, C)")
            if len(ids) != len(x):
                raise ValueError(f"{self.name}: {len(ids)} {split} patient ids for {len(x)} images")
            if y.shape[-1] != len(self.structures):
                raise ValueError(f"{self.name}: {y.shape[-1]} mask channels for structures {self.structures}")
        overlap = set(self.train_ids) & set(self.val_ids)
        if overlap:
            raise ValueError(f"{self.name}: patients on both sides of the split: {sorted(overlap)[:5]}")

    @property
    def size(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.train_images.shape[1:3])

    def select(self, structures: Sequence[str] | str) -> SegmentationData:
        """The same split with only the given structures' mask channels."""
        names = [structures] if isinstance(structures, str) else list(structures)
        unknown = [s for s in names if s not in self.structures]
        if unknown or not names:
            raise ValueError(f"{self.name}: structures {unknown or names} not among {self.structures}")
        idx = [self.structures.index(s) for s in names]
        return replace(self, structures=tuple(names), train_masks=self.train_masks[..., idx],
                       val_masks=self.val_masks[..., idx])

    def describe(self) -> pd.DataFrame:
        """Patients and images per split, and the mean white fraction of each structure."""
        rows = []
        for split, ids, m in (("train", self.train_ids, self.train_masks), ("validation", self.val_ids, self.val_masks)):
            row = {"split": split, "patients": len(set(ids)), "images": len(ids)}
            row.update({f"white % {s}": 100 * float(m[..., c].mean()) for c, s in enumerate(self.structures)})
            rows.append(row)
        return pd.DataFrame(rows).set_index("split")

    def fingerprint(self) -> str:
        """A short hash of the arrays and the split (part of every cache key)."""
        h = hashlib.sha1()
        for a in (self.train_images, self.train_masks, self.val_images, self.val_masks):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a[:, ::4, ::4]).tobytes())
        h.update(json.dumps([self.train_ids, self.val_ids, list(self.structures)]).encode())
        return h.hexdigest()[:16]


def _split(patient_ids: Sequence[str], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return patient_split(patient_ids, val_fraction=val_fraction, seed=seed)


def prepare_view_data(
    root: str | os.PathLike,
    view: str,
    size: tuple[int, int],
    structures: Sequence[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    source: str = "synthetic",
    progress: bool = True,
) -> SegmentationData:
    """Load one view of a dataset in the paper's layout and split it by patient.

    ``root``: a synthetic or clinical dataset folder (:func:`spinelib.data.clinical.scan_clinical`);
    ``size=(h, w)``: the network's input size (images anti-aliased, masks nearest-neighbour, as
    :func:`spinelib.data.clinical.load_segmentation_arrays`). About ``val_fraction`` of the patients
    (:func:`spinelib.data.splits.patient_split` with ``seed``) are validation patients.
    """
    from spinelib.data.clinical import scan_clinical
    from spinelib.data.clinical_arrays import load_segmentation_arrays

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    dataset = scan_clinical(root, progress=False)
    images, masks, ids = load_segmentation_arrays(dataset, view, size, structures=structures, progress=progress)
    from spinelib.data.clinical_arrays import structures_for

    names = structures_for(view, structures)
    records = {p.patient_id: p for p in dataset.patients}
    train, val = _split(ids, val_fraction, seed)
    return SegmentationData(
        name=f"{source} {view}", source=source, view=view, structures=tuple(names),
        train_images=images[train], train_masks=masks[train], val_images=images[val], val_masks=masks[val],
        train_ids=[ids[i] for i in train], val_ids=[ids[i] for i in val],
        train_sources=[records[ids[i]] for i in train], val_sources=[records[ids[i]] for i in val],
    )


def prepare_aasce_data(
    root: str | os.PathLike,
    size: tuple[int, int],
    max_images: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = True,
) -> SegmentationData:
    """The real AASCE AP X-rays with their vertebra-body masks, split by patient.

    Masks are the 17 quadrilaterals T1-L5 drawn from the corner landmarks at ``size``
    (:func:`spinelib.data.aasce.load_aasce_arrays`); several images of one patient stay together.
    """
    from spinelib.data.aasce import load_aasce, load_aasce_arrays

    frame = load_aasce(root, max_images=max_images)
    if frame["patient_id"].nunique() < 2:
        raise ValueError(f"AASCE at {root}: need images of at least 2 patients to split, got {len(frame)} image(s)")
    images, masks = load_aasce_arrays(frame, size, progress=progress)
    ids = frame["patient_id"].astype(str).tolist()
    train, val = _split(ids, val_fraction, seed)
    rows = [r for _, r in frame.iterrows()]
    return SegmentationData(
        name="real AASCE AP", source="real AASCE", view="AP", structures=(AASCE_STRUCTURE,),
        train_images=images[train], train_masks=masks[train], val_images=images[val], val_masks=masks[val],
        train_ids=[ids[i] for i in train], val_ids=[ids[i] for i in val],
        train_sources=[rows[i] for i in train], val_sources=[rows[i] for i in val],
    )


def load_original(data: SegmentationData, source, structures: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One image of ``data`` at its original resolution: ``(image uint8 HxW, masks bool HxWxC)``.

    ``source`` is an entry of ``data.train_sources``/``val_sources``: a clinical-layout patient
    record (its ``data.view``), or an AASCE row (image path and corner landmarks; the mask is the
    17 vertebra bodies drawn at full size).
    """
    names = list(structures or data.structures)
    if hasattr(source, "views"):
        from spinelib.data.clinical_arrays import load_view

        return load_view(source, data.view, structures=names)
    if names != [AASCE_STRUCTURE]:
        raise ValueError(f"AASCE images have only the structure {AASCE_STRUCTURE!r}, not {names}")
    from spinelib.core.imageio import read_xray
    from spinelib.data.aasce import vertebra_mask

    image = read_xray(source["image_path"])
    return image, vertebra_mask(source["landmarks"], image.shape)[..., None]


def resized_view_data(data: SegmentationData, size: tuple[int, int], structures: Sequence[str]) -> SegmentationData:
    """The same patients and split at another input size (read again from the original files)."""
    from spinelib.data.clinical_arrays import load_view

    def load(records):
        x = np.zeros((len(records), *size, 1), np.float32)
        y = np.zeros((len(records), *size, len(structures)), np.float32)
        for i, record in enumerate(records):
            image, masks = load_view(record, data.view, size=size, structures=list(structures))
            x[i, ..., 0] = image / np.float32(255.0)
            y[i] = masks
        return x, y

    tx, ty = load(data.train_sources)
    vx, vy = load(data.val_sources)
    return replace(data, name=f"{data.name} {size[0]}x{size[1]}", structures=tuple(structures),
                   train_images=tx, train_masks=ty, val_images=vx, val_masks=vy)
