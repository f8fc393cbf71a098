"""Classification experiments: the paper's Table 4 re-run, the final classifier, and its evaluation.

Orchestration only, read top to bottom in the order a page uses it:

1. inputs - :func:`load_synthetic_inputs` (AP + LAT X-rays and the 8 masks per patient) and
   :func:`load_aasce_inputs` (real AP X-rays, vertebra masks, severity label: max Cobb >= 40 deg);
2. cost - :func:`cpu_cost` measures CPU minutes (all threads of the process) and wall minutes;
3. backbones - :func:`feature_backbone` (random / ImageNet / a local ResNet-50 file / in-domain),
   in-domain pre-training by :func:`train_aasce_unets` (a small U-Net on AASCE vertebra masks,
   one per fold of the patient cross-validation, so no encoder has seen its test patients);
4. cross-validation by patient - :func:`cross_validate_features` (frozen features + the paper's
   head or logistic regression), :func:`fold_thresholds` (each fold's threshold is chosen on the
   other folds' out-of-fold predictions only), cached runs (:class:`CVResult`);
5. Table 4 - :data:`PAPER_TABLE4`, :func:`table4_rows`, :func:`run_table4_row`, :func:`table4_frame`;
6. evaluation - :func:`evaluation_tables`, :func:`patient_bootstrap_auroc`, :func:`feature_grad_cam`,
   error tables.

Every number keeps the name of the data (synthetic / AASCE) and of the weights it came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import keras
import numpy as np
import pandas as pd
from keras import layers
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from spinelib import backbones as B
from spinelib import classifier as C
from spinelib.cls_metrics import PAPER_CONFUSION, classification_report_table
from spinelib.config import Profile, set_seed
from spinelib.splits import patient_kfold, patient_split
from spinelib.structures import STRUCTURES

# --------------------------------------------------------------------------------------------
# 0. sizes of each experiment per profile


@dataclass(frozen=True)
class ExperimentSizes:
    """What the profiles of :mod:`spinelib.config` do not fix: the sizes of this page's runs."""

    e2e_size: tuple[int, int]  # input of the CNNs trained end to end (Table 4 rows 1-5)
    e2e_epochs: int
    e2e_folds: int  # folds of the end-to-end rows (each fold traces and trains a whole CNN)
    e2e_rows: tuple[int, ...]  # which of rows 1-5 this profile trains end to end
    paper_size: tuple[int, int]  # ResNet-50 input of the paper's final network (512x256)
    unet_size: tuple[int, int]  # in-domain U-Net on AASCE vertebra masks
    unet_filters: int
    unet_epochs: int


EXPERIMENT_SIZES: dict[str, ExperimentSizes] = {
    "tiny": ExperimentSizes((64, 32), 1, 2, (4,), (64, 32), (64, 32), 4, 1),
    "ci": ExperimentSizes((128, 64), 5, 3, (1, 2, 3, 4, 5), (512, 256), (128, 64), 8, 12),
    "paper": ExperimentSizes((512, 256), 50, 5, (1, 2, 3, 4, 5), (512, 256), (256, 128), 16, 40),
}


def experiment_sizes(profile: Profile) -> ExperimentSizes:
    """The :class:`ExperimentSizes` of a profile (a custom profile gets the ``ci`` sizes)."""
    return EXPERIMENT_SIZES.get(profile.name, EXPERIMENT_SIZES["ci"])


# --------------------------------------------------------------------------------------------
# 1. inputs


@dataclass
class ClassificationInputs:
    """One sample per row: X-rays on the 0-255 scale (float32, ``(N, H, W, 1)``), masks, labels.

    ``dataset`` is ``"synthetic"`` (one sample = one patient, AP + LAT, label Damaged) or
    ``"aasce"`` (one sample = one real AP X-ray, label max Cobb >= 40 deg; several X-rays can
    belong to one patient). ``masks``: synthetic ``(N, H, W, 8)`` in :data:`STRUCTURES` order;
    AASCE ``(N, H, W, 1)`` vertebra bodies. ``table`` holds one row of metadata per sample.
    """

    dataset: str
    ap: np.ndarray
    lat: np.ndarray | None
    masks: np.ndarray | None
    labels: np.ndarray
    patient_ids: np.ndarray
    table: pd.DataFrame
    root: Path | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.ap.shape[1:3])

    def scanned(self):
        """The :class:`~spinelib.clinical.ClinicalDataset` of ``root`` (clinical layout), scanned
        once and kept: several measurements go back to the original files."""
        from spinelib.clinical import scan_clinical

        if self.root is None or self.dataset == "aasce":
            raise ValueError("only inputs loaded from a folder in the paper's layout have a scanned dataset")
        if "_scanned" not in self.__dict__:
            self.__dict__["_scanned"] = scan_clinical(self.root, progress=False)
        return self.__dict__["_scanned"]

    def views_at(self, size: tuple[int, int], progress: bool = True) -> list[np.ndarray]:
        """The X-ray views (AP, and LAT if any) at ``size``: resized when it is not larger than
        the loaded size, else read again from the source files (so that a 512x256 backbone
        sees 512x256 detail, not an upsampled smaller image). Kept in memory per size."""
        size = tuple(int(s) for s in size)
        if size == self.size:
            return [self.ap] if self.lat is None else [self.ap, self.lat]
        cache = self.__dict__.setdefault("_views", {})
        if size not in cache:
            if size[0] <= self.size[0] and size[1] <= self.size[1] or self.root is None:
                cache[size] = [resize_images(v, size) for v in ([self.ap] if self.lat is None else [self.ap, self.lat])]
            elif self.dataset == "synthetic":
                from spinelib.clinical import load_classification_pairs

                ap, lat, _, ids = load_classification_pairs(self.scanned(), size, progress=progress)
                if list(ids) != list(self.patient_ids):
                    raise ValueError(f"{self.root} changed since it was loaded: patients differ")
                cache[size] = [ap * np.float32(255), lat * np.float32(255)]
            else:
                from spinelib.aasce import load_aasce_arrays

                images, _ = load_aasce_arrays(self.table, size, progress=progress)
                cache[size] = [images * np.float32(255)]
        return cache[size]


