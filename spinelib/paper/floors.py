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

:data:`FLOOR_RULES` says which headlines are guarded and how each floor follows from a reference
build; :func:`floors_from_headlines` applies them (``scripts/check_floors.py --set`` writes the table from a
build, when a deliberate change of the book moves its numbers).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import pandas as pd

from spinelib.core.headlines import collect_headlines

FLOOR_COLUMNS = ("page", "section", "quantity", "reference", "reference_ci_low", "reference_ci_high",
                 "floor", "direction", "why")
"""The columns of the floors table (:func:`read_floors`)."""

KEY = ("page", "section", "quantity")
DIRECTIONS = ("min", "max")


_CI = "the lower end of the reference build's 95% CI (bootstrap over validation patients)"
_TABLE3 = "Segmentation: Table 3 (paper's recipe)"
_FINAL = "Segmentation: final pipeline"
_FINAL_STRUCTURES = ("Ap Vertebra", "Ap Pedicle", "Ap Spinous Process", "Lat Vertebra", "Lat Disk Height",
                     "Lat Spinous Process", "Lat Anterior Vertebral Line", "Lat Posterior Vertebral Line")

FLOOR_RULES: tuple[dict, ...] = (
    dict(page="02_segmentation_experiments", section="Segmentation: Table 2 (failed experiments)",
         quantity="Dice, Ap Pedicle: jaccard_batchnorm_0.9", direction="min", margin=0.08, widen_to_ci=True,
         why="the reference Dice minus 0.08, or the lower end of its 95% CI (bootstrap over validation patients) where "
             "that is lower: the row that trains once batch norm forgets its first statistics (Table 2's black-mask rows "
             "give 0.0, its mostly white row 0.34). Two builds of the same code on two CPUs gave 0.802 (Zen 5, "
             "2026-12-02) and 0.751 (Intel Xeon, 2026-12-03), further apart than either CI, which counts patients, "
             "not training runs"),
    *(dict(page="03_unet_segmentation", section=_TABLE3, quantity=f"Dice, {s}", direction="min", margin=None, why=_CI)
      for s in ("Ap Vertebra", "Lat Vertebra", "Lat Disk Height")),
    *(dict(page="03_unet_segmentation", section=_FINAL, quantity=f"Dice, {s}", direction="min", margin=0.03,
           widen_to_ci=True,
           why="the reference Dice minus 0.03, or the lower end of its 95% CI (bootstrap over validation patients) "
               "where that is lower: the crop pipeline against the paper's Table 3. Two builds of the same code moved "
               "these rows by up to 0.03 (the vertebral lines: 0.732 and 0.703), more than the vertebrae's CI "
               "half-widths (0.003), and the thin lines' CIs are wider still (about 0.08)")
      for s in _FINAL_STRUCTURES),
    dict(page="03b_aasce_segmentation", section="Segmentation: real AP vertebrae",
         quantity="Dice, AASCE vertebral bodies T1-L5", direction="min", margin=0.05, widen_to_ci=True,
         why="the reference Dice minus 0.05, or the lower end of its 95% CI (bootstrap over validation patients) "
             "where that is lower (real X-rays, the page's own run, not bitwise repeatable between builds: on a "
             "Zen 5 it already differed in its first epoch): the same code gave 0.713 (Zen 5, 2026-12-02), 0.706, "
             "0.709 and 0.695 in three builds on an Intel Xeon (2026-12-03) and 0.717 and 0.685 in two float32 "
             "builds on a Zen 5 (2026-12-04), further apart than the CI, which counts patients, not training runs"),
    dict(page="05_classification_results", section="Classification",
         quantity="normal/damaged accuracy, segment then measure (predicted masks)", direction="min", margin=None,
         why="the lower end of the reference build's 95% CI (bootstrap over patients): measured geometry on the "
             "masks of U-Nets that never saw these patients"),
    dict(page="07_cobb_angles", section="Cobb angles (real AP)", quantity="SMAPE (%), released model on validation X-rays",
         direction="max", margin=0.5,
         why="the reference SMAPE plus 0.5 points: the shipped model on fixed validation X-rays, so only float rounding "
             "may move it"),
)
"""The guarded headlines: ``page``, ``section``, ``quantity`` (the headline's key), ``direction``,
``margin`` (``None``: the floor is the reference's 95 % CI end on the failing side; a number: the
reference minus it for ``min``, plus it for ``max``), ``widen_to_ci`` (optional, with a margin: the CI's
end instead, where the headline has a CI and its end lies further from the reference) and ``why``."""


def _latest(headlines: pd.DataFrame) -> pd.DataFrame:
    """A build's headlines indexed by :data:`KEY`, the last one recorded where a key repeats."""
    return headlines.drop_duplicates(list(KEY), keep="last").set_index(list(KEY))


def floors_from_headlines(headlines: pd.DataFrame, rules: tuple[dict, ...] = FLOOR_RULES,
                          keep: pd.DataFrame | None = None) -> pd.DataFrame:
    """The floors table (:data:`FLOOR_COLUMNS`) that ``rules`` give for a reference build's
    ``headlines`` (:func:`spinelib.core.headlines.collect_headlines`): each floor rounded outwards to
    4 decimals. ``keep``: a floors table (:func:`read_floors`) whose row a rule keeps when the build
    lacks its headline (a build of some pages only; a rule neither has is left out, with a warning).
    Raises ``ValueError`` naming every rule whose headline is missing (without ``keep``), or whose
    rule needs a CI the headline has not."""
    found = _latest(headlines) if len(headlines) else None
    kept = None if keep is None else keep.set_index(list(KEY))
    rows, problems = [], []
    for rule in rules:
        key = tuple(rule[k] for k in KEY)
        if found is None or key not in found.index:
            if kept is not None and key in kept.index:
                rows.append({**dict(zip(KEY, key)), **kept.loc[key, list(FLOOR_COLUMNS[3:])].to_dict()})
            elif kept is not None:
                warnings.warn(f"no floor for {rule['page']}: {rule['quantity']!r}: neither the build nor the kept "
                              "table has it", stacklevel=2)
            else:
                problems.append(f"{rule['page']}: {rule['quantity']!r} is not among the build's headlines")
            continue
        h = found.loc[key]
        ours, low, high = (float(pd.to_numeric(h.get(c), errors="coerce")) for c in ("ours", "ci_low", "ci_high"))
        at_least = rule["direction"] == "min"
        if rule["margin"] is None:
            floor = low if at_least else high
            if math.isnan(floor):
                problems.append(f"{rule['page']}: {rule['quantity']!r} has no 95% CI for its floor; give the rule a margin")
                continue
        else:
            floor = ours - rule["margin"] if at_least else ours + rule["margin"]
            end = low if at_least else high
            if rule.get("widen_to_ci") and not math.isnan(end):  # the CI's end, where it lies further out
                floor = min(floor, end) if at_least else max(floor, end)
        floor = math.floor(floor * 1e4) / 1e4 if at_least else math.ceil(floor * 1e4) / 1e4
        rows.append(dict(zip(KEY, key), reference=round(ours, 4),
                         reference_ci_low=None if math.isnan(low) else round(low, 4),
                         reference_ci_high=None if math.isnan(high) else round(high, 4),
                         floor=round(floor, 4), direction=rule["direction"], why=rule["why"]))
    if problems:
        raise ValueError("cannot set the floors from this build:\n  " + "\n  ".join(problems))
    return pd.DataFrame(rows, columns=list(FLOOR_COLUMNS))


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
        found = _latest(headlines)["ours"]
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
