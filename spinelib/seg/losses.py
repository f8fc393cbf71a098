"""Segmentation losses, each a small function ``loss(y_true, y_pred)`` usable by ``model.compile``.

Conventions shared by every function here:

- ``y_true`` and ``y_pred`` are ``(batch, H, W, C)`` tensors (or NumPy arrays); ``y_true`` holds
  0/1 masks, ``y_pred`` holds *probabilities* (the sigmoid outputs of :func:`spinelib.seg.unet.unet`).
- Sums run over the pixels of one image and one channel (structure); the per-image, per-channel
  values are then averaged over the batch and the channels, so every structure of every image
  weighs the same, whatever its size. The result is a scalar.
- Notation below: for one image and one channel, with pixels :math:`i`,
  :math:`I = \\sum_i y_i \\hat y_i` (soft intersection),
  :math:`S = \\sum_i y_i + \\sum_i \\hat y_i` (sum), :math:`s` the smoothing constant.

:func:`get_loss` maps a name (``bce``, ``jaccard``, ``dice``, ``tversky``, ``focal``, ``paper``)
to a configured loss.
"""

from __future__ import annotations

from collections.abc import Callable

from keras import ops

EPSILON = 1e-7
"""Probabilities are clipped to ``[EPSILON, 1 - EPSILON]`` before taking logarithms."""


def _prepare(y_true, y_pred):
    y_pred = ops.convert_to_tensor(y_pred)
    if not ops.is_tensor(y_pred) or len(y_pred.shape) != 4:
        raise ValueError(f"y_pred must be a (batch, H, W, C) tensor, got shape {tuple(y_pred.shape)}")
    if "float" not in str(y_pred.dtype):
        y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype)
    if len(y_true.shape) != 4:
        raise ValueError(f"y_true must be a (batch, H, W, C) tensor, got shape {tuple(y_true.shape)}")
    return y_true, y_pred


def _overlap(y_true, y_pred):
    """Per image and channel: intersection ``I`` and sum ``S`` (shape ``(batch, C)``)."""
    intersection = ops.sum(y_true * y_pred, axis=(1, 2))
    total = ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2))
    return intersection, total


def binary_crossentropy(y_true, y_pred):
    """Pixel-wise binary cross-entropy, averaged over pixels, then images and channels.

    .. math:: \\mathrm{BCE} = -\\frac{1}{HW}\\sum_i \\big[y_i \\log \\hat y_i + (1-y_i)\\log(1-\\hat y_i)\\big]

    The paper's first experiment (Table 2): with thin structures (< 1 % white pixels) an all-black
    prediction already scores a low loss, and the network learns a black mask.
    """
    y_true, y_pred = _prepare(y_true, y_pred)
    p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
    bce = -(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
    return ops.mean(ops.mean(bce, axis=(1, 2)))


def soft_jaccard_loss(y_true, y_pred, smooth: float = 1.0):
    """One minus the soft Jaccard index (intersection over union).

    .. math:: L_J = 1 - \\frac{I + s}{S - I + s}

    In [0, 1]; 0 for a perfect prediction, and 0 when both masks are empty (thanks to ``s``).
    """
    y_true, y_pred = _prepare(y_true, y_pred)
    intersection, total = _overlap(y_true, y_pred)
    return ops.mean(1.0 - (intersection + smooth) / (total - intersection + smooth))


def soft_dice_loss(y_true, y_pred, smooth: float = 1.0):
    """One minus the soft Dice coefficient.

    .. math:: L_D = 1 - \\frac{2I + s}{S + s}
    """
    y_true, y_pred = _prepare(y_true, y_pred)
    intersection, total = _overlap(y_true, y_pred)
    return ops.mean(1.0 - (2.0 * intersection + smooth) / (total + smooth))


def tversky_loss(y_true, y_pred, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0):
    """One minus the Tversky index, which weighs false positives and false negatives separately.

    .. math:: L_T = 1 - \\frac{TP + s}{TP + \\alpha\\,FP + \\beta\\,FN + s},\\quad
        TP = \\sum_i y_i\\hat y_i,\\ FP = \\sum_i (1-y_i)\\hat y_i,\\ FN = \\sum_i y_i(1-\\hat y_i)

    ``alpha = beta = 0.5`` gives the soft Dice loss (with smoothing ``2s``), ``alpha = beta = 1``
    the soft Jaccard loss.
    The default ``beta > alpha`` penalises missed white pixels more: the remedy for the thin,
    faint structures (vertebral lines) that the paper's network turns black.
    """
    y_true, y_pred = _prepare(y_true, y_pred)
    tp = ops.sum(y_true * y_pred, axis=(1, 2))
    fp = ops.sum((1.0 - y_true) * y_pred, axis=(1, 2))
    fn = ops.sum(y_true * (1.0 - y_pred), axis=(1, 2))
    return ops.mean(1.0 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth))


