"""Classification orchestration: inputs, cost, cached runs, patient CV, thresholds chosen on other
folds only, Table 4 rows, in-domain encoders, Grad-CAM on features, error tables (tiny data)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from spinelib.cls import cv, extractors, heads
from spinelib.cls import metrics as cls_metrics
from spinelib.core import plans, runs
from spinelib.core.config import get_profile
from spinelib.core.structures import STRUCTURES
from spinelib.data import clsdata
from spinelib.data.splits import patient_kfold
from spinelib.paper import final_classifier, table4_backbones
from spinelib.seg import experiment


def _separable(n_patients=20, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n_patients) % 2
    Xf = rng.normal(size=(n_patients, d)).astype(np.float32)
    Xf[:, 0] += 5.0 * y
    return Xf, y, np.array([f"p{i}" for i in range(n_patients)])


def _oof(n=40, folds=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    prob = np.clip(0.35 * y + 0.3 + rng.normal(0, 0.15, n), 0, 1)
    return pd.DataFrame({"index": np.arange(n), "patient_id": [f"p{i}" for i in range(n)],
                         "fold": np.arange(n) % folds, "y_true": y, "prob": prob})


def test_fold_threshold_never_uses_its_own_fold():
    oof = _oof()
    t = cv.fold_thresholds(oof)
    assert t.groupby("fold")["threshold"].nunique().eq(1).all()
    # change everything in fold 0: its threshold stays, the others' thresholds may move
    changed = oof.copy()
    changed.loc[changed.fold == 0, "prob"] = 1 - changed.loc[changed.fold == 0, "prob"]
    t2 = cv.fold_thresholds(changed)
    assert t2.loc[t2.fold == 0, "threshold"].iloc[0] == pytest.approx(t.loc[t.fold == 0, "threshold"].iloc[0])
    assert ((t["prob"] >= t["threshold"]).astype(int) == t["y_pred"]).all()


def test_fold_threshold_falls_between_separable_classes():
    oof = pd.DataFrame({"index": range(8), "patient_id": list("abcdefgh"), "fold": [0, 1] * 4,
                        "y_true": [0, 0, 0, 0, 1, 1, 1, 1], "prob": [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]})
    t = cv.fold_thresholds(oof)
    # fold 0's threshold from fold 1 (0.2, 0.4 | 0.7, 0.9): midway between 0.4 and 0.7
    assert t.loc[t.fold == 0, "threshold"].iloc[0] == pytest.approx(0.55)
    assert (t["y_pred"] == t["y_true"]).all()
    with pytest.raises(ValueError, match="columns"):
        cv.fold_thresholds(oof.drop(columns=["prob"]))


def test_cpu_cost_counts_process_time():
    with runs.cpu_cost() as cost:
        c0 = time.process_time()
        while time.process_time() - c0 < 0.2:  # busy for 0.2 s of CPU
            pass
    assert 0.2 / 60 <= cost["cpu_minutes"] < 1.0 / 60
    assert cost["wall_minutes"] >= 0.19 / 60  # one thread: wall time >= its CPU time


def test_cached_run_reuses_a_finished_run(tmp_path):
    calls = []

    def run():
        calls.append(1)
        return _oof(8, 2)

    a = cv.cached_run(tmp_path, "demo", {"x": 1}, run)
    b = cv.cached_run(tmp_path, "demo", {"x": 1}, run)
    c = cv.cached_run(tmp_path, "demo", {"x": 2}, run)
    assert len(calls) == 2 and not a.cached and b.cached and not c.cached
    pd.testing.assert_frame_equal(a.oof, b.oof, check_dtype=False)
    assert b.cpu_minutes == pytest.approx(a.cpu_minutes)
    assert set(b.summary()) >= {"accuracy", "accuracy@0.5", "auroc", "cpu_minutes"}


def test_cross_validation_by_patient_and_per_fold_features():
    Xf, y, pid = _separable()
    groups = np.repeat(pid, 2)
    Xr, yr = np.repeat(Xf, 2, axis=0), np.repeat(y, 2)
    oof = cv.cross_validate_features(Xr, yr, groups, k=4, head="logistic", progress=False)
    assert sorted(oof["index"]) == list(range(len(yr)))
    assert oof.groupby("patient_id")["fold"].nunique().max() == 1  # both images of a patient together
    assert roc_auc_score(oof.y_true, oof.prob) > 0.9
    folds = list(patient_kfold(groups, yr, k=4, seed=0))
    for f, (_, val) in enumerate(folds):
        assert set(oof.loc[oof.fold == f, "index"]) == set(val)
    seen = []
    per_fold = cv.cross_validate_features(lambda f: seen.append(f) or Xr, yr, groups, k=4, head="logistic",
                                         progress=False, keep_models=True)
    assert seen == [0, 1, 2, 3] and len(per_fold.attrs["models"]) == 4
    np.testing.assert_allclose(per_fold.prob, oof.prob)
    paper = cv.cross_validate_features((Xr[:, :3], Xr[:, 3:]), yr, groups, k=4, head="paper",
                                      fit_kwargs={"epochs": 10, "batch_size": 8, "lr": 1e-2}, progress=False)
    assert roc_auc_score(paper.y_true, paper.prob) > 0.8
    with pytest.raises(ValueError, match="head"):
        cv.cross_validate_features(Xr, yr, groups, head="svm")


def test_cnn_classifier_channels_and_freezing():
    m8 = table4_backbones.cnn_classifier("efficientnet_lite0", (64, 32, 8), "random", augment=True)
    assert m8.predict(np.zeros((2, 64, 32, 8), np.float32), verbose=0).shape == (2, 1)
    m2 = table4_backbones.cnn_classifier("efficientnet_lite0", (64, 32, 2), "imagenet", freeze_first=5)
    summary = table4_backbones.trainable_summary(m2)
    assert len(summary["frozen"]) == 5 and summary["frozen"][0] == "conv_stem"
    assert summary["frozen_params"] > 0 and summary["trainable_params"] > summary["frozen_params"]
    assert table4_backbones.trainable_summary(m8)["frozen"] == []
    assert m2.predict(np.zeros((1, 64, 32, 2), np.float32), verbose=0).shape == (1, 1)
    with pytest.raises(ValueError, match="weights"):
        table4_backbones.cnn_classifier("efficientnet_lite0", (64, 32, 1), "indomain")


def _tiny_inputs(n=8, size=(64, 32), seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    ap = rng.uniform(0, 255, (n, *size, 1)).astype(np.float32)
    ap[labels == 1, : size[0] // 2] += 60  # a bright top half for Damaged
    lat = rng.uniform(0, 255, (n, *size, 1)).astype(np.float32)
    masks = rng.random((n, *size, len(STRUCTURES))) > 0.5
    table = pd.DataFrame({"patient_id": [f"p{i}" for i in range(n)], "label": labels,
                          "pathologies": ["" if l == 0 else "wedge_fracture@L1" for l in labels]})
    return clsdata.ClassificationInputs("synthetic", np.clip(ap, 0, 255), lat, masks, labels,
                                  table.patient_id.to_numpy(), table)


def test_table4_rows_name_their_weights():
    rows = table4_backbones.table4_rows("random")
    assert [r.row for r in rows][:5] == [1, 2, 3, 4, 5]
    assert rows[0].input == "masks8" and rows[0].weights == "random"
    assert rows[2].backbone == "efficientnet_lite0" and rows[2].weights == "imagenet"
    assert any(r.weights == "indomain" for r in rows)
    assert "random init" in rows[5].weights_label and "ResNet-50" in rows[5].weights_label
    with_file = table4_backbones.table4_rows("file", include_indomain=False)
    assert with_file[2].backbone == "resnet50" and with_file[2].weights == "file"
    assert not any(r.weights == "indomain" for r in with_file)
    assert cls_metrics.paper_confusion_total() == 678


def test_run_table4_row_end_to_end_and_frozen(tmp_path):
    data = _tiny_inputs()
    prof = get_profile("tiny")
    row = table4_backbones.Table4Row("t-masks8", 1, "masks8", "vgg16", "random", "end-to-end")  # a short graph: fast
    res = table4_backbones.run_table4_row(row, data, prof, tmp_path, progress=False)
    assert len(res.oof) == len(data) and res.cpu_minutes > 0 and not res.cached
    again = table4_backbones.run_table4_row(row, data, prof, tmp_path, progress=False)
    assert again.cached
    frozen = table4_backbones.Table4Row("t-feat", 6, "ap+lat_features", "vgg16", "random", "frozen features")
    res2 = table4_backbones.run_table4_row(frozen, data, prof, tmp_path, progress=False)
    assert res2.info["input_size"] == list(prof.cls_size) and not res2.cached
    # a row that does not use the in-domain U-Net is the same run with or without its path (pages 4 and 5 share it)
    shared = table4_backbones.run_table4_row(frozen, data, prof, tmp_path, progress=False, indomain_unet=tmp_path / "unet.keras")
    assert shared.cached and shared.oof.equals(res2.oof)
    assert table4_backbones.paper_final_row("random") in table4_backbones.table4_rows("random")
    table = table4_backbones.table4_frame([row, frozen], [again, res2])
    assert list(table["row"]) == [1, 6]
    assert table["paper accuracy"].tolist() == [0.50, 0.9484]
    assert table["accuracy (CV, 0.5)"].between(0, 1).all()
    with pytest.raises(ValueError, match="masks8"):
        table4_backbones.row_inputs(row, clsdata.ClassificationInputs("aasce", data.ap, None, None, data.labels, data.patient_ids,
                                                 data.table), (64, 32))


def test_resnet50_status_without_and_with_a_file(tmp_path):
    weights, message = extractors.resnet50_weights_status(tmp_path / "missing.h5")
    assert weights == "random" and "random init" in message
    fake = tmp_path / "resnet50.h5"
    fake.write_bytes(b"x")
    assert extractors.resnet50_weights_status(fake)[0] == "file"


def test_indomain_unets_per_fold_and_encoder(tmp_path):
    from fixtures_aasce import fake_aasce

    root = fake_aasce(tmp_path / "aasce", n=8)
    data = clsdata.load_aasce_inputs(root, (64, 32), progress=False)
    assert data.ap.shape == (8, 64, 32, 1) and data.ap.max() > 1 and data.masks.dtype == bool
    assert len(np.unique(data.patient_ids)) == 4
    sizes = plans.plan(get_profile("tiny"))
    paths = experiment.train_aasce_unets(data, tmp_path / "out", sizes, k=2, folds=[0], progress=False)
    assert list(paths) == [0] and paths[0].is_file()
    mtime = paths[0].stat().st_mtime
    experiment.train_aasce_unets(data, tmp_path / "out", sizes, k=2, folds=[0], progress=False)
    assert paths[0].stat().st_mtime == mtime  # reused, not retrained
    enc = extractors.feature_backbone("unet_encoder", (*sizes.indomain_size, 1), "indomain", weights_path=paths[0])
    feats = extractors.features_of(enc, data.ap, tmp_path / "cache", progress=False)
    assert feats.shape[0] == 8 and feats.ndim == 4
    with pytest.raises(ValueError, match="weights_path"):
        extractors.feature_backbone("unet_encoder", (64, 32, 1), "indomain")


def test_load_synthetic_inputs(tiny_synthetic):
    data = clsdata.load_synthetic_inputs(tiny_synthetic, (64, 32), progress=False)
    assert data.dataset == "synthetic" and len(data) == 6
    assert data.ap.shape == data.lat.shape == (6, 64, 32, 1) and 1 < data.ap.max() <= 255
    assert data.masks.shape == (6, 64, 32, 8) and data.masks.any()
    assert sorted(data.labels) == [0, 0, 0, 1, 1, 1]
    assert (data.table["label"] == data.labels).all() and (data.table["patient_id"] == data.patient_ids).all()
    assert "pathologies" in data.table and data.table.loc[data.labels == 1, "pathologies"].str.len().gt(0).all()
    small = data.views_at((32, 16))
    assert [v.shape for v in small] == [(6, 32, 16, 1)] * 2
    big = data.views_at((128, 64), progress=False)  # read again from the files, not upsampled
    assert [v.shape for v in big] == [(6, 128, 64, 1)] * 2 and big[0].max() <= 255
    assert np.corrcoef(big[0][:, ::2, ::2].ravel(), data.ap.ravel())[0, 1] > 0.9  # same patients, same order
    assert data.views_at((128, 64)) is big  # kept in memory
    with pytest.raises(FileNotFoundError, match="does not exist"):
        clsdata.load_synthetic_inputs(tiny_synthetic / "nope", (64, 32))
    sizes = final_classifier.image_size_features(data)
    assert list(sizes.columns) == [f"{v} {q}" for v in ("AP", "LAT") for q in ("height", "width", "aspect")]
    first = data.table.loc[0, "folder"]
    from spinelib.core.imageio import read_xray

    assert tuple(sizes.loc[0, ["AP height", "AP width"]]) == read_xray(next(Path(first).rglob("AP.*"))).shape


def test_feature_grad_cam_points_at_the_evidence():
    # a head whose score grows with the feature at location (1, 0) of view 0, channel 0
    feats = [np.ones((2, 2, 3), np.float32), np.ones((2, 2, 3), np.float32)]
    head = heads.paper_head(24, hidden=(1,))
    w = np.zeros((24, 1), np.float32)
    w[(1 * 2 + 0) * 3 + 0, 0] = 1.0
    head.layers[1].set_weights([w, np.zeros(1, np.float32)])
    head.layers[2].set_weights([np.ones((1, 1), np.float32), np.zeros(1, np.float32)])
    cams = final_classifier.feature_grad_cam(head, feats)
    assert len(cams) == 2 and cams[0].shape == (2, 2)
    assert cams[0].max() == pytest.approx(1.0) and cams[1].max() == 0.0
    assert final_classifier.upsample_cam(cams[0], (8, 4)).shape == (8, 4)


def test_evaluation_tables_and_patient_bootstrap():
    oof = _oof(60, 3)
    report, t = final_classifier.evaluation_tables(oof, n_boot=50, progress=False)
    assert report.loc["accuracy", "value"] == pytest.approx((t.y_pred == t.y_true).mean())
    assert report.loc["accuracy", "ci_low"] <= report.loc["accuracy", "value"] <= report.loc["accuracy", "ci_high"]
    est, lo, hi = final_classifier.patient_bootstrap_auroc(oof.y_true, oof.prob, np.repeat(np.arange(30), 2), n_boot=100)
    assert est == pytest.approx(roc_auc_score(oof.y_true, oof.prob)) and lo <= est <= hi
    with pytest.raises(ValueError, match="length"):
        final_classifier.patient_bootstrap_auroc([0, 1], [0.2], ["a", "b"])


def test_error_tables():
    data = _tiny_inputs()
    oof = pd.DataFrame({"index": range(8), "patient_id": data.patient_ids, "fold": [0, 1] * 4,
                        "y_true": data.labels, "prob": [0.1, 0.2, 0.7, 0.8, 0.3, 0.4, 0.1, 0.9]})
    t = cv.fold_thresholds(oof).assign(threshold=0.5)
    t["y_pred"] = (t.prob >= 0.5).astype(int)
    wrong = final_classifier.error_table(t, data.table, ["pathologies"])
    assert set(wrong["patient_id"]) == {"p1", "p2", "p5"}
    assert set(wrong["error"]) == {"false negative", "false positive"}
    per_kind = final_classifier.synthetic_pathology_errors(t, data.table)
    wedge = per_kind.set_index("group").loc["Damaged with wedge_fracture"]
    assert wedge["patients"] == 4 and wedge["wrong"] == 2
    bands = final_classifier.cobb_band_errors(t, [5, 15, 25, 35, 45, 55, 65, 75])
    assert bands["images"].sum() == 8
    with pytest.raises(ValueError, match="y_pred"):
        final_classifier.error_table(oof, data.table)


def test_cost_accuracy_figure_numbers_every_row():
    table4 = pd.DataFrame({"row": [1, 6, 6], "our network (weights)": ["a", "b", "c"], "training": ["t"] * 3,
                           "input size": ["64x32"] * 3, "CPU minutes": [0.5, 2.0, 1.0],
                           "accuracy (CV, val. threshold)": [0.5, 0.7, 0.6]})
    fig = table4_backbones.cost_accuracy_figure(table4)
    ax = fig.axes[0]
    assert len(ax.collections) == 3 and [t.get_text() for t in ax.texts] == ["1", "2", "3"]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("1. row 1: a") and any("clinical" in t for t in labels)


def test_run_feature_cv_keeps_its_fold_models_out_of_the_table(tmp_path):
    """The fold models come back beside the out-of-fold table, not in its ``attrs``: pandas
    deep-copies ``attrs`` on every copy of the table, and a deep copy of a Keras model saves and
    rebuilds it (page 5 lost minutes to it in cells that only filter tables)."""
    data = _tiny_inputs()
    profile = get_profile("tiny")
    result = final_classifier.run_feature_cv("models-apart", data, "efficientnet_lite0", "random", (64, 32), profile,
                                             tmp_path, keep_models=True, progress=False)
    assert "models" not in result.oof.attrs and len(result.models) == profile.cls_folds
    assert all(hasattr(m, "predict") for m in result.models)
    again = final_classifier.run_feature_cv("models-apart", data, "efficientnet_lite0", "random", (64, 32), profile,
                                            tmp_path, keep_models=True, progress=False)  # cached: read from disk
    assert len(again.models) == profile.cls_folds
    np.testing.assert_allclose(again.oof.prob, result.oof.prob)
