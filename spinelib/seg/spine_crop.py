"""Spine crops: crop boxes from a (predicted) vertebra mask, cropping and un-cropping, Dice at the
original resolution, and the second stage of the two-stage crop pipeline (:func:`crop_experiment`:
a network trained on crops around the spine a first network found)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from spinelib.core.imageio import resize_probabilities, sampling_matrix
from spinelib.data.segdata import SegmentationData, load_original
from spinelib.seg.experiment import ExperimentResult, patient_summary, run_experiment
from spinelib.seg.metrics import evaluate_masks


def spine_boxes(masks: np.ndarray, margin: float | tuple[float, float] = 0.1,
                min_fraction: float = 0.0005) -> np.ndarray:
    """Crop boxes around the white pixels of (predicted) masks, in relative coordinates.

    ``masks``: ``(N, H, W)`` or ``(N, H, W, C)`` (channels merged) probabilities or binary masks;
    pixels ``> 0.5`` count, after dropping components smaller than ``min_fraction`` of the
    image. Returns ``(N, 4)`` rows ``(y0, x0, y1, x1)`` in [0, 1] (the format of
    ``tf.image.crop_and_resize``): the bounding box widened by ``margin`` times its height and
    width on every side (``(vertical, horizontal)`` for two different margins), clipped to the
    image. An image with no white pixel gets the whole image.

    At validation time pass the **predicted** vertebra mask: the ground truth would leak the
    answer into the input.
    """
    from spinelib.seg.inference import postprocess

    m = np.asarray(masks, dtype=np.float32)
    if m.ndim == 4:
        m = m.max(axis=-1)
    if m.ndim != 3:
        raise ValueError(f"masks must be (N, H, W) or (N, H, W, C), got shape {np.shape(masks)}")
    my, mx = (margin, margin) if np.isscalar(margin) else (float(margin[0]), float(margin[1]))
    if my < 0 or mx < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    n, h, w = m.shape
    boxes = np.tile(np.array([0.0, 0.0, 1.0, 1.0]), (n, 1))
    for i in range(n):
        keep = postprocess(m[i], min_size_fraction=min_fraction, fill_holes=False)
        ys, xs = np.nonzero(keep)
        if ys.size == 0:
            continue
        y0, y1 = ys.min() / h, (ys.max() + 1) / h
        x0, x1 = xs.min() / w, (xs.max() + 1) / w
        dy, dx = my * (y1 - y0), mx * (x1 - x0)
        boxes[i] = [max(0.0, y0 - dy), max(0.0, x0 - dx), min(1.0, y1 + dy), min(1.0, x1 + dx)]
    return boxes


def _check_boxes(arrays: np.ndarray, boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=float)
    if arrays.ndim != 4 or b.shape != (len(arrays), 4):
        raise ValueError(f"need (N, H, W, C) arrays and N boxes (y0, x0, y1, x1), got {arrays.shape} and {b.shape}")
    if not ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all():
        raise ValueError("every box needs y1 > y0 and x1 > x0")
    return b


def crop_resize(arrays: np.ndarray, boxes: np.ndarray, size: tuple[int, int], masks: bool = False) -> np.ndarray:
    """Crop each image to its box (relative ``(y0, x0, y1, x1)``, the edges of the region) and
    resize it to ``size``, pixel centres aligned as in :func:`crop_data` (bilinear for images,
    nearest-neighbour for ``masks=True``, no anti-aliasing). Returns ``float32 (N, h, w, C)``;
    :func:`uncrop` is its inverse."""
    a = np.asarray(arrays, dtype=np.float32)
    b = _check_boxes(a, boxes)
    h, w = (int(s) for s in size)
    order = 0 if masks else 1
    out = np.zeros((len(a), h, w, a.shape[-1]), np.float32)
    for i, (y0, x0, y1, x1) in enumerate(b):
        rows = sampling_matrix(h, a.shape[1], y0, y1 - y0, order)
        cols = sampling_matrix(w, a.shape[2], x0, x1 - x0, order)
        out[i] = np.einsum("hH,HWc,wW->hwc", rows, a[i], cols)
    return out


def uncrop(prob: np.ndarray, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Put cropped predictions ``(N, h, w, C)`` back into frames of ``size`` (zeros outside the
    box): the inverse of :func:`crop_resize` and :func:`crop_data`. Each frame pixel samples the
    crop bilinearly at its own centre, to a fraction of a pixel (no rounding of the box to the
    frame's pixel grid, which would shift a whole prediction by up to half a pixel)."""
    prob = np.asarray(prob, dtype=np.float32)
    b = _check_boxes(prob, boxes)
    H, W = (int(s) for s in size)
    out = np.zeros((len(prob), H, W, prob.shape[-1]), np.float32)
    for i, (y0, x0, y1, x1) in enumerate(b):
        rows = sampling_matrix(H, prob.shape[1], -y0 / (y1 - y0), 1.0 / (y1 - y0))
        cols = sampling_matrix(W, prob.shape[2], -x0 / (x1 - x0), 1.0 / (x1 - x0))
        for c in range(prob.shape[-1]):  # two matrix products per channel (fast at full resolution too)
            out[i, ..., c] = rows @ prob[i, ..., c] @ cols.T
    return out


