"""The paper's dense head, its training, patient-grouped cross-validation, thresholds; Grad-CAM."""

from __future__ import annotations

import keras
import matplotlib
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from spinelib.cls import cv, heads
from spinelib.cls.gradcam import grad_cam, last_conv_layer_name, overlay_heatmap

matplotlib.use("Agg")


def _separable(n_patients=24, per_patient=2, d=12, seed=0):
    """Two images per patient; the label shifts the first 3 features (a learnable signal)."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"p{i:02d}" for i in range(n_patients)], per_patient)
    y_patient = np.arange(n_patients) % 2
    y = np.repeat(y_patient, per_patient)
    X = rng.normal(size=(len(y), d)).astype(np.float32)
    X[:, :3] += 2.0 * y[:, None]
    return X, y, groups


def test_paper_head_parameter_count_from_shapes():
    n = 2 * 16 * 8 * 2048
    assert n == 524_288
    assert heads.head_parameter_count(n) == heads.PAPER_HEAD_PARAMS == 10_486_045
    head = heads.paper_head(n)
    assert head.count_params() == 10_486_045
    assert [l.count_params() for l in head.layers if l.weights] == [10_485_780, 252, 13]  # the paper's Figure 6
    two = heads.two_view_head(heads.PAPER_FEATURE_SHAPE, heads.PAPER_FEATURE_SHAPE)
    assert two.count_params() == 10_486_045
    assert [tuple(i.shape[1:]) for i in two.inputs] == [(16, 8, 2048)] * 2


def test_two_view_head_equals_flattened_concatenation():
    ap = np.random.default_rng(0).random((3, 2, 1, 4)).astype(np.float32)
    lat = np.random.default_rng(1).random((3, 2, 1, 4)).astype(np.float32)
    two = heads.two_view_head(ap.shape[1:], lat.shape[1:])
    flat = heads.paper_head(16)
    flat.set_weights(two.get_weights())
    np.testing.assert_allclose(np.asarray(two([ap, lat])), np.asarray(flat(heads.flatten_features((ap, lat)))), atol=1e-6)


def test_head_arguments_are_checked():
    with pytest.raises(ValueError, match="n_features"):
        heads.paper_head(0)
    with pytest.raises(ValueError, match="hidden"):
        heads.paper_head(4, hidden=(20, 0))
    with pytest.raises(ValueError, match="dropout"):
        heads.paper_head(4, dropout=1.0)


def test_train_head_learns_and_decays_the_learning_rate():
    X, y, _ = _separable()
    model, hist = heads.train_head(X[:36], y[:36], X[36:], y[36:], epochs=20, batch_size=4, lr=3e-3, seed=0)
    assert set(hist) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(hist["loss"]) == 20 and hist["loss"][-1] < 0.5 * hist["loss"][0]
    prob = model.predict(X[36:], verbose=0).ravel()
    assert roc_auc_score(y[36:], prob) > 0.85
    lr_end = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert 3e-4 * 0.9 < lr_end < 3e-4 * 1.1  # a tenth of the initial rate at the end of the run


def test_train_head_is_deterministic_for_a_seed():
    X, y, _ = _separable(n_patients=10)
    preds = [heads.train_head(X, y, epochs=3, batch_size=4, lr=1e-2, seed=7)[0].predict(X, verbose=0) for _ in range(2)]
    np.testing.assert_array_equal(preds[0], preds[1])


def test_train_head_rejects_bad_input():
    X, y, _ = _separable(n_patients=4)
    with pytest.raises(ValueError, match="labels"):
        heads.train_head(X, y + 1, epochs=1)
    with pytest.raises(ValueError, match="labels for"):
        heads.train_head(X, y[:-1], epochs=1)
    with pytest.raises(ValueError, match="both"):
        heads.train_head(X, y, X_val=X, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        heads.train_head(X, y, epochs=0)


def test_cross_validate_keeps_patients_on_one_side():
    X, y, groups = _separable()
    df = cv.cross_validate(X, y, groups, k=3, fit_kwargs={"epochs": 12, "batch_size": 4, "lr": 5e-3}, progress=False)
    assert list(df.columns) == ["index", "patient_id", "fold", "y_true", "prob"]
    assert len(df) == len(y) and df["index"].tolist() == list(range(len(y)))
    assert df.groupby("patient_id")["fold"].nunique().max() == 1  # a patient is never on both sides
    assert sorted(df["fold"].unique()) == [0, 1, 2]
    np.testing.assert_array_equal(df["y_true"], y)
    assert df["prob"].between(0, 1).all()
    assert roc_auc_score(df["y_true"], df["prob"]) > 0.85
    assert len(df.attrs["histories"]) == 3


def test_cross_validate_two_view_model_and_logistic_share_folds():
    X, y, groups = _separable(n_patients=12)
    ap, lat = X[:, :6].reshape(-1, 2, 3, 1), X[:, 6:].reshape(-1, 2, 3, 1)
    df = cv.cross_validate((ap, lat), y, groups, k=3, make_model=lambda: heads.two_view_head(ap.shape[1:], lat.shape[1:]),
                          fit_kwargs={"epochs": 2, "batch_size": 8}, seed=3, progress=False)
    lg = cv.logistic_cv((ap, lat), y, groups, k=3, seed=3, progress=False)
    np.testing.assert_array_equal(df["fold"], lg["fold"])
    assert roc_auc_score(lg["y_true"], lg["prob"]) > 0.85
    assert len(lg.attrs["models"]) == 3


def test_logistic_cv_checks_groups():
    X, y, groups = _separable(n_patients=6)
    with pytest.raises(ValueError, match="patient ids"):
        cv.logistic_cv(X, y, groups[:-1], k=2)


def test_choose_threshold():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.4, 0.8, 0.9])
    # Youden: at 0.8 -> TPR 2/3, FPR 0 (J=0.667); at 0.4 -> TPR 1, FPR 1/3 (J=0.667): tie -> highest
    assert cv.choose_threshold(y, p) == pytest.approx(0.8)
    assert cv.choose_threshold(y, p, "f1") == pytest.approx(0.4)  # F1 0.857 beats 0.8 at 0.8
    assert cv.choose_threshold([0, 1], [0.3, 0.7]) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="both classes"):
        cv.choose_threshold([1, 1], [0.3, 0.7])
    with pytest.raises(ValueError, match="criterion"):
        cv.choose_threshold(y, p, "accuracy")


# ------------------------------------------------------------------------------------ Grad-CAM

def _bright_square_cnn():
    """A CNN whose score is the mean brightness: Grad-CAM must point at the bright square."""
    inp = keras.Input((32, 16, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="features")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inp, out)
    k = np.zeros((3, 3, 1, 2), np.float32)
    k[1, 1, 0, :] = 1.0
    model.get_layer("features").set_weights([k, np.zeros(2, np.float32)])
    model.layers[-1].set_weights([np.ones((2, 1), np.float32), np.zeros(1, np.float32)])
    return model


def test_grad_cam_points_at_the_evidence():
    model = _bright_square_cnn()
    image = np.zeros((32, 16), np.float32)
    image[4:10, 2:8] = 1.0
    assert last_conv_layer_name(model) == "features"
    heat = grad_cam(model, image)
    assert heat.shape == image.shape and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() == pytest.approx(1.0) and heat.std() > 0.1
    assert heat[4:10, 2:8].mean() > 0.8 > 0.05 > heat[20:, 10:].mean()


def test_grad_cam_on_random_cnn_and_errors(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((24, 24, 3)),
        keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(4, 3, activation="relu", name="c2"),
        keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    image = np.random.default_rng(0).random((24, 24, 3)).astype(np.float32)
    heat = grad_cam(model, image, layer_name="c1", class_index=2)
    assert heat.shape == (24, 24) and heat.std() > 0
    with pytest.raises(ValueError, match="class_index"):
        grad_cam(model, image, class_index=3)
    with pytest.raises(ValueError, match="no layer"):
        grad_cam(model, image, layer_name="nope")
    with pytest.raises(ValueError, match="does not fit"):
        grad_cam(model, image[:10])
    fig = overlay_heatmap(image[..., 0], heat, title="test")
    assert fig.axes[0].get_title() == "test"
    fig.savefig(tmp_path / "cam.png")
    assert (tmp_path / "cam.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="differs"):
        overlay_heatmap(image, heat[:5])


def _small_cnn():
    """A CNN with every kind of state a fold's fresh network brings: batch-norm statistics,
    dropout and augmentation seeds, and auto-named layers."""
    inputs = keras.Input((8, 6, 1))
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    x = keras.layers.Dropout(0.3)(keras.layers.Dense(6, activation="relu")(x))
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


@pytest.mark.parametrize("net", ["paper head", "cnn"])
def test_a_compiled_network_reused_across_folds_gives_every_fold_what_a_fresh_one_gives(net):
    X, y, _ = _separable(n_patients=14, d=48)
    if net == "cnn":
        X = X.reshape(-1, 8, 6, 1)
    folds = [np.arange(0, 20), np.arange(6, 28), np.arange(2, 17)]  # three training sets of different sizes
    fit = {"epochs": 3, "batch_size": 4, "lr": 3e-3}

    def run(reuse):
        out = []
        for f, train in enumerate(folds):
            fresh = _small_cnn() if net == "cnn" else None
            model, hist = heads.train_head(X[train], y[train], X[:8], y[:8], seed=f, model=fresh, reuse=reuse, **fit)
            lr_end = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
            out.append((heads.predict_head(model, X), hist["loss"], lr_end, id(model)))
        return out

    keras.utils.set_random_seed(11)
    plain = run(None)
    keras.utils.set_random_seed(11)
    reuse = heads.FoldModel()
    shared = run(reuse)
    assert reuse.folds_reused == 2 and len({m for *_, m in shared}) == 1  # one network, compiled once
    for (p0, l0, lr0, _), (p1, l1, lr1, _) in zip(plain, shared):
        np.testing.assert_array_equal(p0, p1)  # the same predictions, bit for bit
        assert l0 == l1 and lr0 == lr1  # the same losses, and each fold decays over its own steps
    assert len({round(lr, 9) for *_, lr, _ in plain}) == 1  # every fold ends at a tenth of its rate


def test_a_network_of_another_shape_is_compiled_afresh():
    X, y, _ = _separable(n_patients=8)
    reuse = heads.FoldModel()
    first, _ = heads.train_head(X, y, epochs=1, batch_size=4, reuse=reuse)
    second, _ = heads.train_head(X[:, :6], y, epochs=1, batch_size=4, reuse=reuse)
    third, _ = heads.train_head(X[:, :6], y, epochs=1, batch_size=4, lr=1e-3, reuse=reuse)  # other settings
    assert first is not second and second is not third and reuse.folds_reused == 0
    fourth, _ = heads.train_head(X[:, :6], y, epochs=1, batch_size=4, lr=1e-3, reuse=reuse)
    assert fourth is third and reuse.folds_reused == 1
