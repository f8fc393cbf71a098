"""Synthetic spine X-rays in the paper's clinical layout: the book's embedded default dataset.

A fresh machine has no clinical data, so every page runs on patients drawn here. Each patient
has an AP and a lateral (LAT) X-ray with the eight masks of :mod:`spinelib.core.structures`, written
exactly as the cleaned clinical dataset::

    <root>/<Normal|Damaged>/ID (k)/AP/AP.jpg       + Ap_Vertebra.png, Ap_Pedicle.png, Ap_Spinous_Process.png
    <root>/<Normal|Damaged>/ID (k)/LAT/LAT.jpg     + Lat_Vertebra.png, Lat_Disk_Height.png,
                                                     Lat_Spinous_Process.png, Lat_Anterior_Vertebral_Line.png,
                                                     Lat_Posterior_Vertebral_Line.png
    <root>/<Normal|Damaged>/ID (k)/meta.json       truth: pathologies and per-vertebra geometry
    <root>/metadata.csv                            one row per patient
    <root>/synthetic.json                          the settings (a cache key)

X-rays are 8-bit grayscale (mode ``"L"``) JPEGs (the real ones are RGB JPEGs with three equal
channels; every reader of this project converts both to the same 2-D array, and grayscale
halves the encoding time), masks 1-bit PNGs (mode ``"1"``, as the real ones) of the X-ray's size. Image sizes are drawn per class within the
paper's Table 1 ranges (:data:`spinelib.core.structures.PAPER_TABLE1`) at ``scale=1``; ``scale``
shrinks everything proportionally. As in the paper's data, Damaged X-rays are larger on
average than Normal ones (a size shortcut a classifier could learn; resizing removes most of it).

The column has 12-17 vertebrae (a suffix of T1..L5), drawn by :mod:`spinelib.data.synthetic.anatomy`.
Normal patients have natural kyphosis/lordosis and an AP curve under 5 degrees. Damaged patients
carry 1-3 pathologies, recorded with their level and severity: wedge compression fracture
(anterior body height -30..60 %), disk-height loss (-50..80 %), anterolisthesis (15-40 % of body
depth), scoliosis (Cobb angle 15-45 degrees, with axial rotation of the posterior elements).

Every patient depends only on ``(seed, patient_index)``: patient ``k`` is the same whatever
``n_patients`` is. Its label is the ``k``-th term of
:math:`\\lfloor (k+1) f \\rfloor - \\lfloor k f \\rfloor` for a damaged fraction :math:`f`
(for ``f = 0.5``: Normal, Damaged, Normal, ...).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from spinelib.core.imageio import atomic_write_bytes, save_jpeg, save_png
from spinelib.core.structures import (
    AP_STRUCTURES,
    CLASSES,
    LAT_STRUCTURES,
    PAPER_TABLE1,
    label_of,
)
from spinelib.data.synthetic.anatomy import (
    LEVELS,
    PATHOLOGY_KINDS,
    SpineAnatomy,
    ViewGeometry,
    cobb_angle,
    endplate_angles,
    fit_ap_amplitude,
    lat_column,
    sample_anatomy,
)
from spinelib.data.synthetic.rendering import render_ap, render_lat

__all__ = [
    "GENERATOR_VERSION", "IRREGULARITIES", "LEVELS", "METADATA_COLUMNS", "PATHOLOGY_KINDS", "SyntheticConfig",
    "SyntheticPatient", "draw_image_size", "generate_dataset", "generate_patient", "irregularity_plan", "main",
    "patient_id", "patient_label", "patient_seed", "read_metadata", "write_patient",
]

GENERATOR_VERSION: int = 1
"""Bumped whenever the drawing changes, so a cached dataset from an older generator is not reused."""

METADATA_COLUMNS: tuple[str, ...] = (
    "patient_id", "patient_index", "class_name", "label", "seed", "ap_height", "ap_width",
    "lat_height", "lat_width", "pathologies", "cobb_angle_deg", "n_vertebrae", "levels", "scale",
    "irregularities", "folder",
)
"""Columns of ``metadata.csv``; ``pathologies`` reads like ``wedge_fracture@L1;listhesis@L4``."""

IRREGULARITIES: tuple[str, ...] = (
    "renamed_view:LAT/lat.png",
    "renamed_view:LAT/LAT .png",
    "renamed_view:AP/Ap.JPEG",
    "lowercase_mask:AP/ap_pedicle.png",
    "outside_view_folder:AP.jpg",
    "missing_view:LAT",
)
"""The raw release's irregularities (the paper, section 1.2) that ``irregular=True`` injects,
one per patient: LAT image saved as ``lat.png`` / ``LAT .png`` (PNG), AP image as ``Ap.JPEG``,
a mask name in lower case, the AP image in the patient folder instead of ``AP/``, and a
patient without its LAT view (like the paper's ID 169)."""

_MARKER = ".synthetic-incomplete.json"


@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of a synthetic dataset (stored in ``<root>/synthetic.json`` as its cache key)."""

    n_patients: int = 60
    seed: int = 0
    scale: float = 1.0
    damaged_fraction: float = 0.5
    irregular: bool = False
    jpeg_quality: int = 90
    n_vertebrae: tuple[int, int] = (12, 17)

    def __post_init__(self):
        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        if not is_int(self.n_patients) or self.n_patients < 1:
            raise ValueError(f"n_patients must be a positive integer, got {self.n_patients!r}")
        if not is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        _check_scale(self.scale)
        if not isinstance(self.damaged_fraction, (int, float)) or not 0.0 <= self.damaged_fraction <= 1.0:
            raise ValueError(f"damaged_fraction must be in [0, 1], got {self.damaged_fraction!r}")
        if not isinstance(self.irregular, bool):
            raise TypeError(f"irregular must be a bool, got {type(self.irregular).__name__}")
        if not is_int(self.jpeg_quality) or not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be an integer in 1..100, got {self.jpeg_quality!r}")
        object.__setattr__(self, "n_vertebrae", _check_n_vertebrae(self.n_vertebrae))
        object.__setattr__(self, "n_patients", int(self.n_patients))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "damaged_fraction", float(self.damaged_fraction))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_vertebrae"] = list(self.n_vertebrae)
        d["generator_version"] = GENERATOR_VERSION
        return d


@dataclass
class SyntheticPatient:
    """One patient in memory: ``images`` view -> uint8 (H, W), ``masks`` structure -> bool (H, W),
    ``metadata`` the content of ``meta.json`` (the ``metadata.csv`` row plus the geometry)."""

    patient_index: int
    patient_id: str
    class_name: str
    label: int
    seed: int
    images: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    metadata: dict = field(default_factory=dict)

    def row(self) -> dict:
        """The ``metadata.csv`` row of this patient."""
        return {k: self.metadata[k] for k in METADATA_COLUMNS}


# ---------------------------------------------------------------------------------------------
# validation and small pure functions


def _check_scale(scale) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
        raise TypeError(f"scale must be a number, got {type(scale).__name__}: {scale!r}")
    if not 0.02 <= float(scale) <= 2.0:
        raise ValueError(f"scale must be in [0.02, 2.0], got {scale!r}")
    return float(scale)


def _check_n_vertebrae(value) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"n_vertebrae must be a (min, max) pair of integers, got {value!r}") from e
    if not 5 <= lo <= hi <= len(LEVELS):
        raise ValueError(f"n_vertebrae must satisfy 5 <= min <= max <= {len(LEVELS)}, got {value!r}")
    return lo, hi


def patient_seed(seed: int, patient_index: int) -> int:
    """The per-patient seed: a 32-bit word of ``numpy.random.SeedSequence([seed, patient_index])``."""
    return int(np.random.SeedSequence([int(seed), int(patient_index)]).generate_state(1)[0])


def patient_label(patient_index: int, damaged_fraction: float = 0.5) -> int:
    """Label of patient ``k``: :math:`\\lfloor (k+1) f \\rfloor - \\lfloor k f \\rfloor` (1 = Damaged).

    Any prefix of ``n`` patients holds :math:`\\lfloor n f \\rfloor` damaged ones.
    """
    f = float(damaged_fraction)
    k = int(patient_index)
    return int(math.floor((k + 1) * f + 1e-9) - math.floor(k * f + 1e-9))


def patient_id(patient_index: int) -> str:
    """Folder name of patient ``k`` (0-based): ``ID (k+1)``, as the clinical dataset names them."""
    return f"ID ({int(patient_index) + 1})"


def draw_image_size(rng: np.random.Generator, class_name: str, scale: float = 1.0) -> tuple[int, int]:
    """(height, width) within the paper's Table 1 range of ``class_name`` (aspect 0.5-0.95 where
    the range allows it), multiplied by ``scale``."""
    r = PAPER_TABLE1[class_name]
    h = int(rng.integers(r["min_height"], r["max_height"] + 1))
    lo, hi = max(r["min_width"], int(0.5 * h)), min(r["max_width"], int(0.95 * h))
    if lo > hi:
        lo, hi = r["min_width"], r["max_width"]
    w = int(rng.integers(lo, hi + 1))
    return max(16, round(h * scale)), max(16, round(w * scale))


# ---------------------------------------------------------------------------------------------
# one patient


def generate_patient(patient_index: int, label: int | str, seed: int | np.random.Generator = 0,
                     scale: float = 1.0, *, n_vertebrae: tuple[int, int] = (12, 17)) -> SyntheticPatient:
    """Draw one patient in memory (no I/O).

    ``label`` is 0/1 or ``"Normal"``/``"Damaged"``. ``seed`` is the *dataset* seed (the patient's
    own seed is :func:`patient_seed` of it and ``patient_index``, so this equals patient
    ``patient_index`` of :func:`generate_dataset`) or a ``numpy.random.Generator`` that draws it.
    """
    if isinstance(patient_index, bool) or not isinstance(patient_index, (int, np.integer)) or patient_index < 0:
        raise ValueError(f"patient_index must be a non-negative integer, got {patient_index!r}")
    if isinstance(label, str):
        label = label_of(label)
    if isinstance(label, bool) or label not in (0, 1):
        raise ValueError(f"label must be 0 (Normal), 1 (Damaged) or a class name, got {label!r}")
    scale = _check_scale(scale)
    n_vertebrae = _check_n_vertebrae(n_vertebrae)
    if isinstance(seed, np.random.Generator):
        pseed = int(seed.integers(0, 2**32))
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        pseed = patient_seed(int(seed), int(patient_index))
    else:
        raise TypeError(f"seed must be a non-negative int or a numpy Generator, got {seed!r}")
    rng = np.random.default_rng(pseed)
    class_name = CLASSES[int(label)]
    ap_shape = draw_image_size(rng, class_name, scale)
    lat_shape = draw_image_size(rng, class_name, scale)
    anatomy = sample_anatomy(rng, damaged=label == 1, n_vertebrae=n_vertebrae)
    _, ap_bodies = fit_ap_amplitude(anatomy)
    ap_img, ap_masks, ap_geo = render_ap(anatomy, ap_bodies, ap_shape, rng, scale)
    lat_img, lat_masks, lat_geo = render_lat(anatomy, lat_column(anatomy), lat_shape, rng, scale)
    meta = _patient_metadata(int(patient_index), class_name, pseed, scale, anatomy, ap_geo, lat_geo,
                             ap_shape, lat_shape)
    return SyntheticPatient(int(patient_index), meta["patient_id"], class_name, int(label), pseed,
                            {"AP": ap_img, "LAT": lat_img}, {**ap_masks, **lat_masks}, meta)


def _r(v) -> float:
    return round(float(v), 2)


def _xy(p) -> list[float]:
    return [_r(p[0]), _r(p[1])]


def _patient_metadata(index, class_name, pseed, scale, an: SpineAnatomy, ap: ViewGeometry,
                      lat: ViewGeometry, ap_shape, lat_shape) -> dict:
    ap_angles, lat_angles = endplate_angles(ap.bodies), endplate_angles(lat.bodies)
    vertebrae = []
    for i, level in enumerate(an.levels):
        a, b = ap.bodies[i], lat.bodies[i]
        ant_h = float(np.hypot(*(b[3] - b[0])))  # anterior wall: superior to inferior anterior corner
        post_h = float(np.hypot(*(b[2] - b[1])))
        vertebrae.append({
            "level": level,
            "ap": {
                "corners": {"superior_left": _xy(a[0]), "superior_right": _xy(a[1]),
                            "inferior_right": _xy(a[2]), "inferior_left": _xy(a[3])},
                "center": _xy(a.mean(axis=0)),
                "left_height_px": _r(np.hypot(*(a[3] - a[0]))),
                "right_height_px": _r(np.hypot(*(a[2] - a[1]))),
                "height_px": _r(ap.height(i)),
                "width_px": _r(ap.width(i)),
                "superior_endplate_deg": _r(ap_angles[i, 0]),
                "inferior_endplate_deg": _r(ap_angles[i, 1]),
            },
            "lat": {
                "corners": {"superior_anterior": _xy(b[0]), "superior_posterior": _xy(b[1]),
                            "inferior_posterior": _xy(b[2]), "inferior_anterior": _xy(b[3])},
                "center": _xy(b.mean(axis=0)),
                "anterior_height_px": _r(ant_h),
                "posterior_height_px": _r(post_h),
                "wedge_ratio": round(ant_h / post_h, 4),
                "depth_px": _r(lat.width(i)),
                "superior_endplate_deg": _r(lat_angles[i, 0]),
                "inferior_endplate_deg": _r(lat_angles[i, 1]),
            },
        })
    disks = []
    for i, name in enumerate(an.disk_names()):
        up, lo_ = lat.bodies[i], lat.bodies[i + 1]
        e = (up[2] - up[3]) / np.hypot(*(up[2] - up[3]))
        n = np.array([-e[1], e[0]])
        ant_h, post_h = float(np.dot(lo_[0] - up[3], n)), float(np.dot(lo_[1] - up[2], n))
        offset = float(np.dot((lo_[0] + lo_[1]) / 2 - (up[2] + up[3]) / 2, e))
        aup, alo = ap.bodies[i], ap.bodies[i + 1]
        ea = (aup[2] - aup[3]) / np.hypot(*(aup[2] - aup[3]))
        na = np.array([-ea[1], ea[0]])
        left_h, right_h = float(np.dot(alo[0] - aup[3], na)), float(np.dot(alo[1] - aup[2], na))
        disks.append({
            "level": name,
            "ap": {"left_height_px": _r(left_h), "right_height_px": _r(right_h), "height_px": _r((left_h + right_h) / 2)},
            "lat": {"anterior_height_px": _r(ant_h), "posterior_height_px": _r(post_h),
                    "height_px": _r((ant_h + post_h) / 2), "listhesis_offset_px": _r(offset),
                    "listhesis_fraction": round(offset / lat.width(i), 4)},
        })
    cobb = cobb_angle(ap.bodies)
    details = []
    for p in an.pathologies:
        d = {"kind": p["kind"], "level": p["level"], "severity": p["severity"], "severity_unit": p["severity_unit"]}
        if p["kind"] == "wedge_fracture":
            d["wedge_ratio"] = vertebrae[p["vertebra_index"]]["lat"]["wedge_ratio"]
        elif p["kind"] == "disk_height_loss":
            d["disk_height_px"] = disks[p["disk_index"]]["lat"]["height_px"]
        elif p["kind"] == "listhesis":
            d["relative_to"] = p["relative_to"]
            d["listhesis_offset_px"] = disks[p["vertebra_index"]]["lat"]["listhesis_offset_px"]
        elif p["kind"] == "scoliosis":
            tilt = ap_angles.mean(axis=1)
            upper, lower = sorted((int(np.argmax(tilt)), int(np.argmin(tilt))))
            centers = ap.centers
            convex = "image_right" if centers[p["apex_index"], 0] > (centers[upper, 0] + centers[lower, 0]) / 2 else "image_left"
            d.update(severity=round(cobb, 2), cobb_angle_deg=round(cobb, 2), upper_end=an.levels[upper],
                     lower_end=an.levels[lower], apex=p["level"], convexity=convex)
        details.append(d)
    thoracic = [i for i, lv in enumerate(an.levels) if lv.startswith("T")]
    lumbar = [i for i, lv in enumerate(an.levels) if lv.startswith("L")]
    sagittal = {
        "kyphosis_deg": _r(lat_angles[thoracic[0], 0] - lat_angles[thoracic[-1], 1]) if thoracic else None,
        "kyphosis_levels": f"{an.levels[thoracic[0]]}-{an.levels[thoracic[-1]]}" if thoracic else None,
        "lordosis_deg": _r(lat_angles[lumbar[-1], 1] - lat_angles[lumbar[0], 0]) if lumbar else None,
        "lordosis_levels": f"{an.levels[lumbar[0]]}-{an.levels[lumbar[-1]]}" if lumbar else None,
    }
    pid = patient_id(index)
    return {
        "patient_id": pid,
        "patient_index": index,
        "class_name": class_name,
        "label": label_of(class_name),
        "seed": int(pseed),
        "ap_height": int(ap_shape[0]),
        "ap_width": int(ap_shape[1]),
        "lat_height": int(lat_shape[0]),
        "lat_width": int(lat_shape[1]),
        "pathologies": ";".join(f"{d['kind']}@{d['level']}" for d in details),
        "cobb_angle_deg": round(cobb, 2),
        "n_vertebrae": an.n,
        "levels": f"{an.levels[0]}-{an.levels[-1]}",
        "scale": float(scale),
        "irregularities": "",
        "folder": f"{class_name}/{pid}",
        "pathology_details": details,
        "sagittal": sagittal,
        "vertebrae": vertebrae,
        "disks": disks,
        "coordinates": "pixels (x, y) = (column, row) from the top-left corner of each view's image; "
                       "LAT: the patient faces left (anterior = smaller x); AP: image left = patient's right; "
                       "endplate angles in degrees, positive when the right/posterior end is lower; "
                       "body heights: corner-to-corner wall lengths; "
                       "disk heights measured along the normal of the upper body's inferior endplate; "
                       "listhesis offset: slip of the upper body anteriorly relative to the lower one",
        "generator_version": GENERATOR_VERSION,
    }


# ---------------------------------------------------------------------------------------------
# writing


def _save_mask(path: Path, mask: np.ndarray) -> None:
    """1-bit PNG (mode ``"1"``) written atomically; PIL maps a bool array to mode "1" directly
    (several times faster than going through 8-bit)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=bool)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def write_patient(patient: SyntheticPatient, root: str | os.PathLike, *, jpeg_quality: int = 90,
                  irregularities: tuple[str, ...] | list[str] = ()) -> Path:
    """Write one patient below ``root`` (``<root>/<class>/ID (k)/...``); return its folder.

    Every file is written atomically (temporary file + ``os.replace``). ``irregularities`` are
    names from :data:`IRREGULARITIES` to apply to this patient's file layout.
    """
    if not isinstance(patient, SyntheticPatient):
        raise TypeError(f"patient must be a SyntheticPatient, got {type(patient).__name__}")
    unknown = [i for i in irregularities if i not in IRREGULARITIES]
    if unknown:
        raise ValueError(f"unknown irregularities {unknown}; expected some of {list(IRREGULARITIES)}")
    folder = Path(root) / patient.class_name / patient.patient_id
    folder.mkdir(parents=True, exist_ok=True)
    irr = set(irregularities)
    for view, structures in (("AP", AP_STRUCTURES), ("LAT", LAT_STRUCTURES)):
        if f"missing_view:{view}" in irr:
            continue
        img = patient.images[view]
        renamed = [i.split(":", 1)[1] for i in irr if i.startswith("renamed_view:") and i.split(":", 1)[1].startswith(view + "/")]
        if renamed:
            target = folder / renamed[0]
            if target.suffix.lower() == ".png":
                save_png(target, img)
            else:
                save_jpeg(target, img, quality=jpeg_quality)
        elif f"outside_view_folder:{view}.jpg" in irr:
            save_jpeg(folder / f"{view}.jpg", img, quality=jpeg_quality)
        else:
            save_jpeg(folder / view / f"{view}.jpg", img, quality=jpeg_quality)
        for s in structures:
            name = f"{s}.png"
            if f"lowercase_mask:{view}/{name.lower()}" in irr:
                name = name.lower()
            _save_mask(folder / view / name, patient.masks[s])
    meta = dict(patient.metadata, irregularities=";".join(i for i in IRREGULARITIES if i in irr))
    atomic_write_bytes(folder / "meta.json", json.dumps(meta, indent=1).encode())
    return folder


