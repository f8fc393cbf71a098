"""Headline numbers on disk: one CSV per page or long run under ``<output_dir>/headlines/``.

A *headline* is one comparable number: what the paper reports and what we measured, on which data
(``real`` or ``synthetic``), with which profile, and the page that produced it.
:func:`record_headlines` writes a page's rows (with a run sidecar); :func:`collect_headlines` reads
them all back. The book's tables and findings built from them are :mod:`spinelib.paper.report`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from spinelib.core.provenance import run_info, write_results

COLUMNS = ["section", "quantity", "paper", "ours", "ci_low", "ci_high", "data", "dataset", "profile",
           "page", "note"]


DATA_KINDS = ("real", "synthetic")


def record_headlines(output_dir: str | os.PathLike, page: str, rows: Iterable[Mapping], profile: str,
                     seed: int | None = None, name: str | None = None) -> Path:
    """Write ``<output_dir>/headlines/<name or page>.csv`` (atomically, with a run sidecar).

    Each row needs ``section, quantity, ours, data, dataset``; ``paper``, ``ci_low``, ``ci_high``
    and ``note`` are optional. ``data`` must be ``"real"`` or ``"synthetic"``. A row may carry its
    own ``profile`` (e.g. a committed long run shown on the page); the others get ``profile``.
    No rows (a page whose data is not on this machine) write a table with the columns only.
    """
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        frame = pd.DataFrame(columns=COLUMNS)
    missing = {"section", "quantity", "ours", "data", "dataset"} - set(frame.columns)
    if missing:
        raise ValueError(f"headline rows of {page} lack column(s): {', '.join(sorted(missing))}")
    bad = sorted(set(frame["data"]) - set(DATA_KINDS))
    if bad:
        raise ValueError(f"headline rows of {page}: data must be 'real' or 'synthetic', got {bad}")
    frame["page"] = page
    frame["profile"] = frame["profile"].fillna(profile) if "profile" in frame else profile
    for col in COLUMNS:
        if col not in frame:
            frame[col] = math.nan if col in ("paper", "ci_low", "ci_high") else ""
    path = Path(output_dir) / "headlines" / f"{name or page}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    from spinelib.core.config import PROFILES

    # a long run is not one of the profiles: its settings live in its own metrics.json
    return write_results(path, frame[COLUMNS], run_info(profile=profile if profile in PROFILES else None, seed=seed))


def collect_headlines(output_dir: str | os.PathLike) -> pd.DataFrame:
    """All headline rows under ``<output_dir>/headlines``, in page order."""
    files = sorted((Path(output_dir) / "headlines").glob("*.csv"))
    if not files:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)[COLUMNS]
