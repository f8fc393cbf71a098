"""Run plumbing shared by every experiment: cache keys, JSON records, TensorFlow's log level, CPU cost."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def write_json(path: Path, obj: dict) -> None:
    from spinelib.core.imageio import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(obj, indent=2).encode())


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


def config_key(config: dict) -> str:
    """A short, stable hash of a run's configuration (its cache key)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
