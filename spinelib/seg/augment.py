"""Augmentation of an X-ray and its masks: one seeded, stateless random affine warp applied to both
(:func:`affine_matrix`), plus intensity changes on the X-ray only (:func:`augment_pair`); it runs
inside ``tf.data`` (:mod:`spinelib.seg.training` builds the batches) and moves landmarks too
(:mod:`spinelib.landmarks.encoding` uses the same warp)."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

AUGMENT_DEFAULTS: dict[str, float | bool] = {
    "rotation": 7.0,  # degrees, uniform in [-7, 7]
    "scale": 0.10,  # zoom factor uniform in [0.9, 1.1]
    "translation": 0.05,  # shift, fraction of height / width, uniform in [-0.05, 0.05]
    "flip": False,  # random horizontal flip with probability 1/2
    "brightness": 0.10,  # additive, uniform in [-0.1, 0.1]
    "contrast": 0.15,  # factor around the image mean, uniform in [0.85, 1.15]
    "gamma": 0.20,  # exponent uniform in [0.8, 1.2]
}
"""Default augmentation strengths: small, anatomically plausible changes of patient position,
magnification and exposure."""


def _as_seed(seed) -> tf.Tensor:
    """An int -> ``[seed, 0]``; a length-2 tensor/array is used as is (stateless RNG seed)."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return tf.constant([int(seed), 0], dtype=tf.int64)
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank != 1 or seed.shape[0] != 2:
        raise ValueError(f"seed must be an int or a length-2 integer tensor, got shape {seed.shape}")
    return tf.cast(seed, tf.int64)


def affine_matrix(seed, height, width, rotation=7.0, scale=0.10, translation=0.05, flip=False) -> tf.Tensor:
    """Random affine warp as the 8 numbers ``[a0, a1, a2, b0, b1, b2, 0, 0]`` that
    ``ImageProjectiveTransformV3`` expects (they map an *output* pixel to its *input* position).

    Forward, an input point :math:`p` (optionally mirrored, :math:`x \\to W-1-x`) moves to
    :math:`p' = c + t + s R_\\theta (p - c)` with :math:`c` the image centre, so the inverse is
    :math:`p = c + R_{-\\theta}(p' - c - t)/s`, then mirrored back.
    """
    seeds = tf.random.experimental.stateless_split(_as_seed(seed), num=4)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    theta = tf.random.stateless_uniform([], seeds[0], -rotation, rotation) * (math.pi / 180.0)
    zoom = 1.0 + tf.random.stateless_uniform([], seeds[1], -scale, scale)
    shift = tf.random.stateless_uniform([2], seeds[2], -translation, translation) * tf.stack([w, h])
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    cos, sin = tf.cos(theta) / zoom, tf.sin(theta) / zoom
    ox, oy = cx + shift[0], cy + shift[1]
    a0, a1, a2 = cos, sin, cx - cos * ox - sin * oy
    b0, b1, b2 = -sin, cos, cy + sin * ox - cos * oy
    if flip:
        mirror = tf.random.stateless_uniform([], seeds[3]) < 0.5
        a0, a1, a2 = (tf.where(mirror, -a0, a0), tf.where(mirror, -a1, a1),
                      tf.where(mirror, (w - 1.0) - a2, a2))
    zero = tf.zeros([])
    return tf.stack([a0, a1, a2, b0, b1, b2, zero, zero])


def _warp(x: tf.Tensor, matrix: tf.Tensor, interpolation: str) -> tf.Tensor:
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=x[None], transforms=matrix[None], output_shape=tf.shape(x)[:2],
        fill_value=0.0, interpolation=interpolation, fill_mode="CONSTANT",
    )[0]
    out.set_shape(x.shape)
    return out


def augment_pair(image, masks, seed, **strengths) -> tuple[tf.Tensor, tf.Tensor]:
    """Augment one X-ray ``(H, W, 1)`` and its masks ``(H, W, C)`` with the same geometry.

    Geometry (both): one affine warp - rotation, isotropic scale and translation about the centre,
    and a horizontal flip if ``flip=True`` - via ``ImageProjectiveTransformV3``, bilinear for the
    X-ray and nearest-neighbour for the masks (so they stay exactly 0/1); outside the image is 0.
    Intensity (X-ray only): contrast :math:`x \\to \\bar x + c(x - \\bar x)`, brightness
    :math:`x \\to x + b`, clip to [0, 1], gamma :math:`x \\to x^g`.

    The flip is off by default: a mirrored LAT view turns the patient around (anterior and
    posterior swap sides), which the clinical data never shows; for the AP view it is plausible
    (left/right scoliosis), so turn it on there if wanted.

    ``seed``: an int or a length-2 integer tensor; the same seed gives the same result (stateless
    random ops), so it can run inside ``tf.data`` with one seed per example. ``strengths``
    override :data:`AUGMENT_DEFAULTS` (a 0 disables that change).
    """
    unknown = set(strengths) - set(AUGMENT_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown augmentation parameter(s) {sorted(unknown)}; known: {list(AUGMENT_DEFAULTS)}")
    p = {**AUGMENT_DEFAULTS, **strengths}
    image = tf.convert_to_tensor(image, tf.float32)
    masks = tf.convert_to_tensor(masks, tf.float32)
    if image.shape.rank != 3 or masks.shape.rank != 3:
        raise ValueError(f"augment_pair expects image (H, W, 1) and masks (H, W, C), got {image.shape} and {masks.shape}")
    if image.shape[:2] != masks.shape[:2]:
        raise ValueError(f"image {image.shape} and masks {masks.shape} differ in height/width")
    seed = _as_seed(seed)
    geo_seed, int_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    shape = tf.shape(image)
    matrix = affine_matrix(geo_seed, shape[0], shape[1], p["rotation"], p["scale"], p["translation"], p["flip"])
    image = _warp(image, matrix, "BILINEAR")
    masks = _warp(masks, matrix, "NEAREST")
    s = tf.random.experimental.stateless_split(int_seed, num=3)
    contrast = tf.random.stateless_uniform([], s[0], 1.0 - p["contrast"], 1.0 + p["contrast"])
    brightness = tf.random.stateless_uniform([], s[1], -p["brightness"], p["brightness"])
    gamma = tf.random.stateless_uniform([], s[2], 1.0 - p["gamma"], 1.0 + p["gamma"])
    return adjust_intensity(image, contrast, brightness, gamma), masks


def adjust_intensity(image, contrast, brightness, gamma) -> tf.Tensor:
    """Contrast about the image's mean, brightness, clip to [0, 1], gamma: float32 in, float32 out.

    Computed in float64 and rounded to float32 once, at the end. In float32 the last bit of these
    pixels depended on how TensorFlow ran the element-wise ops (which changes with the batch's
    layout and threading): the same seed then gave pixels 1-3 ulp apart in different processes,
    and training runs on them ended at different weights (``docs/benchmarks.md``, 2026-12-04).
    A float64 last-bit difference does not survive the rounding.
    """
    x = tf.cast(image, tf.float64)
    mean = tf.reduce_mean(x)
    c, b, g = (tf.cast(v, tf.float64) for v in (contrast, brightness, gamma))
    return tf.cast(tf.pow(tf.clip_by_value(mean + c * (x - mean) + b, 0.0, 1.0), g), tf.float32)
