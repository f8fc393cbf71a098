"""Losses against values computed by hand on 2x2 images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from spinelib.seg import losses


def img(*rows) -> np.ndarray:
    """A (1, H, W, 1) float32 tensor from rows of pixel values."""
    return np.asarray(rows, dtype=np.float32)[None, ..., None]


Y = img([1, 1], [0, 0])  # 2 white pixels
P = img([0.5, 1], [0.5, 0])  # I = 1.5, sum = 2 + 2 = 4, TP = 1.5, FP = 0.5, FN = 0.5


def value(fn, y, p, **kw) -> float:
    return float(fn(y, p, **kw))


def test_partial_overlap_by_hand():
    assert value(losses.soft_jaccard_loss, Y, P) == pytest.approx(1 - 2.5 / 3.5)  # 1 - (I+1)/(S-I+1)
    assert value(losses.soft_dice_loss, Y, P) == pytest.approx(1 - 4.0 / 5.0)  # 1 - (2I+1)/(S+1)
    assert value(losses.tversky_loss, Y, P, alpha=0.3, beta=0.7) == pytest.approx(1 - 2.5 / (1.5 + 0.15 + 0.35 + 1))
    assert value(losses.paper_jaccard_score, Y, P) == pytest.approx((1.5**2 + 1) / (4 - 1.5 + 1))
    assert value(losses.paper_loss, Y, P) == pytest.approx(-3.25 / 3.5)
    # two pixels at p = 0.5 cost ln 2 each, the other two ~0: mean over 4 pixels
    assert value(losses.binary_crossentropy, Y, P) == pytest.approx(math.log(2) / 2, rel=1e-5)
    assert value(losses.focal_loss, Y, P, gamma=2.0) == pytest.approx(0.25 * math.log(2) / 2, rel=1e-5)
    assert value(losses.focal_loss, Y, P, gamma=0.0) == pytest.approx(value(losses.binary_crossentropy, Y, P), rel=1e-6)
    # Tversky with alpha = beta = 0.5 is Dice (with half the smoothing), with alpha = beta = 1 Jaccard
    assert value(losses.tversky_loss, Y, P, alpha=0.5, beta=0.5, smooth=0.5) == pytest.approx(value(losses.soft_dice_loss, Y, P))
    assert value(losses.tversky_loss, Y, P, alpha=1, beta=1) == pytest.approx(value(losses.soft_jaccard_loss, Y, P))


def test_perfect_none_and_empty():
    no = img([0, 0], [1, 1])
    empty = img([0, 0], [0, 0])
    full = img([1, 1], [1, 1])
    for fn in (losses.soft_jaccard_loss, losses.soft_dice_loss, losses.tversky_loss):
        assert value(fn, Y, Y) == pytest.approx(0.0, abs=1e-7)  # perfect
        assert value(fn, empty, empty) == pytest.approx(0.0, abs=1e-7)  # both empty: smooth/smooth
    assert value(losses.soft_jaccard_loss, Y, no) == pytest.approx(0.8)  # 1 - 1/5
    assert value(losses.soft_dice_loss, Y, no) == pytest.approx(0.8)  # 1 - 1/5
    assert value(losses.soft_dice_loss, empty, full) == pytest.approx(1 - 1 / 5)  # one empty
    assert value(losses.soft_jaccard_loss, full, empty) == pytest.approx(1 - 1 / 5)
    assert value(losses.binary_crossentropy, Y, Y) < 1e-6
    assert value(losses.paper_jaccard_score, Y, Y) == pytest.approx((4 + 1) / (2 + 1))  # (I^2+1)/(S-I+1)
    assert value(losses.paper_jaccard_score, Y, no) == pytest.approx(1 / 5)
    assert value(losses.paper_jaccard_score, empty, empty) == pytest.approx(1.0)


def test_reduction_is_per_image_and_channel_then_mean():
    y = np.concatenate([Y, img([0, 0], [0, 0])], axis=0)  # batch of 2
    p = np.concatenate([P, img([1, 1], [1, 1])], axis=0)
    expected = ((1 - 4 / 5) + (1 - 1 / 5)) / 2
    assert value(losses.soft_dice_loss, y, p) == pytest.approx(expected)
    yc = np.concatenate([Y, img([0, 0], [0, 0])], axis=-1)  # 2 channels of 1 image
    pc = np.concatenate([P, img([1, 1], [1, 1])], axis=-1)
    assert value(losses.soft_dice_loss, yc, pc) == pytest.approx(expected)


def test_paper_score_grows_with_overlap_and_with_structure_size():
    y = np.zeros((1, 4, 8, 1), np.float32)
    y[0, 1, :, 0] = 1  # a line of 8 white pixels
    scores, values = [], []
    for k in range(9):  # predict the first k pixels of the line
        p = np.zeros_like(y)
        p[0, 1, :k, 0] = 1
        scores.append(value(losses.paper_jaccard_score, y, p))
        values.append(value(losses.paper_loss, y, p))
    assert np.all(np.diff(scores) > 0) and np.all(np.diff(values) < 0)
    assert scores[-1] == pytest.approx((64 + 1) / (8 + 1))  # about n = 8: not bounded by 1
    big = np.ones((1, 8, 8, 1), np.float32)
    assert value(losses.paper_jaccard_score, big, big) > 7 * scores[-1]  # ~64 vs ~8: not scale-free


def test_paper_gradient_scales_with_the_intersection():
    y = tf.constant(Y)
    p = tf.Variable(P)
    with tf.GradientTape() as tape:
        score = losses.paper_jaccard_score(y, p)
    grad = tape.gradient(score, p).numpy()[0, ..., 0]
    intersection, denom = 1.5, 4 - 1.5 + 1
    assert grad[0, 0] == pytest.approx(2 * intersection / denom, rel=1e-5)  # white pixel: 2I/D
    assert grad[1, 0] == pytest.approx(-(intersection**2 + 1) / denom**2, rel=1e-5)  # black pixel
    with tf.GradientTape() as tape:
        jac = -losses.soft_jaccard_loss(y, p)
    assert tape.gradient(jac, p).numpy()[0, 0, 0, 0] == pytest.approx(1 / denom, rel=1e-5)  # Jaccard: 1/D


def test_get_loss_names_parameters_and_errors():
    assert set(losses.LOSSES) == {"bce", "jaccard", "dice", "tversky", "focal", "paper"}
    assert losses.get_loss("Paper") is losses.paper_loss
    tv = losses.get_loss("tversky", alpha=0.5, beta=0.5, smooth=0.5)
    assert tv.__name__ == "tversky_loss"
    assert float(tv(Y, P)) == pytest.approx(value(losses.soft_dice_loss, Y, P))
    assert losses.get_loss(losses.soft_dice_loss) is losses.soft_dice_loss
    with pytest.raises(ValueError, match="unknown loss 'lovasz'"):
        losses.get_loss("lovasz")
    with pytest.raises(ValueError, match="no parameter"):
        losses.get_loss("dice", gamma=2)
    with pytest.raises(TypeError):
        losses.get_loss(3)
    with pytest.raises(ValueError, match="batch, H, W, C"):
        losses.soft_dice_loss(np.zeros((2, 2)), np.zeros((2, 2)))


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_every_loss_trains_a_keras_model(name):
    import keras

    from spinelib.seg.unet import unet

    keras.utils.set_random_seed(0)
    model = unet((16, 8, 1), filters=2, depth=2)
    model.compile(keras.optimizers.Adam(1e-3), loss=losses.get_loss(name))
    x = np.random.default_rng(0).random((2, 16, 8, 1), dtype=np.float32)
    loss = model.train_on_batch(x, (x > 0.5).astype(np.float32))
    assert np.isfinite(loss)