def load_synthetic_inputs(synthetic_dir: str | os.PathLike, size: tuple[int, int], with_masks: bool = True,
                          progress: bool = True) -> ClassificationInputs:
    """AP + LAT X-rays (resized to ``size``) of every synthetic patient with both views, their 8
    masks (nearest-neighbour resize) and ``metadata.csv`` (pathologies, Cobb angle)."""
    from spinelib.clinical import load_classification_pairs, load_view, scan_clinical
    from spinelib.synthetic import read_metadata

    root = Path(synthetic_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"synthetic dataset folder {root} does not exist; generate it with "
                                "spinelib.synthetic.generate_dataset()")
    dataset = scan_clinical(root, progress=False)
    ap, lat, labels, ids = load_classification_pairs(dataset, size, progress=progress)
    masks = None
    if with_masks:
        masks = np.zeros((len(ids), *ap.shape[1:3], len(STRUCTURES)), bool)
        for i, pid in enumerate(tqdm(ids, desc="load masks", disable=not progress)):
            rec = dataset.patient(pid)
            _, m_ap = load_view(rec, "AP", size=size)
            _, m_lat = load_view(rec, "LAT", size=size)
            masks[i] = np.concatenate([m_ap, m_lat], axis=-1)
    meta = read_metadata(root).set_index("patient_id")
    table = meta.reindex(ids).reset_index()
    table["label"] = labels
    table["folder"] = [str(dataset.patient(p).folder) for p in ids]
    inputs = ClassificationInputs("synthetic", ap * np.float32(255), lat * np.float32(255), masks, labels,
                                  np.asarray(ids, dtype=str), table, root)
    inputs.__dict__["_scanned"] = dataset  # see ClassificationInputs.scanned()
    return inputs


def load_aasce_inputs(aasce_dir: str | os.PathLike, size: tuple[int, int], max_images: int | None = None,
                      progress: bool = True) -> ClassificationInputs:
    """Real AP X-rays of AASCE (resized to ``size``), vertebra masks drawn from the landmarks and
    the label ``severe`` = maximum Cobb angle >= 40 deg; ``table`` is :func:`spinelib.aasce.load_aasce`."""
    from spinelib.aasce import load_aasce, load_aasce_arrays

    frame = load_aasce(aasce_dir, max_images=max_images)
    images, masks = load_aasce_arrays(frame, size, progress=progress)
    labels = frame["severe"].astype(np.int64).to_numpy()
    return ClassificationInputs("aasce", images * np.float32(255), None, masks > 0.5, labels,
                                frame["patient_id"].astype(str).to_numpy(), frame, Path(aasce_dir))