def irregularity_plan(n_patients: int) -> dict[int, str]:
    """Patient index -> irregularity for ``irregular=True``: the six kinds of
    :data:`IRREGULARITIES` spread over the dataset, one per patient (only the first
    ``n_patients`` kinds when there are fewer than six patients). With 169 patients or more,
    the missing LAT view goes to ``ID (169)`` as in the paper."""
    kinds = IRREGULARITIES[: min(len(IRREGULARITIES), n_patients)]
    plan: dict[int, str] = {}
    for j, kind in enumerate(kinds):
        k = 168 if kind == "missing_view:LAT" and n_patients >= 169 else int((j + 0.5) * n_patients / len(kinds))
        while k in plan:
            k = (k + 1) % n_patients
        plan[k] = kind
    return plan


# ---------------------------------------------------------------------------------------------
# the dataset


def read_metadata(root: str | os.PathLike) -> pd.DataFrame:
    """Read ``<root>/metadata.csv`` (empty ``pathologies``/``irregularities`` stay empty strings)."""
    path = Path(root) / "metadata.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no synthetic metadata at {path}; generate the dataset with generate_dataset()")
    df = pd.read_csv(path, keep_default_na=False)
    missing = [c for c in METADATA_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}; it was not written by spinelib.data.synthetic.generator")
    for c in ("pathologies", "irregularities", "patient_id", "class_name", "levels", "folder"):
        df[c] = df[c].astype(str)
    return df


