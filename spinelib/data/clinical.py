"""The paper's clinical dataset layout, read robustly: ``<root>/<class>/<patient>/<view>/<file>``.

The cleaned layout is ``<root>/<Normal|Damaged>/<patient>/<AP|LAT>/`` holding ``AP.jpg`` or
``LAT.jpg`` and the masks named as in :mod:`spinelib.core.structures` (``Ap_Vertebra.png`` ...).
The raw release was messier (the paper, section 1.2), and :func:`scan_clinical` copes with:

- view files named ``lat.png``, ``LAT.png``, ``LAT .png``, ``Lat.JPEG``, ``AP.jpg.`` (any case,
  ``.jpg``/``.jpeg``/``.png``/``.tif``/``.bmp``/``.dcm``, stray spaces and trailing dots);
- mask names in any case and spacing (``ap_vertebra.PNG``, ``Ap Vertebra.png``);
- files outside their view folder (``<patient>/LAT.jpg``, ``<patient>/Ap_Pedicle.png``): the view
  comes from the name; inside a view folder, an unprefixed ``Vertebra.png`` takes the folder's view;
- a wrapper folder above the classes (``Training/``), class folders in any case;
- a class folder holding view folders directly (the public examples): one patient named after
  the class folder.

Nothing is dropped silently: a patient missing a view image (the paper's ID 169), with an empty
folder, two candidate files for one role, a view image that is a broken symbolic link, or whose ID
appears twice (compared after Unicode NFC normalisation and case folding) is *excluded* with a
reason; every file whose path differs from the canonical one is listed in ``renamed``; unknown
files and folders (``metadata.csv``, ``.DS_Store``, an ``Abnormal/`` class folder, a symbolic link
loop ...) are listed in ``ignored`` with a reason each (:meth:`ClinicalDataset.ignored_frame`);
files with a role that cannot be used (broken links) are rows of ``problems``. Scanning reads
names only, never pixels: :mod:`spinelib.data.clinical_arrays` reads them (``load_view``, the
segmentation arrays, the classification pairs).
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from spinelib.core.structures import (
    CLASSES,
    STRUCTURES,
    STRUCTURES_BY_VIEW,
    VIEWS,
    label_of,
    view_of,
)

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".dcm", ".dicom"})
"""File suffixes (lower case) considered as X-ray or mask images."""

_SKIP_DIRS = {"__macosx", ".git", ".ipynb_checkpoints", "__pycache__"}

PROBLEM_COLUMNS = ["path", "patient_id", "class_name", "kind", "problem"]
"""Columns of :attr:`ClinicalDataset.problems` (and, with ``patient_id`` first, of the audit's)."""


def _key(name: str) -> str:
    """Comparison key of a name: lower case, letters and digits only ('LAT ' -> 'lat')."""
    return re.sub(r"[^a-z0-9]", "", name.lower()).replace("disc", "disk")


_VIEW_KEYS: dict[str, str] = {"ap": "AP", "lat": "LAT", "lateral": "LAT"}
_CLASS_KEYS: dict[str, str] = {_key(c): c for c in CLASSES}


def _mask_keys() -> tuple[dict[str, str], dict[str, list[str]]]:
    """Prefixed keys ('apvertebra' -> 'Ap_Vertebra') and unprefixed ones ('vertebra' -> [...])."""
    prefixed, bare = {}, {}
    for s in STRUCTURES:
        k = _key(s)
        prefixed[k] = s
        view = view_of(s)
        rest = k[len(_key(view)):]
        if view == "LAT":
            prefixed["lateral" + rest] = s
        bare.setdefault(rest, []).append(s)
    return prefixed, bare


_MASK_KEYS, _BARE_MASK_KEYS = _mask_keys()


def _split_image_name(name: str) -> tuple[str, str] | None:
    """``'LAT .png'`` -> ``('lat', '.png')``; ``'AP.jpg.'`` -> ``('ap', '.jpg')``; non-images -> None."""
    s = name.strip().rstrip(". ").strip()
    stem, dot, ext = s.rpartition(".")
    if not dot or not stem:
        return None
    ext = "." + ext.strip().lower()
    if ext not in IMAGE_SUFFIXES:
        return None
    return _key(stem), ext


def _role_of(name: str, folder_view: str | None) -> tuple[str, str] | None:
    """``(view, role)`` of a file, role ``'image'`` or a structure name; None when unknown."""
    parts = _split_image_name(name)
    if parts is None:
        return None
    key = parts[0]
    if key in _VIEW_KEYS:
        return _VIEW_KEYS[key], "image"
    if key in _MASK_KEYS:
        s = _MASK_KEYS[key]
        return view_of(s), s
    if key in _BARE_MASK_KEYS:
        options = _BARE_MASK_KEYS[key]
        if len(options) == 1:
            return view_of(options[0]), options[0]
        if folder_view is not None:
            for s in options:
                if view_of(s) == folder_view:
                    return folder_view, s
    return None


def canonical_name(view: str, role: str) -> str:
    """Canonical path inside a patient folder: ``AP/AP.jpg`` or ``LAT/Lat_Vertebra.png``."""
    return f"{view}/{view}.jpg" if role == "image" else f"{view}/{role}.png"


def _role_label(view: str, role: str) -> str:
    return f"{view} image" if role == "image" else role


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in _SKIP_DIRS


def _entries(folder: Path, ignored: dict[Path, str] | None = None) -> tuple[list[Path], list[Path]]:
    """Sorted (subdirectories, files) of a folder; symbolic links to folders count as folders.

    A folder that cannot be listed (permissions, I/O error) is recorded in ``ignored`` with the
    reason and treated as empty.
    """
    dirs, files = [], []
    try:
        with os.scandir(folder) as it:
            for e in it:
                try:
                    is_dir = e.is_dir()
                except OSError:
                    is_dir = False
                (dirs if is_dir else files).append(Path(e.path))
    except OSError as e:
        if ignored is None:
            raise
        ignored[folder] = f"cannot list folder ({e.strerror or e})"
        return [], []
    return sorted(dirs), sorted(files)


def _broken_link(path: Path) -> str | None:
    """``'broken symbolic link (to <target>)'`` for a dangling link, else None."""
    if path.is_symlink() and not path.exists():
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"broken symbolic link (to {target})"
    return None


def _id_key(patient_id: str) -> str:
    """Duplicate-ID key: Unicode NFC (macOS writes names decomposed, NFD) and case-folded."""
    return unicodedata.normalize("NFC", patient_id).casefold()


REASON_OUTSIDE = "outside the class folders (not part of the layout)"
REASON_NOT_CLASS = "not a class folder (expected Normal or Damaged, any case)"
REASON_HIDDEN = "hidden or system file/folder"
REASON_UNKNOWN_NAME = "name is neither a view image (AP, LAT) nor a known mask"
REASON_NOT_VIEW_DIR = "not a view folder (expected AP or LAT) in a patient-less class folder"
REASON_CLASS_FILE = "file directly in a class folder (not in a patient folder)"
REASON_LOOP = "symbolic link loop (folder already scanned)"


# --------------------------------------------------------------------------------------------
# records


@dataclass
class ViewRecord:
    """One view of one patient: the X-ray and its masks (structure -> path)."""

    view: str
    image_path: Path
    mask_paths: dict[str, Path] = field(default_factory=dict)
    missing_masks: list[str] = field(default_factory=list)

    @property
    def has_all_masks(self) -> bool:
        return all(s in self.mask_paths for s in STRUCTURES_BY_VIEW[self.view])


@dataclass
class PatientRecord:
    """A patient: ID (folder name), class, label (1 = Damaged) and its views."""

    patient_id: str
    class_name: str
    label: int
    folder: Path
    views: dict[str, ViewRecord] = field(default_factory=dict)

    @property
    def has_all_masks(self) -> bool:
        """Both views present, each with all of its structures' masks."""
        return all(v in self.views and self.views[v].has_all_masks for v in VIEWS)


@dataclass
class ClinicalDataset:
    """Result of :func:`scan_clinical`.

    ``patients`` are usable (both view images, no ambiguity); ``excluded`` has one row per
    excluded patient (``patient_id, class_name, folder, reason``; reasons joined by ``'; '``) and
    ``excluded_patients`` their partial records for the audit; ``renamed`` lists every file found
    under a non-canonical path (``path, role, canonical_name, patient_id, class_name``);
    ``ignored`` lists files (and skipped folders) that are not part of the layout, and
    ``ignored_reasons`` says why for each (:meth:`ignored_frame` as a table); ``problems`` lists
    files found while scanning that have a role but cannot be used (``path, patient_id,
    class_name, kind, problem``; e.g. a broken symbolic link).
    """

    root: Path
    patients: list[PatientRecord]
    excluded: pd.DataFrame
    renamed: pd.DataFrame
    ignored: list[Path]
    excluded_patients: list[PatientRecord] = field(default_factory=list)
    ignored_reasons: dict[Path, str] = field(default_factory=dict)
    problems: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PROBLEM_COLUMNS))

    def __len__(self) -> int:
        return len(self.patients)

    def ignored_frame(self) -> pd.DataFrame:
        """One row per ignored file or folder: ``path, reason``."""
        return pd.DataFrame({"path": self.ignored,
                             "reason": [self.ignored_reasons.get(p, "") for p in self.ignored]},
                            columns=["path", "reason"])

    def to_frame(self) -> pd.DataFrame:
        """One row per usable patient and view."""
        rows = []
        for p in self.patients:
            for view, v in p.views.items():
                rows.append({
                    "patient_id": p.patient_id, "class_name": p.class_name, "label": p.label,
                    "view": view, "image_path": v.image_path, "n_masks": len(v.mask_paths),
                    "missing_masks": ", ".join(v.missing_masks), "folder": p.folder,
                })
        cols = ["patient_id", "class_name", "label", "view", "image_path", "n_masks", "missing_masks", "folder"]
        return pd.DataFrame(rows, columns=cols)

    def patient(self, patient_id: str) -> PatientRecord:
        """The usable patient with this ID (KeyError if absent or excluded)."""
        for p in self.patients:
            if p.patient_id == patient_id:
                return p
        raise KeyError(f"no usable patient {patient_id!r} in {self.root}")


