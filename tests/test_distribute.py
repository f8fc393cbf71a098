"""Scale-out (issue 16): :func:`spinelib.seg.training.train_segmentation` under
``tf.distribute.MirroredStrategy`` over two logical CPU devices gives the single-device run.

TensorFlow splits a CPU into logical devices only before it initialises, so the runs happen in a
fresh Python process: this file run as a script (``python tests/test_distribute.py OUT.json``)
trains a tiny U-Net twice on the same data from the same weights, once on the default strategy and
once mirrored over ``/cpu:0`` and ``/cpu:1``, and writes what the tests below compare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EPOCHS, BATCH, SIZE = 3, 4, (16, 16)


def tiny_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random X-rays and two mask channels that follow them (learnable, not trivial)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random((n, *SIZE)), sigma=(0, 2, 2)).astype(np.float32)
    x = (x - x.min()) / (x.max() - x.min())
    y = np.stack([x > 0.55, x < 0.4], axis=-1).astype(np.float32)
    return x[..., None], y


def child(out: Path) -> None:
    """Runs in its own process: the logical devices first, then TensorFlow's first use."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from spinelib.seg.training import epoch_dataset, replica_dataset, train_segmentation
    from spinelib.seg.unet import unet

    x, y = tiny_data(8, 0)
    vx, vy = tiny_data(4, 1)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    record: dict = {"replicas": mirrored.num_replicas_in_sync}

    # the data: replica r of step k holds the r-th half of the single-device batch k, augmented alike
    single_ds, steps = epoch_dataset(x, y, BATCH, epochs=2, augment=True, seed=3)
    dist_ds, dist_steps = replica_dataset(mirrored, x, y, BATCH, epochs=2, augment=True, seed=3)
    gaps = []  # per step: the largest pixel difference (0: augmentation is the same to the bit)
    for (sx, _), (dx, _) in zip(single_ds, dist_ds):
        halves = [t.numpy() for t in mirrored.experimental_local_results(dx)]
        same_shape = len(halves) == 2 and [len(h) for h in halves] == [BATCH // 2] * 2
        gaps.append(float(np.abs(np.concatenate(halves) - sx.numpy()).max()) if same_shape else float("inf"))
    record |= {"steps": [steps, dist_steps], "batch_gaps": gaps}

    # training: the same initial weights, data, seed and loss on one device and on two replicas
    def build():
        keras.utils.set_random_seed(0)
        return unet((*SIZE, 1), filters=4, depth=2, n_classes=2, name="tiny")

    single = build()
    initial = single.get_weights()
    kwargs = dict(loss="dice", epochs=EPOCHS, batch_size=BATCH, seed=0, augment=True, patience=EPOCHS, verbose=0)
    r1 = train_segmentation(single, x, y, vx, vy, out_dir=out.parent / "single", **kwargs)
    with mirrored.scope():
        twin = build()
    twin.set_weights(initial)
    r2 = train_segmentation(twin, x, y, vx, vy, out_dir=out.parent / "mirrored", strategy=mirrored, **kwargs)
    cols = ["loss", "dice", "val_loss", "val_dice"]
    record["history"] = {"single": r1.history[cols].to_dict("list"), "mirrored": r2.history[cols].to_dict("list")}
    moved = [float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), initial)]
    differ = [float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), twin.get_weights())]
    record |= {"max_weight_change": max(moved), "max_weight_difference": max(differ),
               "state_config": json.loads((out.parent / "mirrored" / "train_state.json").read_text())["config"]}

    # no strategy given: the model's own (code that builds its model inside a surrounding scope)
    with mirrored.scope():
        inside = build()
        train_segmentation(inside, x, y, vx, vy, out_dir=out.parent / "in_scope", **kwargs)
    record["in_scope_config"] = json.loads((out.parent / "in_scope" / "train_state.json").read_text())["config"]

    # a model built outside the strategy's scope is refused with a clear message
    try:
        train_segmentation(build(), x, y, vx, vy, out_dir=out.parent / "refused", strategy=mirrored, **kwargs)
        record["refused"] = None
    except ValueError as e:
        record["refused"] = str(e)
    out.write_text(json.dumps(record))


