"""The record of an AASCE long run (``metrics.json`` with its ``rescored.json``) and its label."""

from __future__ import annotations

import json
import os
from pathlib import Path

LEVELS_FILE = "levels.csv"
"""Dice per vertebra (:func:`aasce_level_summary`) beside an AASCE long run's ``metrics.json``."""


ENCODER_LABELS = {"none": "U-Net", "lite0-imagenet": "Lite0 encoder, ImageNet", "lite0-random": "Lite0 encoder, random init"}


def read_long_runs(long_dir) -> list[tuple[Path, dict]]:
    """``(metrics.json path, record)`` of each committed long-run folder in ``long_dir`` (one or
    several; missing ones skipped). Fields a record predates are taken from a ``rescored.json``
    beside it (``scripts/rescore_aasce.py``), so every reader sees them the same way."""
    dirs = [long_dir] if isinstance(long_dir, (str, os.PathLike)) else list(long_dir)
    out = []
    for path in (Path(d) / "metrics.json" for d in dirs):
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        rescored = path.parent / "rescored.json"
        again = json.loads(rescored.read_text()) if rescored.is_file() else {}
        for name in ("dice_original_resolution", "outline_errors_in_frame", "training_fit", "span"):
            if not m.get(name) and again.get(name):
                m[name] = again[name]
        out.append((path, m))
    return out


LONG_RUN_SIZE = (384, 192)
"""The input size most AASCE long runs share; :func:`long_run_label` names any other."""


def long_run_label(s: dict) -> str:
    """``long run (committed): <network>; <options>`` from a ``train_aasce.py`` record's settings;
    the input size is named when it is not :data:`LONG_RUN_SIZE`, the long runs' common frame."""
    label = ENCODER_LABELS.get(s.get("encoder", "none"), s.get("encoder")) + ("; spine crop" if s.get("crop") else "")
    if not s.get("crop") and s.get("size") and tuple(s["size"]) != LONG_RUN_SIZE:
        label += f"; {s['size'][0]}x{s['size'][1]} input"
    if s.get("full_res_skip"):
        label += f"; stride-1 skip ({s['full_res_skip']} ch)"
    if s.get("decoder_filters"):
        label += f"; decoder {'-'.join(str(f) for f in s['decoder_filters'])}"
    if s.get("lr_schedule", "plateau") != "plateau":
        label += f"; {s['lr_schedule']} LR"
    if s.get("tta"):
        label += "; flip TTA"
    return f"long run (committed): {label}"
