"""Page 4: the paper's Table 4 re-run (backbones x weights, CPU cost against accuracy)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import pandas as pd
from keras import layers

from spinelib.cls import backbones, cv, heads
from spinelib.cls.cv import CVResult, cached_run, cross_validate_features
from spinelib.cls.extractors import feature_backbone, features_of, weights_label
from spinelib.cls.heads import paper_fit_kwargs
from spinelib.cls.metrics import PAPER_ACCURACY
from spinelib.core.config import Profile, set_seed
from spinelib.core.plans import plan
from spinelib.core.structures import STRUCTURES
from spinelib.data.clsdata import ClassificationInputs, resize_images

PAPER_TABLE4: list[dict] = [
    {"row": 1, "paper_input": "8 segmented images as channels", "paper_model": "VGG-16, ResNet-50, Inception-V3; random init, augmentation",
     "paper_result": "approx. 50% accuracy", "paper_accuracy": 0.50},
    {"row": 2, "paper_input": "AP and LAT X-rays as 2 channels", "paper_model": "VGG-16, ResNet-50, Inception-V3; random init, augmentation",
     "paper_result": "approx. 50% accuracy", "paper_accuracy": 0.50},
    {"row": 3, "paper_input": "AP and LAT X-rays as 2 channels", "paper_model": "ResNet-50 pretrained on ImageNet, augmentation",
     "paper_result": "approx. 55% accuracy", "paper_accuracy": 0.55},
    {"row": 4, "paper_input": "AP X-ray only", "paper_model": "ResNet-50 ImageNet, first 5 layers frozen",
     "paper_result": "approx. 75% accuracy", "paper_accuracy": 0.75},
    {"row": 5, "paper_input": "AP X-ray only", "paper_model": "complete ResNet-50 (ImageNet) + 2 dense layers",
     "paper_result": "greater than 80% accuracy", "paper_accuracy": 0.80},
    {"row": 6, "paper_input": "AP and LAT features, separately, concatenated (section 3.3)",
     "paper_model": "frozen ResNet-50 (ImageNet) at 512x256 + dense 20-12-1 (10,486,045 params)",
     "paper_result": "94.84% (Figure 9; counted on all 678 patients)", "paper_accuracy": 0.9484},
]
"""The paper's Table 4 (rows 1-5) and its final network (row 6, section 3.3 / Figure 9)."""


@dataclass(frozen=True)
class Table4Row:
    """One re-run of a Table 4 row: which input, network, weights and training."""

    key: str
    row: int
    input: str  # 'masks8' | 'ap_lat_channels' | 'ap' | 'ap+lat_features'
    backbone: str
    weights: str  # 'random' | 'imagenet' | 'file' | 'indomain'
    mode: str  # 'end-to-end' | 'frozen features'
    freeze_first: int = 0  # end-to-end: the first N weight-holding layers of the backbone are frozen
    augment: bool = False
    note: str = ""

    @property
    def weights_label(self) -> str:
        return weights_label(self.backbone, self.weights)


def paper_final_row(resnet50: str = "random") -> Table4Row:
    """Row 6 with ResNet-50 (``'random'`` or ``'file'``): the paper's final network on frozen
    features. Page 5 runs this same row (:func:`run_table4_row`), so where page 4 has run it in
    the same output folder, page 5 reads that run instead of training the same folds again."""
    return Table4Row(f"6-features-resnet50-{resnet50}", 6, "ap+lat_features", "resnet50", resnet50, "frozen features",
                     note="the paper's exact network: 16x8x2048 per view at 512x256, head of 10,486,045 parameters")