# --------------------------------------------------------------------------------------------
# scanning


def _find_class_folders(root: Path, ignored: dict[Path, str], max_depth: int = 3) -> list[tuple[Path, str]]:
    """Class folders at the shallowest depth below ``root`` (wrapper folders like ``Training/``)."""
    level, level_files = [root], []
    for _ in range(max_depth + 1):
        found, below = [], []
        for d in level:
            dirs, files = _entries(d, ignored)
            level_files.extend(f for f in files)
            for sub in dirs:
                if _is_hidden(sub.name):
                    ignored[sub] = REASON_HIDDEN
                    continue
                cls = _CLASS_KEYS.get(_key(sub.name))
                (found.append((sub, cls)) if cls else below.append(sub))
        if found:
            for f in level_files:
                ignored[f] = _broken_link(f) or (REASON_HIDDEN if _is_hidden(f.name) else REASON_OUTSIDE)
            for d in sorted(set(below) - {f for f, _ in found}):
                ignored[d] = REASON_NOT_CLASS
            return found
        level = below
        if not level:
            break
    cls = _CLASS_KEYS.get(_key(root.name))
    if cls:  # root is itself a class folder
        return [(root, cls)]
    empty = not any(root.iterdir())
    raise ValueError(
        f"no class folders ({', '.join(CLASSES)}, any case) found in {root} or up to "
        f"{max_depth} folder levels below it" + (" (the folder is empty)" if empty else "")
    )


