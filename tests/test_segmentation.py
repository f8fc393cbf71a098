"""Augmentation, data pipeline, training (overfit + resume), post-processing and inference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

keras = pytest.importorskip("keras")

from spinelib.seg.inference import postprocess, predict, predict_folder
from spinelib.seg.training import (
    augment_pair,
    cosine_lr,
    make_dataset,
    train_segmentation,
)
from spinelib.seg.unet import unet
from spinelib.viz import plot_history

H, W = 64, 32


def discs(n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs of random centre and radius on noise; masks are the discs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    images = rng.normal(0.2, 0.05, (n, H, W)).astype(np.float32)
    masks = np.zeros((n, H, W, 1), np.float32)
    for i in range(n):
        cy, cx, r = rng.integers(16, 48), rng.integers(10, 22), rng.integers(5, 9)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        images[i][disc] += 0.6
        masks[i, ..., 0] = disc
    return np.clip(images, 0, 1)[..., None], masks


def bright_square():
    image = np.full((H, W, 1), 0.1, np.float32)
    image[20:36, 8:22] = 0.9
    return image, (image > 0.5).astype(np.float32)


# ---------------------------------------------------------------- augmentation


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 7])
def test_augmentation_keeps_image_and_mask_aligned(seed):
    image, mask = bright_square()
    aug_image, aug_mask = (t.numpy() for t in augment_pair(image, mask, seed, flip=True, rotation=7, translation=0.1))
    assert aug_image.shape == image.shape and aug_mask.shape == mask.shape
    assert set(np.unique(aug_mask)) <= {0.0, 1.0}  # nearest neighbour: still binary
    assert 0.0 <= aug_image.min() and aug_image.max() <= 1.0
    m = aug_mask[..., 0] > 0.5
    assert m.sum() > 0.7 * mask.sum()  # the square is still (mostly) in the image
    bright = aug_image[..., 0] > (aug_image[m].mean() + aug_image[~m].mean()) / 2
    assert (bright & m).sum() / (bright | m).sum() > 0.9  # mask sits on the bright pixels
    assert aug_image[m].min() > aug_image[~m].max() - 0.05 or aug_image[m].mean() > aug_image[~m].mean() + 0.5


def test_augmentation_is_deterministic_and_random_across_seeds():
    image, mask = bright_square()
    a1, m1 = augment_pair(image, mask, 5)
    a2, m2 = augment_pair(image, mask, 5)
    np.testing.assert_array_equal(a1.numpy(), a2.numpy())
    np.testing.assert_array_equal(m1.numpy(), m2.numpy())
    a3, m3 = augment_pair(image, mask, 6)
    assert not np.array_equal(a1.numpy(), a3.numpy()) and not np.array_equal(m1.numpy(), m3.numpy())
    # every change off: the identity
    off = dict(rotation=0, scale=0, translation=0, flip=False, brightness=0, contrast=0, gamma=0)
    a0, m0 = augment_pair(image, mask, 5, **off)
    np.testing.assert_allclose(a0.numpy(), image, atol=1e-6)
    np.testing.assert_array_equal(m0.numpy(), mask)
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment_pair(image, mask, 0, shear=3)


def test_flip_only_mirrors_image_and_masks():
    image, mask = bright_square()
    off = dict(rotation=0, scale=0, translation=0, brightness=0, contrast=0, gamma=0)
    flipped = [s for s in range(20) if not np.allclose(augment_pair(image, mask, s, flip=True, **off)[0], image)]
    assert flipped  # some seeds flip (probability 1/2)
    a, m = (t.numpy() for t in augment_pair(image, mask, flipped[0], flip=True, **off))
    np.testing.assert_allclose(a, image[:, ::-1], atol=1e-6)
    np.testing.assert_array_equal(m, mask[:, ::-1])


def test_make_dataset_batches_and_is_seeded():
    x, y = discs(6)
    ds = make_dataset(x, y, batch_size=4, shuffle=True, augment=True, seed=3)
    epoch1 = [b[0].numpy() for b in ds]
    epoch2 = [b[0].numpy() for b in ds]
    assert [b.shape for b in epoch1] == [(4, H, W, 1), (2, H, W, 1)]
    again = [b[0].numpy() for b in make_dataset(x, y, batch_size=4, shuffle=True, augment=True, seed=3)]
    np.testing.assert_array_equal(epoch1[0], again[0])  # same seed, same batches
    assert not np.array_equal(epoch1[0], epoch2[0])  # a new order/augmentation each epoch
    plain = next(iter(make_dataset(x, y, batch_size=6)))
    np.testing.assert_array_equal(plain[0].numpy(), x)  # no shuffle, no augmentation: the data
    with pytest.raises(ValueError, match="differ in N, H or W"):
        make_dataset(x, y[:5])


# ---------------------------------------------------------------- training


def test_tiny_unet_overfits_discs(tmp_path):
    x, y = discs(8)
    keras.utils.set_random_seed(0)
    model = unet((H, W, 1), filters=8, depth=3)
    res = train_segmentation(model, x, y, x, y, loss="dice", epochs=30, batch_size=4, out_dir=tmp_path,
                             lr=3e-3, patience=30, verbose=0)
    assert res.best_val_dice > 0.8
    assert res.history["val_dice"].iloc[-5:].max() > 0.8 > res.history["val_dice"].iloc[0]
    assert res.best_model_path.exists() and res.last_model_path.exists()
    assert len(res.history) == 30 and res.seconds_per_epoch > 0
    best = keras.models.load_model(res.best_model_path, compile=False)
    prob = predict(best, x)
    from spinelib.seg.metrics import dice

    assert np.mean([dice(t, p) for t, p in zip(y, prob)]) == pytest.approx(res.best_val_dice, abs=1e-4)
    fig = plot_history(res.history, title="discs")
    assert len(fig.axes) == 2 and len(fig.axes[1].lines) == 2


def test_training_resumes_from_last_checkpoint(tmp_path):
    x, y = discs(8)
    kw = dict(loss="paper", batch_size=4, out_dir=tmp_path, patience=10, verbose=0)
    keras.utils.set_random_seed(0)
    first = train_segmentation(unet((H, W, 1), filters=4, depth=3), x, y, x[:4], y[:4], epochs=2, **kw)
    assert first.initial_epoch == 0 and len(first.history) == 2
    # a crash after the CSV row of epoch 3 but before its checkpoint: the extra row must go
    extra = pd.concat([first.history, first.history.iloc[[-1]].assign(epoch=2)])
    extra.to_csv(tmp_path / "history.csv", index=False)
    model = unet((H, W, 1), filters=4, depth=3)  # a fresh process builds a fresh model
    second = train_segmentation(model, x, y, x[:4], y[:4], epochs=4, **kw)
    assert second.initial_epoch == 2
    assert second.history["epoch"].tolist() == [0, 1, 2, 3]  # 4 rows, not 6
    assert int(second.model.optimizer.iterations) == 4 * 2  # Adam state restored: 2 steps/epoch
    third = train_segmentation(unet((H, W, 1), filters=4, depth=3), x, y, x[:4], y[:4], epochs=4, **kw)
    assert third.train_seconds == 0.0 and len(third.history) == 4  # nothing left to do
    with pytest.raises(ValueError, match="parameters"):
        train_segmentation(unet((H, W, 1), filters=8, depth=3), x, y, x[:4], y[:4], epochs=5, **kw)


def test_cosine_schedule_decays_and_survives_a_resume(tmp_path):
    assert cosine_lr(0, 5, 1e-3) == pytest.approx(1e-3)
    assert cosine_lr(4, 5, 1e-3) == pytest.approx(1e-5)
    assert cosine_lr(2, 5, 1e-3) == pytest.approx(0.5 * (1e-3 + 1e-5))
    rates = [cosine_lr(e, 5, 1e-3) for e in range(5)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    with pytest.raises(ValueError, match="epoch must be in"):
        cosine_lr(5, 5, 1e-3)
    x, y = discs(4)
    kw = dict(loss="dice", batch_size=4, out_dir=tmp_path, patience=10, verbose=0, lr=1e-3, lr_schedule="cosine")

    class Crash(keras.callbacks.Callback):  # the process dies during epoch 3 of 5
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    keras.utils.set_random_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train_segmentation(unet((H, W, 1), filters=2, depth=2), x, y, x, y, epochs=5, callbacks=[Crash()], **kw)
    done = train_segmentation(unet((H, W, 1), filters=2, depth=2), x, y, x, y, epochs=5, **kw)
    assert done.initial_epoch == 2
    np.testing.assert_allclose(done.history["learning_rate"], rates, rtol=1e-5)  # resumed on the same curve
    with pytest.raises(ValueError, match="lr_schedule"):
        train_segmentation(unet((H, W, 1), filters=2, depth=2), x, y, x, y, epochs=1,
                           **{**kw, "out_dir": tmp_path / "b", "lr_schedule": "step"})


def _black_unet():
    """A U-Net whose output bias is -50: it paints every pixel black, and at lr 1e-9 keeps doing so."""
    model = unet((H, W, 1), filters=2, depth=2)
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel * 0, bias - 50])
    return model


def test_a_run_that_paints_black_stops_after_stop_black_epochs_and_counts_across_a_resume(tmp_path):
    x, y = discs(4)
    kw = dict(loss="dice", batch_size=4, patience=10, verbose=0, lr=1e-9, epochs=6)
    black = train_segmentation(_black_unet(), x, y, x, y, out_dir=tmp_path / "a", stop_black=3, **kw)
    assert black.stopped_early and len(black.history) == 3
    assert (black.history["val_white"] == 0).all()
    assert train_segmentation(_black_unet(), x, y, x, y, out_dir=tmp_path / "a", stop_black=3, **kw).train_seconds == 0.0

    class Crash(keras.callbacks.Callback):  # the process dies in its second epoch, the first (black) one saved
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_segmentation(_black_unet(), x, y, x, y, out_dir=tmp_path / "b", stop_black=2, callbacks=[Crash()], **kw)
    resumed = train_segmentation(_black_unet(), x, y, x, y, out_dir=tmp_path / "b", stop_black=2, **kw)
    assert resumed.initial_epoch == 1 and resumed.stopped_early and len(resumed.history) == 2  # 1 before + 1 after

    painting = train_segmentation(unet((H, W, 1), filters=2, depth=2), x, y, x, y, out_dir=tmp_path / "c",
                                  stop_black=1, **{**kw, "epochs": 3})
    assert not painting.stopped_early and len(painting.history) == 3  # sigmoid(0) = 0.5: white, never stopped
    with pytest.raises(ValueError, match="stop_black"):
        train_segmentation(_black_unet(), x, y, x, y, out_dir=tmp_path / "d", stop_black=-1, **kw)


def test_train_segmentation_rejects_bad_input(tmp_path):
    x, y = discs(4)
    model = unet((H, W, 1), filters=2, depth=2, n_classes=2)
    with pytest.raises(ValueError, match="1 channel"):
        train_segmentation(model, x, y, x, y, epochs=1, out_dir=tmp_path, verbose=0)
    with pytest.raises(ValueError, match="epochs"):
        train_segmentation(model, x, np.repeat(y, 2, -1), x, np.repeat(y, 2, -1), epochs=0, out_dir=tmp_path)


def test_accumulated_micro_batches_step_like_the_whole_batch(tmp_path):
    """accumulate=2 feeds batches of 4 and steps Adam once per 8 X-rays on their mean gradient: with
    a per-pixel mean loss and no batch norm, the weights follow the batch-8 run's."""
    x, y = discs(16)
    runs = {}
    for accumulate in (1, 2):
        keras.utils.set_random_seed(0)
        model = unet((H, W, 1), filters=4, depth=3)
        initial = model.get_weights()
        runs[accumulate] = train_segmentation(model, x, y, x[:4], y[:4], loss="bce", epochs=2, batch_size=8,
                                              out_dir=tmp_path / str(accumulate), verbose=0, accumulate=accumulate)
    whole, split = runs[1].model, runs[2].model
    assert int(whole.optimizer.iterations) == int(split.optimizer.iterations) == 2 * 2  # updates, not micro-batches
    assert split.optimizer.gradient_accumulation_steps == 2
    assert max(float(np.abs(a - b).max()) for a, b in zip(whole.get_weights(), initial)) > 1e-3  # they moved
    for a, b in zip(whole.get_weights(), split.get_weights()):
        np.testing.assert_allclose(a, b, atol=2e-5)
    assert runs[2].history["epoch"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="positive integer"):
        train_segmentation(unet((H, W, 1), filters=4, depth=3), x, y, x, y, epochs=1, accumulate=0,
                           out_dir=tmp_path / "bad", verbose=0)
    with pytest.raises(ValueError, match="divide batch_size"):
        train_segmentation(unet((H, W, 1), filters=4, depth=3), x, y, x, y, epochs=1, batch_size=8, accumulate=3,
                           out_dir=tmp_path / "bad", verbose=0)


