"""The record of an AASCE long run (``metrics.json`` with its ``rescored.json``) and its label."""

from __future__ import annotations

import json
import os
from pathlib import Path

LEVELS_FILE = "levels.csv"
"""Dice per vertebra (:func:`aasce_level_summary`) beside an AASCE long run's ``metrics.json``."""


ENCODER_LABELS = {"none": "U-Net", "lite0-imagenet": "Lite0 encoder, ImageNet", "lite0-random": "Lite0 encoder, random init"}


RESCORED_FIELDS = ("dice_original_resolution", "outline_errors_in_frame", "training_fit", "span")
"""Fields of a long run's ``metrics.json`` that ``scripts/rescore_aasce.py`` can measure afterwards
(into ``rescored.json`` beside it) for records that predate them."""


def merge_rescored(metrics: dict, folder: str | os.PathLike) -> tuple[dict, set[str]]:
    """``(record, later)``: a long run's ``metrics`` with each of :data:`RESCORED_FIELDS` it lacks
    taken from ``<folder>/rescored.json`` (when there), and the names of the fields so taken. The
    one place where the two files meet: every reader of a long run goes through here."""
    rescored = Path(folder) / "rescored.json"
    again = json.loads(rescored.read_text()) if rescored.is_file() else {}
    merged, later = dict(metrics), set()
    for name in RESCORED_FIELDS:
        if not merged.get(name) and again.get(name):
            merged[name] = again[name]
            later.add(name)
    return merged, later


def read_long_runs(long_dir) -> list[tuple[Path, dict]]:
    """``(metrics.json path, record)`` of each committed long-run folder in ``long_dir`` (one or
    several; missing ones skipped). Fields a record predates are taken from a ``rescored.json``
    beside it (``scripts/rescore_aasce.py``), so every reader sees them the same way."""
    dirs = [long_dir] if isinstance(long_dir, (str, os.PathLike)) else list(long_dir)
    out = []
    for path in (Path(d) / "metrics.json" for d in dirs):
        if not path.is_file():
            continue
        m, _ = merge_rescored(json.loads(path.read_text()), path.parent)
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


def write_readme(out: str | os.PathLike, metrics: dict) -> Path:
    """``<out>/README.md`` of a long run (``scripts/train_aasce.py``): its command, commit, Dice and
    times, from its ``metrics.json`` and, for fields measured later, its ``rescored.json``."""
    out = Path(out)
    crop = metrics["settings"].get("crop", False)
    plain = metrics.get("dice_without_tta")
    text = (
        "# AASCE vertebra U-Net: the long run\n\n"
        "Real AASCE AP X-rays, validation split by patient. Produced by\n\n"
        f"    {metrics['command']}\n\n"
        f"at git commit `{metrics['git_commit']}`, on {metrics['cpu_count']} CPU cores "
        f"(1-min load average {metrics['load_average_1min_at_start']} at the start, "
        f"{metrics['load_average_1min_at_end']} at the end).\n\n"
        f"Mean validation Dice over {metrics['n_val_patients']} patients: {metrics['dice_mean_over_val_patients']:.4f} "
        f"(95 % bootstrap CI {metrics['dice_ci95'][0]:.4f}-{metrics['dice_ci95'][1]:.4f}); "
        f"{metrics['epochs_run']} epochs{' (two stages: spine finder, then crops)' if crop else ''}, "
        f"{metrics['train_seconds'] / 60:.1f} min of training, "
        f"{metrics['wall_seconds_this_call'] / 60:.1f} min wall time for this call.\n\n"
    )
    if plain:
        text += (f"Without the flip test-time augmentation the same network gives {plain['mean']:.4f} "
                 f"(95 % CI {plain['ci95'][0]:.4f}-{plain['ci95'][1]:.4f}).\n\n")
    merged, later = merge_rescored(metrics, out)
    afterwards = " (measured afterwards from the run's saved probabilities by `scripts/rescore_aasce.py`)"

    def field(name: str, note: str = afterwards) -> tuple[dict | None, str]:
        """The record's own value, else the one rescore_aasce.py measured later (and a note saying so)."""
        return merged.get(name), (note if name in later else "")

    fit, how = field("training_fit", " (measured afterwards with the run's network by "
                                     "`scripts/rescore_aasce.py --training-fit`)")
    if fit:
        text += (f"Training fit, no augmentation, no TTA, in {fit['frame']}{how}: Dice "
                 f"{fit['train']['mean']:.4f} over its {fit['n_train_patients']} training patients against "
                 f"{fit['val']['mean']:.4f} over the {fit['n_val_patients']} validation patients (not a validation "
                 "number: close together means the network underfits, far apart that it overfits).\n\n")
    span, how = field("span")
    if span:
        text += (f"Where it errs{how}: {span['outside_span_share']:.1%} of the predicted pixels lie more than two rows "
                 f"above T1 or below L5 (bodies the labels leave out); with them removed the Dice would be "
                 f"{span['dice_within_span']:.4f}. Dice per vertebra, T1 to L5: `{LEVELS_FILE}`.\n\n")
    original, how = field("dice_original_resolution")
    if original:
        text += (f"At each X-ray's own size (probabilities put back, masks drawn there): Dice {original['mean']:.4f} "
                 f"(95 % CI {original['ci95'][0]:.4f}-{original['ci95'][1]:.4f}){how}.\n\n")
    if metrics.get("mask_convention"):
        text += ("Masks: the corners scaled with pixel centres aligned to the resized X-ray "
                 "(`spinelib.data.aasce.scale_landmarks`).\n\n")
    text += ("Files: `metrics.json` (everything above), `cases.csv` (per validation image), `history.csv`, "
             "`history.png`, `cases.png` (best and worst validation patients)"
             + (f", `{LEVELS_FILE}` (Dice per vertebra)" if (out / LEVELS_FILE).is_file() else "") + ".\n")
    path = out / "README.md"
    path.write_text(text)
    return path