def full_resolution_dice(
    data: SegmentationData,
    prob: np.ndarray,
    structures: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
    boxes: np.ndarray | None = None,
) -> pd.DataFrame:
    """Dice, IoU, HD95 at each validation X-ray's **original** size: the probabilities are
    resized (bilinear) to the X-ray's size, thresholded at 0.5 and compared with the original
    masks. Frame-independent, so networks of different input sizes (or crops) compare fairly.

    ``boxes``: ``prob`` holds predictions on crops (:func:`crop_data`, relative boxes
    ``(y0, x0, y1, x1)``, one per validation image); each goes straight back into its X-ray at
    the original size (:func:`uncrop`), never through a smaller frame, so a crop network keeps
    the finer pixels it worked on. Returns the per-patient summary (:func:`summarise`)."""
    names = list(structures or data.structures)
    prob = np.asarray(prob, dtype=np.float32)
    if prob.shape[0] != len(data.val_sources) or prob.shape[-1] != len(names):
        raise ValueError(f"prob {prob.shape} does not match {len(data.val_sources)} validation images x {len(names)} structures")
    if boxes is not None and np.shape(boxes) != (len(prob), 4):
        raise ValueError(f"boxes must be ({len(prob)}, 4), one per validation image, got {np.shape(boxes)}")
    frames = []
    for i, record in enumerate(tqdm(data.val_sources, desc="full-resolution Dice", disable=not progress)):
        _, masks = load_original(data, record, names)
        if boxes is None:
            full = resize_probabilities(prob[i], masks.shape[:2]) > 0.5
        else:
            full = uncrop(prob[i:i + 1], np.asarray(boxes)[i:i + 1], masks.shape[:2])[0] > 0.5
        cases = evaluate_masks(masks[None], full[None], names, case_ids=[i])
        cases.insert(1, "patient", data.val_ids[i])
        frames.append(cases)
    return patient_summary(pd.concat(frames, ignore_index=True), n_boot, seed)


def crop_data(data: SegmentationData, boxes_train: np.ndarray, boxes_val: np.ndarray, size: tuple[int, int],
              structures: Sequence[str] | None = None, progress: bool = True) -> SegmentationData:
    """A new problem of spine crops, cut from the **original-resolution** X-rays and masks
    (:func:`load_original`; clinical layout or AASCE).

    ``boxes_train`` may come from the true masks (training targets), ``boxes_val`` must come from
    a prediction. Crops are resized to ``size`` (image anti-aliased, masks nearest-neighbour).
    """
    from spinelib.core.imageio import resize_image, resize_mask

    names = list(structures or data.structures)

    def cut(records, boxes, label):
        x = np.zeros((len(records), *size, 1), np.float32)
        y = np.zeros((len(records), *size, len(names)), np.float32)
        for i, (record, box) in enumerate(tqdm(list(zip(records, boxes)), desc=f"crop {label}", disable=not progress)):
            image, masks = load_original(data, record, names)
            H, W = image.shape
            # the box's edges snapped to the nearest pixel edge of the original (at most half an
            # original pixel off, which :func:`uncrop` does not see)
            r0, c0 = int(round(box[0] * H)), int(round(box[1] * W))
            r1, c1 = max(int(round(box[2] * H)), r0 + 2), max(int(round(box[3] * W)), c0 + 2)
            x[i, ..., 0] = resize_image(image[r0:r1, c0:c1], size) / np.float32(255.0)
            for c in range(len(names)):
                y[i, ..., c] = resize_mask(masks[r0:r1, c0:c1, c], size)
        return x, y

    if len(boxes_train) != len(data.train_sources) or len(boxes_val) != len(data.val_sources):
        raise ValueError("one box per training and per validation image is needed")
    tx, ty = cut(data.train_sources, boxes_train, "train")
    vx, vy = cut(data.val_sources, boxes_val, "validation")
    return replace(data, name=f"{data.name} spine crop", structures=tuple(names), train_images=tx,
                   train_masks=ty, val_images=vx, val_masks=vy)


