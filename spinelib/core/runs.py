"""Run plumbing shared by every experiment: cache keys, JSON records, TensorFlow's log level, CPU cost."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def write_json(path: Path, obj: dict, indent: int = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a reader never sees half a file); paths and
    other non-JSON values are written as strings."""
    from spinelib.core.imageio import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(obj, indent=indent, default=str).encode())


@contextlib.contextmanager
def quiet_tensorflow():
    """Raise TensorFlow's Python logger to ERROR inside the block: every experiment builds a new
    model, and TensorFlow warns about the retracing that this implies (harmless here)."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def cpu_cost() -> Iterator[dict]:
    """Measure a block: ``{'cpu_minutes', 'wall_minutes'}`` (filled when the block ends).

    CPU minutes are :func:`time.process_time` (user + system time of every thread of this
    process), the cost on a machine of any core count; wall minutes depend on the load.
    """
    cost = {"cpu_minutes": float("nan"), "wall_minutes": float("nan")}
    c0, w0 = time.process_time(), time.perf_counter()
    try:
        yield cost
    finally:
        cost["cpu_minutes"] = (time.process_time() - c0) / 60
        cost["wall_minutes"] = (time.perf_counter() - w0) / 60


def run_key(payload: dict, digest: str = "sha256", length: int = 12) -> str:
    """The one cache key of the package: a short hash of a run's description (sorted-key JSON).

    Every cached run is found again by it: the classification runs and caches
    (:func:`spinelib.cls.cv.cached_run`: ``sha256``, 12 characters, the defaults) and the
    segmentation experiments (:func:`spinelib.seg.experiment.run_experiment`: ``sha1``, 16
    characters, over the data fingerprint and the config). The two spellings are those the runs on
    disk were stored under, so every existing cache stays valid; a new kind of run uses the defaults.
    """
    keras = sys.modules.get("keras")  # a run trained under another precision than float32 is another run
    policy = keras.mixed_precision.global_policy().name if keras is not None else "float32"
    if policy != "float32":
        payload = {**payload, "precision": policy}
    return hashlib.new(digest, json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:length]