@pytest.fixture(scope="module")
def mirrored_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("distribute") / "record.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(out)], capture_output=True, text=True,
                          timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_replica_batches_are_the_single_device_batches_split(mirrored_run):
    assert mirrored_run["replicas"] == 2
    assert mirrored_run["steps"] == [2, 2]
    assert len(mirrored_run["batch_gaps"]) == 4 and max(mirrored_run["batch_gaps"]) == 0.0


@pytest.mark.slow
def test_mirrored_training_matches_the_single_device_run(mirrored_run):
    h = mirrored_run["history"]
    for col in ("loss", "dice", "val_loss", "val_dice"):
        np.testing.assert_allclose(h["mirrored"][col], h["single"][col], atol=1e-4, err_msg=col)
    assert mirrored_run["max_weight_change"] > 1e-3  # training moved the weights ...
    assert mirrored_run["max_weight_difference"] < 1e-4  # ... and both runs to the same place
    assert mirrored_run["state_config"]["replicas"] == 2
    assert mirrored_run["state_config"]["strategy"] == "MirroredStrategy"


@pytest.mark.slow
def test_a_model_built_in_a_strategy_scope_trains_under_it_by_default(mirrored_run):
    assert mirrored_run["in_scope_config"]["replicas"] == 2


@pytest.mark.slow
def test_a_model_built_outside_the_strategy_is_refused(mirrored_run):
    assert mirrored_run["refused"] is not None and "strategy.scope()" in mirrored_run["refused"]


def test_replica_dataset_checks_the_global_batch():
    import tensorflow as tf

    from spinelib.seg.training import replica_dataset

    x, y = tiny_data(4, 0)
    strategy = tf.distribute.get_strategy()  # one replica: any batch size divides
    ds, steps = replica_dataset(strategy, x, y, batch_size=3, epochs=1)
    assert steps == 2 and [len(b[0]) for b in ds] == [3, 1]
    ds, steps = replica_dataset(strategy, x, y, batch_size=3, training=False)  # repeats: one pass is `steps`
    assert steps == 2 and np.array_equal(np.concatenate([b[0].numpy() for b in ds.take(steps)]), x)
    with pytest.raises(ValueError, match="batch_size"):
        replica_dataset(strategy, x, y, batch_size=0)


class TwoReplicas:
    """Just enough of a two-replica strategy for replica_dataset: one worker, slices in turn."""

    num_replicas_in_sync = 2

    def distribute_datasets_from_function(self, dataset_fn):
        import tensorflow as tf

        return dataset_fn(tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                                     num_replicas_in_sync=2))


def test_validation_batches_split_evenly_first_and_never_leave_a_replica_empty():
    from spinelib.seg.training import replica_dataset

    x, y = tiny_data(5, 0)
    ds, steps = replica_dataset(TwoReplicas(), x, y, batch_size=4, training=False)
    sizes = [len(b[0]) for b in ds.take(2 * steps)]  # two slices a step
    assert steps == 2 and sizes == [1, 1, 2, 1]  # batches of 2 and 3 (not 4 and 1)
    with pytest.raises(ValueError, match="split evenly"):
        replica_dataset(TwoReplicas(), x[:3], y[:3], batch_size=4, training=False)
    with pytest.raises(ValueError, match="multiple of the 2 replicas"):
        replica_dataset(TwoReplicas(), x, y, batch_size=3)


def test_default_strategy_is_the_models_own(tmp_path):
    import keras
    import tensorflow as tf

    from spinelib.seg.training import check_strategy
    from spinelib.seg.unet import unet

    model = unet((16, 16, 1), filters=2, depth=2)
    assert check_strategy(model) is tf.distribute.get_strategy()
    with pytest.raises(TypeError, match="tf.distribute.Strategy"):
        check_strategy(model, strategy="mirrored")
    keras.backend.clear_session()


if __name__ == "__main__":
    child(Path(sys.argv[1]))