def resize_images(images: np.ndarray, size: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize ``(N, H, W, C)`` arrays to ``size`` (bilinear with anti-aliasing; ``order=0``:
    nearest, for masks), keeping the value range."""
    from skimage.transform import resize

    x = np.asarray(images)
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    out = np.stack([resize(im.astype(np.float32), (*size, x.shape[-1]), order=order, preserve_range=True,
                           anti_aliasing=order > 0) for im in x])
    return out.astype(x.dtype if order == 0 else np.float32)


# --------------------------------------------------------------------------------------------
# 2. cost


@contextmanager
def cpu_cost() -> Iterator[dict]:
    """Measure a block: ``{'cpu_minutes', 'wall_minutes'}`` (filled when the block ends).

    CPU minutes are :func:`time.process_time` (user + system time of every thread of this
    process), the cost on a machine of any core count; wall minutes depend on the load.
    """
    cost = {"cpu_minutes": float("nan"), "wall_minutes": float("nan")}
    c0, w0 = time.process_time(), time.perf_counter()
    try:
        yield cost
    finally:
        cost["cpu_minutes"] = (time.process_time() - c0) / 60
        cost["wall_minutes"] = (time.perf_counter() - w0) / 60


# --------------------------------------------------------------------------------------------
# 3. backbones: random, ImageNet, a local ResNet-50 file, in-domain

WEIGHT_LABELS: dict[str, str] = {
    "random": "random init",
    "imagenet": "ImageNet",
    "file": "ImageNet (local file)",
    "indomain": "in-domain (AASCE vertebra masks)",
}
"""How each kind of weights is named in every table of the book."""


def weights_label(backbone: str, weights: str) -> str:
    """``'ResNet-50, random init'``, ``'EfficientNet-Lite0, ImageNet'``, ..."""
    names = {"resnet50": "ResNet-50", "efficientnet_lite0": "EfficientNet-Lite0", "vgg16": "VGG-16",
             "inception_v3": "Inception-V3", "unet_encoder": "U-Net encoder"}
    if weights not in WEIGHT_LABELS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_LABELS)}, got {weights!r}")
    return f"{names.get(backbone, backbone)}, {WEIGHT_LABELS[weights]}"


def resnet50_weights_status(resnet50_weights: str | os.PathLike | None = None) -> tuple[str, str]:
    """``(weights, message)``: ``('file', ...)`` when a ResNet-50 ImageNet file is found at
    ``resnet50_weights`` or in Keras's cache, else ``('random', why)``; never downloads."""
    try:
        path = B.imagenet_weights_file("resnet50", resnet50_weights)
    except FileNotFoundError as e:
        return "random", f"No ResNet-50 ImageNet file on this machine, so ResNet-50 runs with random init. {e}"
    return "file", f"ResNet-50 ImageNet weights read from {path}."


@keras.saving.register_keras_serializable(package="spinelib")
class ScaleTo01(layers.Layer):
    """``x / 255``: lets a U-Net encoder (trained on [0, 1] images) take 0-255 X-rays."""

    def call(self, x):
        return keras.ops.cast(x, "float32") / 255.0


def load_unet(path: str | os.PathLike) -> keras.Model:
    """A U-Net saved by :func:`spinelib.segmentation.train_segmentation` (no optimizer)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no saved U-Net at {p}")
    return keras.models.load_model(p, compile=False)


def indomain_backbone(unet_path: str | os.PathLike, input_shape: tuple[int, int, int] | None = None) -> keras.Model:
    """The contracting path of a saved U-Net (:func:`spinelib.backbones.encoder_from_unet`),
    taking 0-255 X-rays like the ImageNet backbones."""
    unet = load_unet(unet_path)
    enc = B.encoder_from_unet(unet, input_shape=input_shape, name="unet_encoder")
    inputs = keras.Input(shape=tuple(int(s) for s in enc.input.shape[1:]), name="xray")
    fp = hashlib.sha256(str(Path(unet_path).resolve()).encode()).hexdigest()[:8]
    return keras.Model(inputs, enc(ScaleTo01(name="to_0_1")(inputs)), name=f"unet_encoder_{fp}")


def feature_backbone(backbone: str, input_shape: tuple[int, int, int], weights: str,
                     weights_path: str | os.PathLike | None = None) -> keras.Model:
    """A frozen feature extractor on 0-255 X-rays: ``weights`` is ``'random'``, ``'imagenet'``,
    ``'file'`` (``weights_path``) or ``'indomain'`` (``weights_path`` = a saved U-Net)."""
    if weights == "indomain":
        if weights_path is None:
            raise ValueError("weights='indomain' needs weights_path: a U-Net saved by train_aasce_unets()")
        return indomain_backbone(weights_path, input_shape)
    if weights not in ("random", "imagenet", "file"):
        raise ValueError(f"weights must be 'random', 'imagenet', 'file' or 'indomain', got {weights!r}")
    set_seed(0)  # the same random init every run (and so the same feature cache entries)
    w = {"random": None, "imagenet": "imagenet", "file": "file"}[weights]
    return B.build_backbone(backbone, input_shape, weights=w, weights_path=weights_path)


def features_of(backbone: keras.Model, images: np.ndarray, cache_dir: str | os.PathLike | None,
                batch_size: int = 8, progress: bool = True) -> np.ndarray:
    """:func:`spinelib.backbones.extract_features` with the on-disk cache (images resized to the
    backbone's input first)."""
    size = tuple(int(s) for s in backbone.input.shape[1:3])
    x = resize_images(images, size)
    return B.extract_features(backbone, x, cache_dir=cache_dir, batch_size=batch_size, progress=progress)


def train_aasce_unets(data: ClassificationInputs, out_dir: str | os.PathLike, sizes: ExperimentSizes,
                      k: int, seed: int = 0, folds: Sequence[int] | None = None, batch_size: int = 8,
                      progress: bool = True) -> dict[int, Path]:
    """In-domain pre-training: one U-Net per fold of the patient cross-validation of ``data``
    (AASCE), trained on the vertebra masks of that fold's *training* patients only (15 % of them
    held out for checkpointing), saved as ``out_dir/unet-aasce/fold<f>/best.keras`` and reused.

    Returns ``{fold: path}`` for ``folds`` (default: all ``k``). A finished fold is not retrained
    (:func:`spinelib.segmentation.train_segmentation` resumes from its folder).
    """
    from spinelib.segmentation import train_segmentation
    from spinelib.unet import unet

    if data.dataset != "aasce" or data.masks is None:
        raise ValueError("train_aasce_unets needs AASCE inputs with vertebra masks (load_aasce_inputs)")
    all_folds = list(patient_kfold(data.patient_ids, data.labels, k=k, seed=seed))
    wanted = range(k) if folds is None else folds
    x = resize_images(data.ap, sizes.unet_size) / np.float32(255)
    m = resize_images(data.masks.astype(np.float32), sizes.unet_size, order=0)
    paths = {}
    for f in tqdm(list(wanted), desc="in-domain U-Nets", disable=not progress):
        train, _ = all_folds[f]
        fold_dir = Path(out_dir) / "unet-aasce" / f"fold{f}"
        best = fold_dir / "best.keras"
        state = fold_dir / "train_state.json"
        done = state.is_file() and json.loads(state.read_text()).get("epoch", 0) >= sizes.unet_epochs
        if not (best.is_file() and done):
            inner_tr, inner_val = patient_split(data.patient_ids[train], val_fraction=0.15, seed=seed)
            tr, va = train[inner_tr], train[inner_val]
            set_seed(seed + f)
            model = unet((*sizes.unet_size, 1), filters=sizes.unet_filters)
            train_segmentation(model, x[tr], m[tr], x[va], m[va], loss="dice", epochs=sizes.unet_epochs,
                               batch_size=batch_size, out_dir=fold_dir, seed=seed + f, patience=max(3, sizes.unet_epochs),
                               verbose=0)
        paths[f] = best
    return paths


# --------------------------------------------------------------------------------------------
# 4. cross-validation by patient


@dataclass
class CVResult:
    """Out-of-fold predictions of one run and what it cost.

    ``oof``: one row per sample, ``index, patient_id, fold, y_true, prob`` (from the model that
    never saw that patient). ``info``: the run's description (data, input, backbone, weights,
    head, sizes, epochs). ``cpu_minutes``/``wall_minutes``: the whole run (features included
    unless they came from the cache).
    """

    name: str
    oof: pd.DataFrame
    info: dict = field(default_factory=dict)
    cpu_minutes: float = float("nan")
    wall_minutes: float = float("nan")
    cached: bool = False

    def summary(self, criterion: str = "youden") -> dict:
        """Accuracy at 0.5 and at the validation-chosen thresholds, AUROC, n."""
        t = fold_thresholds(self.oof, criterion)
        y, p = t["y_true"].to_numpy(), t["prob"].to_numpy()
        both = len(np.unique(y)) == 2
        return {
            "run": self.name, "data": self.info.get("data", ""), "weights": self.info.get("weights", ""),
            "n": int(len(y)), "accuracy@0.5": float(((p >= 0.5) == y).mean()),
            "accuracy": float((t["y_pred"] == y).mean()),
            "auroc": float(roc_auc_score(y, p)) if both else float("nan"),
            "cpu_minutes": self.cpu_minutes, "wall_minutes": self.wall_minutes,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        self.oof.to_csv(d / "oof.csv", index=False)
        meta = {"name": self.name, "info": self.info, "cpu_minutes": self.cpu_minutes,
                "wall_minutes": self.wall_minutes}
        tmp = d / ".result.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1, default=str))
        os.replace(tmp, d / "result.json")
        return d

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "CVResult":
        d = Path(folder)
        meta = json.loads((d / "result.json").read_text())
        oof = pd.read_csv(d / "oof.csv", dtype={"patient_id": str})
        return cls(meta["name"], oof, meta["info"], meta["cpu_minutes"], meta["wall_minutes"], cached=True)


def config_key(config: dict) -> str:
    """A short, stable hash of a run's configuration (its cache key)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached_run(out_dir: str | os.PathLike | None, name: str, config: dict,
               run: Callable[[], pd.DataFrame]) -> CVResult:
    """Return the finished run ``name`` with this ``config`` from ``out_dir/cls_runs`` or run it
    (``run()`` returns the out-of-fold frame; its cost is measured) and save it there."""
    folder = None if out_dir is None else Path(out_dir) / "cls_runs" / f"{name}-{config_key(config)}"
    if folder is not None and (folder / "result.json").is_file() and (folder / "oof.csv").is_file():
        return CVResult.load(folder)
    from spinelib.seg_experiments import quiet_tensorflow

    with cpu_cost() as cost, quiet_tensorflow():  # each fold builds a new model: no retracing warnings
        oof = run()
    result = CVResult(name, oof, dict(config), cost["cpu_minutes"], cost["wall_minutes"])
    if folder is not None:
        result.save(folder)
    return result


def _fold_features(features, f: int):
    return features(f) if callable(features) else features


def _logistic(C_: float = 1.0):
    return make_pipeline(StandardScaler(), LogisticRegression(C=C_, max_iter=5000))


def cross_validate_features(
    features,
    labels: Sequence[int],
    groups: Sequence,
    k: int = 5,
    head: str = "paper",
    fit_kwargs: dict | None = None,
    seed: int = 0,
    keep_models: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Patient-grouped stratified k-fold CV on frozen features; out-of-fold probabilities.

    ``features``: ``(n, ...)``, a tuple of views ``(ap, lat)``, or a callable ``fold -> features``
    (per-fold features, e.g. from a fold's own in-domain encoder). ``head``: ``'paper'``
    (:func:`spinelib.classifier.paper_head` on the flattened views, trained by
    :func:`spinelib.classifier.train_head` with ``fit_kwargs``) or ``'logistic'`` (z-scored,
    L2 logistic regression). Folds are :func:`spinelib.splits.patient_kfold` ``(groups, labels,
    k, seed)``, the same as every other run with that seed. With ``keep_models`` the fitted
    models are in ``df.attrs['models']`` (one per fold).
    """
    if head not in ("paper", "logistic"):
        raise ValueError(f"head must be 'paper' or 'logistic', got {head!r}")
    y = np.asarray(labels).astype(int).ravel()
    groups = np.asarray([str(g) for g in groups])
    folds = list(patient_kfold(groups, y, k=k, seed=seed))
    probs, models = {}, []
    for f, (train, val) in enumerate(tqdm(folds, desc=f"CV ({head} head)", disable=not progress)):
        X = C.flatten_features(_fold_features(features, f))
        if head == "paper":
            model, _ = C.train_head(X[train], y[train], seed=seed + f, **(fit_kwargs or {}))
            probs[f] = np.asarray(model.predict(X[val], verbose=0, batch_size=64)).ravel()
        else:
            model = _logistic((fit_kwargs or {}).get("C", 1.0)).fit(X[train], y[train])
            probs[f] = model.predict_proba(X[val])[:, 1]
        if keep_models:
            models.append(model)
    df = C._cv_frame(groups, y, folds, probs)
    if keep_models:
        df.attrs["models"] = models
    return df


def fold_thresholds(oof: pd.DataFrame, criterion: str = "youden") -> pd.DataFrame:
    """Add ``threshold`` and ``y_pred``: fold ``f``'s threshold is chosen
    (:func:`spinelib.classifier.choose_threshold`) on the out-of-fold predictions of the *other*
    folds only, so no test patient's label or prediction sets its own threshold. The threshold is
    then moved midway to the next lower validation probability (the same validation decisions,
    but not on a data point: with separable validation predictions it falls between the
    classes). A fold whose other folds hold one class only falls back to 0.5."""
    need = {"fold", "y_true", "prob"}
    if not need <= set(oof.columns):
        raise ValueError(f"oof lacks columns {sorted(need - set(oof.columns))}")
    out = oof.copy()
    out["threshold"] = 0.5
    for f in sorted(out["fold"].unique()):
        other = out[out["fold"] != f]
        if other["y_true"].nunique() == 2:
            t = C.choose_threshold(other["y_true"], other["prob"], criterion)
            below = other["prob"][other["prob"] < t]
            if len(below):  # midway into the gap: same validation decisions, no boundary on a data point
                t = (t + float(below.max())) / 2
            out.loc[out["fold"] == f, "threshold"] = t
    out["y_pred"] = (out["prob"] >= out["threshold"]).astype(int)
    return out


def paper_fit_kwargs(profile: Profile) -> dict:
    """The paper's head training (section 3.3): BCE, Adam with a decaying learning rate
    (1e-4 to 1e-5), ``cls_epochs`` epochs at ``cls_batch_size``."""
    return {"epochs": int(profile.cls_epochs), "batch_size": int(profile.cls_batch_size), "lr": 1e-4, "lr_decay": True}


# --------------------------------------------------------------------------------------------
# 5. the paper's Table 4, re-run


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

PAPER_ACCURACY = 0.9484
"""The paper's reported accuracy (Figure 9)."""


def paper_confusion_total() -> int:
    """TP + FP + FN + TN of the paper's Figure 9: 678, its whole dataset (training included)."""
    return int(sum(PAPER_CONFUSION.values()))


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
        Table4Row(f"6-features-resnet50-{resnet50}", 6, "ap+lat_features", "resnet50", resnet50, "frozen features",
                  note="the paper's exact network: 16x8x2048 per view at 512x256, head of 10,486,045 parameters"),
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
                   hidden: Sequence[int] = C.PAPER_HIDDEN, augment: bool = False, name: str | None = None) -> keras.Model:
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
        net = B.BACKBONES[backbone].builder((h, w, c), weights=None)
        x = net(x)
    elif weights in ("imagenet", "file"):
        if c == 2:
            mean = layers.Average(name="ap_lat_mean")([x[..., :1], x[..., 1:]])
            x = layers.Concatenate(name="ap_lat_mean_rgb")([x, mean])
            c = 3
        if c not in (1, 3):
            raise ValueError(f"ImageNet weights need 1, 2 or 3 input channels, got {c}")
        bb = B.build_backbone(backbone, (h, w, c), weights="imagenet" if weights == "imagenet" else "file",
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
    out = layers.Dense(1, activation="sigmoid", name="damaged_probability")(x)
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

    End-to-end rows train the whole CNN per fold at :attr:`ExperimentSizes.e2e_size` for
    ``e2e_epochs`` epochs with ``e2e_folds`` folds (learning rate 1e-3 from random init, 1e-4
    from ImageNet, decaying to a tenth). Frozen-feature rows extract AP and LAT features once (cached) and train the
    paper's head per fold (:func:`paper_fit_kwargs`).
    """
    sizes = experiment_sizes(profile)
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
            return C.cross_validate(x, data.labels, data.patient_ids, k=k, make_model=make, fit_kwargs=fit,
                                    seed=seed, progress=progress)
    else:
        size = sizes.paper_size if row.backbone == "resnet50" else profile.cls_size
        if row.weights == "indomain":
            size = sizes.unet_size
        fit = paper_fit_kwargs(profile)
        config.update(input_size=list(size), fit=fit, indomain_unet=str(indomain_unet or ""), views_at_size=2)

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


# --------------------------------------------------------------------------------------------
# 6. evaluation


def evaluation_tables(oof: pd.DataFrame, n_boot: int = 1000, seed: int = 0, criterion: str = "youden",
                      progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(report, oof_with_predictions)``: the paper's 9 measures (Figure 9) + AUROC, AUPRC,
    Brier with bootstrap 95 % CIs (:func:`spinelib.cls_metrics.classification_report_table`),
    at each fold's validation-chosen threshold (:func:`fold_thresholds`)."""
    t = fold_thresholds(oof, criterion)
    report = classification_report_table(t["y_true"], t["prob"], threshold=t["threshold"].to_numpy(),
                                         n_boot=n_boot, seed=seed, progress=progress)
    return report, t


def patient_bootstrap_auroc(y_true, prob, groups, n_boot: int = 1000, seed: int = 0,
                            alpha: float = 0.05) -> tuple[float, float, float]:
    """AUROC with a *patient-level* (cluster) percentile bootstrap: patients are resampled with
    replacement, all their images with them (AASCE has up to several X-rays per patient).
    Returns ``(auroc, low, high)``."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    g = np.asarray([str(x) for x in groups])
    if not (len(y) == len(p) == len(g)):
        raise ValueError(f"y_true ({len(y)}), prob ({len(p)}) and groups ({len(g)}) differ in length")
    patients, inverse = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(patients))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(n_boot)):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(patients), len(patients))])
        if len(np.unique(y[idx])) == 2:
            values.append(roc_auc_score(y[idx], p[idx]))
    est = float(roc_auc_score(y, p))
    if not values:
        return est, float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return est, float(lo), float(hi)


def feature_grad_cam(head: keras.Model, view_features: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Grad-CAM of the paper's head on frozen feature maps, one heat map per view.

    The head takes the views' maps ``A`` (each ``h x w x K``) flattened and concatenated; with
    ``y`` its Damaged probability, per view :math:`\\alpha_k = \\mathrm{mean}_{ij}\\,\\partial y / \\partial A^k_{ij}`
    and :math:`L = \\mathrm{ReLU}(\\sum_k \\alpha_k A^k)`, scaled to [0, 1] by the largest value
    over all views (all zeros when nothing speaks for Damaged). The maps are the backbone's last
    convolutional layer, so this is Grad-CAM at that layer (Selvaraju et al., 2017).
    """
    import tensorflow as tf

    maps = [tf.convert_to_tensor(np.asarray(a, np.float32)[None]) for a in view_features]
    with tf.GradientTape() as tape:
        for m in maps:
            tape.watch(m)
        flat = tf.concat([tf.reshape(m, (1, -1)) for m in maps], axis=1)
        score = head(flat, training=False)[:, 0]
    grads = tape.gradient(score, maps)
    cams = []
    for m, g in zip(maps, grads):
        alpha = tf.reduce_mean(g, axis=(1, 2))
        cams.append(tf.nn.relu(tf.reduce_sum(m * alpha[:, None, None, :], axis=-1))[0].numpy())
    top = max(float(c.max()) for c in cams)
    return [(c / top if top > 0 else np.zeros_like(c)).astype(np.float32) for c in cams]


def upsample_cam(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A coarse heat map resized (bilinear) to an image's ``(H, W)``."""
    from skimage.transform import resize

    return resize(cam, shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True).astype(np.float32)


def error_table(oof: pd.DataFrame, table: pd.DataFrame, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The misclassified samples (``y_pred != y_true``; run :func:`fold_thresholds` first), most
    confident first, with the given metadata ``columns`` of ``table`` (same row order as the
    inputs): what kind of case does the classifier get wrong?"""
    if "y_pred" not in oof.columns:
        raise ValueError("oof has no y_pred column; use fold_thresholds(oof) first")
    wrong = oof[oof["y_pred"] != oof["y_true"]].copy()
    wrong["error"] = np.where(wrong["y_true"] == 1, "false negative", "false positive")
    wrong["confidence"] = np.abs(wrong["prob"] - wrong["threshold"])
    cols = [c for c in columns if c in table.columns]
    if cols:
        wrong = wrong.join(table.iloc[wrong["index"].to_numpy()][cols].reset_index(drop=True).set_axis(wrong.index))
    return wrong.sort_values("confidence", ascending=False)


def synthetic_pathology_errors(oof: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Per pathology kind of the synthetic Damaged patients (a patient counts for each of its
    kinds): patients, missed (false negatives), and the miss rate; plus the Normal patients'
    false positives."""
    t = oof.set_index("index")
    rows = []
    for kind in ("wedge_fracture", "disk_height_loss", "listhesis", "scoliosis"):
        has = table["pathologies"].fillna("").str.contains(kind)
        idx = np.flatnonzero(has.to_numpy())
        idx = [i for i in idx if i in t.index]
        missed = int((t.loc[idx, "y_pred"] == 0).sum()) if idx else 0
        rows.append({"group": f"Damaged with {kind}", "patients": len(idx), "wrong": missed,
                     "error rate": missed / len(idx) if idx else np.nan})
    normal = t[t["y_true"] == 0]
    rows.append({"group": "Normal", "patients": len(normal), "wrong": int((normal["y_pred"] == 1).sum()),
                 "error rate": float((normal["y_pred"] == 1).mean()) if len(normal) else np.nan})
    return pd.DataFrame(rows)


def cobb_band_errors(oof: pd.DataFrame, cobb: Sequence[float],
                     bands: Sequence[float] = (0, 20, 30, 40, 50, 60, 200)) -> pd.DataFrame:
    """Error rate of the severity classifier by band of the published maximum Cobb angle:
    mistakes should crowd near the 40 deg boundary."""
    if "y_pred" not in oof.columns:
        raise ValueError("oof has no y_pred column; use fold_thresholds(oof) first")
    c = np.asarray(cobb, dtype=float)[oof["index"].to_numpy()]
    band = pd.cut(c, list(bands), right=False)
    wrong = (oof["y_pred"] != oof["y_true"]).to_numpy()
    df = pd.DataFrame({"Cobb band (deg)": band.astype(str), "wrong": wrong, "prob": oof["prob"].to_numpy()})
    g = df.groupby("Cobb band (deg)", sort=False, observed=True)
    out = pd.DataFrame({"images": g.size(), "wrong": g["wrong"].sum(), "error rate": g["wrong"].mean(),
                        "mean prob(severe)": g["prob"].mean()})
    order = [str(b) for b in pd.IntervalIndex.from_breaks(list(bands), closed="left")]
    return out.reindex([o for o in order if o in out.index])


# --------------------------------------------------------------------------------------------
# 7. the final classifier and the morphometric one, on the same folds


def run_feature_cv(name: str, data: ClassificationInputs, backbone: str, weights: str, size: tuple[int, int],
                   profile: Profile, out_dir: str | os.PathLike | None, seed: int = 0,
                   weights_path: str | os.PathLike | dict | None = None, head: str = "paper",
                   pooled: bool = False, keep_models: bool = False, progress: bool = True) -> CVResult:
    """Frozen features of every view of ``data`` (AP + LAT for synthetic, AP for AASCE) at
    ``size`` -> patient-grouped CV of ``head``; cached under ``out_dir``.

    ``weights='indomain'`` with ``weights_path`` a ``{fold: U-Net path}`` dict (from
    :func:`train_aasce_unets` on the same ``data`` and folds) uses each fold's own encoder, so
    no encoder saw that fold's patients. ``pooled``: global-average-pool the maps first.
    ``keep_models`` saves the fold models (``.keras``) and returns them in ``result.models``
    (for Grad-CAM); ``result.features`` is the feature list (or a per-fold callable).
    """
    cache = None if out_dir is None else Path(out_dir) / "feature_cache"
    per_fold = isinstance(weights_path, dict)

    def extract(path):
        bb = feature_backbone(backbone, (*size, 1), weights, weights_path=path)
        feats = [features_of(bb, v, cache, progress=progress) for v in data.views_at(size, progress)]
        return [f.mean(axis=(1, 2)) for f in feats] if pooled else feats

    if per_fold:
        memo: dict[int, list] = {}

        def features(f):
            if f not in memo:
                memo.clear()
                memo[f] = extract(weights_path[f])
            return tuple(memo[f])
    else:
        features = None
    fit = paper_fit_kwargs(profile) if head == "paper" else {"C": 0.1}
    config = {"data": data.dataset, "n": len(data), "backbone": backbone, "weights": weights, "size": list(size),
              "head": head, "pooled": pooled, "fit": fit, "seed": seed, "folds": int(profile.cls_folds),
              "weights_path": {str(k): str(v) for k, v in weights_path.items()} if per_fold else str(weights_path or ""),
              "keep_models": keep_models, "label": weights_label(backbone, weights), "views_at_size": 2}
    model_dir = None if out_dir is None else Path(out_dir) / "cls_models" / f"{name}-{config_key(config)}"

    def run():
        nonlocal features
        if features is None:
            features = tuple(extract(weights_path))
        oof = cross_validate_features(features, data.labels, data.patient_ids, k=int(profile.cls_folds), head=head,
                                      fit_kwargs=fit, seed=seed, keep_models=keep_models, progress=progress)
        if keep_models and model_dir is not None and head == "paper":
            model_dir.mkdir(parents=True, exist_ok=True)
            for f, m in enumerate(oof.attrs["models"]):
                m.save(model_dir / f"fold{f}.keras")
        run.models = oof.attrs.get("models")
        return oof

    run.models = None
    result = cached_run(out_dir, name, config, run)
    if features is None:
        features = tuple(extract(weights_path)) if not per_fold else features
    result.features = features
    result.models = run.models
    if keep_models and result.models is None and model_dir is not None and head == "paper":
        result.models = [keras.models.load_model(model_dir / f"fold{f}.keras", compile=False)
                         for f in range(int(profile.cls_folds))]
    return result


MORPHOMETRIC_CS: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
"""The inverse regularisation strengths that :func:`morphometric_cv` chooses from (``C_="cv"``)."""


def _inner_logistic(X_train, y_train, groups_train, seed: int):
    """L2 logistic regression whose ``C`` is chosen by an inner cross-validation on the training
    folds only (log loss, stratified and grouped by patient): nested, so the outer folds that
    report the accuracy never choose it."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedGroupKFold

    n_inner = int(min(4, np.bincount(y_train).min(), len(set(groups_train))))
    if n_inner < 2:  # too few patients for an inner split: the default strength
        return LogisticRegression(C=1.0, max_iter=5000)
    splits = list(StratifiedGroupKFold(n_splits=n_inner, shuffle=True, random_state=seed).split(
        X_train, y_train, groups_train))
    return LogisticRegressionCV(Cs=list(MORPHOMETRIC_CS), cv=splits, scoring="neg_log_loss", max_iter=5000,
                                l1_ratios=(0.0,), use_legacy_attributes=False)  # plain L2, scikit-learn 1.9 API


def morphometric_cv(name: str, features: pd.DataFrame, data: ClassificationInputs, profile: Profile,
                    out_dir: str | os.PathLike | None, seed: int = 0, C_: float | str = 1.0) -> CVResult:
    """The interpretable classifier: z-scored L2 logistic regression on measured features
    (one row per sample of ``data``, same order), on the same patient folds as every image run
    with this ``seed``. Missing values are filled with the training folds' median.

    ``C_``: the inverse regularisation strength (default 1, fixed before any result was seen), or
    ``"cv"`` to choose it per fold
    from :data:`MORPHOMETRIC_CS` by an inner cross-validation on that fold's training patients
    (nested; the chosen values are in ``result.info["C per fold"]``). The fitted coefficients
    (per fold) are in ``result.coefficients``."""
    from sklearn.impute import SimpleImputer

    if len(features) != len(data):
        raise ValueError(f"{len(features)} feature rows for {len(data)} samples")
    Xm = features.to_numpy(float)
    y = data.labels.astype(int)
    folds = list(patient_kfold(data.patient_ids, y, k=int(profile.cls_folds), seed=seed))
    if not (C_ == "cv" or (isinstance(C_, (int, float)) and not isinstance(C_, bool) and C_ > 0)):
        raise ValueError(f"C_ must be a positive number or 'cv', got {C_!r}")
    coefs, chosen = [], []

    def run():
        probs = {}
        for f, (train, val) in enumerate(folds):
            model = (_inner_logistic(Xm[train], y[train], data.patient_ids[train], seed + f) if C_ == "cv"
                     else LogisticRegression(C=float(C_), max_iter=5000))
            pipe = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), model)
            pipe.fit(Xm[train], y[train])
            probs[f] = pipe.predict_proba(Xm[val])[:, 1]
            coefs.append(pipe[-1].coef_[0])
            fitted = pipe[-1]
            chosen.append(float(np.ravel(fitted.C_)[0]) if hasattr(fitted, "C_") else float(fitted.C))
        return C._cv_frame(data.patient_ids, y, folds, probs)

    config = {"data": data.dataset, "n": len(data), "features": list(features.columns), "C": C_, "seed": seed,
              "folds": int(profile.cls_folds), "values": hashlib.sha256(np.nan_to_num(Xm).tobytes()).hexdigest()[:12]}
    result = cached_run(out_dir, name, config, run)
    if not coefs:  # cached: refit for the coefficients (fast)
        run()
    result.coefficients = pd.DataFrame(coefs, columns=features.columns).rename_axis("fold")
    result.info["C per fold"] = chosen
    result.info.setdefault("weights", "none (measured features)")
    return result


def image_size_features(data: ClassificationInputs) -> pd.DataFrame:
    """Each sample's original image size, read from the file headers: height, width and aspect
    (width / height) per view. A classifier on these alone measures how much a dataset's label
    leaks through its image sizes (the synthetic generator draws sizes within each class's range of
    the paper's Table 1, so Damaged X-rays are taller on average); the resized images carry the
    aspect ratio, not the size."""
    from spinelib.imageio import image_size

    if data.dataset == "aasce":
        h, w = data.table["height"].to_numpy(float), data.table["width"].to_numpy(float)
        return pd.DataFrame({"AP height": h, "AP width": w, "AP aspect": w / h})
    if data.root is None:
        raise ValueError("image_size_features needs inputs loaded from a folder (data.root)")
    dataset = data.scanned()
    rows = []
    for pid in data.patient_ids:
        row = {}
        for view, rec in sorted(dataset.patient(pid).views.items()):
            h, w = image_size(rec.image_path)
            row.update({f"{view} height": h, f"{view} width": w, f"{view} aspect": w / h})
        rows.append(row)
    return pd.DataFrame(rows).astype(float)


def synthetic_morphometrics(data: ClassificationInputs, out_dir: str | os.PathLike | None = None,
                            max_side: int = 1024, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(features, agreement)`` of every synthetic patient, measured on its *ground-truth* masks
    at native resolution (shrunk by an integer factor to ``max_side``, so angles and ratios are
    kept): :data:`spinelib.morphometrics.SYNTHETIC_FEATURES`, and, next to the generator's truth
    in ``meta.json``, per patient: wedge-ratio MAE, disk-height correlation, listhesis-offset MAE
    (pixels at full size), measured and true Cobb angle. Cached as CSV under ``out_dir``."""
    from spinelib import morphometrics as MM
    from spinelib.clinical import load_view

    if data.dataset != "synthetic" or data.root is None:
        raise ValueError("synthetic_morphometrics needs inputs from load_synthetic_inputs()")
    key = config_key({"root": str(data.root), "ids": list(data.patient_ids), "max_side": max_side, "v": 2})
    folder = None if out_dir is None else Path(out_dir) / "morphometrics"
    if folder is not None and (folder / f"synthetic-{key}-features.csv").is_file():
        return (pd.read_csv(folder / f"synthetic-{key}-features.csv"),
                pd.read_csv(folder / f"synthetic-{key}-agreement.csv", dtype={"patient_id": str}))
    dataset = data.scanned()
    feats, agree = [], []
    for pid in tqdm(data.patient_ids, desc="morphometrics", disable=not progress):
        rec = dataset.patient(pid)
        _, ap = load_view(rec, "AP", structures=["Ap_Vertebra"])
        _, lat = load_view(rec, "LAT", structures=["Lat_Vertebra", "Lat_Disk_Height"])
        ap_v, _ = MM.downscale_mask(ap[..., 0], max_side)
        lat_v, f = MM.downscale_mask(lat[..., 0], max_side)
        lat_d, _ = MM.downscale_mask(lat[..., 1], max_side)
        feats.append(MM.patient_features(ap_v, lat_v, lat_d))
        truth = MM.synthetic_truth(rec.folder)
        v, d, s = MM.vertebra_heights(lat_v), MM.disk_heights(lat_d), MM.listhesis_offsets(lat_v)
        row = {"patient_id": pid, "bodies found": len(v), "bodies true": len(truth["wedge_ratio"]),
               "cobb measured": feats[-1]["cobb_angle_deg"], "cobb true": truth["cobb_angle_deg"],
               "pathologies": truth["pathologies"]}
        if len(v) == len(truth["wedge_ratio"]):
            row["wedge ratio MAE"] = float(np.abs(v["wedge_ratio"] - truth["wedge_ratio"]).mean())
        if len(d) == len(truth["disk_height_px"]) and len(d) > 2:
            row["disk height r"] = float(np.corrcoef(d["height"] * f, truth["disk_height_px"])[0, 1])
        if len(s) == len(truth["listhesis_offset_px"]):
            row["listhesis offset MAE (px)"] = float(np.abs(s["offset"] * f - truth["listhesis_offset_px"]).mean())
        agree.append(row)
    features, agreement = pd.DataFrame(feats), pd.DataFrame(agree)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        features.to_csv(folder / f"synthetic-{key}-features.csv", index=False)
        agreement.to_csv(folder / f"synthetic-{key}-agreement.csv", index=False)
    return features, agreement


def aasce_mask_morphometrics(data: ClassificationInputs, unet_paths: dict[int, Path], sizes: ExperimentSizes,
                             k: int, seed: int = 0, out_dir: str | os.PathLike | None = None,
                             progress: bool = True) -> pd.DataFrame:
    """Measured on *predicted* vertebra masks, out of fold: every AASCE X-ray is segmented by
    the U-Net of the fold in which it is a test image (trained without its patient), then
    :func:`spinelib.morphometrics.ap_features` (centre-line Cobb angle on square pixels, tilt,
    lateral deviation). One row per image, in ``data`` order; cached under ``out_dir``."""
    from spinelib import morphometrics as MM
    from spinelib.segmentation import postprocess, predict

    folds = list(patient_kfold(data.patient_ids, data.labels, k=k, seed=seed))
    if set(unet_paths) != set(range(k)):
        raise ValueError(f"need one U-Net per fold 0..{k - 1}, got folds {sorted(unet_paths)}")
    key = config_key({"paths": {str(f): str(p) for f, p in unet_paths.items()},
                      "mtimes": [Path(p).stat().st_mtime for p in unet_paths.values()], "n": len(data), "seed": seed})
    path = None if out_dir is None else Path(out_dir) / "morphometrics" / f"aasce-predicted-{key}.csv"
    if path is not None and path.is_file():
        return pd.read_csv(path)
    x = resize_images(data.ap, sizes.unet_size) / np.float32(255)
    h, w = sizes.unet_size
    rows: dict[int, dict] = {}
    for f, (_, val) in enumerate(tqdm(folds, desc="segment + measure", disable=not progress)):
        masks = postprocess(predict(load_unet(unet_paths[f]), x[val]))
        for i, m in zip(val, masks):
            r = data.table.iloc[i]
            aspect = (r["width"] / w) / (r["height"] / h)
            rows[int(i)] = MM.ap_features(m[..., 0], method="centerline", pixel_aspect=aspect)
    out = pd.DataFrame([rows[i] for i in range(len(data))])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(path, index=False)
    return out


def targets_table(rows: Sequence[dict]) -> pd.DataFrame:
    """``target, threshold, measured, ci_low, ci_high, met`` for the issue's targets."""
    df = pd.DataFrame(rows)
    df["met"] = df["measured"] >= df["threshold"]
    return df


def grad_cam_figure(result: CVResult, data: ClassificationInputs, indices: Sequence[int], alpha: float = 0.4):
    """One row per sample: each view's X-ray with the Grad-CAM (:func:`feature_grad_cam`) of
    the fold model that never saw that patient; the title gives the truth and the probability.
    ``result`` must come from :func:`run_feature_cv` with ``keep_models=True`` and the paper head."""
    import matplotlib.pyplot as plt

    from spinelib.gradcam import overlay_heatmap

    if getattr(result, "models", None) is None:
        raise ValueError(f"run {result.name} kept no models: use run_feature_cv(..., keep_models=True)")
    views = [("AP", data.ap)] + ([("LAT", data.lat)] if data.lat is not None else [])
    names = ("Normal", "Damaged") if data.dataset == "synthetic" else ("Cobb < 40°", "Cobb >= 40°")
    fig, axes = plt.subplots(len(indices), len(views), figsize=(3.4 * len(views) + 1, 4.6 * len(indices)), squeeze=False)
    oof = result.oof.set_index("index")
    for r, i in enumerate(indices):
        f = int(oof.loc[i, "fold"])
        feats = result.features(f) if callable(result.features) else result.features
        cams = feature_grad_cam(result.models[f], [v[i] for v in feats])
        for c, ((view, images), cam) in enumerate(zip(views, cams)):
            kind = "SYNTHETIC" if data.dataset == "synthetic" else f"REAL {data.dataset.upper()}"
            title = f"{kind} {data.patient_ids[i]} {view}\ntrue: {names[int(data.labels[i])]}, " \
                    f"P({names[1]}) = {oof.loc[i, 'prob']:.2f} (fold {f + 1})"
            overlay_heatmap(images[i, ..., 0], upsample_cam(cam, images.shape[1:3]), alpha=alpha, title=title,
                            ax=axes[r, c])
    fig.tight_layout()
    return fig


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
        ax.annotate(str(k + 1), (r[cost], r[acc]), fontsize=8, xytext=(5, 3), textcoords="offset points")
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


def comparison_table(results: dict[str, CVResult], groups: Sequence, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Runs side by side on the same folds: accuracy (validation-chosen thresholds), AUROC with
    a patient-level bootstrap 95 % CI, Brier score, CPU minutes. ``results`` maps a label
    (naming the data and the weights) to a run."""
    from sklearn.metrics import brier_score_loss

    rows = []
    for label, res in results.items():
        s = res.summary()
        t = fold_thresholds(res.oof)
        auc, lo, hi = patient_bootstrap_auroc(t["y_true"], t["prob"], np.asarray(groups)[t["index"]], n_boot, seed)
        rows.append({"classifier": label, "accuracy": s["accuracy"], "accuracy@0.5": s["accuracy@0.5"],
                     "AUROC": auc, "AUROC 95% CI": f"{lo:.3f}-{hi:.3f}", "AUROC low": lo, "AUROC high": hi,
                     "Brier": brier_score_loss(t["y_true"], t["prob"]), "CPU minutes": res.cpu_minutes})
    return pd.DataFrame(rows).set_index("classifier")
