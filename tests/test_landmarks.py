"""The landmark network's targets, decoding, augmentation, training step, model folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from spinelib.landmarks import encoding
from spinelib.landmarks.network import N_OFFSETS, STRIDE, landmark_net


def straight_spine(h: int = 256, w: int = 128, tilt_deg: float = 0.0) -> np.ndarray:
    """17 rectangles down the middle of an (h, w) frame, each tilted by ``tilt_deg``."""
    top, bottom = 0.1 * h, 0.9 * h
    pitch = (bottom - top) / 17
    half_w, half_h = 0.12 * w, 0.35 * pitch
    t = np.deg2rad(tilt_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    base = np.array([[-half_w, -half_h], [half_w, -half_h], [-half_w, half_h], [half_w, half_h]])
    centres = np.stack([np.full(17, w / 2.0), top + pitch * (np.arange(17) + 0.5)], axis=1)
    return (centres[:, None, :] + base @ rot.T).astype(np.float32)


def perfect_outputs(lm: np.ndarray, out_shape) -> tuple[np.ndarray, np.ndarray]:
    """Heat-map logits and offsets a perfect network would give for ``lm``."""
    heat, index, offsets, _ = encoding.encode(lm, out_shape)
    hm = np.clip(heat.numpy()[..., 0], 1e-6, 1 - 1e-6)
    off = np.zeros(tuple(out_shape) + (N_OFFSETS,))
    gy, gx = np.divmod(index.numpy(), out_shape[1])
    off[gy, gx] = offsets.numpy()
    return np.log(hm / (1 - hm)), off


def test_cells_round_trip():
    p = np.array([[0.0, 0.0], [3.7, 100.2], [255.0, 511.0]])
    assert np.allclose(encoding.from_cells(encoding.to_cells(p)), p)
    # the output grid's outer edge is the input's: pixel 0's left edge (-0.5) maps to cell edge -0.5
    assert np.isclose(encoding.to_cells(-0.5), -0.5)


@pytest.mark.parametrize("tilt", [0.0, 7.0, -12.0])
def test_encode_decode_round_trip(tilt):
    lm = straight_spine(256, 128, tilt) + np.float32(0.37)  # off-grid on purpose
    logits, off = perfect_outputs(lm, (256 // STRIDE, 128 // STRIDE))
    corners, scores, centres = encoding.decode(logits, off)
    assert corners.shape == (17, 4, 2)
    assert np.abs(corners - lm).max() < 0.5
    assert np.all(np.diff(centres[:, 1]) > 0)  # top to bottom
    assert scores.min() > 0.99


def test_encode_targets():
    lm = straight_spine()
    heat, index, offsets, valid = encoding.encode(lm, (64, 32))
    assert heat.shape == (64, 32, 1) and float(tf.reduce_max(heat)) == pytest.approx(1.0)
    assert int(tf.reduce_sum(tf.cast(heat >= 1.0 - 1e-6, tf.int32))) == 17  # one exact peak per vertebra
    assert valid.numpy().sum() == 17 and offsets.shape == (17, N_OFFSETS)
    assert np.all(np.abs(offsets.numpy()[:, :2]) <= 0.5)  # the centre's sub-cell offset
    # a vertebra moved outside the frame is not valid, and has no peak
    lm2 = lm.copy()
    lm2[0, :, 1] -= 200
    _, _, _, valid2 = encoding.encode(lm2, (64, 32))
    assert valid2.numpy()[0] == 0 and valid2.numpy()[1:].all()


def test_decode_orders_and_refuses_bad_shapes():
    lm = straight_spine()
    logits, off = perfect_outputs(lm, (64, 32))
    c, _, _ = encoding.decode(logits, off, n=17)
    # shuffling vertebra order in the targets does not change the decoded order
    logits2, off2 = perfect_outputs(lm[np.random.default_rng(0).permutation(17)], (64, 32))
    c2, _, _ = encoding.decode(logits2, off2)
    assert np.allclose(c, c2)
    with pytest.raises(ValueError, match="offsets"):
        encoding.decode(logits, off[..., :8])
    with pytest.raises(ValueError, match="n must"):
        encoding.decode(logits, off, n=0)


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


@pytest.mark.parametrize("tilt", [0.0, 9.0])
def test_chain_decoder_agrees_on_clean_maps_and_skips_false_peaks(tilt):
    """On a perfect map the chain decoder reads the same corners as top-17; when a weak true
    vertebra loses to a strong peak beside the spine (top-17 takes the false peak and drops the
    vertebra), the chain keeps the vertebra, because the false peak breaks the spacing."""
    lm = straight_spine(256, 128, tilt)
    shape = (256 // STRIDE, 128 // STRIDE)
    logits, off = perfect_outputs(lm, shape)
    c_top, _, _ = encoding.decode(logits, off)
    c_chain, _, _ = encoding.decode_chain(logits, off)
    assert np.abs(c_chain - c_top).max() < 1e-9 and np.abs(c_chain - lm).max() < 0.5
    _, index, _, _ = encoding.encode(lm, shape)
    gy, gx = np.divmod(index.numpy(), shape[1])
    weak = 8
    amplitude = np.ones(17)
    amplitude[weak] = 0.6                                              # a faint vertebra
    blobs = np.stack([encoding.encode(lm[[k]], shape)[0].numpy()[..., 0] * amplitude[k] for k in range(17)])
    prob = np.clip(blobs.max(axis=0), 1e-6, 1 - 1e-6)
    fy, fx = gy[weak], 2                                               # a strong false peak at the edge
    prob[fy, fx] = 0.95
    logits = np.log(prob / (1 - prob))
    off[fy, fx] = off[gy[weak], gx[weak]]                              # shaped like a vertebra
    c_top, _, _ = encoding.decode(logits, off)
    c_chain, scores, _ = encoding.decode_chain(logits, off)
    assert np.abs(c_top - lm).max() > 10                              # top-17 is fooled
    assert np.abs(c_chain - lm).max() < 0.5                            # the chain is not
    assert scores[weak] == pytest.approx(0.6, abs=1e-6)


def test_spacing_prior_measures_the_constructed_spine():
    lm = straight_spine(256, 128)                    # height 0.7 x pitch: log(1 / 0.7)
    mu, sd = encoding.spacing_prior(lm[None])
    assert mu == pytest.approx(np.log(1 / 0.7), abs=1e-4) and sd == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="SD"):
        encoding.decode_chain(*perfect_outputs(lm, (64, 32)), prior=(0.3, 0.0))


def test_augmentation_keeps_landmarks_on_the_anatomy():
    """The mask drawn from the moved landmarks matches the warped mask; mirrors keep TL left."""
    from spinelib.data.aasce import vertebra_mask

    h, w = 256, 128
    lm = straight_spine(h, w, 5.0)
    mask = vertebra_mask(lm, (h, w)).astype(np.float32)[..., None]
    image = mask * 0.8 + 0.1
    mirrored = 0
    for k in range(8):
        x, m, moved = encoding.augment_sample(tf.constant(image), tf.constant(mask), tf.constant(lm),
                                              tf.constant([k, 3], tf.int64))
        moved = moved.numpy()
        redrawn = vertebra_mask(moved, (h, w))
        warped = m.numpy()[..., 0] > 0.5
        dice = 2 * (redrawn & warped).sum() / (redrawn.sum() + warped.sum())
        assert dice > 0.93, dice
        assert np.all(moved[:, 0, 0] < moved[:, 1, 0]) and np.all(moved[:, 2, 0] < moved[:, 3, 0])
        assert np.all(moved[:, 0, 1] < moved[:, 2, 1])
        mirrored += int(np.sign(moved[0, 1, 0] - moved[0, 0, 0]) != np.sign(lm[0, 1, 0] - lm[0, 0, 0]))
        assert 0.0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 1.0
    assert mirrored == 0  # corner labels swap with the mirror, so TL stays left of TR


def test_augmentation_is_seeded():
    lm = straight_spine()
    img = tf.random.stateless_uniform((256, 128, 1), [1, 2])
    m = tf.zeros((256, 128, 1))
    a = encoding.augment_sample(img, m, lm, tf.constant([5, 5], tf.int64))
    b = encoding.augment_sample(img, m, lm, tf.constant([5, 5], tf.int64))
    c = encoding.augment_sample(img, m, lm, tf.constant([6, 5], tf.int64))
    assert np.array_equal(a[2].numpy(), b[2].numpy()) and not np.array_equal(a[2].numpy(), c[2].numpy())


def test_network_shapes_and_bad_arguments():
    net = landmark_net((128, 64, 1), weights=None)
    heat, off, mask = net(np.zeros((2, 128, 64, 1), np.float32))
    assert heat.shape == (2, 32, 16, 1) and off.shape == (2, 32, 16, N_OFFSETS) and mask.shape == (2, 128, 64, 1)
    # the heat head starts at the prior probability
    assert float(tf.reduce_mean(tf.sigmoid(heat))) == pytest.approx(0.01, abs=0.01)
    for bad in [(100, 64, 1), (128, 64, 3), (32, 32, 1)]:
        with pytest.raises(ValueError):
            landmark_net(bad, weights=None)
    with pytest.raises(ValueError, match="decoder_filters"):
        landmark_net((128, 64, 1), weights=None, decoder_filters=(8, 8))


def test_losses():
    from spinelib.landmarks.train import focal_loss, mask_loss, offset_loss

    target = np.zeros((1, 8, 8, 1), np.float32)
    target[0, 3, 3, 0] = 1.0
    good = np.where(target > 0, 8.0, -8.0).astype(np.float32)
    assert float(focal_loss(good, target)) < 1e-3 < float(focal_loss(-good, target))
    pred = np.zeros((1, 8, 8, N_OFFSETS), np.float32)
    pred[0, 3, 3] = 1.0
    idx = np.array([[27]], np.int32)
    assert float(offset_loss(pred, idx, np.ones((1, 1, N_OFFSETS), np.float32), np.ones((1, 1), np.float32))) == 0.0
    assert float(offset_loss(pred, idx, np.zeros((1, 1, N_OFFSETS), np.float32), np.ones((1, 1), np.float32))) == 1.0
    m = np.zeros((1, 8, 8, 1), np.float32)
    m[0, 2:5, 2:5] = 1
    assert float(mask_loss(m, m)) < 1e-3 < float(mask_loss(1 - m, m))


def test_training_runs_resumes_and_refuses_other_settings(tmp_path):
    """Two epochs on a handful of synthetic spines: the record is written each epoch, a second call
    resumes, other settings in the same folder are refused."""
    import pandas as pd

    from spinelib.data.aasce import vertebra_mask
    from spinelib.landmarks.train import LandmarkData, predict_corners, train_landmarks

    n, h, w = 6, 128, 64
    lms = np.stack([straight_spine(h, w, t) for t in np.linspace(-8, 8, n)])
    masks = np.stack([vertebra_mask(lm, (h, w)) for lm in lms]).astype(np.uint8)[..., None]
    images = (masks * 200 + 20).astype(np.uint8)
    frame = pd.DataFrame({"image_name": [f"s{i}" for i in range(n)], "height": h, "width": w})
    data = LandmarkData(images, masks, lms.astype(np.float32), frame, (h, w))
    r = train_landmarks(data, np.arange(4), np.arange(4, 6), tmp_path, progress=False, epochs=1, size=(h, w),
                        weights=None, batch_size=2)
    assert list(r.history.epoch) == [1]
    assert (tmp_path / "history.csv").is_file() and (tmp_path / "weights.weights.h5").is_file()
    with pytest.raises(ValueError, match="other settings"):
        train_landmarks(data, np.arange(4), np.arange(4, 6), tmp_path, progress=False, epochs=2, size=(h, w),
                        weights=None, batch_size=4)
    with pytest.raises(ValueError, match="overlap"):
        train_landmarks(data, np.arange(4), np.arange(3, 6), tmp_path / "b", progress=False, size=(h, w), weights=None)
    with pytest.raises(ValueError, match="unknown setting"):
        train_landmarks(data, np.arange(4), np.arange(4, 6), tmp_path / "c", progress=False, epoch=3)
    c, s, m = predict_corners(r.model, images[:2], tta_flip=True)
    assert c.shape == (2, 17, 4, 2) and s.shape == (2, 17) and m.shape == (2, h, w)


def test_model_folder_round_trip(tmp_path):
    from spinelib.landmarks.model import load_model, save_model

    net = landmark_net((128, 64, 1), weights=None)
    folder = save_model(net, tmp_path / "m", {"name": "test-model", "version": "0.0"})
    cfg = json.loads((folder / "model.json").read_text())
    assert cfg["input_size"] == [128, 64] and len(cfg["levels"]) == 17
    with pytest.raises(FileExistsError):
        save_model(net, folder, {})
    model = load_model(folder)
    x = np.random.default_rng(0).random((1, 128, 64, 1)).astype(np.float32)
    a = net(x)[0].numpy()
    b = model.network(x)[0].numpy()
    assert np.abs(a - b).max() < 0.05  # float16 storage
    img = (np.random.default_rng(1).random((300, 140)) * 255).astype(np.uint8)
    pred = model.predict(img)
    assert pred.corners.shape == (17, 4, 2) and pred.image_shape == (300, 140)
    assert pred.mask().shape == (300, 140)
    d = pred.to_dict(pixel_spacing=(0.2, 0.1))
    assert len(d["vertebrae"]) == 17 and d["vertebrae"][0]["level"] == "T1"
    x0, y0 = d["vertebrae"][0]["corners_px"]["TL"]
    assert d["vertebrae"][0]["corners_mm"]["TL"] == pytest.approx([x0 * 0.1, y0 * 0.2])
    with pytest.raises(FileNotFoundError, match="no model"):
        load_model(tmp_path / "missing")
    with pytest.raises(ValueError):
        model.predict(np.zeros((4, 4)))


def test_a_saved_model_predicts_in_float32_under_a_bfloat16_page(tmp_path):
    """A page that trains in bfloat16 (``SPINELIB_PRECISION``) still gets the model's float32
    numbers from ``load_model``, and keeps its own policy for what it builds next."""
    import keras

    from spinelib.landmarks.model import load_model, save_model

    folder = save_model(landmark_net((128, 64, 1), weights=None), tmp_path / "m", {"name": "t", "version": "0"})
    x = np.random.default_rng(0).random((1, 128, 64, 1)).astype(np.float32)
    plain = load_model(folder).network(x)[0].numpy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = load_model(folder)
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert {layer.compute_dtype for layer in model.network.layers} == {"float32"}
    np.testing.assert_array_equal(model.network(x)[0].numpy(), plain)


@pytest.mark.needs_shared
def test_released_model_reads_a_real_xray(aasce_dir):
    """The model shipped in the package: 17 vertebrae in order, on the X-ray, near the truth."""
    from spinelib.data.aasce import load_aasce
    from spinelib.landmarks.aasce_run import aasce_split
    from spinelib.landmarks.model import DEFAULT_MODEL, available_models, load_model

    if DEFAULT_MODEL not in available_models():
        pytest.fail(f"the package ships no {DEFAULT_MODEL} model (spinelib/landmarks/models/{DEFAULT_MODEL})")
    frame = load_aasce(aasce_dir)
    split = aasce_split(frame)
    # the first validation X-ray (never trained on) whose labels the audit does not flag (a flagged one
    # may store its vertebrae out of order, so the truth itself would be a level off)
    row = next(frame.iloc[i] for i in split.val if frame.image_name[i] not in split.flagged)
    model = load_model()
    pred = model.predict_file(row.image_path)
    assert pred.corners.shape == (17, 4, 2) and pred.image_shape == (row.height, row.width)
    centres = pred.corners.mean(axis=1)
    assert np.all(np.diff(centres[:, 1]) > 0)  # T1 first, top to bottom
    assert np.all((pred.corners[..., 0] >= -5) & (pred.corners[..., 0] <= row.width + 5))
    assert np.all((pred.corners[..., 1] >= -5) & (pred.corners[..., 1] <= row.height + 5))
    # each predicted centre lies within one vertebra pitch of its own level's true centre
    true_centres = np.asarray(row.landmarks).mean(axis=1)
    pitch = np.median(np.diff(true_centres[:, 1]))
    assert np.median(np.linalg.norm(centres - true_centres, axis=1)) < pitch
    assert 0 <= pred.cobb.pt <= 120 and pred.mask().shape == (row.height, row.width)


def test_recalibrate_batchnorm_gives_the_training_data_statistics():
    """After recalibration a BatchNorm's moving mean/variance are those of its inputs over the images."""
    import keras

    from spinelib.landmarks.train import recalibrate_batchnorm

    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(3, 1, use_bias=False, kernel_initializer="ones")(inp)
    out = keras.layers.BatchNormalization(momentum=0.99)(x)
    model = keras.Model(inp, out)
    images = np.random.default_rng(0).uniform(0.0, 1.0, (12, 8, 8, 1)).astype(np.float32)  # X-rays in [0, 1]
    assert recalibrate_batchnorm(model, images, batch_size=4) == 1
    bn = model.layers[-1]
    assert np.allclose(bn.moving_mean.numpy(), images.mean(), atol=1e-4)
    # the average of the three batches' variances (each batch normalised by its own mean)
    per_batch = np.mean([images[i:i + 4].var() for i in range(0, 12, 4)])
    assert np.allclose(bn.moving_variance.numpy(), per_batch, rtol=1e-3)
    assert bn.momentum == 0.99


