"""The two X-ray views and the eight segmented structures of the paper's dataset.

The names are the mask file stems used by the clinical dataset (``Ap_Vertebra.png`` ...).
"""

from __future__ import annotations

VIEWS: tuple[str, ...] = ("AP", "LAT")
"""X-ray views: antero-posterior and lateral."""

CLASSES: tuple[str, ...] = ("Normal", "Damaged")
"""Patient labels; ``Damaged`` is the positive class (label 1)."""

AP_STRUCTURES: tuple[str, ...] = ("Ap_Vertebra", "Ap_Pedicle", "Ap_Spinous_Process")
LAT_STRUCTURES: tuple[str, ...] = (
    "Lat_Vertebra",
    "Lat_Disk_Height",
    "Lat_Spinous_Process",
    "Lat_Anterior_Vertebral_Line",
    "Lat_Posterior_Vertebral_Line",
)
STRUCTURES: tuple[str, ...] = AP_STRUCTURES + LAT_STRUCTURES
"""All eight structures, AP first, in the order of the paper's Table 3."""

STRUCTURES_BY_VIEW: dict[str, tuple[str, ...]] = {"AP": AP_STRUCTURES, "LAT": LAT_STRUCTURES}

PAPER_DICE: dict[str, float] = {
    "Ap_Vertebra": 0.7711,
    "Ap_Pedicle": 0.6163,
    "Ap_Spinous_Process": 0.5710,
    "Lat_Vertebra": 0.7619,
    "Lat_Disk_Height": 0.6336,
    "Lat_Spinous_Process": 0.6020,
    "Lat_Anterior_Vertebral_Line": 0.4463,
    "Lat_Posterior_Vertebral_Line": 0.5449,
}
"""Validation Dice per structure as reported in the paper's Table 3."""

PAPER_TABLE1: dict[str, dict[str, int]] = {
    "Normal": {"min_height": 1714, "max_height": 3184, "min_width": 1211, "max_width": 2703},
    "Damaged": {"min_height": 2341, "max_height": 4280, "min_width": 1096, "max_width": 3520},
}
"""Image size ranges (pixels) per class, the paper's Table 1."""


def view_of(structure: str) -> str:
    """Return ``"AP"`` or ``"LAT"`` for a structure name (case-insensitive)."""
    for view, names in STRUCTURES_BY_VIEW.items():
        if structure.lower() in (n.lower() for n in names):
            return view
    raise ValueError(f"unknown structure {structure!r}; expected one of {', '.join(STRUCTURES)}")


def label_of(class_name: str) -> int:
    """Return 1 for ``Damaged`` and 0 for ``Normal`` (case-insensitive)."""
    for i, c in enumerate(CLASSES):
        if class_name.strip().lower() == c.lower():
            return i
    raise ValueError(f"unknown class {class_name!r}; expected one of {', '.join(CLASSES)}")
