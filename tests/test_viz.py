"""The book's statistical figures (spinelib.viz, spinelib.landmarks.plots): what they draw, checked
on small frames, so that a figure that silently drops a run, a cell or a label fails here."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from spinelib import viz
from spinelib.data.aasce import VERTEBRA_NAMES
from spinelib.landmarks import plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _runs_table():
    return pd.DataFrame({"dice": [0.84, 0.86], "ci_low": [0.82, 0.84], "ci_high": [0.86, 0.88]},
                        index=["long run (committed): U-Net", "long run (committed): Lite0 encoder, ImageNet; cosine LR; flip TTA"])


def test_short_run_label_abbreviates_and_cuts():
    assert viz.short_run_label("long run (committed): Lite0 encoder, ImageNet; cosine LR; flip TTA") == "Lite0, cosine, TTA"
    assert len(viz.short_run_label("x" * 80, 20)) == 20


def test_run_dice_figure_draws_every_run_its_ci_the_target_and_the_patients():
    table = _runs_table()
    patients = pd.DataFrame({"run": [table.index[0]] * 5 + [table.index[1]] * 4, "patient": range(9),
                             "dice": np.linspace(0.7, 0.95, 9)})
    fig = viz.run_dice_figure(table, patients, target=0.9)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["U-Net", "Lite0, cosine, TTA"]
    assert any(abs(line.get_xdata()[0] - 0.9) < 1e-9 for line in ax.get_lines())  # the target line
    from matplotlib.collections import PathCollection

    dots = sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))
    assert dots == 9  # every patient
    means = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(means) == 1 and list(means[0].get_xdata()) == [0.84, 0.86]  # both means
    assert "Dice" in ax.get_xlabel()
    assert fig.get_size_inches()[0] <= 6.8
    with pytest.raises(ValueError):
        viz.run_dice_figure(table.iloc[:0])


def test_level_heatmap_has_one_cell_per_vertebra_and_run_with_its_value():
    table = pd.DataFrame({"run A": np.linspace(0.7, 0.9, 17), "run B": np.linspace(0.75, 0.95, 17)},
                         index=list(VERTEBRA_NAMES))
    table.loc["all"] = [0.85, 0.86]  # not a vertebra: left out
    fig = viz.level_heatmap(table)
    ax = fig.axes[0]
    mesh = ax.collections[0]
    assert mesh.get_array().size == 2 * 17
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 34 and texts[0] == "0.70" and texts[-1] == "0.95"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(VERTEBRA_NAMES)
    assert fig.get_size_inches()[0] <= 6.8


def test_per_patient_dice_figure_averages_a_patients_images_first():
    cases = pd.DataFrame({"patient": ["a", "a", "b", "c"], "structure": ["Ap_Vertebra"] * 4,
                          "dice": [0.2, 0.4, 0.9, 0.8]})
    fig = viz.per_patient_dice_figure(cases)
    ax = fig.axes[0]
    from matplotlib.collections import PathCollection

    dots = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections
                           if isinstance(c, PathCollection) and len(c.get_offsets())])
    assert sorted(np.round(dots, 3)) == [0.3, 0.8, 0.9]  # patient a once, at the mean of its two images
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Ap Vertebra"]
    with pytest.raises(ValueError):
        viz.per_patient_dice_figure(cases.drop(columns="patient"))


def test_feature_by_class_figure_one_panel_per_feature():
    features = pd.DataFrame({"wedge_ratio": [0.9, 1.0, 0.6, 0.5], "disk_height": [5, 6, 3, 2], "slip": [0, 1, 2, 3]})
    fig = viz.feature_by_class_figure(features, ["normal", "normal", "damaged", "damaged"])
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["wedge ratio", "disk height", "slip"]
    assert {t.get_text() for t in shown[0].get_xticklabels()} == {"normal", "damaged"}
    with pytest.raises(ValueError):
        viz.feature_by_class_figure(features, ["normal"])


def _cases():
    return pd.DataFrame({"image_name": ["a", "b", "c"], "patient_id": [1, 2, 3], "flagged": [False, True, False],
                         "cobb_pt": [10.0, 45.0, 60.0], "cobb_mt": [5.0, 20.0, 30.0], "cobb_tl": [0.0, 10.0, 5.0],
                         "cobb_max": [10.0, 45.0, 60.0],
                         "lm_pt": [12.0, 38.0, 41.0], "lm_mt": [6.0, 20.0, 55.0], "lm_tl": [1.0, 9.0, 5.0],
                         "lm_pt_sd": [1.0, 2.0, 1.0], "lm_mt_sd": [1.0, 1.0, 5.0], "lm_tl_sd": [1.0, 1.0, 1.0],
                         "lm_smape": [5.0, 20.0, 10.0], "min_score": [0.9, 0.4, 0.7],
                         "lm_levels_in_order": [True, False, True]})


def test_severity_probability_reads_the_largest_predicted_angle_and_its_spread():
    p = plots.severity_probability(_cases())
    assert list(p["pred_max"]) == [12.0, 38.0, 55.0]
    assert list(p["sd"]) == [1.0, 2.0, 5.0]  # the spread of the angle that is largest
    assert p["p_severe"].iloc[0] < 1e-6 and p["p_severe"].iloc[2] > 0.99
    assert abs(p["p_severe"].iloc[1] - 0.1587) < 1e-3  # one SD below 40°
    wider = plots.severity_probability(_cases(), spread_factor=4.0)
    assert wider["p_severe"].iloc[1] > p["p_severe"].iloc[1]
    assert list(p["severe"]) == [False, True, True]


def test_severity_figure_marks_the_threshold_and_counts_wrong_decisions():
    fig = plots.severity_figure(_cases())
    ax = fig.axes[0]
    assert ax.get_ylabel() == "P(severe)" and "Cobb" in ax.get_xlabel()
    from matplotlib.collections import PathCollection

    assert sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)) == 3
    assert "1 of 3 X-rays on the wrong side" in ax.get_title()  # b: severe, predicted 38°


def test_error_figure_has_three_panels():
    fig = plots.error_figure(_cases())
    assert len(fig.axes) == 3 and fig.axes[0].get_ylabel() == "SMAPE per X-ray (%)"


def test_calibrated_spread_factor_from_a_record():
    assert plots.calibrated_spread_factor({}) == 1.0
    m = {"coverage_calibrated": [{"factors": [3.92, 3.92]}, {"factors": [1.96]}]}
    assert abs(plots.calibrated_spread_factor(m) - (3.92 * 2 + 1.96) / 3 / 1.96) < 1e-9


def test_aasce_runs_show_no_absolute_path_and_read_patients(tmp_path):
    from spinelib.paper import aasce_runs

    from spinelib.core.config import REPO_ROOT

    runs = sorted(p.parent for p in (REPO_ROOT / "results").glob("aasce_unet*/metrics.json"))
    if not runs:
        pytest.skip("no committed AASCE long run")
    table = aasce_runs.aasce_comparison(None, runs)
    assert all(s.startswith("results/aasce_unet") for s in table["source"]), list(table["source"])
    patients = aasce_runs.aasce_patient_dice(runs)
    assert set(patients["run"]) <= set(table.index) and patients["dice"].between(0, 1).all()
    cases = json.loads((runs[0] / "metrics.json").read_text())["n_val_patients"]
    assert (patients.groupby("run").size() == cases).all()
