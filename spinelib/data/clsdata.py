"""Classification inputs: two-view X-rays, masks and labels of each patient (synthetic or AASCE)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from spinelib.core.structures import STRUCTURES


@dataclass
class ClassificationInputs:
    """One sample per row: X-rays on the 0-255 scale (float32, ``(N, H, W, 1)``), masks, labels.

    ``dataset`` is ``"synthetic"`` (one sample = one patient, AP + LAT, label Damaged) or
    ``"aasce"`` (one sample = one real AP X-ray, label max Cobb >= 40 deg; several X-rays can
    belong to one patient). ``masks``: synthetic ``(N, H, W, 8)`` in :data:`STRUCTURES` order;
    AASCE ``(N, H, W, 1)`` vertebra bodies. ``table`` holds one row of metadata per sample.
    """

    dataset: str
    ap: np.ndarray
    lat: np.ndarray | None
    masks: np.ndarray | None
    labels: np.ndarray
    patient_ids: np.ndarray
    table: pd.DataFrame
    root: Path | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.ap.shape[1:3])

    def scanned(self):
        """The :class:`~spinelib.data.clinical.ClinicalDataset` of ``root`` (clinical layout), scanned
        once and kept: several measurements go back to the original files."""
        from spinelib.data.clinical import scan_clinical

        if self.root is None or self.dataset == "aasce":
            raise ValueError("only inputs loaded from a folder in the paper's layout have a scanned dataset")
        if "_scanned" not in self.__dict__:
            self.__dict__["_scanned"] = scan_clinical(self.root, progress=False)
        return self.__dict__["_scanned"]

    def views_at(self, size: tuple[int, int], progress: bool = True) -> list[np.ndarray]:
        """The X-ray views (AP, and LAT if any) at ``size``: resized when it is not larger than
        the loaded size, else read again from the source files (so that a 512x256 backbone
        sees 512x256 detail, not an upsampled smaller image). Kept in memory per size."""
        size = tuple(int(s) for s in size)
        if size == self.size:
            return [self.ap] if self.lat is None else [self.ap, self.lat]
        cache = self.__dict__.setdefault("_views", {})
        if size not in cache:
            if size[0] <= self.size[0] and size[1] <= self.size[1] or self.root is None:
                cache[size] = [resize_images(v, size) for v in ([self.ap] if self.lat is None else [self.ap, self.lat])]
            elif self.dataset == "synthetic":
                from spinelib.data.clinical_arrays import load_classification_pairs

                ap, lat, _, ids = load_classification_pairs(self.scanned(), size, progress=progress)
                if list(ids) != list(self.patient_ids):
                    raise ValueError(f"{self.root} changed since it was loaded: patients differ")
                cache[size] = [ap * np.float32(255), lat * np.float32(255)]
            else:
                from spinelib.data.aasce import load_aasce_arrays

                images, _ = load_aasce_arrays(self.table, size, progress=progress)
                cache[size] = [images * np.float32(255)]
        return cache[size]


def load_synthetic_inputs(synthetic_dir: str | os.PathLike, size: tuple[int, int], with_masks: bool = True,
                          progress: bool = True) -> ClassificationInputs:
    """AP + LAT X-rays (resized to ``size``) of every synthetic patient with both views, their 8
    masks (nearest-neighbour resize) and ``metadata.csv`` (pathologies, Cobb angle)."""
    from spinelib.data.clinical import scan_clinical
    from spinelib.data.clinical_arrays import load_classification_pairs, load_view
    from spinelib.data.synthetic.generator import read_metadata

    root = Path(synthetic_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"synthetic dataset folder {root} does not exist; generate it with "
                                "spinelib.data.synthetic.generator.generate_dataset()")
    dataset = scan_clinical(root, progress=False)
    ap, lat, labels, ids = load_classification_pairs(dataset, size, progress=progress)
    masks = None
    if with_masks:
        masks = np.zeros((len(ids), *ap.shape[1:3], len(STRUCTURES)), bool)
        for i, pid in enumerate(tqdm(ids, desc="load masks", disable=not progress)):
            rec = dataset.patient(pid)
            _, m_ap = load_view(rec, "AP", size=size)
            _, m_lat = load_view(rec, "LAT", size=size)
            masks[i] = np.concatenate([m_ap, m_lat], axis=-1)
    meta = read_metadata(root).set_index("patient_id")
    table = meta.reindex(ids).reset_index()
    table["label"] = labels
    table["folder"] = [str(dataset.patient(p).folder) for p in ids]
    inputs = ClassificationInputs("synthetic", ap * np.float32(255), lat * np.float32(255), masks, labels,
                                  np.asarray(ids, dtype=str), table, root)
    inputs.__dict__["_scanned"] = dataset  # see ClassificationInputs.scanned()
    return inputs


def load_aasce_inputs(aasce_dir: str | os.PathLike, size: tuple[int, int], max_images: int | None = None,
                      progress: bool = True) -> ClassificationInputs:
    """Real AP X-rays of AASCE (resized to ``size``), vertebra masks drawn from the landmarks and
    the label ``severe`` = maximum Cobb angle >= 40 deg; ``table`` is :func:`spinelib.data.aasce.load_aasce`."""
    from spinelib.data.aasce import load_aasce, load_aasce_arrays

    frame = load_aasce(aasce_dir, max_images=max_images)
    images, masks = load_aasce_arrays(frame, size, progress=progress)
    labels = frame["severe"].astype(np.int64).to_numpy()
    return ClassificationInputs("aasce", images * np.float32(255), None, masks > 0.5, labels,
                                frame["patient_id"].astype(str).to_numpy(), frame, Path(aasce_dir))


def resize_images(images: np.ndarray, size: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize ``(N, H, W, C)`` arrays to ``size`` (bilinear with anti-aliasing; ``order=0``:
    nearest, for masks), keeping the value range."""
    from skimage.transform import resize

    x = np.asarray(images)
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    out = np.stack([resize(im.astype(np.float32), (*size, x.shape[-1]), order=order, preserve_range=True,
                           anti_aliasing=order > 0) for im in x])
    return out.astype(x.dtype if order == 0 else np.float32)
