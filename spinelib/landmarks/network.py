"""The vertebra landmark network: EfficientNet-Lite0 encoder, a small decoder, three heads.

Vertebra-focused, as the field does it (CenterNet-style, after Yi et al., "Vertebra-focused
landmark detection for scoliosis assessment", 2020): for each of the 17 vertebrae T1-L5 the
network marks its **centre** on a heat map at output stride 4 and regresses, at that centre's
cell, the centre's sub-cell offset and the **offsets to its four corners**. A third head draws
the vertebral-body **mask** at full input resolution, so the "mask route" (mask, then fitted
corners) and the "landmark route" (corners read directly) come out of one network and can be
compared on the same patients.

    model = landmark_net(input_shape=(512, 256, 1))      # ImageNet encoder
    heat, offsets, mask = model(x)                       # x: (B, 512, 256, 1) gray in [0, 1]
    # heat (B, 128, 64, 1) logits, offsets (B, 128, 64, 10), mask (B, 512, 256, 1) probabilities
"""

from __future__ import annotations

import math

import keras
from keras import layers

from spinelib.seg.unet import conv_block, lite0_preprocess, lite0_pyramid

STRIDE = 4
"""Output stride of the heat map and the offsets (input pixels per output cell)."""

N_OFFSETS = 10
"""Offset channels per cell: the centre's (dx, dy), then (dx, dy) to the TL, TR, BL and BR corners."""

DECODER_FILTERS = (128, 64, 48, 16)
"""Decoder widths at strides 16, 8, 4 (where the landmark heads read) and 2 (the mask head)."""

HEAT_PRIOR = 0.01
"""Initial probability of a centre in every cell (the heat head's bias, as in CenterNet)."""


def landmark_net(input_shape: tuple = (512, 256, 1), weights: str | None = "imagenet",
                 decoder_filters: tuple[int, ...] = DECODER_FILTERS, head_filters: int = 32,
                 name: str = "vertebra_landmarks") -> keras.Model:
    """Build the landmark network; outputs ``[heat, offsets, mask]``.

    - Input: one gray channel in [0, 1]; inside it is mapped to Lite0's preprocessing
      :math:`(255x - 127)/128` and repeated to three channels. Height and width: multiples of 32.
    - Encoder: :func:`spinelib.cls.efficientnet_lite.efficientnet_lite0` (``weights="imagenet"``: the
      real ImageNet weights; ``None``: a random start), BatchNorm frozen at ImageNet statistics.
    - Decoder: from the stride-32 head (first reduced by a 1x1 Conv-BatchNorm-ReLU), per level bilinear 2x up-sampling, concatenation with the
      encoder's feature map at that stride, two Conv-BatchNorm-ReLU blocks; down to stride 4 for
      the landmark heads and one level more (stride 2) for the mask head.
    - ``heat``: 3x3 conv (``head_filters``) + ReLU + 1x1 conv, **logits** of "a vertebra centre is
      in this cell", bias :math:`-\\log((1-\\pi)/\\pi)` with :math:`\\pi` = :data:`HEAT_PRIOR`.
    - ``offsets``: the same shape of head, :data:`N_OFFSETS` linear channels, in output cells.
    - ``mask``: 1x1 sigmoid at stride 2, bilinearly up-sampled to the input size.
    """

    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3 or input_shape[-1] != 1:
        raise ValueError(f"input_shape must be (height, width, 1), got {input_shape!r}")
    h, w, _ = (int(s) for s in input_shape)
    if h < 64 or w < 64 or h % 32 or w % 32:
        raise ValueError(f"landmark_net needs height and width that are multiples of 32 (at least 64), got {h} x {w}")
    if len(decoder_filters) != 4 or not all(isinstance(f, int) and not isinstance(f, bool) and f > 0
                                            for f in decoder_filters):
        raise ValueError(f"decoder_filters needs 4 positive integer widths (strides 16, 8, 4, 2), got {decoder_filters!r}")
    if isinstance(head_filters, bool) or not isinstance(head_filters, int) or head_filters < 1:
        raise ValueError(f"head_filters must be a positive integer, got {head_filters!r}")
    pyramid = lite0_pyramid(h, w, weights)
    inputs = keras.Input(shape=(h, w, 1), name="xray")
    s2, s4, s8, s16, x = pyramid(lite0_preprocess(inputs))
    x = layers.Conv2D(decoder_filters[0], 1, use_bias=False, name="bottleneck_conv")(x)  # 1280 -> fewer channels
    x = layers.BatchNormalization(momentum=0.9, name="bottleneck_bn")(x)
    x = layers.Activation("relu", name="bottleneck_relu")(x)
    features = {}
    for level, (filters, skip, stride) in enumerate(zip(decoder_filters, (s16, s8, s4, s2), (16, 8, 4, 2))):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skip])
        x = conv_block(x, filters, batch_norm=True, name=f"dec{level}", bn_momentum=0.9)
        features[stride] = x
    f4 = features[STRIDE]
    bias = -math.log((1.0 - HEAT_PRIOR) / HEAT_PRIOR)
    heat = layers.Conv2D(head_filters, 3, padding="same", activation="relu", name="heat_conv")(f4)
    heat = layers.Conv2D(1, 1, bias_initializer=keras.initializers.Constant(bias), name="heat", dtype="float32")(heat)
    off = layers.Conv2D(head_filters, 3, padding="same", activation="relu", name="offsets_conv")(f4)
    off = layers.Conv2D(N_OFFSETS, 1, name="offsets", dtype="float32")(off)
    mask = layers.Conv2D(1, 1, activation="sigmoid", name="mask_s2", dtype="float32")(features[2])
    mask = layers.UpSampling2D(2, interpolation="bilinear", name="mask", dtype="float32")(mask)
    return keras.Model(inputs, [heat, off, mask], name=name)  # the three heads stay float32 under mixed precision