@dataclass
class CropRun:
    """A network trained on spine crops (:func:`crop_experiment`)."""

    data: SegmentationData  # the crops: training ones around the true spine, validation ones around the predicted
    boxes: np.ndarray  # (N_val, 4) the validation crops' boxes, relative to each X-ray
    result: ExperimentResult  # the network trained and evaluated on the crops (Dice in the crops' frame)
    frame_size: tuple[int, int]  # the uncropped problem's input size

    def frame_prob(self, prob: np.ndarray | None = None) -> np.ndarray:
        """Validation probabilities (the run's own, or ``prob`` predicted on the same crops) put back
        into the uncropped frame (:func:`uncrop`)."""
        return uncrop(self.result.val_prob() if prob is None else prob, self.boxes, self.frame_size)


def crop_experiment(data: SegmentationData, spine_val: np.ndarray, spine_train: np.ndarray,
                    out_dir: str | os.PathLike, name: str, size: tuple[int, int],
                    margin: float | tuple[float, float] = 0.1, structures: Sequence[str] | None = None,
                    **run) -> CropRun:
    """The second stage of the two-stage crop pipeline: a network trained on crops around the spine.

    ``spine_val``: the vertebral column that a first network **predicted** on each validation X-ray
    of ``data`` (probabilities ``(N_val, h, w)`` or ``(N_val, h, w, C)``, any frame size): the
    validation crops never see the truth. ``spine_train``: the true column of each training image
    (the training crops). Boxes are :func:`spine_boxes` widened by ``margin``; crops are cut from
    the original-resolution X-rays (:func:`crop_data`, only ``structures`` if given) at ``size``;
    ``run``: :func:`spinelib.seg.experiment.run_experiment` arguments (config, ``n_boot``,
    ``verbose``), the run cached under ``out_dir/name``.

    Page 3's crop remedy (first stage: its Table 3 network) and ``scripts/train_aasce.py --crop``
    (first stage: a small spine finder) both go through here.
    """
    boxes = spine_boxes(spine_val, margin=margin)  # predicted, never the truth
    crops = crop_data(data, spine_boxes(spine_train, margin=margin), boxes, size, structures=structures,
                      progress=False)
    result = run_experiment(crops, out_dir, name, **run)
    return CropRun(data=crops, boxes=boxes, result=result, frame_size=tuple(data.size))


def two_stage_crop(data: SegmentationData, finder_data: SegmentationData, out_dir: str | os.PathLike,
                   finder: dict, size: tuple[int, int] | None = None, margin: float | tuple[float, float] = 0.1,
                   names: tuple[str, str] = ("aasce_stage1", "aasce_crop"), **run) -> tuple[ExperimentResult, CropRun]:
    """The two-stage crop pipeline: a spine finder, then a network on crops around what it found.

    Stage 1 trains a (small) network on ``finder_data``: the same problem with the same patients in
    each split, usually at a lower resolution; ``finder``: its :func:`run_experiment` arguments.
    Stage 2 is :func:`crop_experiment` on ``data``, cropped at ``size`` (default: ``data``'s input
    size) around the spine the finder predicted on each validation X-ray (the true one for
    training), with the ``run`` arguments. Returns ``(finder run, crop run)``; both are cached
    under ``out_dir`` by ``names``."""
    if finder_data.val_ids != data.val_ids or finder_data.train_ids != data.train_ids:
        raise ValueError("the spine finder's data must split the same images into the same patients")
    stage1 = run_experiment(finder_data, out_dir, names[0], **finder)
    crop = crop_experiment(data, stage1.val_prob(), finder_data.train_masks, out_dir, names[1],
                           tuple(size or data.size), margin, **run)
    return stage1, crop