def table4_rows(resnet50: str = "random", include_indomain: bool = True) -> list[Table4Row]:
    """Table 4 as re-run here. ``resnet50``: ``'file'`` when a ResNet-50 ImageNet file is
    present (see :func:`resnet50_weights_status`), else ``'random'``.

    Rows 1-2 use ResNet-50 from random init (the paper also tried VGG-16 and Inception-V3: not
    re-run on a CPU). Rows 3-5 need ImageNet weights: ResNet-50 from its file when present, else
    EfficientNet-Lite0 (real ImageNet weights, shipped offline). Row 6 is the paper's final
    network on frozen features, with every kind of weights side by side.
    """
    pre, pre_w = ("resnet50", "file") if resnet50 == "file" else ("efficientnet_lite0", "imagenet")
    rows = [
        Table4Row("1-masks8-resnet50-random", 1, "masks8", "resnet50", "random", "end-to-end", augment=True),
        Table4Row("2-aplat-resnet50-random", 2, "ap_lat_channels", "resnet50", "random", "end-to-end", augment=True),
        Table4Row(f"3-aplat-{pre}-{pre_w}", 3, "ap_lat_channels", pre, pre_w, "end-to-end", augment=True),
        Table4Row(f"4-ap-{pre}-{pre_w}-freeze5", 4, "ap", pre, pre_w, "end-to-end", freeze_first=5),
        Table4Row(f"5-ap-{pre}-{pre_w}-full", 5, "ap", pre, pre_w, "end-to-end"),
        paper_final_row(resnet50),
        Table4Row("6-features-efficientnet_lite0-random", 6, "ap+lat_features", "efficientnet_lite0", "random", "frozen features"),
        Table4Row("6-features-efficientnet_lite0-imagenet", 6, "ap+lat_features", "efficientnet_lite0", "imagenet", "frozen features"),
    ]
    if include_indomain:
        rows.append(Table4Row("6-features-unet_encoder-indomain", 6, "ap+lat_features", "unet_encoder", "indomain",
                              "frozen features", note="encoder of a U-Net trained on AASCE vertebra masks (real AP X-rays)"))
    return rows


def _freeze_first(net: keras.Model, n: int) -> list[str]:
    frozen = []
    for layer in net.layers:
        if len(frozen) >= n:
            break
        if layer.weights:
            layer.trainable = False
            frozen.append(layer.name)
    return frozen


def cnn_classifier(backbone: str, input_shape: tuple[int, int, int], weights: str = "random",
                   weights_path: str | os.PathLike | None = None, freeze_first: int = 0,
                   hidden: Sequence[int] = heads.PAPER_HIDDEN, augment: bool = False, name: str | None = None) -> keras.Model:
    """A CNN trained end to end on 0-255 inputs with any channel count:
    backbone -> global average pooling -> Dense 20 -> Dense 12 -> sigmoid (the paper's dense layers).

    ``weights='random'``: the bare network built for ``C`` input channels, inputs scaled to
    [-1, 1] (EfficientNet-Lite0, which takes 3 channels only, gets a learned 1x1 convolution
    from ``C`` to 3 channels first). ImageNet weights (``'imagenet'``, ``'file'``) need 1 or 3 channels: a 2-channel
    input (AP, LAT) becomes (AP, LAT, their mean) and goes through the network's own ImageNet
    preprocessing. ``freeze_first``: the first N weight-holding layers of the backbone keep
    their weights (BatchNorm in them stays in inference mode). ``augment``: random rotation
    (+-3.6 deg), translation (+-5 %) and zoom (+-10 %) of all channels together, in training only.
    """
    h, w, c = (int(s) for s in input_shape)
    inputs = keras.Input(shape=(h, w, c), name="inputs")
    x = inputs
    if augment:
        x = layers.RandomRotation(0.01, fill_mode="constant", name="aug_rotate")(x)
        x = layers.RandomTranslation(0.05, 0.05, fill_mode="constant", name="aug_shift")(x)
        x = layers.RandomZoom(0.1, fill_mode="constant", name="aug_zoom")(x)
    if weights == "random":
        set_seed(0)
        x = layers.Rescaling(1 / 127.5, offset=-1.0, name="to_pm1")(x)
        if backbone == "efficientnet_lite0" and c != 3:  # its builder takes RGB only: learn the mix
            x = layers.Conv2D(3, 1, name="channels_to_3")(x)
            c = 3
        net = backbones.BACKBONES[backbone].builder((h, w, c), weights=None)
        x = net(x)
    elif weights in ("imagenet", "file"):
        if c == 2:
            mean = layers.Average(name="ap_lat_mean")([x[..., :1], x[..., 1:]])
            x = layers.Concatenate(name="ap_lat_mean_rgb")([x, mean])
            c = 3
        if c not in (1, 3):
            raise ValueError(f"ImageNet weights need 1, 2 or 3 input channels, got {c}")
        bb = backbones.build_backbone(backbone, (h, w, c), weights="imagenet" if weights == "imagenet" else "file",
                              weights_path=weights_path)
        net = bb.layers[-1] if isinstance(bb.layers[-1], keras.Model) else bb
        x = bb(x)
    else:
        raise ValueError(f"weights must be 'random', 'imagenet' or 'file' for end-to-end rows, got {weights!r}")
    if freeze_first:
        _freeze_first(net, int(freeze_first))
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    for i, units in enumerate(hidden, start=1):
        x = layers.Dense(int(units), activation="relu", name=f"dense_{i}")(x)
    out = layers.Dense(1, activation="sigmoid", name="damaged_probability", dtype="float32")(x)
    return keras.Model(inputs, out, name=name or f"{backbone}_{weights}_classifier")


