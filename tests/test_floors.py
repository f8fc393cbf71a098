"""The floors under the book's headline numbers (issue 16): the check, its table and its command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from spinelib.book import toc_files
from spinelib.core.config import REPO_ROOT
from spinelib.core.headlines import record_headlines
from spinelib.paper.floors import FLOOR_COLUMNS, check_build, check_floors, floors_report, read_floors

FLOORS = REPO_ROOT / "results" / "ci_floors.csv"
SCRIPT = REPO_ROOT / "scripts" / "check_floors.py"


def floor_row(quantity="Dice, Ap Vertebra", floor=0.5, direction="min", page="03_unet_segmentation",
              section="Segmentation: Table 3 (paper's recipe)", reference=0.6):
    return dict(page=page, section=section, quantity=quantity, reference=reference, reference_ci_low=reference - 0.05,
                reference_ci_high=reference + 0.05, floor=floor, direction=direction, why="the reference build's CI")


def write(tmp_path, rows, name="floors.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def headlines(tmp_path, rows, page="03_unet_segmentation"):
    record_headlines(tmp_path, page, rows, profile="ci", seed=0)
    return tmp_path


def test_a_floor_holds_fails_and_a_missing_headline_fails(tmp_path):
    floors = read_floors(write(tmp_path, [
        floor_row("Dice, Ap Vertebra", 0.5), floor_row("Dice, Ap Pedicle", 0.5),
        floor_row("SMAPE", 20.0, "max"), floor_row("Dice, Lat Vertebra", 0.5)]))
    section = "Segmentation: Table 3 (paper's recipe)"
    out = headlines(tmp_path / "out", [
        {"section": section, "quantity": "Dice, Ap Vertebra", "ours": 0.71, "data": "synthetic", "dataset": "d"},
        {"section": section, "quantity": "Dice, Ap Pedicle", "ours": 0.49, "data": "synthetic", "dataset": "d"},
        {"section": section, "quantity": "SMAPE", "ours": 12.0, "data": "real", "dataset": "d"}])
    checked = check_build(out, tmp_path / "floors.csv")
    assert checked.set_index("quantity")["holds"].to_dict() == {
        "Dice, Ap Vertebra": True, "Dice, Ap Pedicle": False, "SMAPE": True, "Dice, Lat Vertebra": False}
    assert checked.set_index("quantity")["measured"].isna().to_dict()["Dice, Lat Vertebra"]
    report = floors_report(checked)
    assert report.splitlines()[0].startswith("FAIL") and "missing" in report
    assert report.splitlines()[-1] == "2 of 4 floors hold; 2 fail"
    assert check_floors(pd.DataFrame(), floors)["holds"].sum() == 0  # no headlines at all: every floor fails


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("why"), "missing column"),
    (lambda r: r.update(floor="high"), "not a number"),
    (lambda r: r.update(direction="above"), "direction"),
    (lambda r: r.update(why=" "), "why"),
])
def test_a_bad_floors_table_is_refused(tmp_path, change, message):
    row = floor_row()
    change(row)
    with pytest.raises(ValueError, match=message):
        read_floors(write(tmp_path, [row]))


def test_a_headline_guarded_twice_and_a_missing_table_are_refused(tmp_path):
    with pytest.raises(ValueError, match="twice"):
        read_floors(write(tmp_path, [floor_row(), floor_row(floor=0.4)]))
    with pytest.raises(FileNotFoundError):
        read_floors(tmp_path / "none.csv")


def test_the_committed_floors_guard_the_issue_headlines_of_book_pages():
    """Every floor names a page of the book, sits on the safe side of its reference number, and
    the issue's guarded numbers are among them: synthetic vertebra Dice, the crop pipeline's eight
    structures, the AASCE page run, page 5's segment-then-measure accuracy, the Cobb page's SMAPE."""
    floors = read_floors(FLOORS)
    assert list(floors.columns[:len(FLOOR_COLUMNS)]) == list(FLOOR_COLUMNS)
    pages = {f.split("/")[-1] for f in toc_files()}
    assert set(floors["page"]) <= pages, set(floors["page"]) - pages
    at_least = floors["direction"] == "min"
    assert (floors.loc[at_least, "floor"] <= floors.loc[at_least, "reference"]).all()
    assert (floors.loc[~at_least, "floor"] >= floors.loc[~at_least, "reference"]).all()
    text = (floors["section"] + " " + floors["quantity"]).str.lower()
    for needle in ("table 3 (paper's recipe) dice, ap vertebra", "table 3 (paper's recipe) dice, lat vertebra",
                   "aasce vertebral bodies", "segment then measure", "smape (%), released model"):
        assert text.str.contains(needle, regex=False).any(), f"no floor guards {needle!r}"
    assert text.str.startswith("segmentation: final pipeline dice,").sum() == 8  # the crop pipeline's 8 structures


def test_the_command_exits_1_on_a_failed_floor_and_2_without_a_build(tmp_path):
    floors = write(tmp_path, [floor_row("Dice, Ap Vertebra", 0.9)])
    out = headlines(tmp_path / "out", [{"section": "Segmentation: Table 3 (paper's recipe)",
                                         "quantity": "Dice, Ap Vertebra", "ours": 0.71, "data": "synthetic",
                                         "dataset": "d"}])
    run = subprocess.run([sys.executable, str(SCRIPT), "--output-dir", str(out), "--floors", str(floors)],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "FAIL" in run.stdout and "0 of 1 floors hold" in run.stdout
    run = subprocess.run([sys.executable, str(SCRIPT), "--output-dir", str(tmp_path / "nothing")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "build the book first" in run.stderr


def test_the_command_sets_floors_by_the_rules_and_keeps_what_a_partial_build_lacks(tmp_path):
    out = headlines(tmp_path / "out", [{"section": "Segmentation: Table 3 (paper's recipe)", "quantity": "Dice, Ap Vertebra",
                                         "ours": 0.95, "ci_low": 0.94, "ci_high": 0.96, "data": "synthetic", "dataset": "d"}])
    cmd = [sys.executable, str(SCRIPT), "--output-dir", str(out)]
    run = subprocess.run(cmd + ["--set"], capture_output=True, text=True)
    assert run.returncode == 1 and "is not among the build's headlines" in run.stderr  # a partial build sets nothing
    assert subprocess.run(cmd + ["--write"], capture_output=True, text=True).returncode == 2  # --write needs --set
    table = tmp_path / "floors.csv"
    table.write_bytes(FLOORS.read_bytes())
    run = subprocess.run(cmd + ["--set", "--keep-missing", "--write", "--floors", str(table)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    new, old = read_floors(table).set_index("quantity"), read_floors(FLOORS).set_index("quantity")
    assert len(new) == len(old)  # every floor kept or set
    t3 = new[new["section"] == "Segmentation: Table 3 (paper's recipe)"]
    assert t3.loc["Dice, Ap Vertebra", "floor"] == 0.94  # set from this build
    assert t3.loc["Dice, Lat Vertebra", "floor"] == old[old["section"] == t3["section"].iloc[0]].loc["Dice, Lat Vertebra", "floor"]


def built_profile() -> str | None:
    info = REPO_ROOT / "_build" / "build-info.json"
    return json.loads(info.read_text()).get("profile") if info.is_file() else None


@pytest.mark.skipif(built_profile() != "ci" and os.environ.get("SPINELIB_REQUIRE_BOOK") != "1",
                    reason="the book in _build was not built with the ci profile")
def test_the_built_book_holds_its_floors():
    """CI builds the ci book and then runs this (and scripts/check_floors.py): every floor holds."""
    if built_profile() != "ci":
        pytest.skip(f"the book in _build was built with profile {built_profile()!r}; floors guard the ci book")
    checked = check_build(REPO_ROOT / "outputs" / "ci", FLOORS)
    assert checked["holds"].all(), floors_report(checked)


def test_floors_follow_from_a_reference_build_by_their_rules(tmp_path):
    from spinelib.core.headlines import collect_headlines
    from spinelib.paper.floors import floors_from_headlines

    rules = (
        dict(page="03_unet_segmentation", section="S", quantity="Dice, a", direction="min", margin=None, why="CI"),
        dict(page="03_unet_segmentation", section="S", quantity="Dice, b", direction="min", margin=0.03, why="-0.03"),
        dict(page="03_unet_segmentation", section="S", quantity="SMAPE", direction="max", margin=0.5, why="+0.5"),
    )
    record_headlines(tmp_path, "03_unet_segmentation", [
        dict(section="S", quantity="Dice, a", ours=0.9, ci_low=0.87654, ci_high=0.93, data="synthetic", dataset="d"),
        dict(section="S", quantity="Dice, b", ours=0.81237, data="synthetic", dataset="d"),
        dict(section="S", quantity="SMAPE", ours=11.90431, data="real", dataset="d"),
    ], profile="ci", seed=0)
    raw = floors_from_headlines(collect_headlines(tmp_path), rules)
    assert list(raw.columns) == list(FLOOR_COLUMNS)
    table = raw.set_index("quantity")
    assert table.loc["Dice, a", "floor"] == 0.8765  # the CI's low end, rounded down: never above it
    assert table.loc["Dice, b", "floor"] == 0.7823  # 0.81237 - 0.03, rounded down
    assert table.loc["SMAPE", "floor"] == 12.4044  # 11.90431 + 0.5, rounded up
    assert check_floors(collect_headlines(tmp_path), raw)["holds"].all()  # the reference holds its floors
    no_ci = (dict(rules[1], margin=None),)
    with pytest.raises(ValueError, match="no 95% CI"):
        floors_from_headlines(collect_headlines(tmp_path), no_ci)
    with pytest.raises(ValueError, match="'Dice, c' is not among"):
        floors_from_headlines(collect_headlines(tmp_path), (dict(rules[0], quantity="Dice, c"),))
    kept = floors_from_headlines(collect_headlines(tmp_path), (dict(rules[0], quantity="Dice, c"), rules[1]),
                                 keep=raw.assign(quantity=raw["quantity"].replace({"Dice, a": "Dice, c"})))
    assert kept.set_index("quantity").loc["Dice, c", "floor"] == 0.8765  # the current row, kept
    widened = {r["quantity"]: r["floor"] for _, r in floors_from_headlines(collect_headlines(tmp_path), (
        dict(rules[0], margin=0.01, widen_to_ci=True),  # the CI's end (0.8765) lies below 0.9 - 0.01
        dict(rules[0], quantity="Dice, b", margin=0.03, widen_to_ci=True),  # no CI: the margin
    )).iterrows()}
    assert widened == {"Dice, a": 0.8765, "Dice, b": 0.7823}
    narrow = floors_from_headlines(collect_headlines(tmp_path), (dict(rules[0], margin=0.05, widen_to_ci=True),))
    assert narrow["floor"].tolist() == [0.85]  # the margin, where it lies further out than the CI's end


def test_the_committed_floors_are_those_the_rules_declare():
    from spinelib.paper.floors import FLOOR_RULES

    committed = read_floors(FLOORS).set_index(["page", "section", "quantity"])
    rules = {(r["page"], r["section"], r["quantity"]): r for r in FLOOR_RULES}
    assert set(committed.index) <= set(rules)  # no floor without its rule
    for key, row in committed.iterrows():
        assert (row["direction"], row["why"]) == (rules[key]["direction"], rules[key]["why"]), key
