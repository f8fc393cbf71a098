"""The AASCE landmark run: split by patient, leave flagged labels out of training, train.

    split = aasce_split(frame)                  # the committed mask runs' 190 / 47 patients
    result = train_aasce_landmarks(root, work_dir="outputs/landmarks_aasce", epochs=30)

The validation patients are those of every committed AASCE mask run
(:func:`spinelib.data.splits.patient_split` with ``val_fraction=0.2, seed=0`` on all 481 images).
Training leaves out the training images whose labels :func:`spinelib.data.label_audit.flagged_images`
flags (their names are recorded in ``exclusions.json``); validation keeps every image, and
:mod:`spinelib.landmarks.evaluate` scores all of them and the clean ones apart.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spinelib.landmarks.train import (
    LandmarkTrainResult,
    prepare_landmark_data,
    train_landmarks,
)


@dataclass(frozen=True)
class AasceSplit:
    """Row indices into the :func:`spinelib.data.aasce.load_aasce` frame."""

    train: np.ndarray          # training images with clean labels (what the network sees)
    val: np.ndarray            # every validation image
    excluded: tuple[str, ...]  # training images left out for flagged labels
    flagged: frozenset         # every flagged image name (training and validation)


def aasce_split(frame: pd.DataFrame, val_fraction: float = 0.2, seed: int = 0, exclude_flagged: bool = True,
                min_severity: str = "suspect") -> AasceSplit:
    """The patient split of the AASCE runs, with flagged training images left out."""
    from spinelib.data.label_audit import flagged_images
    from spinelib.data.splits import patient_split

    train, val = patient_split(frame["patient_id"].astype(str).tolist(), val_fraction=val_fraction, seed=seed)
    flagged = frozenset(flagged_images(frame, min_severity=min_severity)) if exclude_flagged else frozenset()
    names = frame["image_name"].astype(str).to_numpy()
    keep = np.array([names[i] not in flagged for i in train], bool)
    return AasceSplit(train[keep], val, tuple(names[train[~keep]]), flagged)


def train_aasce_landmarks(root: str | os.PathLike, work_dir: str | os.PathLike, max_images: int | None = None,
                          progress: bool = True, **settings) -> tuple[LandmarkTrainResult, AasceSplit]:
    """Train the landmark network on the AASCE training split (settings: :data:`spinelib.landmarks.train.SETTINGS`).

    ``work_dir`` receives the network's files, ``exclusions.json`` and a cache of the resized
    X-rays (``data_<H>x<W>.npz``)."""
    from spinelib.data.aasce import load_aasce
    from spinelib.landmarks.train import SETTINGS

    frame = load_aasce(root, max_images=max_images)
    split = aasce_split(frame)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "exclusions.json").write_text(json.dumps(
        {"rule": "spinelib.data.label_audit.flagged_images (any severity)", "excluded_training_images": list(split.excluded),
         "n_train": int(len(split.train)), "n_val": int(len(split.val))}, indent=1))
    size = tuple(settings.get("size", SETTINGS["size"]))
    data = prepare_landmark_data(frame, size, cache=work / f"data_{size[0]}x{size[1]}.npz", progress=progress)
    return train_landmarks(data, split.train, split.val, work, progress=progress, **settings), split
