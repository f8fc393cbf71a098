"""Grad-CAM: which part of an X-ray drove a convolutional classifier's output.

For a convolutional layer with feature maps ``A^k`` (k = channel) and a class score ``y^c``
(Selvaraju et al., 2017):

    alpha_k = mean over (i, j) of d y^c / d A^k_ij          (channel importance)
    L^c     = ReLU( sum_k alpha_k A^k )                     (coarse map)

``L^c`` is resized to the image (bilinear) and scaled to [0, 1] by its maximum. For a sigmoid
output (the Damaged probability) ``class_index=0`` explains "Damaged".
"""

from __future__ import annotations

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure
from skimage.transform import resize


def last_conv_layer_name(model: keras.Model) -> str:
    """Name of the last layer with a 4-D output (a feature map) in a flat functional model."""
    for layer in reversed(model.layers):
        out = getattr(layer, "output", None)
        if out is not None and len(getattr(out, "shape", ())) == 4 and not isinstance(layer, keras.layers.InputLayer):
            return layer.name
    raise ValueError(f"{model.name} has no layer with a 4-D (feature map) output")


def grad_cam(model: keras.Model, image: np.ndarray, layer_name: str | None = None, class_index: int = 0) -> np.ndarray:
    """Grad-CAM heat map of ``image`` (``H x W`` or ``H x W x C``, without batch axis).

    Returns an ``H x W`` float32 array in [0, 1] (all zeros when no location has positive
    evidence). ``layer_name`` defaults to the last feature-map layer; it must be a layer of
    ``model`` itself (not inside a nested sub-model).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    x = np.asarray(image, dtype=np.float32)
    in_shape = tuple(model.inputs[0].shape[1:])
    if x.ndim == 2 and len(in_shape) == 3 and in_shape[-1] == 1:
        x = x[..., None]
    if x.ndim != len(in_shape) or any(s is not None and s != d for s, d in zip(in_shape, x.shape)):
        raise ValueError(f"image shape {np.asarray(image).shape} does not fit the model input {in_shape}")
    name = layer_name or last_conv_layer_name(model)
    try:
        layer = model.get_layer(name)
    except ValueError as e:
        raise ValueError(f"{model.name} has no layer {name!r}") from e
    if len(layer.output.shape) != 4:
        raise ValueError(f"layer {name!r} output {layer.output.shape} is not a feature map (batch, h, w, c)")
    grad_model = keras.Model(model.inputs, [layer.output, model.outputs[0]])
    batch = tf.convert_to_tensor(x[None])
    with tf.GradientTape() as tape:
        features, preds = grad_model(batch, training=False)
        preds = tf.reshape(preds, (1, -1))
        if not 0 <= class_index < preds.shape[-1]:
            raise ValueError(f"class_index {class_index} out of range for {preds.shape[-1]} output(s)")
        score = preds[:, class_index]
    grads = tape.gradient(score, features)
    if grads is None:
        raise ValueError(f"the output does not depend on layer {name!r}")
    weights = tf.reduce_mean(grads, axis=(1, 2))  # alpha_k
    cam = tf.nn.relu(tf.reduce_sum(features * weights[:, None, None, :], axis=-1))[0].numpy()
    cam = resize(cam, x.shape[:2], order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    top = float(cam.max())
    return (cam / top if top > 0 else np.zeros_like(cam)).astype(np.float32)


def overlay_heatmap(
    image: np.ndarray,
    heatmap: np.ndarray,
    alpha: float = 0.4,
    cmap: str = "jet",
    title: str | None = None,
    ax: plt.Axes | None = None,
) -> Figure:
    """The X-ray in grey with the heat map on top (colour bar: Grad-CAM relevance 0-1)."""
    img = np.asarray(image, dtype=float)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    heat = np.asarray(heatmap, dtype=float)
    if heat.shape != img.shape[:2]:
        raise ValueError(f"heatmap shape {heat.shape} differs from the image's {img.shape[:2]}")
    own = ax is None
    if own:
        h, w = heat.shape
        fig, ax = plt.subplots(figsize=(5 * w / h + 1.6, 5))  # room for the colour bar
    else:
        fig = ax.figure
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    im = ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="Grad-CAM relevance")
    ax.set_title(title or "Grad-CAM")
    ax.axis("off")
    if own:
        fig.tight_layout()
    return fig
