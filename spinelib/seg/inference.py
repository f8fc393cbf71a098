"""Segmentation inference: prediction (with flip TTA), post-processing, whole folders of X-rays, saved U-Nets."""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from tqdm.auto import tqdm


def _postprocess_2d(prob: np.ndarray, threshold, min_size_fraction, keep_largest, fill_holes) -> np.ndarray:
    from scipy import ndimage
    from skimage.measure import label

    mask = prob > threshold
    if not mask.any():
        return mask
    labels = label(mask, connectivity=2)
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    keep = areas >= min_size_fraction * mask.size
    keep[0] = False
    if keep_largest is not None:
        order = np.argsort(areas)[::-1]
        largest = np.zeros_like(keep)
        largest[order[: int(keep_largest)]] = True
        keep &= largest
    mask = keep[labels]
    if fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    return mask


def postprocess(
    prob,
    threshold: float = 0.5,
    min_size_fraction: float = 0.0005,
    keep_largest: int | None = None,
    fill_holes: bool = True,
) -> np.ndarray:
    """Probabilities -> clean binary masks, channel by channel.

    1. threshold: ``prob > threshold``;
    2. drop 8-connected components smaller than ``min_size_fraction`` of the image area
       (default 0.05 %: 65 px at 512x256; a pedicle there is a few hundred pixels);
    3. if ``keep_largest=k``, keep only the ``k`` largest remaining components
       (e.g. 17 vertebrae, or 1 for a single line);
    4. if ``fill_holes``, fill enclosed holes (``scipy.ndimage.binary_fill_holes``).

    ``prob``: ``(H, W)``, ``(H, W, C)`` or ``(N, H, W, C)``; returns ``bool`` of the same shape.
    """
    prob = np.asarray(prob, dtype=np.float32)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if not 0.0 <= min_size_fraction < 1.0:
        raise ValueError(f"min_size_fraction must be in [0, 1), got {min_size_fraction}")
    if keep_largest is not None and (not isinstance(keep_largest, (int, np.integer)) or keep_largest < 1):
        raise ValueError(f"keep_largest must be None or a positive integer, got {keep_largest!r}")
    args = (threshold, min_size_fraction, keep_largest, fill_holes)
    if prob.ndim == 2:
        return _postprocess_2d(prob, *args)
    if prob.ndim == 3:
        return np.stack([_postprocess_2d(prob[..., c], *args) for c in range(prob.shape[-1])], axis=-1)
    if prob.ndim == 4:
        return np.stack([postprocess(p, *args) for p in prob])
    raise ValueError(f"prob must be (H, W), (H, W, C) or (N, H, W, C), got shape {prob.shape}")


_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled_forward(model: keras.Model):
    """The model's inference pass (``training=False``) as one compiled graph: a ``tf.function`` traced
    once per model for any batch size and cached per model (held weakly). An eager Keras call runs
    the layers one by one from Python, and ``model.predict`` builds a data pipeline on every call;
    for one X-ray at a time both cost more than the network (``benchmarks/inference_speed.py``)."""
    import tensorflow as tf

    fn = _FORWARD.get(model)
    if fn is None:
        ref = weakref.ref(model)
        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        fn = tf.function(lambda x: ref()(x, training=False), input_signature=[spec], reduce_retracing=True)
        _FORWARD[model] = fn
    return fn


def _forward_batches(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    forward = compiled_forward(model)
    return np.concatenate([np.asarray(forward(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def predict(model: keras.Model, images, batch_size: int = 8, tta_flip: bool = False) -> np.ndarray:
    """Probabilities ``(N, H, W, C)`` for images ``(N, H, W, 1)`` or ``(N, H, W)``.

    With ``tta_flip``, the prediction is the mean of the prediction and the mirrored prediction
    of the mirrored image, :math:`\\tfrac12[f(x) + F f(F x)]` with :math:`F` the horizontal flip.
    It helps when the model has seen mirrored images (``augment={"flip": True}``) or the
    structures are left/right symmetric (AP view).
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"images must be (N, H, W, 1) or (N, H, W), got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("predict needs at least one image")
    prob = _forward_batches(model, x, batch_size)
    if tta_flip:
        flipped = _forward_batches(model, np.ascontiguousarray(x[:, :, ::-1]), batch_size)
        prob = 0.5 * (prob + flipped[:, :, ::-1])
    return np.asarray(prob, dtype=np.float32)


XRAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")


def predict_folder(
    model: keras.Model,
    folder: str | os.PathLike,
    out_dir: str | os.PathLike,
    size: tuple[int, int] | None = None,
    structures: Sequence[str] | None = None,
    threshold: float = 0.5,
    tta: bool = False,
    batch_size: int = 4,
    postprocess_kwargs: dict | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Segment every X-ray in ``folder`` and write its masks at the X-ray's original resolution.

    Each file (PNG/JPEG/TIFF/BMP/DICOM, not recursive) is read with
    :func:`spinelib.core.imageio.read_xray`, resized to ``size=(h, w)`` (default: the model's input
    size) and scaled to [0, 1]; the probabilities are resized back (bilinear) to the original
    size, then :func:`postprocess` -ed (``threshold`` and ``postprocess_kwargs``). Masks are
    written atomically as 1-bit PNGs ``out_dir/<x-ray stem>/<structure>.png``, the clinical
    dataset's layout. Returns one row per (image, structure): ``image, structure, mask_path,
    height, width, fraction``.
    """
    from spinelib.core.imageio import image_size, read_xray, resize_probabilities, save_png

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"X-ray folder {folder} does not exist or is not a directory")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in XRAY_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no X-ray ({', '.join(XRAY_SUFFIXES)}) in {folder}")
    if size is None:
        size = tuple(model.input_shape[1:3])
        if None in size:
            raise ValueError(f"the model {model.name} accepts any size: pass size=(height, width)")
    size = (int(size[0]), int(size[1]))
    n_out = model.output_shape[-1]
    structures = [f"mask_{c}" for c in range(n_out)] if structures is None else list(structures)
    if len(structures) != n_out:
        raise ValueError(f"{len(structures)} structure name(s) for a model with {n_out} output channel(s)")
    pp = {"threshold": threshold, **(postprocess_kwargs or {})}
    out = Path(out_dir)
    rows = []
    batches = range(0, len(files), batch_size)
    for start in tqdm(batches, desc="predict_folder", unit="batch", disable=not progress):
        chunk = files[start:start + batch_size]
        x = np.stack([read_xray(p, size=size).astype(np.float32) / 255.0 for p in chunk])[..., None]
        prob = predict(model, x, batch_size=batch_size, tta_flip=tta)
        for path, p in zip(chunk, prob):
            h, w = image_size(path)
            full = resize_probabilities(p, (h, w))
            masks = postprocess(full, **pp)
            for c, structure in enumerate(structures):
                target = save_png(out / path.stem / f"{structure}.png", masks[..., c])
                rows.append({"image": path.name, "structure": structure, "mask_path": str(target),
                             "height": h, "width": w, "fraction": float(masks[..., c].mean())})
    return pd.DataFrame(rows, columns=["image", "structure", "mask_path", "height", "width", "fraction"])


