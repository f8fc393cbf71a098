"""Dataset audits: what is there, what was excluded and why, image sizes, mask coverage.

:func:`audit_clinical` rebuilds the paper's Table 1 (image size ranges per class) from file
headers and measures how much of each X-ray every structure's mask covers;
:func:`audit_aasce` describes the AASCE images and their Cobb angles.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from spinelib.core.imageio import (
    ImageReadError,
    image_size,
    read_mask_levels,
    read_xray,
    resize_mask,
)
from spinelib.core.structures import CLASSES, STRUCTURES, view_of
from spinelib.data.clinical import ClinicalDataset

PROBLEM_KINDS: dict[str, str] = {
    "unreadable": "the file cannot be read (empty, truncated, not an image, too large, ...)",
    "broken link": "a symbolic link whose target does not exist",
    "size mismatch": "a mask whose height x width differs from its X-ray's",
    "blank X-ray": "an X-ray with a single grey value (nothing to see)",
    "empty mask": "a mask with no foreground pixel at full resolution (loaded as is)",
    "non-binary mask": "a mask with more than two grey levels (anti-aliased or lossy); read as value > 0",
    "mostly foreground": "a mask covering more than half the image: inverted (black on white)?",
}
"""The ``kind`` values of :attr:`ClinicalAudit.problems`, with what each means."""

MOSTLY_FOREGROUND = 0.5
"""Mask coverage above which a mask is flagged as possibly inverted (vertebrae cover < 20 %)."""

SEVERITY_BINS: tuple[float, ...] = (0.0, 10.0, 25.0, 40.0, np.inf)
SEVERITY_LABELS: tuple[str, ...] = ("<10 (none)", "10-25 (mild)", "25-40 (moderate)", ">=40 (severe)")
"""Scoliosis severity by maximum Cobb angle (degrees), the usual clinical bands."""


@dataclass
class ClinicalAudit:
    """Tables describing a scanned clinical dataset (see :func:`audit_clinical`). Paths in the tables
    and messages are relative to :attr:`root` (``audit.root / audit.problems.path[0]`` is the file)."""

    patients_per_class: pd.DataFrame
    excluded: pd.DataFrame
    renamed: pd.DataFrame
    size_table: pd.DataFrame
    sizes: pd.DataFrame
    mask_coverage: pd.DataFrame
    problems: pd.DataFrame
    n_ignored: int = 0
    coverage_size: tuple[int, int] | None = None
    provenance: dict = field(default_factory=dict)
    root: Path | None = None  # the dataset's folder; every path in the tables is relative to it

    def summary(self) -> str:
        """A few lines of text: counts, exclusions, sizes, coverage."""
        ppc = self.patients_per_class
        lines = [
            "patients: " + ", ".join(f"{c} {int(ppc.loc[c, 'usable'])} usable / {int(ppc.loc[c, 'found'])} found"
                                     for c in ppc.index),
            f"excluded: {len(self.excluded)} patient(s); renamed files: {len(self.renamed)}; "
            f"ignored files: {self.n_ignored}; file problems: {len(self.problems)}"
            + (" (" + ", ".join(f"{k} {n}" for k, n in self.problems["kind"].value_counts().items()) + ")"
               if len(self.problems) else ""),
        ]
        for pid, reason in zip(self.excluded.get("patient_id", []), self.excluded.get("reason", [])):
            lines.append(f"  excluded {pid}: {reason}")
        for c, r in self.size_table.iterrows():
            if r["n_images"] > 0:
                lines.append(f"sizes {c}: height {int(r['min_height'])}-{int(r['max_height'])}, "
                             f"width {int(r['min_width'])}-{int(r['max_width'])} px ({int(r['n_images'])} X-rays)")
        if len(self.mask_coverage):
            at = "full resolution" if self.coverage_size is None else f"{self.coverage_size[0]}x{self.coverage_size[1]}"
            cov = ", ".join(f"{s} {100 * m:.2f}%" for s, m in
                            zip(self.mask_coverage["structure"], self.mask_coverage["mean"]) if np.isfinite(m))
            lines.append(f"mask coverage at {at} (mean % of pixels): {cov}")
        return "\n".join(lines)


def audit_clinical(dataset: ClinicalDataset, coverage_size: tuple[int, int] | None = (512, 256),
                   progress: bool = True, check_xrays: bool = True, provenance: bool = True) -> ClinicalAudit:
    """Audit a :class:`~spinelib.data.clinical.ClinicalDataset`.

    - ``patients_per_class``: per class, patients found, usable, excluded, with all 8 masks;
    - ``sizes``: one row per X-ray (usable and excluded patients), height and width from the header;
    - ``size_table``: the paper's Table 1, per class min/max height and width of the X-rays;
    - ``mask_coverage``: per structure, the fraction of white pixels
      :math:`c = \\frac{1}{HW}\\sum_{ij} m_{ij}` over usable patients (mean, std, min, max, and
      ``n_empty`` masks). Each mask is measured after resizing (nearest neighbour) to
      ``coverage_size`` - the resolution the network is trained at, where thin lines can vanish -
      or at full resolution when ``coverage_size`` is None;
    - ``problems``: one row per file issue, ``patient_id, path, kind, problem`` with ``kind`` one of
      :data:`PROBLEM_KINDS`: unreadable files, broken links (from the scan), masks whose size
      differs from their X-ray, blank X-rays, and - files that load but deserve a look - empty
      masks, non-binary masks and masks that are mostly foreground;
    - ``provenance``: :func:`spinelib.core.provenance.run_info` with the dataset's fingerprint (package
      versions, platform, UTC time), unless ``provenance=False``.

    ``check_xrays`` decodes every X-ray (at ``coverage_size``, cheap for JPEGs) to catch truncated
    files that a header read misses.

    Paths (``excluded.folder``, ``renamed.path``, ``sizes.path``, ``problems.path``) and the
    messages that name files are relative to the dataset's folder (:attr:`ClinicalAudit.root`), so a
    table shows ``Normal/P1/AP/AP.jpg``, never the folder of the machine that ran it; a path outside
    that folder (a link's target) stays as it is.
    """
    problems: list[dict] = [
        {"patient_id": r["patient_id"], "path": r["path"], "kind": r["kind"], "problem": r["problem"]}
        for r in dataset.problems.to_dict("records")
    ]

    def report(patient_id: str, path, kind: str, problem: str) -> None:
        problems.append({"patient_id": patient_id, "path": path, "kind": kind, "problem": problem})

    size_rows: list[dict] = []
    records = [(p, False) for p in dataset.patients] + [(p, True) for p in dataset.excluded_patients]
    xray_shape: dict[tuple[str, str, str], tuple[int, int]] = {}
    for p, excluded in tqdm(records, desc="audit X-rays", unit="patient", disable=not progress):
        for view, v in p.views.items():
            try:
                h, w = image_size(v.image_path)
                if check_xrays:
                    img = read_xray(v.image_path, size=coverage_size)
                    if img.min() == img.max():
                        report(p.patient_id, v.image_path, "blank X-ray",
                               f"{v.image_path}: every pixel has the same value ({int(img.min())})")
            except (ImageReadError, FileNotFoundError) as e:
                report(p.patient_id, v.image_path, "unreadable", str(e))
                continue
            xray_shape[(p.class_name, p.patient_id, view)] = (h, w)
            size_rows.append({"patient_id": p.patient_id, "class_name": p.class_name, "view": view,
                              "height": h, "width": w, "excluded": excluded, "path": v.image_path})
    sizes = pd.DataFrame(size_rows, columns=["patient_id", "class_name", "view", "height", "width", "excluded", "path"])

    table = []
    for c in CLASSES:
        s = sizes[sizes["class_name"] == c]
        table.append({"class_name": c, "min_height": s["height"].min(), "max_height": s["height"].max(),
                      "min_width": s["width"].min(), "max_width": s["width"].max(), "n_images": len(s)})
    size_table = pd.DataFrame(table).set_index("class_name")

    fractions: dict[str, list[float]] = {s: [] for s in STRUCTURES}
    jobs = [(p, s, v.image_path, path) for p in dataset.patients for v in p.views.values()
            for s, path in v.mask_paths.items()]
    for p, s, xray_path, path in tqdm(jobs, desc="audit masks", unit="mask", disable=not progress):
        shape = xray_shape.get((p.class_name, p.patient_id, view_of(s)))
        try:
            mshape = image_size(path)
            if shape is not None and mshape != shape:
                report(p.patient_id, path, "size mismatch",
                       f"{path}: mask is {mshape[0]} x {mshape[1]} (h x w) but its X-ray {xray_path} is "
                       f"{shape[0]} x {shape[1]}")
                continue
            m, levels = read_mask_levels(path, shape=shape)
        except (ImageReadError, FileNotFoundError) as e:
            report(p.patient_id, path, "unreadable", str(e))
            continue
        n_fg = int(m.sum())
        if n_fg == 0:
            report(p.patient_id, path, "empty mask", f"{path}: no foreground pixel ({s}); loaded as an empty mask")
        elif n_fg > MOSTLY_FOREGROUND * m.size:
            report(p.patient_id, path, "mostly foreground",
                   f"{path}: {100 * n_fg / m.size:.1f}% of the pixels are foreground ({s}); inverted mask?")
        if len(levels) > 2:
            shown = ", ".join(str(int(v)) for v in levels[:6]) + (", ..." if len(levels) > 6 else "")
            report(p.patient_id, path, "non-binary mask",
                   f"{path}: {len(levels)} grey levels ({shown}), expected 2; read as foreground = value > 0")
        if coverage_size is not None:
            m = resize_mask(m, coverage_size, method="nearest")
        fractions[s].append(float(m.mean()))
    cov_rows = []
    for s in STRUCTURES:
        f = np.asarray(fractions[s], dtype=np.float64)
        stats = dict(mean=f.mean(), std=f.std(ddof=1) if len(f) > 1 else np.nan, min=f.min(), max=f.max()) if len(f) \
            else dict(mean=np.nan, std=np.nan, min=np.nan, max=np.nan)
        cov_rows.append({"structure": s, "view": view_of(s), "n_masks": len(f), **stats, "n_empty": int((f == 0).sum())})
    mask_coverage = pd.DataFrame(cov_rows)

    found = pd.Series([p.class_name for p, _ in records], dtype=object)
    usable = pd.Series([p.class_name for p in dataset.patients], dtype=object)
    complete = pd.Series([p.class_name for p in dataset.patients if p.has_all_masks], dtype=object)
    ppc = pd.DataFrame({
        "found": [int((found == c).sum()) for c in CLASSES],
        "usable": [int((usable == c).sum()) for c in CLASSES],
        "excluded": [int((dataset.excluded["class_name"] == c).sum()) for c in CLASSES],
        "with_all_masks": [int((complete == c).sum()) for c in CLASSES],
    }, index=pd.Index(CLASSES, name="class_name"))

    info = {}
    if provenance:
        from spinelib.core.provenance import run_info

        info = run_info(None, None, {"clinical": dataset.root})
    root = Path(dataset.root)
    problem_frame = pd.DataFrame(problems, columns=["patient_id", "path", "kind", "problem"])
    return ClinicalAudit(
        patients_per_class=ppc, excluded=relative_to_root(dataset.excluded, root, ("folder",), ("reason",)),
        renamed=relative_to_root(dataset.renamed, root, ("path",)), size_table=size_table,
        sizes=relative_to_root(sizes, root, ("path",)), mask_coverage=mask_coverage,
        problems=relative_to_root(problem_frame, root, ("path",), ("problem",)),
        n_ignored=len(dataset.ignored), coverage_size=None if coverage_size is None else tuple(coverage_size),
        provenance=info, root=root,
    )


def relative_to_root(frame: pd.DataFrame, root: str | os.PathLike, path_columns=(), text_columns=()) -> pd.DataFrame:
    """A copy of ``frame`` whose ``path_columns`` are relative to ``root`` (a path outside it is kept)
    and whose ``text_columns`` have every ``root/`` taken out of the messages."""
    root = Path(root)
    prefixes = sorted({str(root), str(root.resolve())}, key=len, reverse=True)

    def rel(p):
        if p is None or (isinstance(p, float) and np.isnan(p)):
            return p
        for base in (root, root.resolve()):
            try:
                return Path(p).relative_to(base)
            except ValueError:
                continue
        return p

    def text(s):
        if not isinstance(s, str):
            return s
        for pre in prefixes:
            s = s.replace(pre + os.sep, "")
        return s

    out = frame.copy()
    for c in path_columns:
        if c in out:
            out[c] = [rel(p) for p in out[c]]
    for c in text_columns:
        if c in out:
            out[c] = [text(s) for s in out[c]]
    return out


@dataclass
class AasceAudit:
    """Tables describing the AASCE images (see :func:`audit_aasce`)."""

    n_images: int
    n_patients: int
    size_range: pd.DataFrame
    cobb_table: pd.DataFrame
    severity: pd.DataFrame
    images_per_patient: pd.Series
    n_clipped_corners: int

    @property
    def n_severe(self) -> int:
        return int(self.severity.loc[SEVERITY_LABELS[-1], "images"])

    def summary(self) -> str:
        r = self.size_range
        sev = ", ".join(f"{k}: {int(v)}" for k, v in self.severity["images"].items())
        return "\n".join([
            f"{self.n_images} images of {self.n_patients} patients "
            f"({self.images_per_patient.max()} images at most for one patient)",
            f"height {int(r.loc['height', 'min'])}-{int(r.loc['height', 'max'])} px, "
            f"width {int(r.loc['width', 'min'])}-{int(r.loc['width', 'max'])} px",
            f"max Cobb angle: median {self.cobb_table.loc['50%', 'cobb_max']:.1f} deg, "
            f"range {self.cobb_table.loc['min', 'cobb_max']:.1f}-{self.cobb_table.loc['max', 'cobb_max']:.1f} deg",
            f"severity by max Cobb angle: {sev}",
            f"landmark corners clipped to the image: {self.n_clipped_corners}",
        ])


def audit_aasce(aasce_frame: pd.DataFrame) -> AasceAudit:
    """Describe a frame from :func:`spinelib.data.aasce.load_aasce`: counts, size range, Cobb-angle
    distribution (``describe()`` of the 3 angles and their maximum) and severity bands of the
    maximum Cobb angle (:data:`SEVERITY_LABELS`; severe means :math:`\\ge 40^\\circ`)."""
    needed = {"patient_id", "height", "width", "cobb_pt", "cobb_mt", "cobb_tl", "cobb_max"}
    missing = needed - set(aasce_frame.columns)
    if missing:
        raise ValueError(f"aasce_frame lacks columns {sorted(missing)}; use spinelib.data.aasce.load_aasce()")
    if len(aasce_frame) == 0:
        raise ValueError("aasce_frame is empty")
    f = aasce_frame
    size_range = pd.DataFrame({"min": [f["height"].min(), f["width"].min()],
                               "max": [f["height"].max(), f["width"].max()]}, index=["height", "width"])
    cobb = f[["cobb_pt", "cobb_mt", "cobb_tl", "cobb_max"]].describe()
    bands = pd.cut(f["cobb_max"], bins=list(SEVERITY_BINS), labels=list(SEVERITY_LABELS), right=False)
    counts = bands.value_counts().reindex(list(SEVERITY_LABELS), fill_value=0)
    severity = pd.DataFrame({"images": counts.astype(int), "fraction": counts / len(f)})
    severity.index.name = "max_cobb"
    per_patient = f.groupby("patient_id").size()
    clipped = int(f["n_clipped"].sum()) if "n_clipped" in f else 0
    return AasceAudit(
        n_images=len(f), n_patients=int(f["patient_id"].nunique()), size_range=size_range, cobb_table=cobb,
        severity=severity, images_per_patient=per_patient, n_clipped_corners=clipped,
    )
