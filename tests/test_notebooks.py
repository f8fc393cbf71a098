"""Every notebook is committed clean and runs headless through papermill with the tiny profile."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from pathlib import Path

import nbformat
import pytest

from spinelib.book import count_figures, run_notebook, toc_notebooks
from spinelib.core.config import DATASET_ENV, NO_SHARED_DATA_ENV, REPO_ROOT, find_dataset
from spinelib.core.headlines import collect_headlines

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))  # 03b_... is page 3b


def tree_fingerprint(root: Path) -> str:
    """sha256 over every file's relative path, size and content under ``root``."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_every_notebook_is_in_the_toc():
    assert NOTEBOOKS, "no notebooks found"
    assert [p.name for p in toc_notebooks()] == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_and_parameterised(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), \
        f"{path.name} is committed with outputs; clear them"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    src = tagged[0].source
    for name in ("profile", "seed", "output_dir"):
        assert re.search(rf"^{name}\s*(:[^=\n]*)?=", src, re.M), f"{path.name}: parameter {name!r} missing"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), \
        f"{path.name} must start with a '# ' title"
    assert '"/kaggle/input/spinelib"' in code[0].source, f"{path.name}: first cell must find spinelib on Kaggle"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_lists_every_parameter_with_type_and_meaning(path):
    """`papermill --help-notebook` drops a parameter whose annotation it cannot parse (e.g. `str | None`)."""
    import papermill

    nb = nbformat.read(path, as_version=4)
    src = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    declared = re.findall(r"^(\w+)\s*[:=]", src, re.M)
    listed = papermill.inspect_notebook(str(path))
    assert list(listed) == declared, f"{path.name}: papermill sees {list(listed)}, the cell declares {declared}"
    for name, p in listed.items():
        assert p["inferred_type_name"] not in ("None", "", None), f"{path.name}: {name} has no type annotation"
        assert len(p["help"]) > 10, f"{path.name}: {name} has no comment saying what it means"


BUILT_PAGES = os.environ.get("SPINELIB_CHECK_BUILT_PAGES") == "1"
"""Set by ``.ci/run``, which has just built the book: each page is checked in the executed copy the
build made (``_build/src/notebooks``) instead of being executed a second time."""
BUILD = REPO_ROOT / "_build"


def check_executed_page(path: Path, out: Path, outputs: Path, profile: str, real_data: bool = True) -> None:
    """What every executed page must show: no error, outputs, no training log, its figures, and a
    provenance sidecar (versions, seed, profile, data fingerprints) beside every table it wrote.
    ``real_data=False``: the machine has no real dataset; a table may then come from committed
    records alone, and its run record names the datasets it looked for and found none."""
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, json.dumps(errors[0])[:2000]
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    # No training log in the page: Keras progress bars go to stdout, which the book shows (stderr is removed).
    stdout = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if o.get("output_type") == "stream" and o.get("name") == "stdout")
    assert "━━" not in stdout and not re.search(r"\d+/\d+ - \d+m?s", stdout), "a Keras training log reached the page"
    # Figures are drawn inline, whatever MPLBACKEND the test process has (conftest sets Agg).
    if any(re.search(r"\bfig\b", c.source) for c in nb.cells if c.cell_type == "code"):
        assert count_figures(out) > 0, f"{path.name} draws figures but none reached the notebook"
    for table in outputs.glob(f"{path.name.split('_')[0]}_*.csv"):
        info = json.loads(table.with_suffix(".run.json").read_text())
        assert info["seed"] == 0 and info["profile"]["name"] == profile and info["results_file"] == table.name
        used = {name: d for name, d in info["datasets"].items() if d}
        assert used or (not real_data and info["datasets"]), f"{table.name}: its run record names no dataset"
        assert all(d["fingerprint"] for d in used.values()), f"{table.name}: a dataset without its fingerprint"
        if "synthetic" in info["datasets"]:
            assert info["datasets"]["synthetic"]["fingerprint"], f"{table.name}: no fingerprint of the synthetic data"


@pytest.mark.slow
@pytest.mark.skipif(BUILT_PAGES, reason="the book build of this run executed every page (SPINELIB_CHECK_BUILT_PAGES)")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_with_tiny_profile(path, tmp_path, tiny_synthetic):
    shared = find_dataset("aasce")
    before = tree_fingerprint(shared.parent) if shared else None
    syn_before = tree_fingerprint(tiny_synthetic)
    out = tmp_path / path.name
    run_notebook(path, out, {"profile": "tiny", "seed": 0, "synthetic_dir": str(tiny_synthetic),
                             "output_dir": str(tmp_path / "outputs")}, cwd=path.parent)
    check_executed_page(path, out, tmp_path / "outputs", "tiny")
    # Nothing under an input directory was changed by the run.
    if shared:
        assert tree_fingerprint(shared.parent) == before, "the notebook modified ../shared/data"
    assert tree_fingerprint(tiny_synthetic) == syn_before, "the notebook modified its input dataset"


