"""Training the U-Net: data pipeline, augmentation, training loop, on one device or several.

Read top to bottom, in the order data flows:

1. :func:`spinelib.seg.augment.augment_pair` (its own module; importable from here too) - one
   random affine warp applied identically to an X-ray and its masks, plus intensity changes on the
   X-ray only; seeded, stateless, runs inside ``tf.data``.
2. :func:`make_dataset` - arrays -> cached, shuffled, augmented, batched, prefetched ``tf.data``;
   :func:`epoch_dataset` - the training batches, each epoch a function of ``(seed, epoch)``;
   :func:`replica_dataset` - the same batches split across the replicas of a ``tf.distribute`` strategy.
3. :func:`train_segmentation` - Adam + a loss from :mod:`spinelib.seg.losses`, checkpoints on
   validation Dice, early stopping, learning-rate decay, ``history.csv``, and resume after an
   interruption from ``last.keras``; on one device or under a ``tf.distribute`` strategy
   (``MirroredStrategy`` over several GPUs, ``MultiWorkerMirroredStrategy``), :func:`check_strategy`.

Post-processing and inference are in :mod:`spinelib.seg.inference`, the loss and Dice curves in
:func:`spinelib.viz.plot_history`.

Images are ``float32`` in ``[0, 1]`` of shape ``(N, H, W, 1)``; masks ``float32`` 0/1 of shape
``(N, H, W, C)``, one channel per structure.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from spinelib.core.runs import write_json
from spinelib.seg.augment import AUGMENT_DEFAULTS, affine_matrix, augment_pair  # noqa: F401 (moved; the old path works)
from spinelib.seg.losses import get_loss
from spinelib.seg.metrics import dice_metric, white_fraction_metric


def _check_arrays(images, masks, name: str = "") -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images)
    masks = np.asarray(masks)
    if images.ndim == 3:
        images = images[..., None]
    if masks.ndim == 3:
        masks = masks[..., None]
    if images.ndim != 4 or images.shape[-1] != 1:
        raise ValueError(f"{name}images must be (N, H, W, 1) or (N, H, W), got shape {images.shape}")
    if masks.ndim != 4:
        raise ValueError(f"{name}masks must be (N, H, W, C), got shape {masks.shape}")
    if images.shape[:3] != masks.shape[:3]:
        raise ValueError(f"{name}images {images.shape} and masks {masks.shape} differ in N, H or W")
    if len(images) == 0:
        raise ValueError(f"{name}images is empty")
    return images.astype(np.float32, copy=False), masks.astype(np.float32, copy=False)


def make_dataset(
    images,
    masks,
    batch_size: int = 8,
    shuffle: bool = False,
    augment: bool | dict = False,
    seed: int = 0,
    cache: bool = True,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline of ``(image, masks)`` batches from arrays.

    ``images (N, H, W, 1)``, ``masks (N, H, W, C)``, float32. Steps: ``cache`` (the un-augmented
    examples, so any later preprocessing runs once), ``shuffle`` (whole set, seeded, a new order
    each epoch), ``augment`` (:func:`augment_pair`; ``True`` for the defaults or a dict of
    strengths) with a per-example stateless seed drawn from ``tf.data.Dataset.random(seed)``,
    batch, prefetch. The same ``seed`` gives the same sequence of batches, epoch after epoch.
    """
    images, masks = _check_arrays(images, masks)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if augment:
        strengths = augment if isinstance(augment, dict) else {}
        augment_pair(images[0], masks[0], 0, **strengths)  # fail early on bad parameters
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2, drop_remainder=True)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda pair, s: augment_pair(pair[0], pair[1], s, **strengths),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
        )
    return ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)


