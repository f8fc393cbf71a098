"""Training the landmark network on AASCE-format X-rays, and predicting with it.

    data = prepare_landmark_data(load_aasce(root), size=(512, 256))
    result = train_landmarks(data, train_idx, val_idx, work_dir="outputs/landmarks", epochs=40)
    corners, scores, masks = predict_corners(result.model, data.images[val_idx])

Losses (one per head, summed):

- heat map, CenterNet's focal loss over the :math:`N` centre cells (target :math:`y`, prediction
  :math:`p`): :math:`-\\frac1N\\sum [y=1](1-p)^\\alpha\\log p + [y<1](1-y)^\\beta p^\\alpha\\log(1-p)`,
  :math:`\\alpha=2, \\beta=4`;
- offsets: L1 in output cells, read at the true centre cells of the vertebrae inside the image;
- mask: binary cross-entropy plus soft Dice loss :math:`1 - 2\\sum pt/(\\sum p + \\sum t)`.

Training writes its record as it goes (``history.csv`` after every epoch, weights after every
epoch) into ``work_dir``, and resumes from there when called again with the same settings.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm.auto import tqdm

from spinelib.landmarks import encoding
from spinelib.landmarks.network import N_OFFSETS, STRIDE, landmark_net
from spinelib.seg.inference import compiled_forward

SETTINGS = {"size": (512, 256), "epochs": 40, "batch_size": 8, "lr": 1e-3, "warmup_epochs": 1, "sigma": encoding.SIGMA,
            "w_offsets": 1.0, "w_mask": 1.0, "weights": "imagenet", "seed": 0, "augment": True}
"""Default training settings (:func:`train_landmarks` takes each as a keyword)."""


@dataclass
class LandmarkData:
    """AASCE X-rays resized to the network's input, with their landmarks and body masks there.

    ``images`` uint8 (N, H, W, 1); ``masks`` uint8 (N, H, W, 1); ``landmarks`` float32
    (N, 17, 4, 2) in input pixels (:func:`spinelib.data.aasce.scale_landmarks`); ``frame`` the
    :func:`spinelib.data.aasce.load_aasce` rows (original sizes, landmarks and angles).
    """

    images: np.ndarray
    masks: np.ndarray
    landmarks: np.ndarray
    frame: pd.DataFrame
    size: tuple[int, int]

    def to_original(self, corners: np.ndarray, i: int) -> np.ndarray:
        """Corners predicted in the input frame of image ``i`` -> that X-ray's own pixels."""
        from spinelib.data.aasce import scale_landmarks

        row = self.frame.iloc[i]
        return scale_landmarks(corners, self.size, (int(row.height), int(row.width)))


def prepare_landmark_data(frame: pd.DataFrame, size: tuple[int, int] = (512, 256), cache: str | os.PathLike | None = None,
                          progress: bool = True) -> LandmarkData:
    """Read and resize every X-ray of ``frame`` once (``cache``: an ``.npz`` file kept between runs,
    checked against the image names and size)."""
    from spinelib.core.imageio import check_size
    from spinelib.data.aasce import load_aasce_arrays, scale_landmarks

    h, w = check_size(size)
    names = frame["image_name"].astype(str).tolist()
    if cache is not None and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as z:
            if z["names"].tolist() == names and tuple(z["size"]) == (h, w):
                return LandmarkData(z["images"], z["masks"], z["landmarks"], frame.reset_index(drop=True), (h, w))
    images, masks = load_aasce_arrays(frame, (h, w), progress=progress)
    images = np.round(images * 255.0).astype(np.uint8)
    masks = masks.astype(np.uint8)
    lms = np.stack([scale_landmarks(r.landmarks, (r.height, r.width), (h, w)) for r in frame.itertuples()]).astype(np.float32)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(cache).with_suffix(".tmp.npz")
        np.savez(tmp, images=images, masks=masks, landmarks=lms, names=np.array(names), size=np.array([h, w]))
        os.replace(tmp, cache)
    return LandmarkData(images, masks, lms, frame.reset_index(drop=True), (h, w))


# --------------------------------------------------------------------------------------------
# losses


