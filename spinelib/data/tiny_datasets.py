"""Tiny datasets written on disk: clinical-layout trees and an AASCE-format folder of small synthetic
arrays, for the tests and the bad-input corpus (:mod:`spinelib.data.bad_inputs`).

Every structure's mask is a different horizontal bar, so a test can tell which file was read
for which structure: :func:`expected_mask` gives the bar of a structure. :func:`fake_aasce`
writes the AASCE release's format (images, ``filenames.csv``, ``landmarks.csv``, ``angles.csv``
and the ``.mat`` files); vertebra v is a box at rows 2+3v..4+3v.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from spinelib.core.structures import STRUCTURES, STRUCTURES_BY_VIEW, VIEWS

SHAPE = (48, 24)
"""(height, width) of the fixture X-rays and masks."""


def xray(shape: tuple[int, int] = SHAPE, seed: int = 0) -> np.ndarray:
    """A uint8 'X-ray': dark background, a brighter body, a bright spine column, some noise."""
    h, w = shape
    rng = np.random.default_rng(seed)
    img = np.full((h, w), 20.0)
    img[:, w // 6: w - w // 6] = 110.0
    img[:, w // 3: w - w // 3] = 200.0
    img += rng.normal(0, 5, size=(h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def expected_mask(structure: str, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """A bool bar inside the spine column, at a height unique to the structure."""
    h, w = shape
    i = STRUCTURES.index(structure)
    m = np.zeros((h, w), bool)
    top = 2 + i * (h - 4) // len(STRUCTURES)
    m[top: top + 3, w // 3: w - w // 3] = True
    return m


def _write_image(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Write with the format chosen from the suffix (stray spaces and trailing dots ignored)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.name.strip().rstrip(". ").rsplit(".", 1)[-1].strip().lower()
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "tif": "TIFF", "tiff": "TIFF", "bmp": "BMP"}[ext]
    if array.dtype == bool:
        im = Image.fromarray(array.astype(np.uint8) * 255)
        im = im.convert("1") if mode in (None, "1") else im.point(lambda v: 1 if v else 0) if mode == "L01" else im
    else:
        im = Image.fromarray(array)
        if mode == "RGB":
            im = im.convert("RGB")
    im.save(path, format=fmt)
    return path


def write_patient(folder: Path, shape: tuple[int, int] = SHAPE, names: dict[str, str | None] | None = None,
                  seed: int = 0, mask_mode: str | None = "1", mask_shapes: dict[str, tuple[int, int]] | None = None) -> Path:
    """Write one patient: ``AP/AP.jpg``, ``LAT/LAT.jpg`` and the 8 masks at canonical paths.

    ``names`` overrides the relative path of a role (``"AP image"``, ``"LAT image"`` or a structure
    name); ``None`` leaves that file out. ``mask_mode``: ``"1"`` (1-bit, like the real masks),
    ``"L"`` (0/255) or ``"L01"`` (0/1). ``mask_shapes`` writes some masks at another size.
    """
    names = dict(names or {})
    mask_shapes = mask_shapes or {}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, view in enumerate(VIEWS):
        role = f"{view} image"
        rel = names.get(role, f"{view}/{view}.jpg")
        if rel is not None:
            _write_image(folder / rel, xray(shape, seed + k), mode="RGB" if view == "LAT" else None)
        for s in STRUCTURES_BY_VIEW[view]:
            rel = names.get(s, f"{view}/{s}.png")
            if rel is not None:
                _write_image(folder / rel, expected_mask(s, mask_shapes.get(s, shape)), mode=mask_mode)
    return folder


def build_messy_tree(root: Path) -> Path:
    """A dataset with every irregularity the loader must handle; returns ``root``.

    ::

        metadata.csv                                       ignored
        Training/
          normal/                                          class folder in lower case
            .DS_Store                                      ignored
            ID (1)/  canonical
            ID (2)/  LAT/lat.png, AP/ap_vertebra.PNG
            ID (3)/  LAT/LAT .png, AP/Ap Vertebra.png, LAT/lat disk height.png, masks 0/255 'L'
            ID (7)/  canonical (duplicate of Damaged/ID (7))
            ID (8)/  no Lat_Spinous_Process mask; meta.json (ignored)
          DAMAGED/
            ID (4)/  LAT/Lat.JPEG, AP/AP.jpg. (trailing dot), AP/Vertebra.png (bare name), masks 0/1
            ID (5)/  LAT.jpg and Ap_Pedicle.png in the patient folder, view folders 'ap' and 'Lat'
            ID (169)/ no LAT image at all                   excluded: missing LAT image
            ID (6)/  AP/AP.jpg and AP/ap.png                excluded: ambiguous
            ID (7)/  canonical                              excluded: duplicate id
            __MACOSX/ID (4)/._AP.jpg                        ignored (resource fork)
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "metadata.csv").write_text("patient,label\n1,0\n")
    normal, damaged = root / "Training" / "normal", root / "Training" / "DAMAGED"
    normal.mkdir(parents=True)
    damaged.mkdir(parents=True)
    (normal / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")

    write_patient(normal / "ID (1)", seed=1)
    write_patient(normal / "ID (2)", seed=2, names={"LAT image": "LAT/lat.png", "Ap_Vertebra": "AP/ap_vertebra.PNG"})
    write_patient(normal / "ID (3)", seed=3, mask_mode="L",
                  names={"LAT image": "LAT/LAT .png", "Ap_Vertebra": "AP/Ap Vertebra.png",
                         "Lat_Disk_Height": "LAT/lat disk height.png"})
    write_patient(normal / "ID (7)", seed=7)
    write_patient(normal / "ID (8)", seed=8, names={"Lat_Spinous_Process": None})
    (normal / "ID (8)" / "meta.json").write_text('{"age": 40}')

    write_patient(damaged / "ID (4)", seed=4, mask_mode="L01",
                  names={"LAT image": "LAT/Lat.JPEG", "AP image": "AP/AP.jpg.", "Ap_Vertebra": "AP/Vertebra.png"})
    names5 = {"LAT image": "LAT.jpg", "Ap_Pedicle": "Ap_Pedicle.png", "AP image": "ap/AP.jpg",
              "Ap_Vertebra": "ap/Ap_Vertebra.png", "Ap_Spinous_Process": "ap/Ap_Spinous_Process.png"}
    names5.update({s: f"Lat/{s}.png" for s in STRUCTURES_BY_VIEW["LAT"]})
    write_patient(damaged / "ID (5)", seed=5, names=names5)
    write_patient(damaged / "ID (169)", seed=169, names={"LAT image": None, **{s: None for s in STRUCTURES_BY_VIEW["LAT"]}})
    write_patient(damaged / "ID (6)", seed=6)
    _write_image(damaged / "ID (6)" / "AP" / "ap.png", xray(SHAPE, 60))
    write_patient(damaged / "ID (7)", seed=70)
    fork = damaged / "__MACOSX" / "ID (4)" / "._AP.jpg"
    fork.parent.mkdir(parents=True)
    fork.write_bytes(b"\x00\x05\x16\x07")
    return root


def build_patientless_tree(root: Path, shape: tuple[int, int] = SHAPE) -> Path:
    """The public examples' layout: ``<class>/<view>/<file>`` with no patient folder."""
    root = Path(root)
    write_patient(root / "Normal", shape=shape, seed=11)
    write_patient(root / "Damaged", shape=shape, seed=12)
    (root / "PROVENANCE.md").write_text("fixture\n")
    return root


def fake_aasce(root: Path, n: int = 3, shape=(60, 30), mat: bool = True) -> Path:
    """A tiny dataset in the published format; vertebra v is a box at rows 2+3v..4+3v."""
    from scipy.io import savemat

    (root / "data" / "training").mkdir(parents=True)
    (root / "labels" / "training").mkdir(parents=True)
    h, w = shape
    names, marks = [], []
    for i in range(n):
        name = f"sunhl-1th-0{i}-Jan-2017-{100 + i // 2} {'AB'[i % 2]} AP.jpg"
        Image.fromarray(np.full(shape, 50 + i, np.uint8)).save(root / "data" / "training" / name)
        pts = []
        for v in range(17):
            top, bot = 2 + 3 * v, 4 + 3 * v
            pts += [(10, top), (20, top), (10, bot), (20, bot)]  # TL, TR, BL, BR
        pts = np.array(pts, float)
        names.append(name)
        marks.append(np.concatenate([pts[:, 0] / w, pts[:, 1] / h]))
        if mat:
            savemat(root / "labels" / "training" / f"{name}.mat", {"p2": pts})
    lab = root / "labels" / "training"
    (lab / "filenames.csv").write_text("".join(f"{n}\n" for n in names))
    (lab / "landmarks.csv").write_text("".join(",".join(f"{v:.6f}" for v in m) + "\n" for m in marks))
    (lab / "angles.csv").write_text("".join(f"{10 + 20 * i},5,3\n" for i in range(n)))
    return root