def _clear(root: Path) -> None:
    """Remove what a previous generation wrote (only our own entries, never the folder itself)."""
    for name in CLASSES:
        if (root / name).is_dir():
            shutil.rmtree(root / name)
    for name in ("metadata.csv", "synthetic.json", _MARKER):
        (root / name).unlink(missing_ok=True)


def _settings_diff(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


def _make_patient(job) -> dict:
    """Draw and write one patient (a worker's task): its metadata row."""
    k, cfg, root, irregularity = job
    patient = generate_patient(k, patient_label(k, cfg.damaged_fraction), cfg.seed, cfg.scale,
                               n_vertebrae=cfg.n_vertebrae)
    irr = (irregularity,) if irregularity else ()
    write_patient(patient, root, jpeg_quality=cfg.jpeg_quality, irregularities=irr)
    return dict(patient.row(), irregularities=";".join(irr))


def _check_workers(workers, n_jobs: int, scale: float = 1.0) -> int:
    """The number of generating processes: ``workers``, or by default one per core for a dataset of
    at least 16 full-size patients (``n_jobs * scale``); below that, starting the processes (about a
    second each) costs more than it saves, and one process draws them."""
    if workers is None:
        return max(1, os.cpu_count() or 1) if n_jobs * scale >= 16 else 1
    if not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    return int(min(workers, max(n_jobs, 1)))


def generate_dataset(root: str | os.PathLike, n_patients: int, seed: int = 0, scale: float = 1.0,
                     damaged_fraction: float = 0.5, irregular: bool = False, progress: bool = True,
                     overwrite: bool = False, *, jpeg_quality: int = 90,
                     n_vertebrae: tuple[int, int] = (12, 17), workers: int | None = None) -> pd.DataFrame:
    """Write ``n_patients`` synthetic patients below ``root`` and return the metadata table.

    ``workers``: processes that draw and write the patients (default: one per CPU core when there
    are at least 16 full-size patients, else one); the files are the same for any number, since a
    patient depends only on ``(seed, index)``.

    A folder already holding a dataset generated with the same settings (``synthetic.json``) is
    reused as is (a cache). Different settings raise ``ValueError`` unless ``overwrite=True``,
    which deletes the previous synthetic files (never anything else). A non-empty folder that
    is not a synthetic dataset is refused. An interrupted generation is detected and redone.
    """
    cfg = SyntheticConfig(n_patients, seed, scale, damaged_fraction, irregular, jpeg_quality, n_vertebrae)
    workers = _check_workers(workers, cfg.n_patients, cfg.scale)
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, got {type(root).__name__}: {root!r}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"synthetic dataset root {root} is a file, not a folder")
    settings = json.loads(json.dumps(cfg.to_dict()))
    stamp = root / "synthetic.json"
    if stamp.is_file():
        try:
            old = json.loads(stamp.read_text()).get("settings", {})
        except (json.JSONDecodeError, AttributeError) as e:
            raise ValueError(f"{stamp} is not valid JSON ({e}); delete it or choose another folder") from e
        if old == settings and (root / "metadata.csv").is_file():
            return read_metadata(root)
        if old != settings and not overwrite:
            raise ValueError(
                f"{root} already holds a synthetic dataset generated with other settings "
                f"({_settings_diff(old, settings)}); pass overwrite=True to regenerate it, or use another folder"
            )
        _clear(root)
    elif (root / _MARKER).is_file():
        _clear(root)  # an interrupted generation: start again
    elif root.is_dir() and any(root.iterdir()):
        raise ValueError(
            f"{root} is not empty and is not a synthetic dataset (no synthetic.json); "
            "refusing to write into it - choose an empty or new folder"
        )
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / _MARKER, json.dumps({"settings": settings}).encode())
    plan = irregularity_plan(cfg.n_patients) if cfg.irregular else {}
    jobs = [(k, cfg, str(root), plan.get(k)) for k in range(cfg.n_patients)]
    bar = dict(total=len(jobs), desc="synthetic patients", unit="patient", disable=not progress)
    if workers == 1:
        rows = [_make_patient(job) for job in tqdm(jobs, **bar)]
    else:  # every patient depends only on (seed, index): the files are the same as one process writes
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # "spawn": the caller may have started TensorFlow's threads, which a fork would copy mid-lock
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(tqdm(pool.map(_make_patient, jobs), **bar))
    df = pd.DataFrame(rows, columns=list(METADATA_COLUMNS))
    atomic_write_bytes(root / "metadata.csv", df.to_csv(index=False).encode())
    info = {"settings": settings, "n_normal": int((df.label == 0).sum()), "n_damaged": int((df.label == 1).sum()),
            "jpeg": "8-bit grayscale (mode L)",
            "masks": "1-bit PNG (mode '1'), same size as the X-ray"}
    atomic_write_bytes(stamp, json.dumps(info, indent=1).encode())
    (root / _MARKER).unlink(missing_ok=True)
    return read_metadata(root)


