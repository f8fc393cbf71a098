"""Frozen feature extractors: random, ImageNet, a local ResNet-50 file, the in-domain U-Net encoder; cached features."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import keras
import numpy as np
from keras import layers

from spinelib.cls import backbones
from spinelib.cls.backbones import load_unet
from spinelib.core.config import set_seed
from spinelib.data.clsdata import resize_images

WEIGHT_LABELS: dict[str, str] = {
    "random": "random init",
    "imagenet": "ImageNet",
    "file": "ImageNet (local file)",
    "indomain": "in-domain (AASCE vertebra masks)",
}
"""How each kind of weights is named in every table of the book."""


def weights_label(backbone: str, weights: str) -> str:
    """``'ResNet-50, random init'``, ``'EfficientNet-Lite0, ImageNet'``, ..."""
    names = {"resnet50": "ResNet-50", "efficientnet_lite0": "EfficientNet-Lite0", "vgg16": "VGG-16",
             "inception_v3": "Inception-V3", "unet_encoder": "U-Net encoder"}
    if weights not in WEIGHT_LABELS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_LABELS)}, got {weights!r}")
    return f"{names.get(backbone, backbone)}, {WEIGHT_LABELS[weights]}"


def resnet50_weights_status(resnet50_weights: str | os.PathLike | None = None) -> tuple[str, str]:
    """``(weights, message)``: ``('file', ...)`` when a ResNet-50 ImageNet file is found at
    ``resnet50_weights`` or in Keras's cache, else ``('random', why)``; never downloads."""
    try:
        path = backbones.imagenet_weights_file("resnet50", resnet50_weights)
    except FileNotFoundError as e:
        why = str(e).replace(str(Path.home()), "~")  # the page names Keras's cache, not this machine's home
        return "random", f"No ResNet-50 ImageNet file on this machine, so ResNet-50 runs with random init. {why}"
    return "file", f"ResNet-50 ImageNet weights read from {_home_relative(path)}."


def _home_relative(path: str | os.PathLike) -> str:
    """``~/.keras/models/<file>`` for a file under the home folder (Keras's cache), else the file's
    name: a page never shows the absolute paths of the machine that built it."""
    path = Path(path)
    try:
        return "~/" + path.resolve().relative_to(Path.home().resolve()).as_posix()
    except ValueError:
        return path.name


@keras.saving.register_keras_serializable(package="spinelib")
class ScaleTo01(layers.Layer):
    """``x / 255``: lets a U-Net encoder (trained on [0, 1] images) take 0-255 X-rays."""

    def call(self, x):
        return keras.ops.cast(x, "float32") / 255.0


def indomain_backbone(unet_path: str | os.PathLike, input_shape: tuple[int, int, int] | None = None) -> keras.Model:
    """The contracting path of a saved U-Net (:func:`spinelib.cls.backbones.encoder_from_unet`),
    taking 0-255 X-rays like the ImageNet backbones."""
    unet = load_unet(unet_path)
    enc = backbones.encoder_from_unet(unet, input_shape=input_shape, name="unet_encoder")
    inputs = keras.Input(shape=tuple(int(s) for s in enc.input.shape[1:]), name="xray")
    fp = hashlib.sha256(str(Path(unet_path).resolve()).encode()).hexdigest()[:8]
    return keras.Model(inputs, enc(ScaleTo01(name="to_0_1")(inputs)), name=f"unet_encoder_{fp}")


def feature_backbone(backbone: str, input_shape: tuple[int, int, int], weights: str,
                     weights_path: str | os.PathLike | None = None) -> keras.Model:
    """A frozen feature extractor on 0-255 X-rays: ``weights`` is ``'random'``, ``'imagenet'``,
    ``'file'`` (``weights_path``) or ``'indomain'`` (``weights_path`` = a saved U-Net)."""
    if weights == "indomain":
        if weights_path is None:
            raise ValueError("weights='indomain' needs weights_path: a U-Net saved by train_aasce_unets()")
        return indomain_backbone(weights_path, input_shape)
    if weights not in ("random", "imagenet", "file"):
        raise ValueError(f"weights must be 'random', 'imagenet', 'file' or 'indomain', got {weights!r}")
    set_seed(0)  # the same random init every run (and so the same feature cache entries)
    w = {"random": None, "imagenet": "imagenet", "file": "file"}[weights]
    return backbones.build_backbone(backbone, input_shape, weights=w, weights_path=weights_path)


def features_of(backbone: keras.Model, images: np.ndarray, cache_dir: str | os.PathLike | None,
                batch_size: int = 8, progress: bool = True) -> np.ndarray:
    """:func:`spinelib.cls.backbones.extract_features` with the on-disk cache (images resized to the
    backbone's input first)."""
    size = tuple(int(s) for s in backbone.input.shape[1:3])
    x = resize_images(images, size)
    return backbones.extract_features(backbone, x, cache_dir=cache_dir, batch_size=batch_size, progress=progress)