def epoch_plan(n: int, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """The training order and augmentation seeds of one epoch: a function of ``(seed, epoch)`` only.

    ``rng = numpy.random.default_rng([seed, epoch])``; the order is ``rng.permutation(n)`` and
    example ``k`` of the epoch gets the stateless augmentation seed ``seeds[k]`` (two int64 in
    :math:`[0, 2^{31})`). Because nothing carries over from epoch to epoch, an interrupted run
    resumed at epoch ``e`` sees exactly the batches an uninterrupted run sees at epoch ``e``.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    rng = np.random.default_rng([int(seed) % 2**63, int(epoch)])
    order = rng.permutation(int(n))
    seeds = rng.integers(0, 2**31 - 1, size=(int(n), 2), dtype=np.int64)
    return order, seeds


def _epoch_batches(n: int, batch_size: int, epochs: int, initial_epoch: int, seed: int,
                   min_rows: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(indices, seeds)`` of every batch of epochs ``initial_epoch .. epochs - 1`` (:func:`epoch_plan`);
    an epoch's last batch with fewer than ``min_rows`` rows joins the batch before it."""
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    for e in range(int(initial_epoch), int(epochs)):
        order, seeds = epoch_plan(n, seed, e)
        epoch_rows = [(order[start:start + batch_size], seeds[start:start + batch_size])
                      for start in range(0, len(order), batch_size)]
        if len(epoch_rows) > 1 and len(epoch_rows[-1][0]) < min_rows:
            (i0, s0), (i1, s1) = epoch_rows[-2:]
            epoch_rows[-2:] = [(np.concatenate([i0, i1]), np.concatenate([s0, s1]))]
        rows += epoch_rows
    return rows


def _batches_dataset(images: np.ndarray, masks: np.ndarray, rows: Sequence[tuple[np.ndarray, np.ndarray]],
                     augment: bool | dict) -> tf.data.Dataset:
    """One element per ``(indices, seeds)`` row: the gathered, optionally augmented batch."""
    strengths = augment if isinstance(augment, dict) else {}
    lengths = np.array([len(i) for i, _ in rows], dtype=np.int64)
    indices = tf.RaggedTensor.from_row_lengths(np.concatenate([i for i, _ in rows]).astype(np.int64), lengths)
    seeds = tf.RaggedTensor.from_row_lengths(np.concatenate([s for _, s in rows]).astype(np.int64), lengths)
    x, y = tf.constant(images), tf.constant(masks)

    def batch(i, s):  # one batch: indices (b,) and seeds (b, 2)
        if isinstance(i, tf.RaggedTensor):
            i, s = i.to_tensor(), s.to_tensor()
        xb, yb = tf.gather(x, i), tf.gather(y, i)
        if augment:
            xb, yb = tf.map_fn(lambda t: augment_pair(t[0], t[1], t[2], **strengths), (xb, yb, s),
                               fn_output_signature=(tf.float32, tf.float32))
        return xb, yb

    return tf.data.Dataset.from_tensor_slices((indices, seeds)).map(batch)  # sequential; prefetch overlaps it


def _check_batching(images, masks, batch_size, epochs, initial_epoch, augment) -> tuple[np.ndarray, np.ndarray]:
    images, masks = _check_arrays(images, masks)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not 0 <= int(initial_epoch) < int(epochs):
        raise ValueError(f"need 0 <= initial_epoch < epochs, got initial_epoch={initial_epoch}, epochs={epochs}")
    if augment:
        augment_pair(images[0], masks[0], 0, **(augment if isinstance(augment, dict) else {}))  # fail early
    return images, masks


def epoch_dataset(
    images,
    masks,
    batch_size: int = 8,
    epochs: int = 1,
    initial_epoch: int = 0,
    augment: bool | dict = False,
    seed: int = 0,
) -> tuple[tf.data.Dataset, int]:
    """Training batches for epochs ``initial_epoch .. epochs - 1``, and the steps per epoch.

    Epoch ``e`` visits the examples in the order of :func:`epoch_plan` ``(N, seed, e)`` and
    augments example ``k`` with that plan's seed ``k`` (:func:`augment_pair`); batches never
    straddle two epochs (the last batch of an epoch may be smaller). Pass the dataset to
    ``model.fit(..., steps_per_epoch=steps, initial_epoch=initial_epoch)``: Keras then keeps one
    iterator across epochs, and a resumed run gets the same batches as an uninterrupted one.
    """
    images, masks = _check_batching(images, masks, batch_size, epochs, initial_epoch, augment)
    rows = _epoch_batches(len(images), int(batch_size), epochs, initial_epoch, seed)
    ds = _batches_dataset(images, masks, rows, augment)
    return ds.prefetch(tf.data.AUTOTUNE), math.ceil(len(images) / int(batch_size))


def replica_dataset(
    strategy: tf.distribute.Strategy,
    images,
    masks,
    batch_size: int = 8,
    epochs: int = 1,
    initial_epoch: int = 0,
    augment: bool | dict = False,
    seed: int = 0,
    training: bool = True,
):
    """:func:`epoch_dataset` split across the replicas of ``strategy``: ``(distributed dataset, steps)``.

    ``batch_size`` is the global batch, a multiple of ``strategy.num_replicas_in_sync`` (R). Each
    global batch of :func:`epoch_dataset` (same order, same augmentation seeds) is cut into R
    consecutive slices, replica ``r`` gets slice ``r``; so the examples and their augmentation are
    those of the single-device run, and Keras' loss scaling (1/R, then the sum over replicas) gives
    the mean over the global batch. Two differences only: an epoch's last batch with fewer examples
    than replicas joins the batch before it (no replica gets an empty slice), and the slices of a
    smaller last batch may differ by one example. ``training=False``: the examples in their order,
    no augmentation, repeated (a validation set: pass ``validation_steps=steps``); its batches are
    resized so that the first splits evenly and none has fewer examples than replicas. Several workers (``MultiWorkerMirroredStrategy``): each
    builds the slices of its own replicas (``tf.distribute.InputContext``).
    """
    n_rep = int(strategy.num_replicas_in_sync)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1 or batch_size % n_rep:
        raise ValueError(f"batch_size (the global batch) must be a positive multiple of the {n_rep} replicas, "
                         f"got {batch_size!r}")
    images, masks = _check_batching(images, masks, batch_size, epochs, initial_epoch, augment and training)
    if len(images) < n_rep:
        raise ValueError(f"{len(images)} example(s) cannot be split across {n_rep} replicas")
    b = int(batch_size)
    if training:
        rows = _epoch_batches(len(images), b, epochs, initial_epoch, seed, min_rows=n_rep)
    else:  # batches of b, the last two resized so that the first splits evenly and none has < R examples
        sizes = [b] * (len(images) // b)
        left = len(images) - sum(sizes)
        if left % n_rep and left >= 2 * n_rep:
            sizes += [(left - n_rep) // n_rep * n_rep, left - (left - n_rep) // n_rep * n_rep]
        elif left % n_rep and sizes and b > n_rep:
            sizes[-1] -= n_rep
            sizes.append(left + n_rep)
        elif left:
            sizes.append(left)
        ends = np.cumsum(sizes)
        rows = [(np.arange(e - k, e), np.zeros((k, 2), np.int64)) for e, k in zip(ends, sizes)]
    if len(rows[0][0]) % n_rep:  # Keras builds the model from the first step: its slices must match
        raise ValueError(f"the first batch of {len(rows[0][0])} example(s) does not split evenly across {n_rep} "
                         f"replicas: use at least batch_size ({b}) examples, or a multiple of {n_rep}")
    steps = len(rows) // (int(epochs) - int(initial_epoch)) if training else len(rows)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        per_worker = n_rep // context.num_input_pipelines
        mine = range(context.input_pipeline_id * per_worker, (context.input_pipeline_id + 1) * per_worker)
        slices = []
        for idx, sd in rows:  # batch by batch, replica by replica: the order the replicas take them in
            parts_i, parts_s = np.array_split(idx, n_rep), np.array_split(sd, n_rep)
            slices += [(parts_i[r], parts_s[r]) for r in mine]
        ds = _batches_dataset(images, masks, slices, augment and training)
        # a validation set repeats: Keras keeps its iterator from one evaluation to the next
        return (ds if training else ds.repeat()).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(dataset_fn), steps


def check_strategy(model: keras.Model, strategy: tf.distribute.Strategy | None = None) -> tf.distribute.Strategy:
    """The strategy to train ``model`` under: ``strategy``, or by default the one the model was
    built under (else the current one). Raises ``ValueError`` when the model's variables were not
    created under it (build the model inside ``strategy.scope()``)."""
    strategy = model.distribute_strategy if strategy is None else strategy
    if not isinstance(strategy, (tf.distribute.Strategy, tf.compat.v1.distribute.Strategy)):
        raise TypeError(f"strategy must be a tf.distribute.Strategy or None, got {type(strategy).__name__}")
    try:  # the tf.Variable behind the first Keras variable
        owned = strategy.extended.variable_created_in_scope(model.weights[0].value) if model.weights else True
    except (AttributeError, TypeError):  # not a TensorFlow variable: nothing to check
        owned = True
    if not owned:
        raise ValueError(f"the model's variables were not created under this {type(strategy).__name__}: build the "
                         f"model inside `with strategy.scope():` and pass the same strategy")
    return strategy


def replica_loss(loss_fn: Callable, n_replicas: int) -> Callable:
    """``loss_fn / n_replicas``: the losses of :mod:`spinelib.seg.losses` return the batch mean, a
    scalar, which Keras does not scale for distribution (it scales per-example losses only); each
    replica's share of the gradient must be 1/R for the sum over replicas to be the batch mean."""
    def loss(y_true, y_pred):
        return loss_fn(y_true, y_pred) / n_replicas

    loss.__name__ = getattr(loss_fn, "__name__", "loss")
    return loss


DEFAULT_LR = 1e-3
"""Adam's learning rate. The paper says only "Adam"; 1e-3 is Keras's default (what
``optimizer="adam"`` gives, most likely the paper's Kaggle setting). Adam normalises each
parameter's step by its gradient's running RMS, so the unbounded scale of the paper's loss does
not change the step size."""


BEST_MODEL, LAST_MODEL, STATE_FILE, HISTORY_FILE = "best.keras", "last.keras", "train_state.json", "history.csv"


@dataclass
class TrainResult:
    """What :func:`train_segmentation` returns."""

    model: keras.Model  # the model after the last epoch (weights of last.keras)
    history: pd.DataFrame  # one row per epoch, all runs of this out_dir (history.csv)
    best_model_path: Path  # best.keras: the epoch with the highest val_dice
    last_model_path: Path  # last.keras: the last finished epoch (with optimizer state)
    train_seconds: float  # wall time of the fit in this call
    seconds_per_epoch: float  # mean epoch time in this call (NaN if no epoch ran)
    initial_epoch: int = 0  # epochs already done when this call started (resume)
    stopped_early: bool = False
    best_val_dice: float = float("nan")
    out_dir: Path = field(default_factory=Path)


class _EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` to the logs (so ``history.csv`` records it)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - self._t0
        self.seconds.append(dt)
        if logs is not None:
            logs["epoch_seconds"] = dt


class _ResumeState(keras.callbacks.Callback):
    """Each epoch: save ``last.keras`` then ``train_state.json`` (both atomically); at the start
    of a resumed run, give early stopping and the LR schedule back their counters."""

    def __init__(self, out_dir: Path, early: keras.callbacks.EarlyStopping,
                 plateau: keras.callbacks.ReduceLROnPlateau, config: dict, state: dict | None):
        super().__init__()
        self.out_dir, self.early, self.plateau, self.config, self.state = out_dir, early, plateau, config, state

    def on_train_begin(self, logs=None):
        s = self.state
        if s:  # runs after EarlyStopping/ReduceLROnPlateau reset themselves
            self.early.wait, self.early.best = s["early_wait"], s["best_val_dice"]
            self.plateau.wait, self.plateau.best = s["plateau_wait"], s["best_val_dice"]
            self.plateau.cooldown_counter = s["plateau_cooldown"]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        tmp = self.out_dir / ".last.tmp.keras"
        self.model.save(tmp)
        os.replace(tmp, self.out_dir / LAST_MODEL)
        prev_best = (self.state or {}).get("best_val_dice")
        current = logs.get("val_dice")
        best = current if prev_best is None or (current is not None and current > prev_best) else prev_best
        self.state = {
            "epoch": epoch + 1,
            "best_val_dice": None if best is None else float(best),
            "early_wait": int(self.early.wait),
            "plateau_wait": int(self.plateau.wait),
            "plateau_cooldown": int(self.plateau.cooldown_counter),
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "stopped_early": bool(self.model.stop_training),
            "config": self.config,
        }
        write_json(self.out_dir / STATE_FILE, self.state)


BLACK_FRACTION = 1e-5
"""A validation epoch whose predicted white fraction (``val_white``) is below this is *black*: fewer
than one pixel in 100,000 painted (about 4 pixels of 12 validation X-rays at 256x128)."""


class _StopWhenBlack(keras.callbacks.Callback):
    """Stops training after ``epochs`` epochs in a row that were black (:data:`BLACK_FRACTION`):
    the collapse the paper's Table 2 reports, which no later epoch of the book's runs undid.
    ``done``: black epochs that ended the history a resumed run continues."""

    def __init__(self, epochs: int, done: int = 0):
        super().__init__()
        self.epochs, self.black = int(epochs), int(done)

    def on_epoch_end(self, epoch, logs=None):
        white = (logs or {}).get("val_white")
        self.black = self.black + 1 if white is not None and white < BLACK_FRACTION else 0
        if self.black >= self.epochs:
            self.model.stop_training = True


def _trailing_black(history: pd.DataFrame) -> int:
    """How many of the last epochs of ``history`` were black (:data:`BLACK_FRACTION`)."""
    n = 0
    for white in reversed(history.get("val_white", pd.Series(dtype=float)).tolist()):
        if not white < BLACK_FRACTION:
            break
        n += 1
    return n


def _truncate_history(path: Path, n_epochs: int) -> None:
    """Keep the rows of epochs < ``n_epochs`` (an interruption can leave one row too many)."""
    if path.exists() and path.stat().st_size:
        df = pd.read_csv(path)
        if len(df) and df["epoch"].max() >= n_epochs:
            df[df["epoch"] < n_epochs].to_csv(path, index=False)


def _read_history(path: Path) -> pd.DataFrame:
    if not path.exists() or not path.stat().st_size:
        return pd.DataFrame(columns=["epoch", "loss", "dice", "val_loss", "val_dice"])
    return pd.read_csv(path)


LR_SCHEDULES = ("plateau", "cosine")


def cosine_lr(epoch: int, epochs: int, lr: float, final_fraction: float = 0.01) -> float:
    """Cosine decay per epoch: :math:`\\eta_e = \\eta_{min} + \\tfrac12(\\eta - \\eta_{min})(1 + \\cos(\\pi e / (E - 1)))`
    with :math:`\\eta_{min}` = ``final_fraction * lr``: ``lr`` at the first epoch, ``lr / 100`` at
    the last (epoch ``E - 1``)."""
    if epochs < 1 or not 0 <= epoch < epochs:
        raise ValueError(f"epoch must be in [0, {epochs}), got {epoch}")
    low = final_fraction * lr
    t = epoch / (epochs - 1) if epochs > 1 else 1.0
    return float(low + 0.5 * (lr - low) * (1.0 + math.cos(math.pi * t)))


def train_segmentation(
    model: keras.Model,
    train_images,
    train_masks,
    val_images,
    val_masks,
    loss: str | Callable = "paper",
    epochs: int = 100,
    batch_size: int = 8,
    out_dir: str | os.PathLike = "outputs/segmentation",
    lr: float = DEFAULT_LR,
    seed: int = 0,
    augment: bool | dict = False,
    patience: int = 15,
    verbose: int = 1,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    lr_schedule: str = "plateau",
    strategy: tf.distribute.Strategy | None = None,
    stop_black: int = 0,
    accumulate: int = 1,
) -> TrainResult:
    """Train ``model`` with Adam on ``loss`` (a :mod:`spinelib.seg.losses` name or a callable).

    Callbacks, all monitoring the validation Dice (``val_dice``, :func:`dice_metric`):

    - ``ModelCheckpoint`` -> ``out_dir/best.keras`` (highest ``val_dice``);
    - ``EarlyStopping`` after ``patience`` epochs without improvement;
    - the learning rate: with ``lr_schedule="plateau"`` (default) ``ReduceLROnPlateau`` halves it
      after ``max(1, patience // 3)`` epochs without improvement (down to 1e-6); with
      ``"cosine"`` it follows :func:`cosine_lr` from ``lr`` to ``lr / 100`` over ``epochs``
      (a function of the epoch alone, so a resumed run gets the same rates);
    - ``CSVLogger`` -> ``out_dir/history.csv`` (with ``epoch_seconds``, ``learning_rate`` and the
      predicted white fraction ``white``/``val_white``, :func:`white_fraction_metric`);
    - resume: every epoch ``last.keras`` (weights + optimizer state) and ``train_state.json``
      (epochs done, best ``val_dice``, callback counters) are saved atomically. Calling again
      with the same ``out_dir`` loads them into ``model`` (same architecture) and continues at
      ``initial_epoch`` up to ``epochs`` in total; a run that stopped early, or already reached
      ``epochs``, is not trained further. Each epoch's order and augmentation are a function
      of ``(seed, epoch)`` (:func:`epoch_dataset`), so an interrupted-then-resumed run ends
      with the same weights as an uninterrupted one (call :func:`spinelib.core.config.set_seed`
      before building the model).

    ``stop_black``: stop after this many epochs in a row in which the network painted (almost) no
    validation pixel white (``val_white`` below :data:`BLACK_FRACTION`); 0 (default) never stops
    for that. The run then ends as stopped early, like ``EarlyStopping``.

    ``accumulate``: micro-batches of ``batch_size // accumulate``, one Adam step per batch on their mean
    gradient (less memory: ``benchmarks/inference_speed.md``); the whole batch's update for a per-image
    loss without batch norm, while batch norm and the soft Dice then work over micro-batches.

    ``callbacks``: extra Keras callbacks, run after the epoch timer and before the checkpoint
    and CSV logger, so values they add to ``logs`` in ``on_epoch_end`` land in ``history.csv``.

    ``seed`` seeds Keras (dropout) and the data pipeline; call :func:`spinelib.core.config.set_seed`
    first for full determinism, including the weight initialisation.

    ``strategy``: the ``tf.distribute`` strategy to train under; ``None`` (default) is the one the
    model was built under, else the current one (:func:`tf.distribute.get_strategy`: no
    distribution outside any ``strategy.scope()``). Build the model inside ``strategy.scope()``
    (a ``ValueError`` says so otherwise); ``batch_size`` is then the global batch, split across
    the replicas (:func:`replica_dataset`), so with ``MirroredStrategy`` over 2 GPUs and
    ``batch_size=8`` each GPU takes 4 X-rays a step and the run follows the single-device one.
    BatchNorm layers keep per-replica batch statistics. With ``MultiWorkerMirroredStrategy``
    give every worker its own ``out_dir`` (each writes its checkpoints; the chief's, task 0, is
    the result).
    """
    train_images, train_masks = _check_arrays(train_images, train_masks, "train_")
    val_images, val_masks = _check_arrays(val_images, val_masks, "val_")
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(patience, (int, np.integer)) or patience < 1:
        raise ValueError(f"patience must be a positive integer, got {patience!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if not isinstance(stop_black, (int, np.integer)) or isinstance(stop_black, bool) or stop_black < 0:
        raise ValueError(f"stop_black must be a non-negative integer (0 = never), got {stop_black!r}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    if not isinstance(accumulate, (int, np.integer)) or isinstance(accumulate, bool) or accumulate < 1:
        raise ValueError(f"accumulate must be a positive integer, got {accumulate!r}")
    if accumulate > 1 and (not isinstance(batch_size, (int, np.integer)) or batch_size % accumulate):
        raise ValueError(f"accumulate must divide batch_size ({batch_size!r}), got {accumulate!r}")
    strategy = check_strategy(model, strategy)
    n_out = model.output_shape[-1]
    for name, m in (("train_masks", train_masks), ("val_masks", val_masks)):
        if m.shape[-1] != n_out:
            raise ValueError(f"{name} has {m.shape[-1]} channel(s) but the model outputs {n_out}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loss_fn = get_loss(loss)
    config = {
        "model": model.name, "params": int(model.count_params()), "loss": getattr(loss_fn, "__name__", str(loss)),
        "lr": float(lr), "lr_schedule": lr_schedule, "batch_size": int(batch_size), "seed": int(seed), "augment": augment,
        "n_train": len(train_images), "n_val": len(val_images), "input_shape": list(train_images.shape[1:]),
    }

    n_replicas = int(strategy.num_replicas_in_sync)
    if accumulate > 1:
        if n_replicas > 1:
            raise ValueError("accumulate > 1 is for one device; a strategy splits batch_size across replicas")
        config.update(accumulate=int(accumulate))
    if n_replicas > 1:
        config.update(strategy=type(strategy).__name__, replicas=n_replicas)
        loss_fn = replica_loss(loss_fn, n_replicas)

    keras.utils.set_random_seed(int(seed))
    with strategy.scope():
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=lr,
                                            gradient_accumulation_steps=int(accumulate) if accumulate > 1 else None),
            loss=loss_fn,
            metrics=[keras.metrics.MeanMetricWrapper(dice_metric, name="dice"),
                     keras.metrics.MeanMetricWrapper(white_fraction_metric, name="white")],
        )

    state, initial_epoch = None, 0
    state_path, last_path, best_path, hist_path = (out / n for n in (STATE_FILE, LAST_MODEL, BEST_MODEL, HISTORY_FILE))
    if state_path.exists() and last_path.exists():
        state = json.loads(state_path.read_text())
        if state.get("config", {}).get("params") != config["params"]:
            raise ValueError(
                f"{last_path} holds a model with {state.get('config', {}).get('params')} parameters, but the "
                f"given model has {config['params']}: use another out_dir or delete {out}"
            )
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
            model.load_weights(last_path)
        initial_epoch = int(state["epoch"])
        _truncate_history(hist_path, initial_epoch)
        if verbose:
            print(f"resuming from {last_path} after epoch {initial_epoch}")

    def result(seconds: float, per_epoch: float, stopped: bool) -> TrainResult:
        st = json.loads(state_path.read_text()) if state_path.exists() else {}
        best = st.get("best_val_dice")
        return TrainResult(
            model=model, history=_read_history(hist_path), best_model_path=best_path,
            last_model_path=last_path, train_seconds=seconds, seconds_per_epoch=per_epoch,
            initial_epoch=initial_epoch, stopped_early=stopped,
            best_val_dice=float("nan") if best is None else float(best), out_dir=out,
        )

    if state and (initial_epoch >= epochs or state.get("stopped_early")):
        if verbose:
            why = "stopped early" if state.get("stopped_early") else f"reached {initial_epoch} epochs"
            print(f"{out}: training already {why}; nothing to do")
        return result(0.0, float("nan"), bool(state.get("stopped_early")))

    timer = _EpochTimer()
    early = keras.callbacks.EarlyStopping(monitor="val_dice", mode="max", patience=int(patience))
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_dice", mode="max", factor=0.5, patience=max(1, int(patience) // 3), min_lr=1e-6,
    )
    black = [_StopWhenBlack(stop_black, _trailing_black(_read_history(hist_path)))] if stop_black else []
    callbacks = [
        timer,
        *callbacks,
        *black,
        keras.callbacks.ModelCheckpoint(
            best_path, monitor="val_dice", mode="max", save_best_only=True,
            initial_value_threshold=None if state is None else state.get("best_val_dice"),
        ),
        early,
        plateau if lr_schedule == "plateau" else keras.callbacks.LearningRateScheduler(
            lambda epoch: cosine_lr(epoch, int(epochs), float(lr))),
        keras.callbacks.CSVLogger(hist_path, append=True),
        _ResumeState(out, early, plateau, config, state),
    ]
    if n_replicas > 1:
        train_ds, steps = replica_dataset(strategy, train_images, train_masks, batch_size, epochs=int(epochs),
                                          initial_epoch=initial_epoch, augment=augment, seed=seed)
        val_ds, val_steps = replica_dataset(strategy, val_images, val_masks, batch_size, training=False)
    else:
        val_steps = None
        micro = int(batch_size) // int(accumulate)
        train_ds, steps = epoch_dataset(train_images, train_masks, micro, epochs=int(epochs),
                                        initial_epoch=initial_epoch, augment=augment, seed=seed)
        val_ds = make_dataset(val_images, val_masks, micro, shuffle=False, augment=False, seed=seed)
    t0 = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=int(epochs), initial_epoch=initial_epoch,
              steps_per_epoch=steps, validation_steps=val_steps, callbacks=callbacks, verbose=verbose, shuffle=False)
    seconds = time.perf_counter() - t0
    per_epoch = float(np.mean(timer.seconds)) if timer.seconds else float("nan")
    return result(seconds, per_epoch, bool(model.stop_training))
