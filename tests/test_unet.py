"""The paper's U-Net (exact parameter count) and its one-argument variants."""

from __future__ import annotations

import numpy as np
import pytest

from spinelib.seg.unet import unet


def test_paper_unet_has_the_papers_parameter_count():
    model = unet()  # built only, never run at 512x256
    assert model.count_params() == 7_759_521
    assert model.input_shape == (None, 512, 256, 1)
    assert model.output_shape == (None, 512, 256, 1)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    transposes = [layer for layer in model.layers if type(layer).__name__ == "Conv2DTranspose"]
    # figure 2 of the paper: conv2d_1..conv2d_19 and conv2d_transpose_1..4
    assert len(convs) == 19 and len(transposes) == 4
    assert [c.filters for c in convs[:10:2]] == [32, 64, 128, 256, 512]
    assert convs[-1].activation.__name__ == "sigmoid"
    assert not any("batch_normalization" in type(layer).__name__.lower() for layer in model.layers)


def test_multi_output_variant_runs_with_the_right_shape():
    model = unet((64, 32, 1), filters=4, depth=4, n_classes=3)
    out = model.predict(np.random.default_rng(0).random((2, 64, 32, 1), dtype=np.float32), verbose=0)
    assert out.shape == (2, 64, 32, 3)
    assert np.all((out > 0) & (out < 1))  # independent sigmoids


def test_variants_change_the_network_as_documented():
    small = dict(input_shape=(64, 32, 1), filters=8, depth=4)
    base = unet(**small).count_params()
    assert unet(**small, batch_norm=True).count_params() > base
    # bilinear upsampling + 2x2 conv has the same number of weights as a 2x2 transposed conv
    bil = unet(**small, up="bilinear")
    assert bil.count_params() == base
    assert any(type(layer).__name__ == "UpSampling2D" for layer in bil.layers)
    assert unet(**{**small, "filters": 16}).count_params() > 3 * base
    assert unet(**{**small, "depth": 3}).count_params() < base
    assert any(type(layer).__name__ == "Dropout" for layer in unet(**small, dropout=0.2).layers)
    # 5 LAT structures: only the 1x1 output layer grows, 4 extra kernels of 8 weights + 4 biases
    assert unet(**small, n_classes=5).count_params() == base + 4 * 8 + 4


def test_bad_sizes_and_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="multiple of 2\\*\\*\\(depth-1\\) = 16"):
        unet((500, 256, 1))
    with pytest.raises(ValueError, match="width 36"):
        unet((64, 36, 1), depth=4)
    unet((64, 36, 1), depth=3, filters=2)  # 36 is divisible by 4
    with pytest.raises(ValueError, match="up must be"):
        unet((64, 32, 1), up="nearest")
    with pytest.raises(ValueError, match="filters"):
        unet((64, 32, 1), filters=0)
    with pytest.raises(ValueError, match="input_shape"):
        unet((64, 32))


def test_lite0_unet_shapes_weights_and_frozen_batchnorm(tmp_path):
    import keras
    import numpy as np

    from spinelib.cls.efficientnet_lite import efficientnet_lite0
    from spinelib.seg.unet import lite0_unet

    net = lite0_unet((64, 32, 1), n_classes=2)
    assert net.output.shape[1:] == (64, 32, 2)
    reference = efficientnet_lite0((64, 32, 3), include_top=False, weights="imagenet")
    encoder = net.get_layer("encoder_pyramid")
    for name in ("conv_stem", "blocks_15_project_conv", "conv_head"):  # the ImageNet weights arrived
        np.testing.assert_array_equal(encoder.get_layer(name).get_weights()[0], reference.get_layer(name).get_weights()[0])
    bns = [l for l in encoder.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and not any(l.trainable for l in bns)
    random = lite0_unet((64, 32, 1), weights=None)
    assert not np.array_equal(random.get_layer("encoder_pyramid").get_layer("conv_stem").get_weights()[0],
                              reference.get_layer("conv_stem").get_weights()[0])
    x = np.random.default_rng(0).random((2, 64, 32, 1)).astype("float32")
    net.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(again.predict(x, verbose=0), net.predict(x, verbose=0), atol=1e-6)
    for bad in ((60, 32, 1), (64, 32, 3)):
        with pytest.raises(ValueError, match="multiples of 32|height, width, 1"):
            lite0_unet(bad)


def test_lite0_unet_full_resolution_skip():
    import numpy as np

    from spinelib.seg.unet import lite0_unet

    plain = lite0_unet((64, 32, 1), weights=None)
    skip = lite0_unet((64, 32, 1), weights=None, full_res_skip=8)
    assert skip.output.shape[1:] == (64, 32, 1)
    assert [l.name for l in plain.layers if l.name.startswith("full_res_skip")] == []
    concat = skip.get_layer("dec4_concat")  # the last (stride-1) level now has a skip
    assert [tuple(t.shape[1:]) for t in concat.input] == [(64, 32, 24), (64, 32, 8)]
    # two 3x3 convs (the preprocessed X-ray's 3 channels -> 8, 8 -> 8, no bias) + 2 BatchNorms,
    # and dec4's first conv reads 8 more channels
    extra = 9 * 3 * 8 + 9 * 8 * 8 + 2 * 4 * 8 + 9 * 8 * 16
    assert skip.count_params() - plain.count_params() == extra
    x = np.random.default_rng(0).random((1, 64, 32, 1)).astype("float32")
    assert np.isfinite(skip.predict(x, verbose=0)).all()
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="full_res_skip"):
            lite0_unet((64, 32, 1), weights=None, full_res_skip=bad)
    wide = lite0_unet((64, 32, 1), weights=None, decoder_filters=(32, 32, 32, 32, 32))
    assert wide.get_layer("dec4_conv1").output.shape[-1] == 32
    for bad in ((8, 8, 8, 8), (8, 8, 8, 8, 0), (8, 8, 8, 8, 2.0)):
        with pytest.raises(ValueError, match="decoder_filters"):
            lite0_unet((64, 32, 1), weights=None, decoder_filters=bad)