def focal_loss(logits, target, alpha: float = 2.0, beta: float = 4.0):
    """CenterNet's penalty-reduced focal loss (module docstring), averaged over centre cells."""
    p = tf.sigmoid(logits)
    pos = tf.cast(target >= 1.0 - 1e-4, tf.float32)
    pos_term = pos * (1.0 - p) ** alpha * tf.math.log_sigmoid(logits)
    neg_term = (1.0 - pos) * (1.0 - target) ** beta * p ** alpha * tf.math.log_sigmoid(-logits)
    return -(tf.reduce_sum(pos_term) + tf.reduce_sum(neg_term)) / tf.maximum(tf.reduce_sum(pos), 1.0)


def offset_loss(pred, index, target, valid):
    """Mean absolute error (cells) of the offsets read at each vertebra's centre cell."""
    b = tf.shape(pred)[0]
    flat = tf.reshape(pred, (b, -1, N_OFFSETS))
    got = tf.gather(flat, index, batch_dims=1)                           # (B, 17, 10)
    err = tf.reduce_sum(tf.abs(got - target) * valid[..., None])
    return err / tf.maximum(tf.reduce_sum(valid) * N_OFFSETS, 1.0)


def mask_loss(pred, target):
    """Binary cross-entropy plus soft Dice loss of the body mask."""
    pred = tf.clip_by_value(pred, 1e-6, 1.0 - 1e-6)
    bce = -tf.reduce_mean(target * tf.math.log(pred) + (1.0 - target) * tf.math.log(1.0 - pred))
    dice = 2.0 * tf.reduce_sum(pred * target) / (tf.reduce_sum(pred) + tf.reduce_sum(target) + 1e-6)
    return bce + 1.0 - dice


# --------------------------------------------------------------------------------------------
# input pipeline