@pytest.mark.needs_shared
def test_mask_runs_on_clean_labels_match_their_records(aasce_dir):
    """The committed mask runs scored on all validation images give back each run's recorded Dice;
    the clean subset leaves the flagged images out."""
    from spinelib.core.config import REPO_ROOT
    from spinelib.data.aasce import load_aasce
    from spinelib.landmarks.aasce_run import mask_runs_on_clean_labels

    table = mask_runs_on_clean_labels(REPO_ROOT / "results", load_aasce(aasce_dir), n_boot=200)
    assert len(table) >= 5
    for row in table.itertuples():
        recorded = json.loads((REPO_ROOT / "results" / row.run / "metrics.json").read_text())
        assert row.dice_all == pytest.approx(recorded["dice_mean_over_val_patients"], abs=1e-6)
        assert row.images_clean < row.images_all


def test_calibrated_intervals_cover_as_claimed_where_raw_spread_does_not():
    """Errors three times the test-time spread: the raw intervals cover far less than 95 %; the
    factor learnt on the other patients brings held-out coverage to about 95 %."""
    import pandas as pd

    from spinelib.landmarks.evaluate import ANGLES, calibrated_coverage, interval_coverage

    rng = np.random.default_rng(0)
    n = 600
    cases = pd.DataFrame({"patient_id": np.repeat(np.arange(n // 2), 2)})
    for name in ANGLES:
        sd = rng.uniform(0.5, 3.0, n)
        truth = rng.uniform(0, 60, n)
        cases[f"cobb_{name}"] = truth
        cases[f"lm_{name}"] = truth + rng.normal(0, 3.0 * sd)
        cases[f"lm_{name}_sd"] = sd
    raw = interval_coverage(cases)
    cal = calibrated_coverage(cases)
    assert (raw["covered"] < 0.6).all()
    assert np.allclose(cal["covered"], 0.95, atol=0.03)
    assert all(abs(k - 1.96 * 3.0) < 0.8 for ks in cal["factors"] for k in ks)


def test_the_landmark_heads_stay_float32_under_mixed_precision():
    import keras

    from spinelib.landmarks.network import landmark_net

    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        net = landmark_net((128, 64, 1), weights=None)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert [o.dtype for o in net.outputs] == ["float32"] * 3  # the losses meet float32 heat maps, offsets and mask
    assert net.get_layer("heat_conv").compute_dtype == "bfloat16"