def _folder_view(name: str) -> str | None:
    return _VIEW_KEYS.get(_key(name))


def _collect_files(folder: Path, ignored: dict[Path, str], only_view_dirs: bool = False):
    """(file, view of the enclosing view folder or None) for every file below ``folder``.

    Symbolic links to folders are followed once: a folder reached again (a link loop) is ignored.
    """
    out = []
    seen = {os.path.realpath(folder)}
    dirs, files = _entries(folder, ignored)
    out.extend((f, None) for f in files)
    stack = [(d, _folder_view(d.name)) for d in dirs]
    if only_view_dirs:
        for d, v in stack:
            if v is None:
                ignored[d] = REASON_HIDDEN if _is_hidden(d.name) else REASON_NOT_VIEW_DIR
        stack = [(d, v) for d, v in stack if v is not None]
    while stack:
        d, v = stack.pop(0)
        if _is_hidden(d.name):
            ignored[d] = REASON_HIDDEN
            continue
        real = os.path.realpath(d)
        if real in seen:
            ignored[d] = REASON_LOOP
            continue
        seen.add(real)
        sub_dirs, sub_files = _entries(d, ignored)
        out.extend((f, v) for f in sub_files)
        stack = [(s, _folder_view(s.name) or v) for s in sub_dirs] + stack
    return out


