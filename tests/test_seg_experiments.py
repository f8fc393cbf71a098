"""Segmentation experiments: data split by patient, cached runs, tables, crops, and a training run
that gives the same weights whether or not it was interrupted."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

keras = pytest.importorskip("keras")

from spinelib import viz
from spinelib.core.config import set_seed
from spinelib.core.structures import AP_STRUCTURES, LAT_STRUCTURES, PAPER_DICE
from spinelib.data import segdata
from spinelib.paper import aasce_runs, report, table2_losses, table3_unet
from spinelib.seg import experiment, long_runs, spine_crop
from spinelib.seg.training import augment_pair, epoch_dataset, epoch_plan, train_segmentation
from spinelib.seg.unet import unet

SIZE = (64, 32)
FAST = dict(filters=4, depth=3, epochs=2, batch_size=4)


@pytest.fixture(scope="module")
def ap_data(tiny_synthetic):
    return segdata.prepare_view_data(tiny_synthetic, "AP", SIZE, progress=False)


@pytest.fixture(scope="module")
def lat_data(tiny_synthetic):
    return segdata.prepare_view_data(tiny_synthetic, "LAT", SIZE, progress=False)


# ---------------------------------------------------------------- resume equals an uninterrupted run


def discs(n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :32]
    images = rng.normal(0.2, 0.05, (n, 64, 32)).astype(np.float32)
    masks = np.zeros((n, 64, 32, 1), np.float32)
    for i in range(n):
        disc = (yy - rng.integers(16, 48)) ** 2 + (xx - rng.integers(10, 22)) ** 2 <= rng.integers(5, 9) ** 2
        images[i][disc] += 0.6
        masks[i, ..., 0] = disc
    return np.clip(images, 0, 1)[..., None], masks


def test_epoch_plan_depends_only_on_seed_and_epoch():
    o1, s1 = epoch_plan(10, seed=3, epoch=4)
    o2, s2 = epoch_plan(10, seed=3, epoch=4)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(s1, s2)
    assert sorted(o1) == list(range(10))
    o3, _ = epoch_plan(10, seed=3, epoch=5)
    o4, _ = epoch_plan(10, seed=4, epoch=4)
    assert not np.array_equal(o1, o3) and not np.array_equal(o1, o4)


def test_epoch_dataset_resumed_epochs_match_and_batches_stay_in_their_epoch():
    x, y = discs(7)
    full, steps = epoch_dataset(x, y, batch_size=3, epochs=3, augment=True, seed=1)
    assert steps == 3  # 3 + 3 + 1 images
    full = [b[0].numpy() for b in full]
    assert [len(b) for b in full] == [3, 3, 1] * 3
    later, _ = epoch_dataset(x, y, batch_size=3, epochs=3, initial_epoch=2, augment=True, seed=1)
    for a, b in zip(full[6:], [b[0].numpy() for b in later]):
        np.testing.assert_array_equal(a, b)  # same examples, same augmentation draws, same pixels
    assert not np.array_equal(full[0], full[3])  # a new order/augmentation every epoch
    with pytest.raises(ValueError, match="initial_epoch"):
        epoch_dataset(x, y, epochs=2, initial_epoch=2)


def test_augmented_pixels_do_not_depend_on_how_the_batches_are_made():
    """Each training image, augmented inside ``epoch_dataset``'s batches, equals the same image
    augmented alone with its epoch-plan seed, bit for bit. With the intensity change in float32
    23 of these 24 differed in their last bit (and page 3b's run ended at other weights in other
    processes); ``adjust_intensity`` works in float64 and rounds once."""
    rng = np.random.default_rng(0)
    x = rng.random((24, 64, 32, 1), dtype=np.float32)
    y = (rng.random((24, 64, 32, 1)) > 0.8).astype(np.float32)
    ds, _ = epoch_dataset(x, y, 8, augment={"flip": True}, seed=0)
    streamed = np.concatenate([b.numpy() for b, _ in ds])
    order, seeds = epoch_plan(len(x), 0, 0)
    alone = np.stack([augment_pair(x[i], y[i], seeds[k], flip=True)[0].numpy() for k, i in enumerate(order)])
    np.testing.assert_array_equal(streamed, alone)


def test_interrupted_then_resumed_training_equals_an_uninterrupted_run(tmp_path):
    x, y = discs(8)
    kw = dict(loss="dice", batch_size=3, augment=True, seed=1, verbose=0)

    def fresh():
        set_seed(0)
        return unet((64, 32, 1), filters=4, depth=3)

    straight = train_segmentation(fresh(), x, y, x[:4], y[:4], epochs=3, out_dir=tmp_path / "a", **kw)
    train_segmentation(fresh(), x, y, x[:4], y[:4], epochs=1, out_dir=tmp_path / "b", **kw)  # "crash" after epoch 1
    resumed = train_segmentation(fresh(), x, y, x[:4], y[:4], epochs=3, out_dir=tmp_path / "b", **kw)
    assert resumed.initial_epoch == 1
    # Bit for bit: the same batches, pixels included (test above), and the optimizer state from
    # last.keras. A wrong resume (another batch order, a reset optimizer) moves weights by ~1e-3.
    for a, b in zip(straight.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    pd.testing.assert_series_equal(straight.history["val_dice"], resumed.history["val_dice"], check_exact=True)
    assert {"white", "val_white"} <= set(straight.history.columns)


# ---------------------------------------------------------------- data


def test_view_data_is_split_by_patient(ap_data, lat_data):
    for data, names in ((ap_data, AP_STRUCTURES), (lat_data, LAT_STRUCTURES)):
        assert data.structures == names and data.size == SIZE
        assert not set(data.train_ids) & set(data.val_ids)
        assert len(data.train_ids) + len(data.val_ids) == 6
        assert data.val_masks.shape == (len(data.val_ids), *SIZE, len(names))
        assert 0.0 <= data.train_images.min() and data.train_images.max() <= 1.0
    one = ap_data.select("Ap_Pedicle")
    assert one.structures == ("Ap_Pedicle",) and one.train_masks.shape[-1] == 1
    np.testing.assert_array_equal(one.val_masks[..., 0], ap_data.val_masks[..., 1])
    assert list(ap_data.describe().index) == ["train", "validation"]
    with pytest.raises(ValueError, match="not among"):
        ap_data.select("Lat_Vertebra")
    with pytest.raises(FileNotFoundError):
        segdata.prepare_view_data("/nonexistent/dataset", "AP", SIZE)


def test_aasce_data_keeps_patients_together(aasce_dir):
    data = segdata.prepare_aasce_data(aasce_dir, SIZE, max_images=12, progress=False)
    assert data.structures == (segdata.AASCE_STRUCTURE,) and data.source == "real AASCE"
    assert not set(data.train_ids) & set(data.val_ids)
    assert 0.02 < data.train_masks.mean() < 0.4  # vertebra bodies cover part of the image
    image, mask = segdata.load_original(data, data.val_sources[0])
    assert image.shape == mask.shape[:2] == (data.val_sources[0]["height"], data.val_sources[0]["width"])
    crop = spine_crop.crop_data(data, spine_crop.spine_boxes(data.train_masks), spine_crop.spine_boxes(data.val_masks), SIZE, progress=False)
    assert crop.train_masks.mean() > data.train_masks.mean()  # the spine fills more of a crop
    with pytest.raises(ValueError, match="only the structure"):
        segdata.load_original(data, data.val_sources[0], ["Ap_Vertebra"])


# ---------------------------------------------------------------- one experiment, cached


def test_run_experiment_evaluates_validation_patients_and_is_cached(ap_data, tmp_path):
    res = experiment.run_experiment(ap_data, tmp_path, "multi", loss="paper", n_boot=20, **FAST)
    assert res.structures == AP_STRUCTURES and res.epochs_run == 2 and res.params > 0
    assert set(res.cases["patient"]) == set(ap_data.val_ids)
    assert len(res.cases) == len(ap_data.val_ids) * 3
    dice = res.dice()
    assert list(dice.index) == list(AP_STRUCTURES) and dice.between(0, 1).all()
    wf = res.white_fraction()
    np.testing.assert_allclose(wf["true white %"].to_numpy(),
                               100 * ap_data.val_masks.mean(axis=(0, 1, 2)), rtol=1e-5)
    assert res.val_prob().shape == ap_data.val_masks.shape
    # cached: a second call trains nothing and returns the same numbers
    mtime = (tmp_path / "multi" / "history.csv").stat().st_mtime_ns
    again = experiment.run_experiment(ap_data, tmp_path, "multi", loss="paper", n_boot=20, **FAST)
    assert (tmp_path / "multi" / "history.csv").stat().st_mtime_ns == mtime
    pd.testing.assert_frame_equal(again.summary, res.summary)
    # another config in the same folder: trained again
    other = experiment.run_experiment(ap_data, tmp_path, "multi", loss="dice", n_boot=20, **FAST)
    assert other.config["loss"] == "dice" and other.key != res.key
    with pytest.raises(ValueError, match="unknown experiment setting"):
        experiment.run_experiment(ap_data, tmp_path, "x", optimiser="sgd")


def test_run_experiment_with_a_lite0_encoder_keeps_old_keys(ap_data, tmp_path):
    res = experiment.run_experiment(ap_data, tmp_path, "lite", loss="dice", n_boot=20, encoder="lite0-random", **FAST)
    assert res.config["encoder"] == "lite0-random" and res.val_prob().shape == ap_data.val_masks.shape
    assert not {"encoder", "lr_schedule", "full_res_skip"} & set(experiment.ExperimentConfig().to_dict())  # old keys kept
    assert experiment.ExperimentConfig(lr_schedule="cosine").to_dict()["lr_schedule"] == "cosine"
    assert experiment.ExperimentConfig(full_res_skip=8).to_dict()["full_res_skip"] == 8
    assert experiment.ExperimentConfig(decoder_filters=(8, 8, 8, 8, 8)).to_dict()["decoder_filters"] == [8] * 5
    with pytest.raises(ValueError, match="decoder_filters is an option of the Lite0"):
        experiment.run_experiment(ap_data, tmp_path, "x", decoder_filters=(8, 8, 8, 8, 8))
    with pytest.raises(ValueError, match="full_res_skip is an option of the Lite0"):
        experiment.run_experiment(ap_data, tmp_path, "x", full_res_skip=8)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        experiment.run_experiment(ap_data, tmp_path, "x", lr_schedule="step")
    with pytest.raises(ValueError, match="encoder must be one of"):
        experiment.run_experiment(ap_data, tmp_path, "x", encoder="resnet")


def test_tables_compare_against_the_paper(ap_data, tmp_path):
    ped = ap_data.select("Ap_Pedicle")
    runs = {"bce": experiment.run_experiment(ped, tmp_path, "bce", loss="bce", n_boot=20, **FAST),
            "paper": experiment.run_experiment(ped, tmp_path, "paper", loss="paper", n_boot=20, **FAST)}
    t2 = table2_losses.table2(runs)
    assert list(t2.index) == ["bce", "paper"] and t2.loc["bce", "paper_result"] == "black mask"
    assert set(t2["verdict"]) <= {"black mask", "mostly black", "mostly white", "a mask"}
    assert (t2["true white %"] > 0).all()
    t3 = table3_unet.table3(runs["paper"])
    assert t3.loc["Ap_Pedicle", "paper_dice"] == PAPER_DICE["Ap_Pedicle"]
    assert t3.loc["Ap_Pedicle", "at_or_above_paper"] == (t3.loc["Ap_Pedicle", "dice"] >= PAPER_DICE["Ap_Pedicle"])
    comp = experiment.compare_results(runs)
    assert list(comp.columns) == ["bce", "paper"] and list(comp.index) == ["Ap_Pedicle"]
    timing = experiment.timing_table({"two": list(runs.values())})
    assert timing.loc["two", "networks"] == 2 and timing.loc["two", "training minutes"] > 0
    variants = table3_unet.inference_variants(runs["paper"], ap_data, n_boot=20)
    assert {"threshold 0.5", "flip TTA"} <= set(variants.columns)
    assert variants.loc["Ap_Pedicle"].between(0, 1).all()
    two = copy.copy(runs["paper"])
    cases = runs["paper"].cases
    two.cases = pd.concat([cases.assign(dice=0.2), cases.assign(dice=0.8)], ignore_index=True)
    titles = [ax.get_title() for ax in viz.cases_figure(ped, two, n=1).axes]
    assert [t.split(":")[0] for t in titles] == ["BEST", "WORST"] and "0.80" in titles[0] and "0.20" in titles[1]
    black = copy.copy(runs["paper"])
    black.cases = black.cases.assign(dice=0.0)  # every case alike: neither best nor worst
    titles = [ax.get_title() for ax in viz.cases_figure(ped, black, n=1).axes]
    assert titles and all(t.startswith("CASE") for t in titles)
    many = copy.copy(runs["paper"])
    many.cases = pd.concat([cases.assign(dice=d) for d in (0.1, 0.3, 0.5, 0.7, 0.9, 0.95)], ignore_index=True)
    fig = viz.cases_figure(ped, many, n=3)  # 6 cases: two rows of 3, within the page's width (page 3b's figure)
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split(":")[0] for t in titles] == ["BEST"] * 3 + ["WORST"] * 3
    assert fig.get_size_inches()[0] <= 8.8 and len({round(ax.get_position().y0, 2) for ax in fig.axes}) == 2
    fig = viz.white_fraction_figure(runs)
    assert len(fig.axes[0].lines) == 3  # two experiments + the true fraction
    assert len(viz.train_val_figure(runs).axes[0].lines) == 4
    with_full = table3_unet.table3(runs["paper"], views={"AP": ap_data}, n_boot=10)
    assert 0.0 <= with_full.loc["Ap_Pedicle", "dice_original_resolution"] <= 1.0
    remedies = pd.DataFrame({"paper_dice": [PAPER_DICE["Ap_Pedicle"], PAPER_DICE[table3_unet.LINES[0]]],
                             "Dice loss": [0.1, 0.2], "spine crop + Dice loss": [0.7, 0.9]},
                            index=["Ap_Pedicle", table3_unet.LINES[0]])
    final = table3_unet.final_table3(remedies)
    assert final.loc[table3_unet.LINES[0], "final_dice"] == 0.9 and final.loc[table3_unet.LINES[0], "pipeline"].startswith("spine crop")
    with pytest.raises(ValueError, match="no column"):
        table3_unet.final_table3(remedies, pipeline="magic")
    assert final.loc["Ap_Pedicle", "final_dice"] == 0.7 and final["at_or_above_paper"].all()
    ci = {"spine crop + Dice loss": pd.DataFrame({"ci_low": [0.6, 0.8], "ci_high": [0.8, 0.95]}, index=remedies.index)}
    with_ci = table3_unet.final_table3(remedies, ci=ci)
    assert with_ci.loc[table3_unet.LINES[0], ["ci_low", "ci_high"]].tolist() == [0.8, 0.95]
    assert [(r["ci_low"], r["ci_high"]) for r in report.segmentation_headlines(final=with_ci)] == [(0.6, 0.8), (0.8, 0.95)]
    with pytest.raises(ValueError, match="no 95% CI"):
        table3_unet.final_table3(remedies, ci={"Dice loss": ci["spine crop + Dice loss"]})
    framed = table3_unet.final_table3(remedies, input_frame=pd.Series({"Ap_Pedicle": 0.5, table3_unet.LINES[0]: 0.95}))
    assert list(framed["input_frame_at_or_above_paper"]) == [False, True]
    rows = report.segmentation_headlines(table2=t2, table3=t3, final=final)
    assert [r["section"].split(":")[1].strip() for r in rows] == [
        "Table 2 (failed experiments)"] * 2 + ["Table 3 (paper's recipe)"] + ["final pipeline"] * 2
    assert rows[0]["ours"] == t2.loc["bce", "dice"] and "paper: black mask" in rows[0]["note"]
    assert rows[2]["paper"] == PAPER_DICE["Ap_Pedicle"] and {r["data"] for r in rows} == {"synthetic"}


def test_aasce_headlines_keep_the_long_run_apart(tmp_path):
    from spinelib.paper.report import collect_headlines, record_headlines

    long_dir = tmp_path / "long"
    long_dir.mkdir()
    (long_dir / "metrics.json").write_text(json.dumps({
        "settings": {"size": [384, 192], "filters": 8, "loss": "dice"}, "n_val_patients": 47,
        "dice_mean_over_val_patients": 0.84, "dice_ci95": [0.82, 0.86], "epochs_run": 50,
        "train_seconds": 3600.0, "git_commit": "0123456789abcdef"}))
    table = aasce_runs.aasce_comparison(None, long_dir, profile="tiny")
    assert report.segmentation_headlines(aasce=table) == []  # the page records its own run only
    rows = report.segmentation_headlines(aasce=table, long_run=True)
    assert len(rows) == 1 and rows[0]["data"] == "real" and rows[0]["ours"] == 0.84
    record_headlines(tmp_path / "out", "03_unet_segmentation", rows, profile="tiny")
    frame = collect_headlines(tmp_path / "out")
    assert list(frame["profile"]) == ["long run"] and "47 validation patients" in frame.loc[0, "dataset"]
    # two committed long runs (the plain U-Net and the Lite0 encoder): one row each, told apart
    lite_dir = tmp_path / "lite"
    lite_dir.mkdir()
    (lite_dir / "metrics.json").write_text(json.dumps({
        "settings": {"size": [384, 192], "filters": 16, "loss": "dice", "encoder": "lite0-imagenet"},
        "n_val_patients": 47, "dice_mean_over_val_patients": 0.9, "dice_ci95": [0.88, 0.91], "epochs_run": 40,
        "train_seconds": 3000.0, "git_commit": "fedcba9876543210"}))
    both = aasce_runs.aasce_comparison(None, [long_dir, lite_dir, tmp_path / "missing"])
    assert list(both.index) == ["long run (committed): U-Net", "long run (committed): Lite0 encoder, ImageNet"]
    assert list(both["filters"]) == [8, "Lite0"]
    rows = report.segmentation_headlines(aasce=both, long_run=True)
    assert [r["ours"] for r in rows] == [0.84, 0.9] and rows[0]["quantity"] != rows[1]["quantity"]
    assert list(both["mask grid"]) == ["naive (0.4 px offset)"] * 2
    # the same encoder again with a cosine schedule and flip TTA, on aligned masks: a row of its own
    cos_dir = tmp_path / "cos"
    cos_dir.mkdir()
    (cos_dir / "metrics.json").write_text(json.dumps({
        "settings": {"size": [384, 192], "filters": 16, "loss": "dice", "encoder": "lite0-imagenet",
                     "lr_schedule": "cosine", "tta": True},
        "mask_convention": "aligned", "dice_original_resolution": {"mean": 0.91, "ci95": [0.9, 0.92]},
        "outline_errors_in_frame": {"within_1px": {"share_of_wrong_pixels": 0.4, "mean_image_dice_if_right": 0.95}},
        "n_val_patients": 47, "dice_mean_over_val_patients": 0.92,
        "dice_ci95": [0.9, 0.93], "epochs_run": 40, "train_seconds": 3000.0, "git_commit": "aaaabbbbccccdddd"}))
    (lite_dir / "rescored.json").write_text(json.dumps({"dice_original_resolution": {"mean": 0.85, "ci95": [0.8, 0.9]}}))
    three = aasce_runs.aasce_comparison(None, [long_dir, lite_dir, cos_dir])
    np.testing.assert_allclose(three["dice, original size"], [np.nan, 0.85, 0.91])  # none, rescored, in the record
    np.testing.assert_allclose(three["wrong pixels on the outline"], [np.nan, np.nan, 0.4])
    assert three.index[-1] == "long run (committed): Lite0 encoder, ImageNet; cosine LR; flip TTA"
    assert three["mask grid"].iloc[-1] == "pixel centres aligned" and three.index.is_unique
    crop_dir = tmp_path / "crop"
    crop_dir.mkdir()
    crop = json.loads((cos_dir / "metrics.json").read_text())
    crop["settings"] |= {"crop": True, "stage1_size": [256, 128], "crop_size": [512, 160]}
    (crop_dir / "metrics.json").write_text(json.dumps(crop))
    big_dir = tmp_path / "big"  # the cosine run at another input size: a row of its own, not the cosine row again
    big_dir.mkdir()
    big = json.loads((cos_dir / "metrics.json").read_text())
    big["settings"] |= {"size": [512, 256]}
    (big_dir / "metrics.json").write_text(json.dumps(big))
    five = aasce_runs.aasce_comparison(None, [cos_dir, big_dir])
    assert len(five) == 2 and five.index[-1].endswith("ImageNet; 512x256 input; cosine LR; flip TTA")
    four = aasce_runs.aasce_comparison(None, [cos_dir, crop_dir])
    assert four.index.is_unique and four.index[-1].endswith("ImageNet; spine crop; cosine LR; flip TTA")
    assert "then crops 512x160" in four["input"].iloc[-1]
    # what limits them: training fit (record or rescored.json) and the equivalent corner error
    (lite_dir / "rescored.json").write_text(json.dumps({"training_fit": {"train": {"mean": 0.86}, "val": {"mean": 0.85}}}))
    skip = json.loads((cos_dir / "metrics.json").read_text())
    skip["settings"] |= {"full_res_skip": 16, "decoder_filters": [32] * 5}
    skip["training_fit"] = {"train": {"mean": 0.95}, "val": {"mean": 0.92}}
    skip_dir = tmp_path / "skip"
    skip_dir.mkdir()
    (skip_dir / "metrics.json").write_text(json.dumps(skip))
    yardstick = pd.DataFrame({"sigma_px": [0.0, 1.0, 2.0], "dice_mean": [1.0, 0.94, 0.88]})
    budget = aasce_runs.aasce_error_budget([long_dir, lite_dir, skip_dir], yardstick, (384, 192))
    assert budget.index[2].endswith("stride-1 skip (16 ch); decoder 32-32-32-32-32; cosine LR; flip TTA")
    np.testing.assert_allclose(budget["training fit: train"], [np.nan, 0.86, 0.95, np.nan])
    # Dice 0.84 is below the yardstick (no extrapolation); 0.90 and 0.92 lie between sigma 1 and 2
    np.testing.assert_allclose(budget["equivalent corner error (px)"], [np.nan, 1 + 0.04 / 0.06, 1 + 0.02 / 0.06, 1 + 0.04 / 0.06])
    assert budget.index[-1] == "target 0.9"
    other = aasce_runs.aasce_error_budget([skip_dir], yardstick, (256, 128))  # scored in another frame: no equivalent
    assert np.isnan(other["equivalent corner error (px)"].iloc[0])
    assert np.isnan(aasce_runs.aasce_error_budget([skip_dir], yardstick, (384, 192), target=0.5).iloc[-1, -1])  # off the scale
    with pytest.raises(ValueError, match="yardstick"):
        aasce_runs.aasce_error_budget([skip_dir], yardstick.iloc[:1], (384, 192))


def test_aasce_level_dice_finds_where_on_the_spine_a_prediction_errs(aasce_dir):
    data = segdata.prepare_aasce_data(aasce_dir, (384, 192), max_images=8, progress=False)
    true = data.val_masks
    levels, images = aasce_runs.aasce_level_dice(true, data)  # the truth itself: every level perfect
    assert len(levels) == 17 * len(true) and levels["dice"].eq(1.0).all()
    assert images["dice"].eq(1.0).all() and images["dice_within_span"].eq(1.0).all()
    assert images[["stray_share", "outside_span_share"]].eq(0.0).all().all()
    # in the X-ray with most room above T1: L5 missed, a blob above T1 (nothing labelled there), the rest right
    tops = [int(np.flatnonzero(t[..., 0].any(axis=1))[0]) for t in true]
    k, top = int(np.argmax(tops)), max(tops)
    assert top >= 8, "the fixture needs an X-ray with room above T1"
    from spinelib.data.aasce import scale_landmarks, vertebra_mask

    src = data.val_sources[k]
    lm = scale_landmarks(src["landmarks"], (src["height"], src["width"]), (384, 192))
    pred = true.copy()
    pred[k, ..., 0][vertebra_mask(np.repeat(lm[16:17], 17, axis=0), (384, 192))] = 0
    pred[k, max(top - 11, 0):top - 6, 40:50, 0] = 1  # up to 5 rows x 10 columns, 6 or more rows above T1's top
    n_blob = 10 * (top - 6 - max(top - 11, 0))
    levels, images = aasce_runs.aasce_level_dice(pred, data)
    rows_k = levels.query("image == @k").set_index("vertebra")["dice"]
    assert rows_k["L5"] == 0.0 and rows_k.drop("L5").eq(1.0).all()
    row = images.iloc[k]
    assert row["outside_span_share"] == pytest.approx(n_blob / pred[k].sum())
    assert row["stray_share"] == pytest.approx(n_blob / pred[k].sum())  # >= 6 rows from any body, reach 4
    assert row["dice"] < row["dice_within_span"] < 1.0  # the blob removed, L5 still missing
    assert images.drop(index=k)["dice"].eq(1.0).all()
    per_level, span = aasce_runs.aasce_level_summary(levels, images)
    assert list(per_level.index) == [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
    patients = images.groupby("patient")["dice"].mean()
    assert span["dice"] == pytest.approx(patients.mean())  # patients first, as everywhere in the book
    assert per_level.loc["L5", "share below 0.7"] == pytest.approx(1 / len(true))
    k_share = 1 / (images["patient"] == images.loc[k, "patient"]).sum()  # X-ray k's part of its patient's mean
    assert per_level.loc["L5", "dice"] == pytest.approx(1 - k_share / patients.size)  # one X-ray's L5 at 0
    # a one-row shift costs every level something, but not everything
    shifted = np.roll(true, 1, axis=1)
    levels, _ = aasce_runs.aasce_level_dice(shifted, data)
    assert levels["dice"].between(0.3, 0.999).mean() > 0.9
    with pytest.raises(ValueError, match="one image per validation X-ray"):
        aasce_runs.aasce_level_dice(true[1:], data)
    with pytest.raises(ValueError, match="reach"):
        aasce_runs.aasce_level_dice(true, data, reach=0)
    with pytest.raises(ValueError, match="low"):
        aasce_runs.aasce_level_summary(levels, images, low=1.5)


def test_aasce_level_comparison_reads_the_committed_runs(tmp_path):
    from spinelib.data.aasce import VERTEBRA_NAMES

    runs = []
    for name, settings, with_levels, span_where in (
            ("a", {"encoder": "lite0-imagenet"}, True, "record"),
            ("b", {"encoder": "lite0-imagenet", "lr_schedule": "cosine"}, True, "rescored"),
            ("c", {"encoder": "none"}, False, None)):
        d = tmp_path / name
        d.mkdir()
        m = {"settings": settings | {"size": [384, 192]}, "dice_mean_over_val_patients": 0.85}
        span = {"dice": 0.85, "dice_within_span": 0.86 if name == "a" else 0.87}
        if span_where == "record":
            m["span"] = span
        elif span_where == "rescored":
            (d / "rescored.json").write_text(json.dumps({"span": span}))
        (d / "metrics.json").write_text(json.dumps(m))
        if with_levels:
            pd.DataFrame({"vertebra": VERTEBRA_NAMES, "dice": np.linspace(0.8, 0.9, 17)}).to_csv(d / long_runs.LEVELS_FILE, index=False)
        runs.append(d)
    profile = pd.DataFrame({"dice": np.full(17, 0.5)}, index=pd.Index(VERTEBRA_NAMES, name="vertebra"))
    table = aasce_runs.aasce_level_comparison(runs, profile, profile="tiny")
    assert list(table.columns) == ["this page (profile tiny)", "Lite0 encoder, ImageNet",
                                   "Lite0 encoder, ImageNet; cosine LR"]  # run c has no levels.csv
    assert list(table.index) == list(VERTEBRA_NAMES) + ["all", "within labelled span"]
    np.testing.assert_allclose(table.loc["within labelled span"], [np.nan, 0.86, 0.87])
    assert table.loc["L5", "Lite0 encoder, ImageNet"] == pytest.approx(0.9)
    assert len(aasce_runs.level_dice_figure(table).axes[0].lines) == 4  # three runs and the target
    assert len(aasce_runs.level_dice_figure(table, target=None).axes[0].lines) == 3
    assert aasce_runs.aasce_level_comparison([tmp_path / "missing"]).shape == (19, 0)  # no run, no column


def test_input_frame_dice_takes_the_lines_from_their_own_crop_network():
    class Run:
        def __init__(self, values):
            self.values = values

        def dice(self):
            return pd.Series(self.values)

    index = ["Lat_Vertebra", *table3_unet.LINES]
    rem = table3_unet.Remedies(dice=pd.DataFrame(index=index), crops={}, boxes={}, results={
        ("spine crop + Dice loss", "LAT"): Run({"Lat_Vertebra": 0.9, table3_unet.LINES[0]: 0.1, table3_unet.LINES[1]: 0.2}),
        ("spine crop + Dice loss", "lines"): Run({table3_unet.LINES[0]: 0.6, table3_unet.LINES[1]: 0.7}),
        ("Dice loss", "LAT"): Run({"Lat_Vertebra": 0.5, table3_unet.LINES[0]: 0.0, table3_unet.LINES[1]: 0.0}),
    })
    assert list(rem.input_frame_dice()) == [0.9, 0.6, 0.7]
    assert list(rem.input_frame_dice("Dice loss")) == [0.5, 0.0, 0.0]


def test_all_black_prediction_is_reported_as_such():
    masks = np.zeros((3, 16, 8, 1), np.float32)
    masks[:, 4:8, 2:5] = 1
    cases, summary = experiment.evaluate_probabilities(np.zeros_like(masks), masks, ["Ap_Pedicle"], ["a", "a", "b"], n_boot=10)
    assert (cases["pred_fraction"] == 0).all() and (cases["dice"] == 0).all()
    assert summary.query("metric == 'dice'")["n"].item() == 2  # two patients, not three images
    cases, _ = experiment.evaluate_probabilities(masks, masks, ["Ap_Pedicle"], ["a", "a", "b"], n_boot=10)
    assert (cases["dice"] == 1).all()


# ---------------------------------------------------------------- thin lines: crops


def test_spine_boxes_surround_the_mask_and_crops_invert():
    m = np.zeros((2, 40, 20), np.float32)
    m[0, 10:30, 5:15] = 1  # box rows 10-30 of 40, columns 5-15 of 20
    boxes = spine_crop.spine_boxes(m, margin=0.1)
    np.testing.assert_allclose(boxes[0], [10 / 40 - 0.05, 5 / 20 - 0.05, 30 / 40 + 0.05, 15 / 20 + 0.05])
    np.testing.assert_array_equal(boxes[1], [0, 0, 1, 1])  # nothing predicted: the whole image
    wide = spine_crop.spine_boxes(m[:1], margin=(0.0, 0.5))  # (vertical, horizontal)
    np.testing.assert_allclose(wide[0], [10 / 40, 5 / 20 - 0.25, 30 / 40, 15 / 20 + 0.25])
    x = np.linspace(0, 1, 40 * 20, dtype=np.float32).reshape(1, 40, 20, 1).repeat(2, 0)
    crops = spine_crop.crop_resize(x, boxes, (32, 16))
    assert crops.shape == (2, 32, 16, 1)
    np.testing.assert_allclose(crops[1], spine_crop.crop_resize(x[1:], boxes[1:], (32, 16))[0])
    back = spine_crop.uncrop(crops, boxes, (40, 20))
    assert back.shape == x.shape
    assert back[0, :8].max() == 0 and back[0, 34:].max() == 0  # outside the box: zeros
    np.testing.assert_allclose(back[0, 14:26, 6:14], x[0, 14:26, 6:14], atol=0.03)  # inside: the image again
    # a box between pixel edges, enlarged 3x then put back: a ramp comes back to float precision
    # (a box rounded to whole pixels of the frame would shift it by up to half a pixel)
    ramp = (np.arange(40)[:, None] * 0.02 + np.arange(20)[None, :] * 0.05).astype(np.float32)[None, ..., None]
    box = np.array([[0.2137, 0.1511, 0.7913, 0.8288]])
    big = spine_crop.crop_resize(ramp, box, (69, 41))
    again = spine_crop.uncrop(big, box, (40, 20))
    np.testing.assert_allclose(again[0, 10:31, 4:16], ramp[0, 10:31, 4:16], atol=1e-4)
    assert again[0, :8].max() == 0 and again[0, :, :3].max() == 0  # centres outside the box stay 0
    with pytest.raises(ValueError, match="y1 > y0"):
        spine_crop.uncrop(big, np.array([[0.5, 0.1, 0.4, 0.9]]), (40, 20))
    with pytest.raises(ValueError):
        spine_crop.spine_boxes(np.zeros((4, 4)))


def test_resolution_ceiling_is_perfect_at_full_size_and_drops_for_thin_lines(lat_data):
    small = [s for s in lat_data.structures if s in table3_unet.LINES or s == "Lat_Vertebra"]
    ceiling = table3_unet.resolution_ceiling(lat_data, [(16, 8), (64, 32)], small, n_boot=10)
    assert list(ceiling.columns) == ["16x8", "64x32"] and list(ceiling.index) == small
    assert (ceiling["64x32"] >= ceiling["16x8"] - 1e-9).all()  # more pixels, a higher ceiling
    assert ceiling.loc["Lat_Vertebra", "64x32"] > ceiling.loc[table3_unet.LINES[0], "64x32"]  # lines suffer most
    assert 0.0 <= ceiling.to_numpy().min() and ceiling.to_numpy().max() <= 1.0


def test_two_stage_crop_trains_on_the_crops_the_finder_found(lat_data, tmp_path):
    vertebra = lat_data.select("Lat_Vertebra")
    finder, crop = spine_crop.two_stage_crop(lat_data, vertebra, tmp_path, dict(loss="dice", n_boot=10, **FAST),
                                             margin=(0.05, 1.0), loss="dice", n_boot=10, **FAST)
    assert finder.structures == ("Lat_Vertebra",) and crop.result.structures == lat_data.structures
    np.testing.assert_allclose(crop.boxes, spine_crop.spine_boxes(finder.val_prob(), margin=(0.05, 1.0)))  # predicted
    assert crop.data.val_images.shape == (len(lat_data.val_ids), *SIZE, 1)
    assert crop.frame_prob().shape == lat_data.val_masks.shape
    again = spine_crop.crop_experiment(lat_data, finder.val_prob(), vertebra.train_masks, tmp_path, "aasce_crop", SIZE,
                                       (0.05, 1.0), loss="dice", n_boot=10, **FAST)
    assert again.result.key == crop.result.key  # the same run, from the cache
    with pytest.raises(ValueError, match="same patients"):
        spine_crop.two_stage_crop(lat_data, SimpleNamespace(train_ids=vertebra.train_ids, val_ids=[]), tmp_path, {})


def test_crop_data_and_full_resolution_dice(lat_data):
    boxes_train = spine_crop.spine_boxes(lat_data.train_masks[..., :1])
    boxes_val = spine_crop.spine_boxes(lat_data.val_masks[..., :1])
    lines = ["Lat_Anterior_Vertebral_Line", "Lat_Posterior_Vertebral_Line"]
    crop = spine_crop.crop_data(lat_data, boxes_train, boxes_val, SIZE, structures=lines, progress=False)
    assert crop.structures == tuple(lines) and crop.val_images.shape == (len(lat_data.val_ids), *SIZE, 1)
    # a crop around the vertebrae keeps (almost) all of each line and makes it a larger share of the image
    assert crop.train_masks.mean() > lat_data.select(lines).train_masks.mean()
    sub = lat_data.select("Lat_Vertebra")
    perfect = spine_crop.full_resolution_dice(sub, sub.val_masks, n_boot=10, progress=False)
    assert perfect.query("metric == 'dice'")["mean"].item() > 0.8
    empty = spine_crop.full_resolution_dice(sub, np.zeros_like(sub.val_masks), n_boot=10, progress=False)
    assert empty.query("metric == 'dice'")["mean"].item() == 0.0
    # the crop's own (true) masks put back at the original size: straight from the crop they keep
    # its finer pixels; through the smaller full frame they lose them
    line_data = lat_data.select(lines)
    direct = spine_crop.full_resolution_dice(line_data, crop.val_masks, n_boot=10, progress=False, boxes=boxes_val)
    via_frame = spine_crop.full_resolution_dice(line_data, spine_crop.uncrop(crop.val_masks, boxes_val, lat_data.size), n_boot=10,
                                        progress=False)
    d, v = (t.query("metric == 'dice'")["mean"].to_numpy() for t in (direct, via_frame))
    assert (d > v + 0.1).all(), (d, v)  # measured 0.23 / 0.18 against 0.007 / 0.0 here
    with pytest.raises(ValueError, match="boxes must be"):
        spine_crop.full_resolution_dice(line_data, crop.val_masks, progress=False, boxes=boxes_val[:, :3])
    widths = table3_unet.line_width_table(lat_data, structures=lines, sizes=[SIZE], n=2)
    assert widths.loc[(lines[0], "original"), "rows hit %"] > widths.loc[(lines[0], f"{SIZE[0]}x{SIZE[1]}"), "rows hit %"] - 1e-9


@pytest.mark.parametrize("pred, true, black, verdict", [
    (0.0, 0.5, 100.0, "black mask"), (0.04, 0.5, 0.0, "black mask"), (0.2, 0.5, 0.0, "mostly black"),
    (0.5, 0.5, 0.0, "a mask"), (19.0, 0.5, 0.0, "mostly white"), (0.6, 0.5, 60.0, "black mask"),
])
def test_mask_verdict(pred, true, black, verdict):
    assert table2_losses.mask_verdict(pred, true, black) == verdict


def test_case_titles_cut_long_patient_names():
    assert viz.short_label("sunhl-1th-20-Jul-2016-coronal12") == "sunhl-1th-20-…"
    assert viz.short_label("ID (3)") == "ID (3)"


def test_outline_error_summary_counts_edge_errors():
    t = np.zeros((2, 20, 20, 1), np.float32)
    t[:, 5:15, 5:15] = 1
    p = np.roll(t, 1, axis=1) * 0.9  # every prediction one row low: all errors on the outline
    r = experiment.outline_error_summary(p, t)
    assert r["within_1px"]["share_of_wrong_pixels"] == 1.0 and r["within_1px"]["mean_image_dice_if_right"] == 1.0
    assert r["mean_image_dice"] == pytest.approx(0.9)
    with pytest.raises(ValueError):
        experiment.outline_error_summary(p[..., 0], t)


def test_run_experiment_trains_in_the_precision_it_was_asked_for(ap_data, tmp_path):
    """``keras.backend.clear_session()`` resets Keras's dtype policy to float32: a run under
    mixed_bfloat16 must still train in it (a ci build had its U-Nets train in float32 under a
    mixed-precision cache key)."""
    import keras

    from spinelib.core import config

    try:
        config.use_training_precision("mixed_bfloat16")
        res = experiment.run_experiment(ap_data, tmp_path, "mixed", loss="dice", n_boot=20, **dict(FAST, epochs=1))
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        net = res.load_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert net.get_layer("down1_conv1").compute_dtype == "bfloat16" and net.output.dtype == "float32"
