"""The clinical dataset's pixels: one view of a patient (:func:`load_view`), the arrays of a
segmentation problem (:func:`load_segmentation_arrays`) and the AP + LAT pairs of the
classification (:func:`load_classification_pairs`), from the records :func:`spinelib.data.clinical.scan_clinical`
found. Every reader checks sizes and names the file it cannot read."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from spinelib.core.imageio import (
    ImageReadError,
    check_size,
    image_size,
    read_mask,
    read_xray,
    resize_mask,
)
from spinelib.core.structures import STRUCTURES, STRUCTURES_BY_VIEW, VIEWS, view_of

if TYPE_CHECKING:
    from spinelib.data.clinical import ClinicalDataset, PatientRecord



def structures_for(view: str, structures) -> list[str]:
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    if structures is None:
        return list(STRUCTURES_BY_VIEW[view])
    if isinstance(structures, str):
        structures = [structures]
    out = []
    for s in structures:
        if view_of(s) != view:
            raise ValueError(f"structure {s!r} belongs to the {view_of(s)} view, not {view}")
        out.append(next(c for c in STRUCTURES if c.lower() == s.lower()))
    if not out:
        raise ValueError("structures must name at least one structure")
    return out


def load_view(record: PatientRecord, view: str, size: tuple[int, int] | None = None,
              structures=None, mask_method: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """Load one view: ``(image uint8 HxW, masks bool HxWxC)`` with masks in ``structures`` order
    (default: all of the view's structures).

    Each mask's header size must equal the X-ray's (else :class:`ImageReadError` naming both
    files). With ``size=(h, w)`` the X-ray is resized with anti-aliasing and the masks with
    :func:`spinelib.core.imageio.resize_mask` (``mask_method``).
    """
    names = structures_for(view, structures)
    if view not in record.views:
        raise ValueError(f"patient {record.patient_id!r} ({record.folder}) has no {view} view")
    v = record.views[view]
    missing = [s for s in names if s not in v.mask_paths]
    if missing:
        raise ValueError(f"patient {record.patient_id!r} {view} view has no mask for {', '.join(missing)} "
                         f"(folder {record.folder})")
    shape = image_size(v.image_path)
    for s in names:
        mshape = image_size(v.mask_paths[s])
        if mshape != shape:
            raise ImageReadError(
                v.mask_paths[s],
                f"mask is {mshape[0]} x {mshape[1]} (h x w) but its X-ray {v.image_path} is "
                f"{shape[0]} x {shape[1]}",
            )
    image = read_xray(v.image_path, size=size)
    out_shape = image.shape
    masks = np.zeros((*out_shape, len(names)), dtype=bool)
    for i, s in enumerate(names):
        m = read_mask(v.mask_paths[s], shape=shape)
        masks[..., i] = resize_mask(m, out_shape, method=mask_method) if size is not None else m
    return image, masks


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def _warn_unreadable(what: str, failed: list[tuple[str, str]]) -> None:
    lines = "; ".join(f"{pid}: {msg}" for pid, msg in failed[:20])
    warnings.warn(f"{len(failed)} patient(s) skipped for {what} (unreadable files): {lines}"
                  f"{' ...' if len(failed) > 20 else ''}", stacklevel=3)


def load_segmentation_arrays(dataset: ClinicalDataset, view: str, size: tuple[int, int], structures=None,
                             progress: bool = True, mask_method: str = "nearest", on_error: str = "raise"):
    """Training arrays for one view: ``(images float32 NxHxWx1 in [0, 1], masks float32 NxHxWxC,
    patient_ids)``. Patients lacking a requested mask are skipped with a warning naming them.

    A file that cannot be read (or a mask whose size differs from its X-ray) raises
    :class:`~spinelib.core.imageio.ImageReadError` naming it (``on_error="raise"``), or, with
    ``on_error="skip"``, drops that patient with a warning naming the file and the problem.
    """
    names = structures_for(view, structures)
    h, w = check_size(size)
    _check_on_error(on_error)
    usable, skipped = [], []
    for p in dataset.patients:
        if view in p.views and all(s in p.views[view].mask_paths for s in names):
            usable.append(p)
        else:
            skipped.append(p.patient_id)
    if skipped:
        warnings.warn(f"{len(skipped)} patient(s) skipped for {view} segmentation (missing masks): "
                      f"{', '.join(skipped[:20])}{' ...' if len(skipped) > 20 else ''}", stacklevel=2)
    if not usable:
        raise ValueError(f"no patient in {dataset.root} has a {view} image with masks for {', '.join(names)}")
    images = np.zeros((len(usable), h, w, 1), np.float32)
    masks = np.zeros((len(usable), h, w, len(names)), np.float32)
    kept, failed = [], []
    for p in tqdm(usable, desc=f"load {view}", unit="patient", disable=not progress):
        try:
            img, m = load_view(p, view, size=size, structures=names, mask_method=mask_method)
        except (ImageReadError, FileNotFoundError) as e:
            if on_error == "raise":
                raise
            failed.append((p.patient_id, str(e)))
            continue
        images[len(kept), ..., 0] = img / np.float32(255.0)
        masks[len(kept)] = m
        kept.append(p.patient_id)
    if failed:
        _warn_unreadable(f"{view} segmentation", failed)
        if not kept:
            raise ValueError(f"no {view} view in {dataset.root} could be read; first problem: {failed[0][1]}")
    return images[: len(kept)], masks[: len(kept)], kept


def load_classification_pairs(dataset: ClinicalDataset, size: tuple[int, int], progress: bool = True,
                              on_error: str = "raise"):
    """``(ap NxHxWx1, lat NxHxWx1, labels int64 N, patient_ids)`` for patients with both views;
    images float32 in [0, 1]. Unreadable X-rays raise, or with ``on_error="skip"`` drop the
    patient with a warning naming the file and the problem."""
    h, w = check_size(size)
    _check_on_error(on_error)
    usable = [p for p in dataset.patients if all(v in p.views for v in VIEWS)]
    if not usable:
        raise ValueError(f"no patient in {dataset.root} has both AP and LAT images")
    ap = np.zeros((len(usable), h, w, 1), np.float32)
    lat = np.zeros((len(usable), h, w, 1), np.float32)
    kept, failed = [], []
    for p in tqdm(usable, desc="load AP+LAT", unit="patient", disable=not progress):
        try:
            a = read_xray(p.views["AP"].image_path, size=size)
            b = read_xray(p.views["LAT"].image_path, size=size)
        except (ImageReadError, FileNotFoundError) as e:
            if on_error == "raise":
                raise
            failed.append((p.patient_id, str(e)))
            continue
        ap[len(kept), ..., 0] = a / np.float32(255.0)
        lat[len(kept), ..., 0] = b / np.float32(255.0)
        kept.append(p)
    if failed:
        _warn_unreadable("classification", failed)
        if not kept:
            raise ValueError(f"no AP+LAT pair in {dataset.root} could be read; first problem: {failed[0][1]}")
    labels = np.array([p.label for p in kept], dtype=np.int64)
    return ap[: len(kept)], lat[: len(kept)], labels, [p.patient_id for p in kept]