def make_dataset(data: LandmarkData, idx, batch_size: int, seed: int, epoch: int, augment: bool = True,
                 sigma: float = encoding.SIGMA, shuffle: bool = True) -> tf.data.Dataset:
    """One epoch of ``(x, heat, index, offsets, valid, mask)`` batches: a seeded shuffle of ``idx``,
    augmentation (:func:`spinelib.landmarks.encoding.augment_sample`, stateless seeds per example
    and epoch) and the targets of :func:`spinelib.landmarks.encoding.encode`."""
    idx = np.asarray(idx, np.int64)
    order = np.random.default_rng([seed, epoch]).permutation(idx) if shuffle else idx
    h, w = data.size
    out_shape = (h // STRIDE, w // STRIDE)
    images = tf.constant(data.images)
    masks = tf.constant(data.masks)
    lms = tf.constant(data.landmarks)

    def load(i):
        x = tf.cast(tf.gather(images, i), tf.float32) / 255.0
        m = tf.cast(tf.gather(masks, i), tf.float32)
        lm = tf.gather(lms, i)
        if augment:
            x, m, lm = encoding.augment_sample(x, m, lm, tf.stack([tf.cast(seed * 100003 + epoch, tf.int64), i]))
        heat, index, offsets, valid = encoding.encode(lm, out_shape, sigma=sigma)
        return x, heat, index, offsets, valid, m

    ds = tf.data.Dataset.from_tensor_slices(order).map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(2)


# --------------------------------------------------------------------------------------------
# prediction


def as_unit(images) -> np.ndarray:
    """X-rays as float32 in [0, 1]: uint8 values (any above 1.5) are divided by 255."""
    x = np.asarray(images, np.float32)
    return x / 255.0 if x.max() > 1.5 else x


def _outputs(model, images, batch_size: int = 8):
    forward = compiled_forward(model)
    heats, offs, masks = [], [], []
    for start in range(0, len(images), batch_size):
        h, o, m = forward(tf.constant(as_unit(images[start:start + batch_size])))
        heats.append(h.numpy())
        offs.append(o.numpy())
        masks.append(m.numpy())
    return np.concatenate(heats), np.concatenate(offs), np.concatenate(masks)


def predict_corners(model, images, batch_size: int = 8, tta_flip: bool = False):
    """``(corners (N, 17, 4, 2) input pixels, scores (N, 17), mask probabilities (N, H, W))``.

    ``images``: (N, H, W, 1), uint8 or float in [0, 1]. ``tta_flip``: average with the prediction
    on the mirrored X-ray (mirrored back, corners swapped; vertebrae matched by level).
    """
    images = np.asarray(images)
    heat, off, mask = _outputs(model, images, batch_size)
    decoded = [encoding.decode(heat[i], off[i]) for i in range(len(images))]
    corners = np.stack([d[0] for d in decoded])
    scores = np.stack([d[1] for d in decoded])
    mask = mask[..., 0]
    if tta_flip:
        w = images.shape[2]
        fheat, foff, fmask = _outputs(model, images[:, :, ::-1], batch_size)
        fdec = [encoding.decode(fheat[i], foff[i]) for i in range(len(images))]
        fc = np.stack([d[0] for d in fdec])[:, :, list(encoding.FLIP_CORNERS)]
        fc[..., 0] = (w - 1) - fc[..., 0]
        corners = (corners + fc) / 2.0
        scores = (scores + np.stack([d[1] for d in fdec])) / 2.0
        mask = (mask + fmask[:, :, ::-1, 0]) / 2.0
    return corners, scores, mask


# --------------------------------------------------------------------------------------------
# training


def recalibrate_batchnorm(model, images, batch_size: int = 8) -> int:
    """Recompute the moving statistics of every trainable BatchNorm layer as the exact average of
    its batch statistics over ``images`` (uint8, or float in [0, 1]; no weight changes), and return
    how many layers.

    Why: a BatchNorm after a convolution makes that convolution's scale free, so under Adam its
    input statistics drift from batch to batch faster than a moving average (momentum 0.9) follows;
    the network then predicts well with batch statistics (training mode) and badly with its moving
    ones (inference mode). Measured on the AASCE run after 9 epochs: corner errors of 6-15 px in
    training mode against 40-130 px in inference mode, the moving mean of the bottleneck layer ~165
    batch standard deviations off. The cure, as for stochastic weight averaging, is one pass over the
    training X-rays (un-augmented): batch :math:`k` enters with weight :math:`1/k`.
    """
    from keras import layers

    bns = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization) and layer.trainable]
    saved = [layer.momentum for layer in bns]
    for layer in bns:
        layer.moving_mean.assign(tf.zeros_like(layer.moving_mean))
        layer.moving_variance.assign(tf.ones_like(layer.moving_variance))
    try:
        for k, start in enumerate(range(0, len(images), batch_size), start=1):
            for layer in bns:
                layer.momentum = 1.0 - 1.0 / k  # moving = (1 - 1/k) moving + (1/k) batch: the running mean
            model(as_unit(images[start:start + batch_size]), training=True)
    finally:
        for layer, m in zip(bns, saved):
            layer.momentum = m
    return len(bns)


@dataclass
class LandmarkTrainResult:
    model: object
    history: pd.DataFrame
    settings: dict
    train_seconds: float
    work_dir: Path
    extra: dict = field(default_factory=dict)


def _val_error(model, data: LandmarkData, val_idx, batch_size: int) -> float:
    """Mean corner error (input pixels) on the validation X-rays, no augmentation."""
    corners, _, _ = predict_corners(model, data.images[val_idx], batch_size)
    return float(np.mean(np.linalg.norm(corners - data.landmarks[val_idx], axis=-1)))


