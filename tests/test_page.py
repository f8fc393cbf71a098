"""The one setup call of every page (spinelib.paper.page) and the book's hidden plumbing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from spinelib.book import hide_injected_parameters
from spinelib.core.config import get_profile
from spinelib.paper.page import setup


def test_setup_makes_the_folders_data_and_run_record(tmp_path):
    page = setup("tiny", 3, synthetic_dir=tmp_path / "syn", output_dir=tmp_path / "out", aasce_dir=None,
                 extra_synthetic={"second set": (tmp_path / "syn2", 2, 7)})
    assert page.profile == get_profile("tiny") and page.seed == 3
    assert page.out == tmp_path / "out" and page.synthetic_dir == tmp_path / "syn"
    assert len(page.synthetic_meta) == get_profile("tiny").n_synthetic
    assert (tmp_path / "syn2").is_dir()
    assert set(page.run["datasets"]) >= {"synthetic", "second set"}
    assert page.run["seed"] == 3


def test_setup_checks_parameters_and_dataset_keys(tmp_path):
    with pytest.raises(TypeError, match="seed must be an integer"):
        setup("tiny", "0", synthetic=False, record=False)
    with pytest.raises(TypeError, match="aasce_dir must be a path"):
        setup("tiny", 0, synthetic=False, record=False, aasce_dir=3)
    with pytest.raises(ValueError, match="unknown dataset key"):
        setup("tiny", 0, synthetic=False, datasets={"mri": None})
    page = setup("tiny", 0, output_dir=tmp_path, synthetic=False, record=False, overrides={"seg_epochs": 3})
    assert page.synthetic_dir is None and page.run is None and page.profile.seg_epochs == 3


def test_injected_parameters_are_removed_from_the_page(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("x = '/work/machine/path'", metadata={"tags": ["injected-parameters"]})]
    path = tmp_path / "page.ipynb"
    nbformat.write(nb, str(path))
    assert hide_injected_parameters(path) == 1
    tags = [c.metadata["tags"] for c in nbformat.read(str(path), as_version=4).cells]
    assert tags == [["parameters"], ["injected-parameters", "remove-cell"]]
    assert hide_injected_parameters(path) == 0  # already hidden


def test_a_partial_build_keeps_the_pages_an_earlier_build_of_its_profile_executed(tmp_path):
    from spinelib.book import kept_pages

    pages = tmp_path / "src" / "notebooks"
    pages.mkdir(parents=True)
    for name in ("01_a.ipynb", "02_b.ipynb"):
        (pages / name).write_text(f'{{"executed": "{name}"}}')
    (tmp_path / "build-info.json").write_text(json.dumps(
        {"profile": "ci", "seed": 0, "executed": ["01_a.ipynb", "02_b.ipynb", "03_gone.ipynb"]}))
    (tmp_path / "timings-ci.csv").write_text("step,seconds,cpu_seconds,figures\n01_a.ipynb,12.5,20.0,3\n")
    kept = kept_pages(tmp_path, "ci", 0, [Path("notebooks/02_b.ipynb")])
    assert list(kept) == ["01_a.ipynb"]  # 02 runs again; 03's executed copy is not there
    content, timing = kept["01_a.ipynb"]
    assert content == b'{"executed": "01_a.ipynb"}' and timing["seconds"] == 12.5 and timing["figures"] == 3
    assert kept_pages(tmp_path, "tiny", 0, []) == {} and kept_pages(tmp_path, "ci", 1, []) == {}
    assert kept_pages(tmp_path / "none", "ci", 0, []) == {}


def test_without_shared_data_only_a_given_path_or_variable_finds_a_dataset(tmp_path, monkeypatch):
    from spinelib.core.config import NO_SHARED_DATA_ENV, find_dataset

    monkeypatch.setenv(NO_SHARED_DATA_ENV, "1")
    monkeypatch.delenv("SPINELIB_AASCE_DIR", raising=False)
    assert find_dataset("aasce") is None
    assert find_dataset("aasce", tmp_path) == tmp_path.resolve()
    monkeypatch.setenv("SPINELIB_AASCE_DIR", str(tmp_path))
    assert find_dataset("aasce") == tmp_path.resolve()


def test_pages_share_out_into_lanes_that_keep_page_5_after_page_4_and_page_6_last():
    from spinelib.book import plan_lanes, toc_notebooks

    pages = toc_notebooks()
    lanes, last = plan_lanes(pages, 2)
    names = [[p.name[:3] for p in lane] for lane in lanes]
    assert [p.name[:3] for p in last] == ["06_"] and len(lanes) == 2
    assert sorted(n for lane in names for n in lane) == sorted(p.name[:3] for p in pages if not p.name.startswith("06"))
    with_4 = next(lane for lane in names if "04_" in lane)
    assert with_4.index("05_") == with_4.index("04_") + 1  # page 5 reads page 4's runs: same lane, right after
    assert "03_" not in with_4  # the two longest pieces of work (03; 04 + 05) go to different lanes
    with_3 = next(lane for lane in names if "03_" in lane)
    assert with_3.index("03b") == with_3.index("03_") + 1  # 3b right after 3, never beside page 2's start
    assert all(lane == sorted(lane, key=[p.name[:3] for p in pages].index) for lane in names)  # book order
    one, _ = plan_lanes(pages, 1)
    assert len(one) == 1
    assert len(plan_lanes(pages[:2], 4)[0]) == 2  # never more lanes than pieces of work
    with pytest.raises(ValueError, match="positive"):
        plan_lanes(pages, 0)


def test_the_kernel_environment_is_set_inside_and_restored_after(monkeypatch):
    from spinelib.book import INLINE_BACKEND, kernel_environment

    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    with kernel_environment():
        with kernel_environment():  # a page inside a build: the outer values stay
            pass
        assert os.environ["MPLBACKEND"] == INLINE_BACKEND and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert os.environ["MPLBACKEND"] == "Agg" and "TF_CPP_MIN_LOG_LEVEL" not in os.environ


def test_the_build_command_refuses_a_bad_number_of_lanes(monkeypatch, capsys):
    from spinelib.book import main

    with pytest.raises(SystemExit):
        main(["--jobs", "0"])
    assert "--jobs must be at least 1" in capsys.readouterr().err
    monkeypatch.setenv("SPINELIB_BOOK_JOBS", "two")
    with pytest.raises(SystemExit):
        main([])
    assert "SPINELIB_BOOK_JOBS must be a whole number" in capsys.readouterr().err
