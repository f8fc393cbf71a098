"""benchmarks/inference_speed.py: its verdicts, its Markdown and the page that shows it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "inference_speed.py"
RECORD = REPO / "benchmarks" / "inference_speed.json"


def load_script():
    spec = importlib.util.spec_from_file_location("inference_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def committed() -> dict:
    if not RECORD.exists():
        pytest.skip("benchmarks/inference_speed.json not measured yet")
    return json.loads(RECORD.read_text())


def test_verdicts_divide_the_measured_flops_by_each_peak():
    script = load_script()
    rec = committed()
    v = script.verdicts(rec)
    gf = rec["training"]["step"]["training_gflops"]
    assert v["training_peak_fraction"]["of_reported_clock"] == pytest.approx(gf / rec["peak"]["nominal_gflops_at_reported_clock"], abs=1e-3)
    assert v["training_peak_fraction"]["of_boost_clock"] < v["training_peak_fraction"]["of_reported_clock"]
    assert v["landmark_seconds"]["measured"] == rec["landmarks"]["predict_file_seconds"]["median"]
    assert v == rec["verdicts"]  # the record's verdicts are what the code computes from its numbers


def test_the_markdown_and_the_page_show_the_committed_record(tmp_path):
    script = load_script()
    rec = committed()
    md = script.markdown(rec)
    assert md == (REPO / "benchmarks" / "inference_speed.md").read_text(), "rerun with --report-only"
    assert f"{rec['landmarks']['predict_file_seconds']['median']:.3f} s" in md
    page = REPO / "docs" / "benchmarks.md"
    copy = tmp_path / "page.md"
    copy.write_text(page.read_text())
    script.put_on_page(copy, md)
    assert copy.read_text() == page.read_text(), "docs/benchmarks.md is stale: rerun with --report-only --update-page"
    assert "/tmp/" not in md and "/work/" not in md


def test_the_page_markers_are_checked_and_bad_counts_refused(tmp_path):
    script = load_script()
    page = tmp_path / "p.md"
    page.write_text("intro\n<!-- inference:start -->\nold\n<!-- inference:end -->\nafter\n")
    script.put_on_page(page, "# Title\nnew")
    assert page.read_text() == "intro\n<!-- inference:start -->\n## Title\nnew\n<!-- inference:end -->\nafter\n"
    page.write_text("no markers")
    with pytest.raises(ValueError, match="needs one"):
        script.put_on_page(page, "x")
    with pytest.raises(SystemExit):
        script.parse_args(["--xrays", "0"])


def test_cpu_info_reads_this_machine():
    from spinelib.core.provenance import cpu_info

    cpu = cpu_info()
    assert cpu["cores"] >= 1 and cpu["float32_lanes"] in (4, 8, 16) and cpu["fma_units_per_core"] in (1, 2)
    if "avx2" in cpu["flags"]:
        assert cpu["float32_lanes"] >= 8
    if not cpu["flags"] & {"avx", "avx2", "avx512f"}:
        assert cpu["float32_lanes"] == 4