def train_landmarks(data: LandmarkData, train_idx, val_idx, work_dir: str | os.PathLike, progress: bool = True,
                    **settings) -> LandmarkTrainResult:
    """Train :func:`spinelib.landmarks.network.landmark_net` on ``data.images[train_idx]``.

    Settings: :data:`SETTINGS` (each overridable by keyword). Adam with a one-epoch linear warm-up
    then cosine decay to 1 % of ``lr``. After every epoch: ``history.csv`` (losses, the validation
    mean corner error in input pixels, seconds) and ``weights.weights.h5`` in ``work_dir``; a call
    with the same settings resumes after the last finished epoch (the optimizer restarts its
    moments there). ``val_idx`` is only scored, never trained on. At the end the BatchNorm statistics
    are recomputed over the training X-rays (:func:`recalibrate_batchnorm`); the per-epoch validation
    error in ``history.csv`` is measured before that, with the moving statistics.
    """
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(SETTINGS)}")
    s = {**SETTINGS, **settings}
    s["size"] = tuple(int(v) for v in s["size"])
    if s["size"] != tuple(data.size):
        raise ValueError(f"data were prepared at {data.size}, settings ask for {s['size']}")
    train_idx, val_idx = np.asarray(train_idx), np.asarray(val_idx)
    if len(np.intersect1d(train_idx, val_idx)):
        raise ValueError("train_idx and val_idx overlap")
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError("train_idx and val_idx must both be non-empty")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    record = {**s, "size": list(s["size"]), "train_images": [data.frame.image_name[i] for i in train_idx],
              "val_images": [data.frame.image_name[i] for i in val_idx]}
    settings_file, history_file, weights_file = work / "settings.json", work / "history.csv", work / "weights.weights.h5"
    if settings_file.is_file() and json.loads(settings_file.read_text()) != record:
        raise ValueError(f"{work} holds a run with other settings or images; use another work_dir")
    settings_file.write_text(json.dumps(record, indent=1))
    tf.keras.utils.set_random_seed(s["seed"])
    h, w = s["size"]
    model = landmark_net((h, w, 1), weights=s["weights"])
    history = pd.read_csv(history_file) if history_file.is_file() and weights_file.is_file() else pd.DataFrame()
    if len(history):
        model.load_weights(weights_file)
    steps = int(np.ceil(len(train_idx) / s["batch_size"]))
    warm = max(1, int(s["warmup_epochs"] * steps))
    total = max(steps * s["epochs"], warm + 1)
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(s["lr"] * 0.1, decay_steps=total - warm, alpha=0.01,
                                                      warmup_target=s["lr"], warmup_steps=warm)
    optimizer = keras.optimizers.Adam(schedule)
    optimizer.iterations.assign(len(history) * steps)
    weights_list = model.trainable_variables

    @tf.function
    def step(x, heat, index, offsets, valid, mask):
        with tf.GradientTape() as tape:
            p_heat, p_off, p_mask = model(x, training=True)
            l_heat = focal_loss(p_heat, heat)
            l_off = offset_loss(p_off, index, offsets, valid)
            l_mask = mask_loss(p_mask, mask)
            loss = l_heat + s["w_offsets"] * l_off + s["w_mask"] * l_mask
        optimizer.apply_gradients(zip(tape.gradient(loss, weights_list), weights_list))
        return tf.stack([loss, l_heat, l_off, l_mask])

    rows = history.to_dict("records")
    t0 = time.perf_counter()
    for epoch in range(len(history), s["epochs"]):
        t_epoch = time.perf_counter()
        losses = []
        ds = make_dataset(data, train_idx, s["batch_size"], s["seed"], epoch, augment=s["augment"], sigma=s["sigma"])
        for batch in tqdm(ds, total=steps, desc=f"epoch {epoch + 1}/{s['epochs']}", disable=not progress, leave=False):
            losses.append(step(*batch).numpy())
        mean = np.mean(losses, axis=0)
        err = _val_error(model, data, val_idx, s["batch_size"])
        rows.append({"epoch": epoch + 1, "loss": mean[0], "heat": mean[1], "offsets": mean[2], "mask": mean[3],
                     "val_corner_error_px": err, "lr": float(schedule(optimizer.iterations)),
                     "seconds": time.perf_counter() - t_epoch})
        model.save_weights(weights_file)
        pd.DataFrame(rows).to_csv(history_file, index=False)
        if progress:
            print(f"epoch {epoch + 1}: loss {mean[0]:.4f} (heat {mean[1]:.3f}, offsets {mean[2]:.3f}, mask {mean[3]:.3f}), "
                  f"val corner error {err:.2f} px, {rows[-1]['seconds']:.0f} s", flush=True)
    recalibrate_batchnorm(model, data.images[train_idx], s["batch_size"])  # see its docstring
    model.save_weights(weights_file)
    hist = pd.DataFrame(rows)
    return LandmarkTrainResult(model, hist, s, float(hist["seconds"].sum()) if len(hist) else 0.0, work,
                               {"seconds_this_call": time.perf_counter() - t0})