def _scan_patient(folder: Path, patient_id: str, class_name: str, ignored: dict[Path, str],
                  renamed: list[dict], problems: list[dict],
                  only_view_dirs: bool = False) -> tuple[PatientRecord, list[str]]:
    candidates: dict[tuple[str, str], list[Path]] = {}
    broken: dict[tuple[str, str], list[tuple[Path, str]]] = {}
    files = _collect_files(folder, ignored, only_view_dirs)
    for f, folder_view in files:
        role = None if _is_hidden(f.name) else _role_of(f.name, folder_view)
        if role is None:
            ignored[f] = _broken_link(f) or (REASON_HIDDEN if _is_hidden(f.name) else REASON_UNKNOWN_NAME)
            continue
        view, what = role
        dangling = _broken_link(f)
        if dangling:  # a role, but nothing to read: reported, never a candidate
            ignored[f] = dangling
            broken.setdefault(role, []).append((f, dangling))
            problems.append({"path": f, "patient_id": patient_id, "class_name": class_name,
                             "kind": "broken link", "problem": f"{_role_label(view, what)}: {dangling}"})
            continue
        candidates.setdefault(role, []).append(f)
        canon = canonical_name(view, what)
        if f.relative_to(folder).as_posix() != canon:
            renamed.append({"path": f, "role": _role_label(view, what), "canonical_name": canon,
                            "patient_id": patient_id, "class_name": class_name})

    reasons: list[str] = []
    if not files:
        reasons.append("empty patient folder (no files)")

    def pick(view: str, role: str) -> Path | None:
        found = candidates.get((view, role), [])
        if len(found) > 1:
            names = ", ".join(p.relative_to(folder).as_posix() for p in found)
            reasons.append(f"ambiguous: {len(found)} candidates for {_role_label(view, role)}: {names}")
            return None
        return found[0] if found else None

    record = PatientRecord(patient_id, class_name, label_of(class_name), folder)
    for view in VIEWS:
        image = pick(view, "image")
        masks, missing = {}, []
        for s in STRUCTURES_BY_VIEW[view]:
            p = pick(view, s)
            if p is None:
                missing.append(s)
            else:
                masks[s] = p
        if image is None:
            if (view, "image") in broken and not candidates.get((view, "image")):
                for f, why in broken[(view, "image")]:
                    reasons.append(f"{view} image {f.relative_to(folder).as_posix()} is a {why}")
            elif not candidates.get((view, "image")) and files:
                reasons.append(f"missing {view} image")
            continue
        record.views[view] = ViewRecord(view, image, masks, missing)
    return record, reasons


def scan_clinical(root: str | os.PathLike, progress: bool = True) -> ClinicalDataset:
    """Find every patient of a clinical-layout dataset below ``root`` (names only, no decoding).

    Raises ``FileNotFoundError`` if ``root`` does not exist and ``ValueError`` if it is a file or
    holds no ``Normal``/``Damaged`` folder (searched up to 3 wrapper levels deep).

    Patient IDs are compared after Unicode NFC normalisation and case folding, so ``José`` written
    composed and decomposed (as macOS does) is one ID - a duplicate when found twice.
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, got {type(root).__name__}: {root!r}")
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"clinical dataset folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"clinical dataset root {root} is a file, not a folder")
    ignored: dict[Path, str] = {}
    renamed: list[dict] = []
    problems: list[dict] = []

    # (folder, patient_id, class, patient-less layout?)
    jobs: list[tuple[Path, str, str, bool]] = []
    for class_dir, cls in _find_class_folders(root, ignored):
        dirs, files = _entries(class_dir, ignored)
        if any(_folder_view(d.name) for d in dirs):
            jobs.append((class_dir, " ".join(class_dir.name.split()), cls, True))
            continue
        for f in files:
            ignored[f] = _broken_link(f) or (REASON_HIDDEN if _is_hidden(f.name) else REASON_CLASS_FILE)
        for d in dirs:
            if _is_hidden(d.name):
                ignored[d] = REASON_HIDDEN
            else:
                jobs.append((d, " ".join(d.name.split()), cls, False))

    scanned: list[tuple[PatientRecord, list[str]]] = []
    for folder, pid, cls, patientless in tqdm(jobs, desc="scan clinical", unit="patient", disable=not progress):
        scanned.append(_scan_patient(folder, pid, cls, ignored, renamed, problems, only_view_dirs=patientless))

    by_id: dict[str, list[PatientRecord]] = {}
    for rec, _ in scanned:
        by_id.setdefault(_id_key(rec.patient_id), []).append(rec)
    for rec, reasons in scanned:
        others = [o for o in by_id[_id_key(rec.patient_id)] if o is not rec]
        if others:
            where = ", ".join(f"{o.class_name} ({o.folder})" for o in others)
            reasons.append(f"duplicate patient id {rec.patient_id!r}: also in {where}")

    patients, excluded_patients, excluded_rows = [], [], []
    for rec, reasons in scanned:
        if reasons:
            excluded_patients.append(rec)
            excluded_rows.append({"patient_id": rec.patient_id, "class_name": rec.class_name,
                                  "folder": rec.folder, "reason": "; ".join(reasons)})
        else:
            patients.append(rec)

    excluded = pd.DataFrame(excluded_rows, columns=["patient_id", "class_name", "folder", "reason"])
    renamed_df = pd.DataFrame(renamed, columns=["path", "role", "canonical_name", "patient_id", "class_name"])
    ignored_paths = sorted(ignored)
    return ClinicalDataset(root, patients, excluded, renamed_df, ignored_paths, excluded_patients,
                           ignored_reasons={p: ignored[p] for p in ignored_paths},
                           problems=pd.DataFrame(problems, columns=PROBLEM_COLUMNS))


# the pixels of what was scanned, in their own module; importable from here too (tests/test_moved_names.py)
from spinelib.data.clinical_arrays import (  # noqa: E402, F401
    load_classification_pairs,
    load_segmentation_arrays,
    load_view,
    structures_for,
)