# ---------------------------------------------------------------- post-processing and inference


def test_postprocess_removes_small_blobs_and_fills_holes():
    prob = np.zeros((100, 100), np.float32)
    prob[10:50, 10:50] = 0.9
    prob[25:30, 25:30] = 0.1  # a hole
    prob[80:82, 80:82] = 0.8  # 4 px blob, below 0.05 % of 10,000 px = 5 px: removed
    prob[60:70, 60:75] = 0.7  # 150 px blob, kept
    out = postprocess(prob)
    assert out.dtype == bool and out.shape == prob.shape
    assert out[25:30, 25:30].all()  # hole filled
    assert not out[80:82, 80:82].any()  # small blob removed
    assert out[60:70, 60:75].all()
    assert out.sum() == 40 * 40 + 150
    largest = postprocess(prob, keep_largest=1)
    assert largest.sum() == 40 * 40
    kept_hole = postprocess(prob, fill_holes=False, min_size_fraction=0)
    assert not kept_hole[25:30, 25:30].any() and kept_hole[80:82, 80:82].all()
    stack = postprocess(np.stack([prob, 1 - prob], -1)[None])
    assert stack.shape == (1, 100, 100, 2) and stack[0, ..., 0].sum() == out.sum()
    with pytest.raises(ValueError, match="threshold"):
        postprocess(prob, threshold=1.5)