# ---------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    """``python -m spinelib.data.synthetic.generator --out DIR --n 60 --seed 0 [--scale 1.0] [--irregular]``."""
    ap = argparse.ArgumentParser(prog="python -m spinelib.data.synthetic.generator", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="dataset folder (created; reused if generated with the same settings)")
    ap.add_argument("--n", type=int, default=60, help="number of patients (default 60)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0, help="image scale; 1.0 = the paper's Table 1 sizes")
    ap.add_argument("--damaged-fraction", type=float, default=0.5)
    ap.add_argument("--irregular", action="store_true", help="inject the raw release's file irregularities")
    ap.add_argument("--jpeg-quality", type=int, default=90)
    ap.add_argument("--overwrite", action="store_true", help="replace a dataset generated with other settings")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--workers", type=int, default=None,
                    help="processes drawing patients (default: one per CPU core from 16 full-size patients up, else 1); "
                         "the files are the same for any number")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        df = generate_dataset(args.out, args.n, seed=args.seed, scale=args.scale,
                              damaged_fraction=args.damaged_fraction, irregular=args.irregular,
                              progress=not args.quiet, overwrite=args.overwrite, jpeg_quality=args.jpeg_quality,
                              workers=args.workers)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    counts = df.class_name.value_counts().to_dict()
    print(f"{len(df)} patients in {args.out} ({counts}) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
