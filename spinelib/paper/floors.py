"""Floors under the book's headline numbers: what CI checks after it builds the ``ci`` book.

Each page records its key numbers with :func:`spinelib.core.headlines.record_headlines`
(``outputs/<profile>/headlines/<page>.csv``). The floors are declared in one committed table,
``results/ci_floors.csv``, one row per guarded headline, beside the number it guards: the value and
95 % CI of the reference build the floor was set from, the floor itself, its direction (``min``: the
headline must be at least the floor; ``max``: at most) and why it sits there.

:func:`check_floors` matches a build's headlines to the floors by ``(page, section, quantity)`` and
says, per floor, what was measured and whether it holds; a floor whose headline is missing fails
(a page that stopped recording its number must not pass silently). ``scripts/check_floors.py`` is
the command CI runs.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from spinelib.core.headlines import collect_headlines

FLOOR_COLUMNS = ("page", "section", "quantity", "reference", "reference_ci_low", "reference_ci_high",
                 "floor", "direction", "why")
"""The columns of the floors table (:func:`read_floors`)."""

KEY = ("page", "section", "quantity")
DIRECTIONS = ("min", "max")


def read_floors(path: str | os.PathLike) -> pd.DataFrame:
    """The floors table at ``path``, checked: every column of :data:`FLOOR_COLUMNS`, a number as
    each floor, a direction of ``min`` or ``max``, a reason, and no headline guarded twice."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no floors table at {path}")
    floors = pd.read_csv(path, dtype={"page": str})
    missing = [c for c in FLOOR_COLUMNS if c not in floors.columns]
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {missing}; a floors table has {list(FLOOR_COLUMNS)}")
    if floors.empty:
        raise ValueError(f"{path.name} declares no floor")
    value = pd.to_numeric(floors["floor"], errors="coerce")
    if value.isna().any():
        bad = floors.loc[value.isna(), "quantity"].tolist()
        raise ValueError(f"{path.name}: the floor of {bad} is not a number")
    bad_dir = ~floors["direction"].isin(DIRECTIONS)
    if bad_dir.any():
        raise ValueError(f"{path.name}: direction must be one of {DIRECTIONS}, got "
                         f"{sorted(set(floors.loc[bad_dir, 'direction'].astype(str)))}")
    if floors["why"].isna().any() or (floors["why"].astype(str).str.strip() == "").any():
        raise ValueError(f"{path.name}: every floor says why it sits where it does (column 'why')")
    twice = floors.duplicated(list(KEY), keep=False)
    if twice.any():
        raise ValueError(f"{path.name}: headline(s) guarded twice: {floors.loc[twice, 'quantity'].unique().tolist()}")
    return floors.assign(floor=value)


def check_floors(headlines: pd.DataFrame, floors: pd.DataFrame) -> pd.DataFrame:
    """Each floor of ``floors`` (:func:`read_floors`) against ``headlines``
    (:func:`spinelib.core.headlines.collect_headlines` of one build): the floors table plus
    ``measured`` (NaN when the build has no such headline) and ``holds`` (False for a missing or
    non-finite number)."""
    if headlines.empty:
        measured = pd.Series(math.nan, index=floors.index)
    else:
        found = headlines.drop_duplicates(list(KEY), keep="last").set_index(list(KEY))["ours"]
        found = pd.to_numeric(found, errors="coerce")
        measured = pd.Series([found.get(tuple(k), math.nan) for k in floors[list(KEY)].itertuples(index=False)],
                             index=floors.index, dtype=float)
    at_least = floors["direction"] == "min"
    holds = measured.notna() & ((at_least & (measured >= floors["floor"])) | (~at_least & (measured <= floors["floor"])))
    return floors.assign(measured=measured, holds=holds)


def floors_report(checked: pd.DataFrame) -> str:
    """A plain-text table of :func:`check_floors`'s result, the failures first."""
    rows = checked.sort_values("holds", kind="stable")
    lines = []
    for r in rows.itertuples(index=False):
        sign = ">=" if r.direction == "min" else "<="
        got = "missing" if math.isnan(r.measured) else f"{r.measured:.4g}"
        lines.append(f"{'ok  ' if r.holds else 'FAIL'} {r.page}: {r.quantity} = {got} (floor {sign} {r.floor:.4g}; "
                     f"reference {r.reference:.4g})")
    n_bad = int((~checked["holds"]).sum())
    lines.append(f"{len(checked) - n_bad} of {len(checked)} floors hold" + (f"; {n_bad} fail" if n_bad else ""))
    return "\n".join(lines)


def check_build(output_dir: str | os.PathLike, floors_path: str | os.PathLike) -> pd.DataFrame:
    """:func:`check_floors` of the headlines a book build recorded under ``output_dir``."""
    return check_floors(collect_headlines(output_dir), read_floors(floors_path))