def focal_loss(y_true, y_pred, gamma: float = 2.0, alpha: float | None = None):
    """Binary focal loss (Lin et al. 2017): cross-entropy down-weighted on easy pixels.

    .. math:: \\mathrm{FL} = -\\frac{1}{HW}\\sum_i \\big[\\alpha\\, y_i (1-\\hat y_i)^\\gamma \\log \\hat y_i
        + (1-\\alpha)(1-y_i)\\,\\hat y_i^\\gamma \\log(1-\\hat y_i)\\big]

    ``gamma = 0`` and ``alpha = None`` (no class weighting; both weights 1) give
    :func:`binary_crossentropy`.
    """
    y_true, y_pred = _prepare(y_true, y_pred)
    p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
    w_pos, w_neg = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    fl = -(
        w_pos * y_true * ops.power(1.0 - p, gamma) * ops.log(p)
        + w_neg * (1.0 - y_true) * ops.power(p, gamma) * ops.log(1.0 - p)
    )
    return ops.mean(ops.mean(fl, axis=(1, 2)))


def paper_jaccard_score(y_true, y_pred, smooth: float = 1.0):
    """The paper's custom quantity, "inspired by the Jaccard index", as the paper writes it.

    .. math:: P = \\frac{I^2 + s}{S - I + s}

    i.e. the Jaccard index with the intersection *squared* in the numerator (section 2.3). It
    **grows** with overlap, so it is a score to maximise, not a loss; :func:`paper_loss` is its
    negative. It is not bounded by 1: for a perfect prediction of a mask with :math:`n` white
    pixels, :math:`I = n`, :math:`S - I = n` and :math:`P = (n^2 + s)/(n + s) \\approx n`.
    """
    y_true, y_pred = _prepare(y_true, y_pred)
    intersection, total = _overlap(y_true, y_pred)
    return ops.mean((ops.square(intersection) + smooth) / (total - intersection + smooth))


def paper_loss(y_true, y_pred, smooth: float = 1.0):
    """The paper's training objective: the negative of :func:`paper_jaccard_score`.

    .. math:: L_P = -\\frac{I^2 + s}{S - I + s}

    **Why the negative, not** ``1 - P``: the gradient is the same (a constant does not change
    it), so the choice only changes the printed value. ``P`` is unbounded above, so ``1 - P``
    would suggest a [0, 1] range that does not exist; ``-P`` keeps the number honest (it reads as
    "minus roughly the number of correctly predicted white pixels") and is how the paper's
    Kaggle source is reported to write it.

    **What the square does to the gradient.** With :math:`D = S - I + s`, for one pixel

    .. math:: \\frac{\\partial P}{\\partial \\hat y_i} = \\frac{2 I\\, y_i}{D}
        - \\frac{(I^2 + s)(1 - y_i)}{D^2}

    so on a white pixel (:math:`y_i = 1`) the push towards 1 is :math:`2I/D`, proportional to the
    *current* intersection (the plain Jaccard index gives :math:`1/D`). Overlap is rewarded with
    an ever larger push as it grows, which is the paper's "extra importance to learning the white
    pixels" (section 2.5.5) and what keeps the network from collapsing to a black mask; but at the
    start, when :math:`I \\approx 0`, the push is weak. Because :math:`P \\propto n` (the number of
    white pixels), the loss is **not scale-free**: large structures (vertebrae) dominate a batch
    over small ones (pedicles, lines), and loss values cannot be compared across images or
    structures. Use Dice/IoU to compare; Adam's per-parameter normalisation makes the absolute
    scale harmless to the step size.
    """
    return -paper_jaccard_score(y_true, y_pred, smooth=smooth)


LOSSES: dict[str, Callable] = {
    "bce": binary_crossentropy,
    "jaccard": soft_jaccard_loss,
    "dice": soft_dice_loss,
    "tversky": tversky_loss,
    "focal": focal_loss,
    "paper": paper_loss,
}
"""Loss names accepted by :func:`get_loss`."""


def get_loss(name: str | Callable, **params) -> Callable:
    """Return the loss called ``name`` as ``loss(y_true, y_pred)``, with ``params`` bound.

    >>> get_loss("tversky", alpha=0.7, beta=0.3).__name__
    'tversky_loss'

    A callable is returned unchanged (``params`` must then be empty).
    """
    if callable(name):
        if params:
            raise ValueError("parameters can only be bound to a loss given by name")
        return name
    if not isinstance(name, str):
        raise TypeError(f"loss must be a name (str) or a callable, got {type(name).__name__}: {name!r}")
    key = name.strip().lower()
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    fn = LOSSES[key]
    if not params:
        return fn
    import inspect

    allowed = set(list(inspect.signature(fn).parameters)[2:])
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"loss {key!r} has no parameter(s) {sorted(unknown)}; it accepts {sorted(allowed)}")

    def loss(y_true, y_pred):
        return fn(y_true, y_pred, **params)

    loss.__name__ = fn.__name__
    loss.__qualname__ = fn.__name__
    loss.__doc__ = fn.__doc__
    return loss
