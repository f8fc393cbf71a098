"""The README's results table types numbers by hand: each must be the committed record's number
(``results/*/metrics.json``, ``results/mask_route_floor/summary.csv``), rounded as shown, and the
table may hold no other number (issue 17: numbers that are typed come from the results)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from spinelib.core.config import REPO_ROOT

RESULTS = REPO_ROOT / "results"


def _section() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("## What the book finds")
    return text[start:text.index("\n## ", start + 3)]


def _table_cells(section: str) -> list[str]:
    """The result column (the second) of the section's table."""
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    return [[c.strip() for c in row.strip("|").split("|")][1] for row in rows[1:]]


def _metrics(name: str) -> dict:
    return json.loads((RESULTS / name / "metrics.json").read_text())


def _expected() -> list[str]:
    unet = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("aasce_unet*/metrics.json"))]
    if not unet or not (RESULTS / "aasce_landmarks_512").is_dir():
        pytest.skip("the committed long runs are not in this checkout")
    dice = [m["dice_mean_over_val_patients"] for m in unet]
    best = unet[dice.index(max(dice))]
    lo, hi = best["dice_ci95"]
    out = [f"{len(unet)} committed U-Net runs", f"Dice {min(dice):.3f}–{max(dice):.3f}",
           f"the best {max(dice):.3f} (95 % CI {lo:.3f}–{hi:.3f}) over {best['n_val_patients']} patients"]
    m = _metrics("aasce_landmarks_512")
    summary = pd.DataFrame(m["summary"])
    lm = summary.query("route == 'landmarks' and images == 'all'").iloc[0]
    mask = summary.query("route != 'landmarks' and images == 'all'").iloc[0]
    sev = m["severity_all"]
    out += [f"SMAPE {lm.smape:.1f} % (95 % CI {lm.smape_lo:.1f}–{lm.smape_hi:.1f}) over {int(lm.n_patients)} patients",
            f"SMAPE {mask.smape:.1f} % (95 % CI {mask.smape_lo:.1f}–{mask.smape_hi:.1f})",
            f"Dice {lm.quad_dice:.3f}",
            f"AUROC {sev['auroc']:.3f}, accuracy {sev['accuracy']:.3f} on {sev['n_images']} X-rays"]
    v1 = pd.DataFrame(_metrics("aasce_landmarks")["summary"]).query("route == 'landmarks' and images == 'all'").iloc[0]
    out.append(f"SMAPE {v1.smape:.1f} % (95 % CI {v1.smape_lo:.1f}–{v1.smape_hi:.1f})")
    floor = pd.read_csv(RESULTS / "mask_route_floor" / "summary.csv").query("method == 'lsq' and subset == 'all 481'")
    own = floor.query("frame == 'original'")["smape_vs_csv"].iloc[0]
    small = floor.query("frame == '512x256'")["smape_vs_csv"].iloc[0]
    out.append(f"SMAPE {own:.2f} % at the X-rays' own size, {small:.2f} % in a 512×256 frame")
    return out


TARGETS = {"0.90", "10", "40", "512", "256"}
"""Numbers of the table that are settings or targets, not results."""


def test_readme_results_are_the_committed_records():
    section = _section()
    expected = _expected()
    missing = [e for e in expected if e not in section]
    assert not missing, f"README's results differ from the committed records; expected to read: {missing}"
    allowed = set(re.findall(r"\d+(?:\.\d+)?", " ".join(expected))) | TARGETS
    for cell in _table_cells(section):
        typed = set(re.findall(r"\d+(?:\.\d+)?", cell)) - allowed
        assert not typed, f"README's results table types number(s) {sorted(typed)} that no record gives: {cell!r}"