REAL_DATA_PAGES = [p for p in NOTEBOOKS if p.name[:3] in {"03b", "05_", "07_"}]


@pytest.mark.slow
@pytest.mark.parametrize("path", REAL_DATA_PAGES, ids=lambda p: p.stem)
def test_a_page_on_real_x_rays_builds_on_a_machine_without_them(path, tmp_path, tiny_synthetic, monkeypatch):
    """A reader's fresh machine has no ../shared/data: the page skips its real-data parts, shows the
    committed records, and records no real number of its own (CI always has the data, so this is the
    only run that sees the book as such a reader does)."""
    monkeypatch.setenv(NO_SHARED_DATA_ENV, "1")
    for variable in DATASET_ENV.values():
        monkeypatch.delenv(variable, raising=False)
    out = tmp_path / path.name
    run_notebook(path, out, {"profile": "tiny", "seed": 0, "synthetic_dir": str(tiny_synthetic),
                             "output_dir": str(tmp_path / "outputs")}, cwd=path.parent)
    check_executed_page(path, out, tmp_path / "outputs", "tiny", real_data=False)
    text = "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "was not found" in text or "No AASCE X-rays" in text, f"{path.name} does not say the X-rays are missing"
    headlines = collect_headlines(tmp_path / "outputs")
    assert not (headlines["data"] == "real").any(), f"{path.name} recorded a real number without the real data"


@functools.lru_cache(maxsize=None)
def inputs_now(synthetic_dir: str) -> dict:
    """The build's inputs' fingerprints now, hashed once for all the pages checked."""
    from spinelib.book import input_fingerprints

    return input_fingerprints(Path(synthetic_dir))


@pytest.mark.skipif(not BUILT_PAGES, reason="checks the pages a book build executed (SPINELIB_CHECK_BUILT_PAGES=1)")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_built_page_ran_clean_and_left_its_inputs_alone(path):
    """CI: the page as this run's book build executed it (any profile) passes the same checks as
    a page the test executes, and the build's inputs are as they were before its first page."""
    info = json.loads((BUILD / "build-info.json").read_text())
    assert path.name in info["executed"], f"the book build did not execute {path.name}"
    check_executed_page(path, BUILD / "src" / "notebooks" / path.name, Path(info["output_dir"]), info["profile"])
    assert inputs_now(info["synthetic_dir"]) == info["inputs_before"], \
        "a page modified its input data (the synthetic set or ../shared/data)"


READER_PAGES = [p for p in NOTEBOOKS if p.name[:2] in {"01", "02", "03", "04", "05", "06", "07"}]


@pytest.mark.parametrize("path", READER_PAGES, ids=lambda p: p.stem)
def test_page_opens_with_its_findings_and_keeps_plumbing_out_of_sight(path):
    """Issue 17: the overview ends with the run's result (glued from a cell that computes it), setup
    and record keeping are removed from the page, figure code is folded."""
    nb = nbformat.read(path, as_version=4)
    overview = nb.cells[0].source.split("## Prerequisites")[0]
    keys = re.findall(r"\{glue:md\}`(result_\d\d[a-z]?)`", overview)
    assert keys, f"{path.name}: the overview does not end with the run's result ({{glue:md}}`result_NN`)"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for key in keys:
        assert any(f'glue_markdown("{key}"' in c.source for c in code), f"{path.name}: nothing glues {key}"
    tags = [set(c.metadata.get("tags", [])) for c in code]
    assert "remove-cell" in tags[0], f"{path.name}: the imports cell is not removed from the page"
    for c, t in zip(code, tags):
        if "record_headlines(" in c.source or "provenance.write_results(" in c.source:
            assert "remove-cell" in t, f"{path.name}: record keeping shows on the page: {c.source[:80]!r}"
        if "savefig(" in c.source:
            assert t & {"hide-input", "remove-input", "remove-cell"}, f"{path.name}: figure code shows: {c.source[:80]!r}"
    assert "at_or_above" not in "".join(c.source for c, t in zip(code, tags) if "remove-cell" not in t), \
        f"{path.name}: a yes/no 'at or above the paper' is shown; show the paper's number as a reference"
