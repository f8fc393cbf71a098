"""benchmarks/paper_vs_pipeline.py (issue 16): it runs end to end at a tiny scale, its FLOP count
is the U-Net's, and the book's page shows the committed results. Not a timed test: no number it
measures is asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "paper_vs_pipeline.py"


def load_script(name: str = "paper_vs_pipeline"):
    """A script of ``benchmarks/`` as a module (they are run as files, not imported as a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_benchmark_runs_end_to_end_at_a_tiny_scale(tmp_path):
    args = ["--height", "32", "--width", "16", "--depth", "3", "--filters", "4", "--patients", "4",
            "--synthetic-scale", "0.25", "--max-epochs", "2", "--dice-target", "0.3", "--throughput-images", "4",
            "--pipeline-batch", "2", "--work-dir", str(tmp_path / "work"), "--out-dir", str(tmp_path / "out"),
            "--name", "tiny"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert record["reduced_scale"] is True
    assert {"cpu_model", "cores", "clock_mhz", "peak_gflops", "peak_formula"} <= set(record["machine"])
    from spinelib.core.structures import STRUCTURES

    for kind, networks in (("paper", 8), ("pipeline", 2)):
        p = record["pipelines"][kind]
        assert p["networks"] == networks
        for key in ("images_per_second", "patients_per_second", "seconds_to_target", "seconds_trained",
                    "inference_seconds_per_patient", "peak_rss_mb", "achieved_gflops", "fraction_of_peak"):
            assert key in p, (kind, key)
        assert p["images_per_second"] > 0 and p["peak_rss_mb"] > 0 and p["inference_seconds_per_patient"] > 0
        assert sorted(p["final_dice"]) == sorted(STRUCTURES)
        assert all(0 <= v <= 1 for v in p["final_dice"].values())
    assert {"speedup_to_target", "speedup_images_per_second", "inference_speedup", "common_dice",
            "goal_speedup"} <= set(record["comparison"])
    md = (tmp_path / "out" / "tiny.md").read_text()
    assert "Reduced scale" in md and record["full_scale_command"] in md
    assert str(tmp_path) not in record["command"]  # no machine paths in the shown command


def test_flop_count_is_the_paper_unets():
    """2 x multiply-adds of every convolution, against the U-Net's layer arithmetic written out."""
    from spinelib.seg.unet import forward_flops, unet

    h, w, f, n = 64, 32, 8, 3
    c = [f * 2**i for i in range(5)]
    px = [(h >> i) * (w >> i) for i in range(5)]
    macs = sum(9 * (1 if i == 0 else c[i - 1]) * c[i] * px[i] + 9 * c[i] * c[i] * px[i] for i in range(5))
    macs += sum(4 * c[i + 1] * c[i] * px[i + 1] + 9 * 2 * c[i] * c[i] * px[i] + 9 * c[i] * c[i] * px[i]
                for i in range(4))
    macs += c[0] * n * px[0]
    assert forward_flops(unet((h, w, 1), filters=f, n_classes=n)) == 2 * macs


def test_the_page_shows_the_committed_results(tmp_path):
    script = load_script()
    page = REPO / "docs" / "benchmarks.md"
    text = page.read_text()
    assert script.PAGE_START in text and script.PAGE_END in text
    md = REPO / "benchmarks" / "paper_vs_pipeline.md"
    if not md.exists():
        pytest.skip("benchmarks/paper_vs_pipeline.md not measured yet")
    copy = tmp_path / "page.md"
    copy.write_text(text)
    script.update_page(copy, md.read_text())
    assert copy.read_text() == text, "docs/benchmarks.md is stale: rerun the benchmark with --update-page"
    record = json.loads((REPO / "benchmarks" / "paper_vs_pipeline.json").read_text())
    assert record["command"] in md.read_text()


# --------------------------------------------------------------------------------------------
# benchmarks/inference_speed.py: its verdicts, its Markdown and the page that shows it

RECORD = REPO / "benchmarks" / "inference_speed.json"


def committed() -> dict:
    if not RECORD.exists():
        pytest.skip("benchmarks/inference_speed.json not measured yet")
    return json.loads(RECORD.read_text())


def test_verdicts_divide_the_measured_flops_by_each_peak():
    script = load_script("inference_speed")
    rec = committed()
    v = script.verdicts(rec)
    gf = rec["training"]["step"]["training_gflops"]
    assert v["training_peak_fraction"]["of_reported_clock"] == pytest.approx(gf / rec["peak"]["nominal_gflops_at_reported_clock"], abs=1e-3)
    assert v["training_peak_fraction"]["of_boost_clock"] < v["training_peak_fraction"]["of_reported_clock"]
    assert v["landmark_seconds"]["measured"] == rec["landmarks"]["predict_file_seconds"]["median"]
    assert v == rec["verdicts"]  # the record's verdicts are what the code computes from its numbers


def test_the_markdown_and_the_page_show_the_committed_record(tmp_path):
    script = load_script("inference_speed")
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
    script = load_script("inference_speed")
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


def test_the_layer_profile_times_every_convolution_of_the_paper_unet():
    """Issue 16's per-layer profile (part ``layers``), at a tiny size: all 23 convolutions of the
    paper's U-Net (19 Conv2D, 4 transposed), each with its FLOPs, and a section that lists them."""
    script = load_script("inference_speed")
    args = script.parse_args(["--size", "32", "16", "--steps", "2"])
    rec = script.part_layers(args)
    kinds = [r["kind"] for r in rec["layers"]]
    assert len(kinds) == 23 and kinds.count("Conv2DTranspose") == 4
    assert all(r["seconds"] > 0 and r["gflop"] >= 0 for r in rec["layers"])
    assert rec["conv_seconds"] == pytest.approx(sum(r["seconds"] for r in rec["layers"]), abs=1e-3)
    md = "\n".join(script.layers_markdown(rec, {"measured_peak_gflops": 164.0}))
    assert md.count("| `") == 23 and "## Where a training step goes" in md


def test_the_book_profile_reads_pages_and_training_runs(tmp_path):
    """benchmarks/book_profile.py: one row per training run (images per second from its epochs) and
    per build step (its share of the build, the seconds its runs trained), nothing re-measured."""
    script = load_script("book_profile")
    run = tmp_path / "outputs" / "03_unet" / "table3_AP"
    assert script.page_of_run("segmenters-41f867d4d872") == "05" and script.page_of_run("02_table2") == "02"
    assert script.page_of_run("03_unet", "03_unet/aasce") == "03b"
    run.mkdir(parents=True)
    (run / "train_state.json").write_text(json.dumps({"epoch": 2, "config": {
        "model": "unet", "params": 10, "batch_size": 4, "n_train": 48, "n_val": 12, "input_shape": [256, 128, 1]}}))
    (run / "history.csv").write_text("epoch,epoch_seconds,val_dice\n0,14.0,0.2\n1,10.0,0.5\n")
    timings = tmp_path / "timings.csv"
    timings.write_text("step,seconds,figures\nsynthetic data,20,\n03_unet_segmentation.ipynb,60,3\n03b_aasce_segmentation.ipynb,20,1\n")
    out = tmp_path / "profile"
    assert script.main(["--output-dir", str(tmp_path / "outputs"), "--timings", str(timings), "--out", str(out)]) == 0
    runs = pd.read_csv(out.with_suffix(".csv"))
    assert runs.loc[0, "page"] == 3 and runs.loc[0, "epochs"] == 2 and runs.loc[0, "training_seconds"] == 24.0
    assert runs.loc[0, "train_images_per_second"] == 4.0 and runs.loc[0, "best_val_dice"] == 0.5
    pages = pd.read_csv(tmp_path / "profile-pages.csv").set_index("step")
    assert pages.loc["03_unet_segmentation.ipynb", "training_seconds"] == 24.0
    assert pages.loc["03b_aasce_segmentation.ipynb", "training_runs"] == 0  # 03b's runs live under page 3's folder
    assert pages["share_of_build"].sum() == pytest.approx(1.0, abs=1e-3)
    md = out.with_suffix(".md").read_text()
    assert "take **1.7 min** of wall time" in md and "| 03/table3_AP |" in md.replace("  ", "")  # the page folder shortened to its number
    assert script.main(["--output-dir", str(tmp_path / "none"), "--timings", str(timings), "--out", str(out)]) == 2
    (tmp_path / "build-info.json").write_text(json.dumps({"jobs": 2, "pages_wall_seconds": 66.0}))  # beside the timings
    assert script.main(["--output-dir", str(tmp_path / "outputs"), "--timings", str(timings), "--out", str(out)]) == 0
    assert "ran in 2 lanes side by side: **1.1 min**" in out.with_suffix(".md").read_text()


def test_the_pyspy_summary_sorts_samples_into_tracing_running_and_other(tmp_path):
    """benchmarks/pyspy_summary.py: each sample with a spinelib frame counts once, by its kind, under
    its outermost spinelib call site; samples without one (the kernel's other threads) do not."""
    script = load_script("pyspy_summary")
    site = "fit_rows (spinelib/paper/t4.py:10)"
    raw = tmp_path / "04.raw"
    raw.write_text("\n".join([
        f"<module> (x.py:1);{site};fit (keras/trainer.py:3);func_graph_from_py_func (tf/func_graph.py:9) 10",
        f"<module> (x.py:1);{site};fit (keras/trainer.py:3);quick_execute (tf/execute.py:53) 25",
        f"<module> (x.py:1);load (spinelib/data/io.py:5);imread (PIL/Image.py:1) 5",
        "run (threading.py:1);select (selectors.py:468) 400",
    ]) + "\n")
    kinds, sites = script.summarise(raw, rate_hz=5.0)
    assert kinds == {"tracing": 2.0, "executing": 5.0, "other": 1.0}
    assert sites[0] == {"call site": "fit_rows (paper/t4.py:10)", "tracing": 2.0, "executing": 5.0, "other": 0.0}
    out = tmp_path / "summary"
    assert script.main(["04=" + str(raw), "--out", str(out)]) == 0
    assert "building graphs 25%, running them 62%, other work 12%" in out.with_suffix(".md").read_text()
    with pytest.raises(SystemExit):
        script.main(["04", "--out", str(out)])  # no file given


def test_the_memory_runs_train_each_pipeline_in_its_own_precision():
    """Part ``training``'s memory runs through ``train_segmentation``, at a tiny size: the bfloat16
    variant trains under mixed_bfloat16 (and says so), the others in float32."""
    import keras

    script = load_script("inference_speed")
    args = script.parse_args(["--size", "32", "16"])
    try:
        bf16 = script.part_training_pipeline(args, "pipeline-bf16")
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        f32 = script.part_training_pipeline(args, "pipeline-paper")
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert (bf16["precision"], f32["precision"]) == ("mixed_bfloat16", "float32")
    assert bf16["peak_rss_mb"] > 0 and bf16["input"] == [32, 16]


def test_the_repeat_check_tells_weights_one_bit_apart(tmp_path):
    """benchmarks/repeat_training.py: its fingerprint changes with one weight's last bit, and the
    report counts the distinct fingerprints of its runs."""
    import numpy as np

    repeat = load_script("repeat_training")

    class Weights:
        def __init__(self, ws):
            self.ws = ws

        def get_weights(self):
            return self.ws

    a = [np.ones((3, 3), np.float32), np.zeros(4, np.float32)]
    b = [w.copy() for w in a]
    b[0][1, 1] = np.nextafter(np.float32(1), np.float32(2))
    fa, fb = repeat.fingerprint(Weights(a)), repeat.fingerprint(Weights(b))
    assert fa == repeat.fingerprint(Weights([w.copy() for w in a])) and fa["md5"] != fb["md5"]
    args = SimpleNamespace(what="random", epochs=1, runs=3, out=str(tmp_path / "rep"))
    record = repeat.report(args, [dict(fa, seconds=1.0), dict(fb, seconds=1.0), dict(fa, seconds=1.0)])
    assert record["distinct_weights"] == 2
    md = (tmp_path / "rep.md").read_text()
    assert "2 distinct final weights in 3 runs" in md and md.count(fa["md5"][:12]) == 2
    assert json.loads((tmp_path / "rep.json").read_text())["distinct_weights"] == 2
