"""The bad-input corpus (:mod:`spinelib.data.bad_inputs`): every case, made in a temporary folder, ends
in its decided behaviour; the corpus is broad and well formed; the book's page lists every kind.

``python -m scripts.make_reliability_table`` runs the same table (:func:`run_case`) and writes the
book's table of behaviours (``docs/reliability.md``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spinelib.core.imageio import ImageReadError
from spinelib.core.provenance import assert_unchanged
from spinelib.data.audit import PROBLEM_KINDS
from spinelib.data.bad_inputs.corpus import CASES, OUTCOMES, Case, case_table, run_case
from spinelib.data.bad_inputs.file_makers import Trial, clinical_dataset
from spinelib.data.bad_inputs.folder_makers import make_truncated_xray_training
from spinelib.data.clinical import load_segmentation_arrays, scan_clinical


def test_the_corpus_is_broad_and_well_formed():
    assert len(CASES) >= 30
    kinds = [c.kind for c in CASES]
    assert len(set(kinds)) == len(kinds), "duplicate kinds"
    assert {c.outcome for c in CASES} == set(OUTCOMES)
    for c in CASES:
        if c.outcome == "error":
            assert isinstance(c.expected[0], type) and issubclass(c.expected[0], Exception) and len(c.expected) > 1
        elif c.outcome == "problem":
            assert c.expected[0] in PROBLEM_KINDS
        elif c.outcome != "loaded":
            assert c.expected, f"{c.kind}: no keyword to check"
    assert list(case_table().columns) == ["kind", "outcome", "expected", "behaviour"]


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_bad_input(case, tmp_path):
    result = run_case(case, tmp_path)
    assert result.outcome == case.outcome


def test_the_book_page_lists_every_kind():
    page = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
    if not page.exists():
        pytest.skip("docs/reliability.md not generated yet (python -m scripts.make_reliability_table)")
    text = page.read_text()
    missing = [c.kind for c in CASES if " ".join(c.kind.split()).replace("|", "\\|") not in text]
    assert not missing, f"docs/reliability.md is stale, rerun python -m scripts.make_reliability_table: {missing}"


def test_assert_unchanged_catches_a_loader_that_writes(tmp_path):
    root = clinical_dataset(tmp_path)
    bad = Case("a loader that writes", lambda tmp: Trial(lambda: (root / "Normal" / "P1" / "x.txt").write_text("x"),
                                                         "", (root,)), "loaded", (), "")
    from spinelib.core.provenance import InputsChangedError

    with pytest.raises(InputsChangedError, match="added Normal/P1/x.txt"):
        run_case(bad, tmp_path)


def test_training_arrays_raise_by_default_on_unreadable_xray(tmp_path):
    trial = make_truncated_xray_training(tmp_path)
    with assert_unchanged(*trial.roots):
        ds = scan_clinical(tmp_path / "data", progress=False)
        with pytest.raises(ImageReadError, match="truncated") as e:
            load_segmentation_arrays(ds, "AP", (16, 8), progress=False)
        assert trial.subject in str(e.value)
        with pytest.raises(ValueError, match="on_error"):
            load_segmentation_arrays(ds, "AP", (16, 8), progress=False, on_error="ignore")