def test_predict_with_flip_tta_averages_both_views():
    keras.utils.set_random_seed(1)
    model = unet((32, 16, 1), filters=2, depth=2, n_classes=2)
    x = np.random.default_rng(0).random((3, 32, 16, 1), dtype=np.float32)
    plain = predict(model, x)
    tta = predict(model, x[..., 0], tta_flip=True)
    mirrored = model.predict(x[:, :, ::-1], verbose=0)[:, :, ::-1]
    assert plain.shape == tta.shape == (3, 32, 16, 2)
    np.testing.assert_allclose(tta, (plain + mirrored) / 2, atol=1e-5)


def test_predict_folder_writes_masks_at_the_original_size(tmp_path):
    from PIL import Image

    folder = tmp_path / "xrays"
    folder.mkdir()
    rng = np.random.default_rng(0)
    sizes = {"p1.png": (100, 50), "p2.jpg": (130, 70)}
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an x-ray")
    keras.utils.set_random_seed(0)
    model = unet((32, 16, 1), filters=2, depth=2, n_classes=3)
    structures = ["Ap_Vertebra", "Ap_Pedicle", "Ap_Spinous_Process"]
    df = predict_folder(model, folder, tmp_path / "masks", structures=structures, threshold=0.5, progress=False)
    assert len(df) == 6 and set(df.structure) == set(structures)
    for name, (h, w) in sizes.items():
        for s in structures:
            path = tmp_path / "masks" / name.rsplit(".", 1)[0] / f"{s}.png"
            with Image.open(path) as im:
                assert im.size == (w, h)
    assert not list((tmp_path / "masks").rglob("*.tmp"))  # atomic writes leave no temp files
    with pytest.raises(FileNotFoundError, match="does not exist"):
        predict_folder(model, tmp_path / "nowhere", tmp_path / "masks", structures=structures)
    with pytest.raises(ValueError, match="structure name"):
        predict_folder(model, folder, tmp_path / "masks", structures=["Ap_Vertebra"], progress=False)


def test_compiled_forward_matches_the_eager_call_traces_once_and_is_freed_with_its_model():
    import gc
    import weakref

    from spinelib.seg import inference

    gc.collect()
    cached_before = len(inference._FORWARD)
    model = unet((H, W, 1), filters=4, depth=2, n_classes=2, batch_norm=True)
    x = np.random.default_rng(1).random((5, H, W, 1)).astype(np.float32)
    eager = model(x, training=False).numpy()
    forward = inference.compiled_forward(model)
    assert inference.compiled_forward(model) is forward  # cached per model
    np.testing.assert_allclose(forward(x).numpy(), eager, atol=1e-5)
    np.testing.assert_allclose(predict(model, x, batch_size=2), eager, atol=1e-5)  # batches of 2, 2 and 1
    assert forward.experimental_get_tracing_count() == 1  # one graph for every batch size
    with pytest.raises(ValueError, match="at least one image"):
        predict(model, x[:0])
    ref = weakref.ref(model)
    del model, forward
    gc.collect()
    assert ref() is None and len(inference._FORWARD) <= cached_before