def _leaf_layers(model: keras.Model) -> list:
    out = []
    for layer in model.layers:
        out.extend(_leaf_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def trainable_summary(model: keras.Model) -> dict:
    """``frozen`` (names of weight-holding layers that do not train, nested models included),
    ``trainable_params`` and ``frozen_params``."""
    leaves = [layer for layer in _leaf_layers(model) if layer.weights]
    frozen = [layer.name for layer in leaves if not layer.trainable]
    count = lambda ws: int(sum(np.prod(w.shape) for w in ws))  # noqa: E731
    return {"frozen": frozen, "trainable_params": count(model.trainable_weights),
            "frozen_params": count(model.non_trainable_weights)}


def row_inputs(row: Table4Row, data: ClassificationInputs, size: tuple[int, int]) -> np.ndarray:
    """The network input of a row at ``size``: ``masks8`` (8 masks x 255), ``ap_lat_channels``
    (AP, LAT) or ``ap``, on the 0-255 scale."""
    if row.input == "masks8":
        if data.masks is None or data.masks.shape[-1] != len(STRUCTURES):
            raise ValueError("row input 'masks8' needs the 8 masks of the synthetic inputs")
        return resize_images(data.masks.astype(np.float32), size, order=0) * np.float32(255)
    ap = resize_images(data.ap, size)
    if row.input == "ap":
        return ap
    if row.input == "ap_lat_channels":
        if data.lat is None:
            raise ValueError(f"row input {row.input!r} needs LAT X-rays")
        return np.concatenate([ap, resize_images(data.lat, size)], axis=-1)
    raise ValueError(f"row {row.key}: input {row.input!r} is not an end-to-end input")


def run_table4_row(row: Table4Row, data: ClassificationInputs, profile: Profile, out_dir: str | os.PathLike | None,
                   seed: int = 0, resnet50_weights: str | os.PathLike | None = None,
                   indomain_unet: str | os.PathLike | None = None, progress: bool = True) -> CVResult:
    """Run (or load from ``out_dir``) one Table 4 row with patient-grouped ``cls_folds``-fold CV.

    End-to-end rows train the whole CNN per fold at :attr:`spinelib.core.plans.Plan.e2e_size` for
    ``e2e_epochs`` epochs with ``e2e_folds`` folds (learning rate 1e-3 from random init, 1e-4
    from ImageNet, decaying to a tenth). Frozen-feature rows extract AP and LAT features once (cached) and train the
    paper's head per fold (:func:`paper_fit_kwargs`).
    """
    sizes = plan(profile)
    k = int(profile.cls_folds)
    config = {"row": asdict(row), "data": data.dataset, "n": len(data), "profile": profile.name, "seed": seed,
              "folds": k}
    if row.mode == "end-to-end":
        size = sizes.e2e_size
        k = int(min(sizes.e2e_folds, profile.cls_folds))
        config["folds"] = k
        lr = 1e-3 if row.weights == "random" else 1e-4
        fit = {"epochs": sizes.e2e_epochs, "batch_size": int(profile.cls_batch_size), "lr": lr, "lr_decay": True}
        config.update(input_size=list(size), fit=fit)

        def run():
            x = row_inputs(row, data, size)
            make = lambda: cnn_classifier(row.backbone, x.shape[1:], row.weights,  # noqa: E731
                                          weights_path=resnet50_weights, freeze_first=row.freeze_first,
                                          augment=row.augment)
            return cv.cross_validate(x, data.labels, data.patient_ids, k=k, make_model=make, fit_kwargs=fit,
                                    seed=seed, progress=progress)
    else:
        size = sizes.resnet50_size if row.backbone == "resnet50" else profile.cls_size
        if row.weights == "indomain":
            size = sizes.indomain_size
        fit = paper_fit_kwargs(profile)
        # the U-Net's path is part of the run only where the row uses it (so page 5, which has none, finds page 4's runs)
        config.update(input_size=list(size), fit=fit, views_at_size=2,
                      indomain_unet=str(indomain_unet or "") if row.weights == "indomain" else "")

        def run():
            path = indomain_unet if row.weights == "indomain" else resnet50_weights
            bb = feature_backbone(row.backbone, (*size, 1), row.weights, weights_path=path)
            cache = None if out_dir is None else Path(out_dir) / "feature_cache"
            feats = [features_of(bb, v, cache, progress=progress) for v in data.views_at(size, progress)]
            return cross_validate_features(tuple(feats), data.labels, data.patient_ids, k=k, head="paper",
                                           fit_kwargs=fit, seed=seed, progress=progress)
    result = cached_run(out_dir, f"table4-{row.key}", config, run)
    result.info.update(weights_label=row.weights_label, input_size=list(size))
    return result


def paper_ran(row: Table4Row) -> bool:
    """Whether the paper ran this network (its backbone and weights), so that its accuracy may
    stand beside ours as a reference: ResNet-50 from random init in rows 1-2, ResNet-50 with
    ImageNet weights (our ``file`` weights) in rows 3-6. Substitutes (EfficientNet-Lite0, an
    in-domain encoder, ResNet-50 from random init in place of ImageNet) get no paper number."""
    if row.backbone != "resnet50":
        return False
    return row.weights == ("random" if row.row <= 2 else "file")


def table4_frame(rows: Sequence[Table4Row], results: Sequence[CVResult]) -> pd.DataFrame:
    """Table 4, measured: the paper's input, model and claim next to ours, with the accuracy of
    patient-level CV (threshold 0.5, and chosen on validation folds), AUROC and CPU minutes."""
    paper = {r["row"]: r for r in PAPER_TABLE4}
    out = []
    for row, res in zip(rows, results):
        s = res.summary()
        p = paper[row.row]
        out.append({
            "row": row.row, "paper input": p["paper_input"], "paper model": p["paper_model"],
            "paper claim": p["paper_result"], "paper accuracy": p["paper_accuracy"],
            "our input": row.input, "our network (weights)": row.weights_label, "training": row.mode
            + (f", first {row.freeze_first} layers frozen" if row.freeze_first else "")
            + (", augmentation" if row.augment else ""),
            "input size": "x".join(str(v) for v in res.info.get("input_size", [])),
            "accuracy (CV, 0.5)": s["accuracy@0.5"], "accuracy (CV, val. threshold)": s["accuracy"],
            "AUROC (CV)": s["auroc"], "CPU minutes": res.cpu_minutes, "wall minutes": res.wall_minutes,
            "from cache": res.cached, "key": row.key,
        })
    return pd.DataFrame(out)


def cost_accuracy_figure(table4: pd.DataFrame, title: str = "Table 4 on synthetic patients"):
    """Accuracy on held-out folds against CPU minutes (log scale), one marker per measured row of
    :func:`table4_frame`, numbered on the plot and named in the legend (no overlapping labels), with
    chance and the paper's final accuracy (clinical, counted on all 678 patients) as lines."""
    import matplotlib.pyplot as plt

    acc, cost = "accuracy (CV, val. threshold)", "CPU minutes"
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    fig, ax = plt.subplots(figsize=(8, 6.5))
    markers = "osD^vP*Xh<>"
    for k, (_, r) in enumerate(table4.iterrows()):
        ax.scatter(r[cost], r[acc], s=45, marker=markers[k % len(markers)], zorder=3,
                   label=f"{k + 1}. row {r['row']}: {r['our network (weights)']} ({r['training']}, {r['input size']})")
        # numbers of rows that land on one spot fan out instead of printing over each other
        same = sum(1 for _, q in table4.iloc[:k].iterrows()
                   if abs(q[acc] - r[acc]) < 0.03 and abs(np.log10(max(q[cost], 1e-3) / max(r[cost], 1e-3))) < 0.15)
        ax.annotate(str(k + 1), (r[cost], r[acc]), fontsize=8, xytext=(5 + 9 * same, 3), textcoords="offset points")
    ax.axhline(0.5, ls=":", color="grey", label="chance (balanced classes)")
    ax.axhline(PAPER_ACCURACY, ls="--", color="black", label="the paper's final accuracy (clinical, all 678 patients)")
    ax.set(xscale="log", xlabel="CPU minutes (log scale)", ylabel="accuracy, held-out folds", title=title, ylim=(0, 1.05))
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))  # plain numbers, no crowded minor labels
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), borderaxespad=0)
    fig.tight_layout()
    return fig
