"""Segmentation experiments of the book: the paper's Table 2 and Table 3, and what goes beyond.

Every page-level experiment is one call, read top to bottom in the order data flows:

1. data - :func:`prepare_view_data` (synthetic or clinical layout, one view) and
   :func:`prepare_aasce_data` (real AASCE AP X-rays, vertebra bodies) return a
   :class:`SegmentationData`: train/validation arrays split **by patient**.
2. one experiment - :func:`run_experiment` builds a U-Net, trains it
   (:func:`spinelib.segmentation.train_segmentation`), predicts the validation patients and
   evaluates them per case (:func:`spinelib.seg_metrics.evaluate_masks`): Dice, IoU, HD95 and the
   predicted against the true white fraction. A finished run is cached in ``out_dir/<name>`` and
   re-running the page reuses it.
3. tables - :func:`table2` (the paper's failed experiments beside its claims), :func:`table3`
   (Dice per structure beside :data:`spinelib.structures.PAPER_DICE`), :func:`compare_results`.
4. thin lines - :func:`spine_boxes` (a crop box from a **predicted** vertebra mask),
   :func:`crop_resize`, :func:`uncrop`, :func:`full_resolution_dice` and :func:`line_width_table`.
5. figures - :func:`cases_figure` (best and worst validation cases), :func:`white_fraction_figure`.

Numbers are always computed on the validation patients, never on training patients.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines, unless set

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from spinelib.seg_metrics import evaluate_masks, summarise  # noqa: E402
from spinelib.splits import patient_split  # noqa: E402
from spinelib.structures import PAPER_DICE, STRUCTURES  # noqa: E402

AASCE_STRUCTURE = "AASCE_Vertebra"
"""Name of the single AASCE structure: the 17 vertebral bodies T1-L5, drawn from the corners."""

RESULT_FILE, CASES_FILE, PROB_FILE, KEY_FILE = "result.json", "cases.csv", "val_prob.npz", "experiment_key.txt"
LEVELS_FILE = "levels.csv"
"""Dice per vertebra (:func:`aasce_level_summary`) beside an AASCE long run's ``metrics.json``."""

# --------------------------------------------------------------------------------------------
# 1. data


@dataclass
class SegmentationData:
    """Train/validation arrays of one segmentation problem, split by patient.

    Images ``float32 (N, H, W, 1)`` in [0, 1]; masks ``float32 (N, H, W, C)``, channel ``c`` is
    ``structures[c]``. ``val_sources`` lets :func:`full_resolution_dice` and the spine crop go back
    to the original files (one entry per validation image; ``train_sources`` likewise).
    """

    name: str
    source: str  # "synthetic", "clinical" or "real AASCE"
    view: str  # "AP" or "LAT"
    structures: tuple[str, ...]
    train_images: np.ndarray
    train_masks: np.ndarray
    val_images: np.ndarray
    val_masks: np.ndarray
    train_ids: list[str]
    val_ids: list[str]
    train_sources: list = field(default_factory=list, repr=False)
    val_sources: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        self.structures = tuple(self.structures)
        for split in ("train", "val"):
            x, y = getattr(self, f"{split}_images"), getattr(self, f"{split}_masks")
            ids = getattr(self, f"{split}_ids")
            if x.ndim != 4 or x.shape[-1] != 1 or y.ndim != 4 or x.shape[:3] != y.shape[:3]:
                raise ValueError(f"{self.name}: {split} images {x.shape} / masks {y.shape} must be (N, H, W, 1) / (N, H, W, C)")
            if len(ids) != len(x):
                raise ValueError(f"{self.name}: {len(ids)} {split} patient ids for {len(x)} images")
            if y.shape[-1] != len(self.structures):
                raise ValueError(f"{self.name}: {y.shape[-1]} mask channels for structures {self.structures}")
        overlap = set(self.train_ids) & set(self.val_ids)
        if overlap:
            raise ValueError(f"{self.name}: patients on both sides of the split: {sorted(overlap)[:5]}")

    @property
    def size(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.train_images.shape[1:3])

    def select(self, structures: Sequence[str] | str) -> SegmentationData:
        """The same split with only the given structures' mask channels."""
        names = [structures] if isinstance(structures, str) else list(structures)
        unknown = [s for s in names if s not in self.structures]
        if unknown or not names:
            raise ValueError(f"{self.name}: structures {unknown or names} not among {self.structures}")
        idx = [self.structures.index(s) for s in names]
        return replace(self, structures=tuple(names), train_masks=self.train_masks[..., idx],
                       val_masks=self.val_masks[..., idx])

    def describe(self) -> pd.DataFrame:
        """Patients and images per split, and the mean white fraction of each structure."""
        rows = []
        for split, ids, m in (("train", self.train_ids, self.train_masks), ("validation", self.val_ids, self.val_masks)):
            row = {"split": split, "patients": len(set(ids)), "images": len(ids)}
            row.update({f"white % {s}": 100 * float(m[..., c].mean()) for c, s in enumerate(self.structures)})
            rows.append(row)
        return pd.DataFrame(rows).set_index("split")

    def fingerprint(self) -> str:
        """A short hash of the arrays and the split (part of every cache key)."""
        h = hashlib.sha1()
        for a in (self.train_images, self.train_masks, self.val_images, self.val_masks):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a[:, ::4, ::4]).tobytes())
        h.update(json.dumps([self.train_ids, self.val_ids, list(self.structures)]).encode())
        return h.hexdigest()[:16]


@contextlib.contextmanager
def quiet_tensorflow():
    """Raise TensorFlow's Python logger to ERROR inside the block: every experiment builds a new
    model, and TensorFlow warns about the retracing that this implies (harmless here)."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _split(patient_ids: Sequence[str], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return patient_split(patient_ids, val_fraction=val_fraction, seed=seed)


def prepare_view_data(
    root: str | os.PathLike,
    view: str,
    size: tuple[int, int],
    structures: Sequence[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    source: str = "synthetic",
    progress: bool = True,
) -> SegmentationData:
    """Load one view of a dataset in the paper's layout and split it by patient.

    ``root``: a synthetic or clinical dataset folder (:func:`spinelib.clinical.scan_clinical`);
    ``size=(h, w)``: the network's input size (images anti-aliased, masks nearest-neighbour, as
    :func:`spinelib.clinical.load_segmentation_arrays`). About ``val_fraction`` of the patients
    (:func:`spinelib.splits.patient_split` with ``seed``) are validation patients.
    """
    from spinelib.clinical import load_segmentation_arrays, scan_clinical

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    dataset = scan_clinical(root, progress=False)
    images, masks, ids = load_segmentation_arrays(dataset, view, size, structures=structures, progress=progress)
    from spinelib.clinical import _structures_for

    names = _structures_for(view, structures)
    records = {p.patient_id: p for p in dataset.patients}
    train, val = _split(ids, val_fraction, seed)
    return SegmentationData(
        name=f"{source} {view}", source=source, view=view, structures=tuple(names),
        train_images=images[train], train_masks=masks[train], val_images=images[val], val_masks=masks[val],
        train_ids=[ids[i] for i in train], val_ids=[ids[i] for i in val],
        train_sources=[records[ids[i]] for i in train], val_sources=[records[ids[i]] for i in val],
    )


def prepare_aasce_data(
    root: str | os.PathLike,
    size: tuple[int, int],
    max_images: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = True,
) -> SegmentationData:
    """The real AASCE AP X-rays with their vertebra-body masks, split by patient.

    Masks are the 17 quadrilaterals T1-L5 drawn from the corner landmarks at ``size``
    (:func:`spinelib.aasce.load_aasce_arrays`); several images of one patient stay together.
    """
    from spinelib.aasce import load_aasce, load_aasce_arrays

    frame = load_aasce(root, max_images=max_images)
    if frame["patient_id"].nunique() < 2:
        raise ValueError(f"AASCE at {root}: need images of at least 2 patients to split, got {len(frame)} image(s)")
    images, masks = load_aasce_arrays(frame, size, progress=progress)
    ids = frame["patient_id"].astype(str).tolist()
    train, val = _split(ids, val_fraction, seed)
    rows = [r for _, r in frame.iterrows()]
    return SegmentationData(
        name="real AASCE AP", source="real AASCE", view="AP", structures=(AASCE_STRUCTURE,),
        train_images=images[train], train_masks=masks[train], val_images=images[val], val_masks=masks[val],
        train_ids=[ids[i] for i in train], val_ids=[ids[i] for i in val],
        train_sources=[rows[i] for i in train], val_sources=[rows[i] for i in val],
    )


# --------------------------------------------------------------------------------------------
# 2. one experiment


ENCODERS = ("none", "lite0-imagenet", "lite0-random")
"""Contracting paths of :func:`run_experiment`: the plain U-Net's own, or EfficientNet-Lite0
(:func:`spinelib.unet.lite0_unet`) with ImageNet weights or a random start."""


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines one experiment (its cache key, with the data fingerprint)."""

    loss: str = "paper"
    filters: int = 16
    depth: int = 5
    batch_norm: bool = False
    bn_momentum: float = 0.99  # Keras' default; 0.9 for short runs (see spinelib.unet.unet)
    up: str = "transpose"
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    augment: bool | dict = False
    patience: int = 15
    checkpoint: str = "last"  # evaluate the "last" epoch's model or the "best" (val Dice) one
    tta: bool = False
    postprocess: dict | None = None
    seed: int = 0
    encoder: str = "none"  # "none": the U-Net of spinelib.unet.unet; "lite0-imagenet" / "lite0-random": lite0_unet
    lr_schedule: str = "plateau"  # or "cosine" (spinelib.segmentation.cosine_lr)
    full_res_skip: int = 0  # lite0_unet only: channels of a stride-1 skip from the X-ray (0 = none)
    decoder_filters: tuple | None = None  # lite0_unet only: 5 decoder widths (None = spinelib.unet.LITE0_DECODER)

    def to_dict(self) -> dict:
        d = json.loads(json.dumps(asdict(self)))
        # the key of every run from before these fields existed stays the same
        for field, default in (("encoder", "none"), ("lr_schedule", "plateau"), ("full_res_skip", 0),
                               ("decoder_filters", None)):
            if d[field] == default:
                del d[field]
        return d


@dataclass
class ExperimentResult:
    """A finished experiment: configuration, per-case metrics, summary and timings."""

    name: str
    data_name: str
    source: str
    structures: tuple[str, ...]
    config: dict
    cases: pd.DataFrame  # evaluate_masks rows + patient column
    summary: pd.DataFrame  # summarise() over validation patients
    history: pd.DataFrame
    params: int
    train_seconds: float  # wall time of all training epochs (sum of epoch times)
    seconds_per_epoch: float
    epochs_run: int
    predict_seconds: float
    out_dir: Path
    key: str = ""

    def dice(self) -> pd.Series:
        """Mean validation Dice per structure (over patients)."""
        s = self.summary[self.summary["metric"] == "dice"].set_index("structure")["mean"]
        return s.reindex(self.structures)

    def white_fraction(self) -> pd.DataFrame:
        """Per structure: mean true and predicted white fraction (%), and the share of validation
        cases whose prediction is entirely black."""
        g = self.cases.groupby("structure", sort=False)
        out = pd.DataFrame({
            "true white %": 100 * g["true_fraction"].mean(),
            "predicted white %": 100 * g["pred_fraction"].mean(),
            "all-black cases %": 100 * g["pred_fraction"].apply(lambda v: float((v == 0).mean())),
        })
        return out.reindex(list(self.structures))

    def val_prob(self) -> np.ndarray:
        """Validation probabilities ``(N, H, W, C)`` as stored (float16 -> float32)."""
        with np.load(self.out_dir / PROB_FILE) as z:
            return z["prob"].astype(np.float32)

    def load_model(self, which: str | None = None):
        """The trained Keras model (``which``: "last" or "best"; default the evaluated one)."""
        import keras

        which = which or self.config.get("checkpoint", "last")
        path = self.out_dir / ("best.keras" if which == "best" else "last.keras")
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist (was the experiment {self.name!r} trained here?)")
        return keras.models.load_model(path, compile=False)


def _patient_summary(cases: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Average several images of one patient first, then summarise over patients."""
    metrics = ["dice", "iou", "hd95"]
    per_patient = cases.groupby(["patient", "structure"], sort=False)[metrics].mean().reset_index()
    return summarise(per_patient, n_boot=n_boot, seed=seed, metrics=metrics)


def training_fit(model, data: SegmentationData, batch_size: int = 8, tta_flip: bool = False,
                 seed: int = 0, val_prob: np.ndarray | None = None) -> dict:
    """Dice of a trained ``model`` on its **own training images**, without augmentation, beside its
    validation Dice: the mean over training patients and over validation patients, thresholded at
    0.5, both in the network's frame.

    Not a validation number: it says whether a network underfits (the two close together, both
    low: more capacity, epochs or cleaner labels could help) or overfits (training far above
    validation). Returns ``{"train": {"mean", "ci95"}, "val": {...}, "n_train_patients",
    "n_val_patients"}``; with several structures, the means (and, only as a rough guide, the
    interval bounds) are averaged over structures. ``val_prob``: the model's validation
    probabilities (same ``tta_flip``) when the caller has them already, instead of predicting again.
    """
    from spinelib.segmentation import predict

    out: dict = {}
    for split, images, masks, ids, prob in (
            ("train", data.train_images, data.train_masks, data.train_ids, None),
            ("val", data.val_images, data.val_masks, data.val_ids, val_prob)):
        if prob is None:
            prob = predict(model, images, batch_size=batch_size, tta_flip=tta_flip)
        _, summary = evaluate_probabilities(prob, masks, data.structures, ids, n_boot=200, seed=seed)
        d = summary.query("metric == 'dice'")
        out[split] = {"mean": float(d["mean"].mean()), "ci95": [float(d["ci_low"].mean()), float(d["ci_high"].mean())]}
        out[f"n_{split}_patients"] = len(set(ids))
    return out


def outline_error_summary(prob: np.ndarray, masks: np.ndarray, bands: Sequence[float] = (1.0, 2.0)) -> dict:
    """How much of the disagreement between thresholded ``prob`` and ``masks`` (``(N, H, W, C)``,
    every image and channel) lies on the true outline (:func:`spinelib.seg_metrics.outline_errors`):
    per band, the share of all wrong pixels within it and the mean per-image Dice if those were
    right; plus the mean per-image Dice as it is."""
    from spinelib.seg_metrics import _outline_errors, distance_to_outline

    p, t = np.asarray(prob) > 0.5, np.asarray(masks) > 0.5
    if p.shape != t.shape or p.ndim != 4:
        raise ValueError(f"prob and masks must both be (N, H, W, C), got {p.shape} and {t.shape}")
    pairs = [(t[i, ..., c], p[i, ..., c]) for i in range(len(t)) for c in range(t.shape[-1])]
    dists = [distance_to_outline(ti) for ti, _ in pairs]  # once per image, whatever the bands
    out: dict = {"mean_image_dice": None}
    for band in bands:
        rows = [_outline_errors(ti, pi, d, band) for (ti, pi), d in zip(pairs, dists)]
        wrong = sum(r["error_pixels"] for r in rows)
        near = sum(r["error_pixels"] * r["outline_share"] for r in rows)
        out["mean_image_dice"] = float(np.mean([r["dice"] for r in rows]))
        out[f"within_{band:g}px"] = {"share_of_wrong_pixels": float(near / wrong) if wrong else 0.0,
                                     "mean_image_dice_if_right": float(np.mean([r["dice_outline_fixed"] for r in rows]))}
    return out


def evaluate_probabilities(
    prob: np.ndarray,
    masks: np.ndarray,
    structures: Sequence[str],
    patient_ids: Sequence[str],
    postprocess_kwargs: dict | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-case metrics and their per-patient summary for probabilities against true masks.

    Probabilities are thresholded at 0.5, or cleaned by :func:`spinelib.segmentation.postprocess`
    when ``postprocess_kwargs`` is given. Returns ``(cases, summary)``.
    """
    from spinelib.segmentation import postprocess

    prob = np.asarray(prob, dtype=np.float32)
    if prob.shape != masks.shape:
        raise ValueError(f"probabilities {prob.shape} and masks {masks.shape} differ in shape")
    pred = postprocess(prob, **postprocess_kwargs) if postprocess_kwargs is not None else prob > 0.5
    cases = evaluate_masks(masks, pred.astype(np.float32), list(structures), case_ids=list(range(len(prob))))
    cases.insert(1, "patient", [str(patient_ids[i]) for i in cases["case"]])
    return cases, _patient_summary(cases, n_boot, seed)


def _key(data: SegmentationData, cfg: ExperimentConfig) -> str:
    blob = json.dumps({"data": data.fingerprint(), "config": cfg.to_dict()}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


_TRAIN_FILES = ("best.keras", "last.keras", "train_state.json", "history.csv", ".last.tmp.keras",
                RESULT_FILE, CASES_FILE, PROB_FILE)


def _clear_run(run_dir: Path) -> None:
    for name in _TRAIN_FILES:
        (run_dir / name).unlink(missing_ok=True)


def load_result(run_dir: str | os.PathLike) -> ExperimentResult:
    """Read a finished experiment from its folder (``result.json``, ``cases.csv``, ``history.csv``)."""
    run_dir = Path(run_dir)
    path = run_dir / RESULT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: no finished experiment in {run_dir}")
    meta = json.loads(path.read_text())
    cases = pd.read_csv(run_dir / CASES_FILE, dtype={"patient": str})
    hist = run_dir / "history.csv"
    history = pd.read_csv(hist) if hist.exists() and hist.stat().st_size else pd.DataFrame()
    summary = pd.DataFrame(meta.pop("summary"))
    summary = summary.astype({c: float for c in ("mean", "sd", "ci_low", "ci_high")} | {"n": int})
    meta["structures"] = tuple(meta["structures"])
    meta["out_dir"] = run_dir
    return ExperimentResult(cases=cases, summary=summary, history=history, **meta)


def run_experiment(
    data: SegmentationData,
    out_dir: str | os.PathLike,
    name: str,
    structures: Sequence[str] | None = None,
    n_boot: int = 1000,
    verbose: int = 0,
    rerun: bool = False,
    **config,
) -> ExperimentResult:
    """Train and evaluate one U-Net on ``data`` (optionally only ``structures``); cached.

    ``config``: fields of :class:`ExperimentConfig` - ``loss`` (a :mod:`spinelib.losses` name),
    ``filters``, ``depth``, ``batch_norm``, ``bn_momentum``, ``up``, ``epochs``, ``batch_size``, ``lr``,
    ``augment``, ``patience``, ``lr_schedule`` ("plateau" or "cosine"), ``checkpoint`` ("last" or "best" epoch), ``tta`` (flip
    test-time augmentation), ``postprocess`` (kwargs of
    :func:`spinelib.segmentation.postprocess`, ``None`` = threshold 0.5), ``seed``, ``encoder`` (:data:`ENCODERS`).

    The run lives in ``out_dir/name``. If it finished before with the same data and config,
    the stored result is returned without training; an interrupted run resumes from its last
    epoch; a run with another config is deleted and redone (``rerun=True`` forces that).
    The network has one sigmoid output per structure (a multi-output network when several).
    """
    import keras

    from spinelib.config import set_seed
    from spinelib.segmentation import train_segmentation
    from spinelib.unet import LITE0_DECODER, lite0_unet, unet

    if structures is not None:
        data = data.select(structures)
    unknown = set(config) - set(ExperimentConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown experiment setting(s) {sorted(unknown)}; known: {list(ExperimentConfig.__dataclass_fields__)}")
    cfg = ExperimentConfig(**config)
    if cfg.encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {cfg.encoder!r}")
    if cfg.full_res_skip and cfg.encoder == "none":
        raise ValueError("full_res_skip is an option of the Lite0 encoder's network; the plain U-Net has its own "
                         "full-resolution skip")
    if cfg.decoder_filters is not None and cfg.encoder == "none":
        raise ValueError("decoder_filters is an option of the Lite0 encoder's network; the plain U-Net's widths "
                         "follow from filters and depth")
    from spinelib.segmentation import LR_SCHEDULES

    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {cfg.lr_schedule!r}")
    if cfg.checkpoint not in ("last", "best"):
        raise ValueError(f"checkpoint must be 'last' or 'best', got {cfg.checkpoint!r}")
    if not name or any(c in name for c in "/\\"):
        raise ValueError(f"experiment name must be a non-empty folder name, got {name!r}")
    run_dir = Path(out_dir) / name
    key = _key(data, cfg)
    if (run_dir / RESULT_FILE).is_file() and not rerun:
        try:
            done = load_result(run_dir)
        except (KeyError, ValueError, TypeError, json.JSONDecodeError):  # an older format: redo it
            done = None
        if done is not None and done.key == key:
            return done
    stamp = run_dir / KEY_FILE
    if rerun or (run_dir / RESULT_FILE).is_file() or not stamp.is_file() or stamp.read_text().strip() != key:
        _clear_run(run_dir)  # another config (or a finished run to redo): start again
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)

    keras.backend.clear_session()  # one graph per experiment: no retracing warnings, memory freed
    set_seed(cfg.seed)
    if cfg.encoder == "none":
        model = unet(data.train_images.shape[1:], filters=cfg.filters, depth=cfg.depth,
                     n_classes=len(data.structures), up=cfg.up, batch_norm=cfg.batch_norm,
                     bn_momentum=cfg.bn_momentum, name=f"unet_{name}"[:60])
    else:  # a pretrained (or randomly initialised) EfficientNet-Lite0 encoder; filters/depth/up do not apply
        model = lite0_unet(data.train_images.shape[1:], n_classes=len(data.structures),
                           weights="imagenet" if cfg.encoder == "lite0-imagenet" else None,
                           bn_momentum=cfg.bn_momentum, full_res_skip=cfg.full_res_skip,
                           decoder_filters=tuple(cfg.decoder_filters or LITE0_DECODER), name=f"lite0_{name}"[:60])
    with quiet_tensorflow():
        trained = train_segmentation(model, data.train_images, data.train_masks, data.val_images, data.val_masks,
                                     loss=cfg.loss, epochs=cfg.epochs, batch_size=cfg.batch_size, out_dir=run_dir,
                                     lr=cfg.lr, seed=cfg.seed, augment=cfg.augment, patience=cfg.patience,
                                     verbose=verbose, lr_schedule=cfg.lr_schedule)
        return _finish(data, run_dir, name, cfg, key, n_boot, model=trained.model)


def _finish(data: SegmentationData, run_dir: Path, name: str, cfg: ExperimentConfig, key: str,
            n_boot: int, model=None) -> ExperimentResult:
    import keras

    from spinelib.segmentation import predict

    if model is None or cfg.checkpoint == "best":
        model = keras.models.load_model(run_dir / ("best.keras" if cfg.checkpoint == "best" else "last.keras"),
                                        compile=False)
    t0 = time.perf_counter()
    prob = predict(model, data.val_images, batch_size=cfg.batch_size, tta_flip=cfg.tta)
    predict_seconds = time.perf_counter() - t0
    cases, summary = evaluate_probabilities(prob, data.val_masks, data.structures, data.val_ids,
                                            cfg.postprocess, n_boot=n_boot, seed=cfg.seed)
    history = pd.read_csv(run_dir / "history.csv")
    secs = history["epoch_seconds"].to_numpy(float) if "epoch_seconds" in history else np.array([np.nan])
    result = ExperimentResult(
        name=name, data_name=data.name, source=data.source, structures=data.structures,
        config=cfg.to_dict(), cases=cases, summary=summary, history=history,
        params=int(model.count_params()), train_seconds=float(np.nansum(secs)),
        seconds_per_epoch=float(np.nanmean(secs)), epochs_run=int(len(history)),
        predict_seconds=float(predict_seconds), out_dir=run_dir, key=key,
    )
    np.savez_compressed(run_dir / PROB_FILE, prob=prob.astype(np.float16))
    cases.to_csv(run_dir / CASES_FILE, index=False)
    meta = {k: getattr(result, k) for k in ("name", "data_name", "source", "config", "params", "train_seconds",
                                             "seconds_per_epoch", "epochs_run", "predict_seconds", "key")}
    meta["structures"] = list(result.structures)
    meta["summary"] = json.loads(summary.to_json(orient="records"))
    from spinelib.segmentation import _write_json

    _write_json(run_dir / RESULT_FILE, meta)
    return result


# --------------------------------------------------------------------------------------------
# 3. tables

TABLE2_ROWS: dict[str, dict] = {
    "bce": {"loss": "bce"},
    "jaccard": {"loss": "jaccard"},
    "jaccard_batchnorm": {"loss": "jaccard", "batch_norm": True},
    "paper": {"loss": "paper"},
    "jaccard_batchnorm_0.9": {"loss": "jaccard", "batch_norm": True, "bn_momentum": 0.9},
    "paper_batchnorm_0.9": {"loss": "paper", "batch_norm": True, "bn_momentum": 0.9},
}
"""The rows of the re-run Table 2: the paper's three experiments on the AP pedicle, its final loss,
and two rows of ours with a faster batch-norm moving average (Keras' default momentum is 0.99)."""

TABLE2_CLAIMS: dict[str, str] = {
    "bce": "black mask",
    "jaccard": "black mask",
    "jaccard_batchnorm": "mostly black",
    "paper": f"Dice {PAPER_DICE['Ap_Pedicle']:.4f} (Table 3)",
}
"""What the paper reports for each row of its Table 2 on the AP pedicle (and its final loss)."""


def mask_verdict(predicted_white: float, true_white: float, all_black_cases: float) -> str:
    """Name what a network paints, from its white fractions (percent of the image):

    - ``black mask``: at least half of the validation images predicted entirely black, or less
      than a tenth of the true white share painted;
    - ``mostly black``: less than half of the true white share;
    - ``mostly white``: more than five times the true white share (a collapse the other way);
    - ``a mask`` otherwise (whether it is the *right* mask is the Dice's business).
    """
    if all_black_cases >= 50 or predicted_white < 0.1 * true_white:
        return "black mask"
    if predicted_white < 0.5 * true_white:
        return "mostly black"
    if predicted_white > 5 * true_white:
        return "mostly white"
    return "a mask"


def table2(results: Mapping[str, ExperimentResult], claims: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per experiment: loss, batch norm, the paper's result (``paper_result``), what the
    network paints (``verdict``, :func:`mask_verdict`), the measured Dice (mean and 95 % CI over
    validation patients), predicted against true white fraction and the share of all-black
    predictions. ``claims`` maps an experiment name to the paper's result
    (default :data:`TABLE2_CLAIMS`)."""
    claims = TABLE2_CLAIMS if claims is None else claims
    rows = []
    for name, r in results.items():
        if len(r.structures) != 1:
            raise ValueError(f"table2 compares single-structure experiments; {name!r} has {r.structures}")
        d = r.summary.query("metric == 'dice'").iloc[0]
        w = r.white_fraction().iloc[0]
        rows.append({
            "experiment": name, "structure": r.structures[0], "loss": r.config["loss"],
            "batch_norm": r.config["batch_norm"], "paper_result": claims.get(name, ""),
            "verdict": mask_verdict(w["predicted white %"], w["true white %"], w["all-black cases %"]),
            "dice": d["mean"], "dice_ci_low": d["ci_low"], "dice_ci_high": d["ci_high"],
            "true white %": w["true white %"], "predicted white %": w["predicted white %"],
            "all-black cases %": w["all-black cases %"], "epochs": r.epochs_run,
            "minutes": r.train_seconds / 60,
        })
    return pd.DataFrame(rows).set_index("experiment")


def table3(results: Sequence[ExperimentResult] | ExperimentResult, paper: Mapping[str, float] = PAPER_DICE,
           views: Mapping[str, SegmentationData] | None = None, n_boot: int = 1000) -> pd.DataFrame:
    """Dice per structure beside the paper's Table 3 (structures in the paper's order):
    ``paper_dice, dice, ci_low, ci_high, n_patients, experiment, difference, at_or_above_paper``.

    ``dice`` is measured at the network's input size, against masks resized to it (the paper's
    way). With ``views`` (view name -> the :class:`SegmentationData` the results were trained on),
    a column ``dice_original_resolution`` adds :func:`full_resolution_dice`: probabilities
    resized to each X-ray's size against the original masks.
    """
    from spinelib.structures import view_of

    if isinstance(results, ExperimentResult):
        results = [results]
    rows = {}
    for r in results:
        s = r.summary.query("metric == 'dice'").set_index("structure")
        full = None
        if views is not None:
            data = views[view_of(r.structures[0])].select(list(r.structures))
            full = full_resolution_dice(data, r.val_prob(), n_boot=n_boot, progress=False)
            full = full.query("metric == 'dice'").set_index("structure")["mean"]
        for structure in r.structures:
            d = s.loc[structure]
            rows[structure] = {
                "paper_dice": paper.get(structure, np.nan), "dice": d["mean"], "ci_low": d["ci_low"],
                "ci_high": d["ci_high"], "n_patients": int(d["n"]), "experiment": r.name,
            }
            if full is not None:
                rows[structure]["dice_original_resolution"] = full[structure]
    order = [s for s in STRUCTURES if s in rows] + [s for s in rows if s not in STRUCTURES]
    df = pd.DataFrame.from_dict(rows, orient="index").reindex(order)
    df["difference"] = df["dice"] - df["paper_dice"]
    df["at_or_above_paper"] = df["dice"] >= df["paper_dice"]
    df.index.name = "structure"
    return df


def final_table3(remedy_dice: pd.DataFrame, pipeline: str = "spine crop + Dice loss",
                 input_frame: pd.Series | None = None) -> pd.DataFrame:
    """The book's final answer per structure: the Dice of one fixed ``pipeline`` (a column of
    :attr:`Remedies.dice`, chosen before looking at the numbers, at the original resolution)
    beside the paper's. Columns ``paper_dice, final_dice, pipeline, at_or_above_paper``; with
    ``input_frame`` (:meth:`Remedies.input_frame_dice`: the same networks measured in their own
    input frame, the paper's protocol) also ``input_frame_dice, input_frame_at_or_above_paper``."""
    if pipeline not in remedy_dice.columns:
        raise ValueError(f"no column {pipeline!r} in the remedies table; columns: {list(remedy_dice.columns)}")
    out = pd.DataFrame({"paper_dice": remedy_dice["paper_dice"], "final_dice": remedy_dice[pipeline]})
    out["pipeline"] = f"{pipeline} (original resolution)"
    out["at_or_above_paper"] = out["final_dice"] >= out["paper_dice"]
    if input_frame is not None:
        out["input_frame_dice"] = input_frame.reindex(out.index)
        out["input_frame_at_or_above_paper"] = out["input_frame_dice"] >= out["paper_dice"]
    return out


def compare_results(results: Mapping[str, ExperimentResult | pd.DataFrame], metric: str = "dice") -> pd.DataFrame:
    """Mean ``metric`` per structure (rows) for several experiments or summaries (columns)."""
    cols = {}
    for label, r in results.items():
        summary = r.summary if isinstance(r, ExperimentResult) else r
        cols[label] = summary.query("metric == @metric").set_index("structure")["mean"]
    df = pd.DataFrame(cols)
    order = [s for s in STRUCTURES if s in df.index] + [s for s in df.index if s not in STRUCTURES]
    return df.reindex(order)


def timing_table(groups: Mapping[str, Sequence[ExperimentResult]]) -> pd.DataFrame:
    """Per group of experiments (e.g. one multi-output network per view, or eight single ones):
    networks, parameters, epochs, training minutes, seconds per epoch and prediction seconds."""
    rows = []
    for label, rs in groups.items():
        rs = list(rs)
        rows.append({
            "setup": label, "networks": len(rs), "parameters": sum(r.params for r in rs),
            "epochs (total)": sum(r.epochs_run for r in rs),
            "training minutes": sum(r.train_seconds for r in rs) / 60,
            "seconds per epoch (all networks)": sum(r.seconds_per_epoch for r in rs),
            "prediction seconds (validation set)": sum(r.predict_seconds for r in rs),
        })
    return pd.DataFrame(rows).set_index("setup")


def inference_variants(
    result: ExperimentResult,
    data: SegmentationData,
    variants: Mapping[str, dict] | None = None,
    n_boot: int = 1000,
) -> pd.DataFrame:
    """Dice per structure for one trained network under several inference settings.

    ``variants`` maps a label to ``{"tta": bool, "postprocess": dict | None}``; the default
    compares plain thresholding, :func:`spinelib.segmentation.postprocess` (small components
    removed, holes filled), flip test-time augmentation, and both. Also reports the prediction
    time of each. Returns a table with one column per variant (plus ``seconds`` rows).
    """
    from spinelib.segmentation import predict

    if variants is None:
        pp = {"threshold": 0.5, "min_size_fraction": 0.0005, "fill_holes": True}
        variants = {"threshold 0.5": {}, "post-processing": {"postprocess": pp},
                    "flip TTA": {"tta": True}, "flip TTA + post-processing": {"tta": True, "postprocess": pp}}
    if data.structures != result.structures:
        data = data.select(result.structures)
    model = result.load_model()
    probs, seconds, cols = {}, {}, {}
    for label, v in variants.items():
        unknown = set(v) - {"tta", "postprocess"}
        if unknown:
            raise ValueError(f"variant {label!r}: unknown setting(s) {sorted(unknown)}; use tta and postprocess")
        tta = bool(v.get("tta", False))
        t0 = time.perf_counter()
        if tta not in probs:
            with quiet_tensorflow():
                probs[tta] = predict(model, data.val_images, batch_size=8, tta_flip=tta)
        prob = probs[tta]
        _, summary = evaluate_probabilities(prob, data.val_masks, data.structures, data.val_ids,
                                            v.get("postprocess"), n_boot=n_boot)
        seconds[label] = time.perf_counter() - t0
        cols[label] = summary.query("metric == 'dice'").set_index("structure")["mean"]
    df = pd.DataFrame(cols).reindex(list(data.structures))
    df.loc["seconds (predict + evaluate)"] = pd.Series(seconds)
    return df


# --------------------------------------------------------------------------------------------
# 4. thin lines: resolution, spine crop, full-resolution Dice


def line_width_table(data: SegmentationData, structures: Sequence[str] | None = None,
                     sizes: Sequence[tuple[int, int]] = ((256, 128), (512, 256)), n: int = 6) -> pd.DataFrame:
    """How wide a structure is, in pixels, at the original resolution and at input ``sizes``.

    Width is measured per row: white pixels / rows with any white pixel (for the near-vertical
    lines, their horizontal thickness). ``rows hit %`` is the share of the structure's rows
    (top to bottom of the structure) that still hold a white pixel after nearest-neighbour
    resizing: below 100 % the line is dotted, which is what the network is asked to learn.
    Uses the first ``n`` validation patients' original masks.
    """
    from spinelib.clinical import load_view
    from spinelib.imageio import resize_mask

    if not data.val_sources or not hasattr(data.val_sources[0], "views"):
        raise ValueError(f"{data.name}: line_width_table needs the dataset's patient records (prepare_view_data)")
    names = list(structures or data.structures)
    rows = []
    for record in data.val_sources[:n]:
        _, masks = load_view(record, data.view, structures=names)
        for c, s in enumerate(names):
            m = masks[..., c]
            frames = [("original", m)] + [(f"{h}x{w}", resize_mask(m, (h, w))) for h, w in sizes]
            for label, mm in frames:
                r = np.flatnonzero(mm.any(axis=1))
                span = (r.max() - r.min() + 1) if r.size else 0
                rows.append({"structure": s, "frame": label, "height": mm.shape[0],
                             "width px": mm.sum() / max(r.size, 1), "rows hit %": 100 * r.size / max(span, 1)})
    df = pd.DataFrame(rows)
    return df.groupby(["structure", "frame"], sort=False)[["height", "width px", "rows hit %"]].mean()


def resolution_ceiling(data: SegmentationData, sizes: Sequence[tuple[int, int]],
                       structures: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The best Dice any network working at an input size can reach at the **original**
    resolution: each validation patient's true mask, resized to the size (nearest neighbour, as
    the training targets) and back (as :func:`full_resolution_dice` does with predictions).
    One column per size (``"HxW"``), one row per structure. A thin line that the resizing turns
    into dots cannot come back whole, however good the network."""
    from spinelib.imageio import resize_mask

    names = list(structures or data.structures)
    sub = data.select(names) if names != list(data.structures) else data
    originals = [load_original(data, record, names)[1] for record in data.val_sources]
    cols = {}
    for h, w in sizes:
        prob = np.stack([np.stack([resize_mask(m[..., c], (h, w)) for c in range(len(names))], axis=-1)
                         for m in originals]).astype(np.float32)
        cols[f"{h}x{w}"] = _full_res(sub, prob, n_boot, seed)
    return pd.DataFrame(cols).rename_axis("structure")


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
    from spinelib.segmentation import postprocess

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


def _sampling_matrix(n_out: int, n_in: int, offset: float, scale: float, order: int = 1) -> np.ndarray:
    """``(n_out, n_in)`` weights that resample a 1-D signal: output pixel ``i`` (centre at relative
    position :math:`u = (i + \\tfrac12)/n_{out}`) reads the input at relative position
    :math:`t = \\mathrm{offset} + u\\,\\mathrm{scale}`, i.e. input index :math:`t\\,n_{in} - \\tfrac12`
    (pixel centres aligned, the convention of ``skimage.transform.resize``). Linear (``order=1``) or
    nearest (``order=0``); rows whose :math:`t` falls outside [0, 1] are zero."""
    u = (np.arange(n_out) + 0.5) / n_out
    t = offset + u * scale
    v = np.clip(t * n_in - 0.5, 0.0, n_in - 1.0)
    w = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    if order == 0:
        w[rows, np.minimum(np.floor(v + 0.5).astype(int), n_in - 1)] = 1.0
    else:
        lo = np.floor(v).astype(int)
        f = (v - lo).astype(np.float32)
        w[rows, lo] += 1.0 - f
        w[rows, np.minimum(lo + 1, n_in - 1)] += f
    w[(t < -1e-9) | (t > 1 + 1e-9)] = 0.0
    return w


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
        rows = _sampling_matrix(h, a.shape[1], y0, y1 - y0, order)
        cols = _sampling_matrix(w, a.shape[2], x0, x1 - x0, order)
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
        rows = _sampling_matrix(H, prob.shape[1], -y0 / (y1 - y0), 1.0 / (y1 - y0))
        cols = _sampling_matrix(W, prob.shape[2], -x0 / (x1 - x0), 1.0 / (x1 - x0))
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
    from skimage.transform import resize

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
            full = resize(prob[i], masks.shape, order=1, preserve_range=True, anti_aliasing=False) > 0.5
        else:
            full = uncrop(prob[i:i + 1], np.asarray(boxes)[i:i + 1], masks.shape[:2])[0] > 0.5
        cases = evaluate_masks(masks[None], full[None].astype(np.float32), names, case_ids=[i])
        cases.insert(1, "patient", data.val_ids[i])
        frames.append(cases)
    return _patient_summary(pd.concat(frames, ignore_index=True), n_boot, seed)


def load_original(data: SegmentationData, source, structures: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One image of ``data`` at its original resolution: ``(image uint8 HxW, masks bool HxWxC)``.

    ``source`` is an entry of ``data.train_sources``/``val_sources``: a clinical-layout patient
    record (its ``data.view``), or an AASCE row (image path and corner landmarks; the mask is the
    17 vertebra bodies drawn at full size).
    """
    names = list(structures or data.structures)
    if hasattr(source, "views"):
        from spinelib.clinical import load_view

        return load_view(source, data.view, structures=names)
    if names != [AASCE_STRUCTURE]:
        raise ValueError(f"AASCE images have only the structure {AASCE_STRUCTURE!r}, not {names}")
    from spinelib.aasce import vertebra_mask
    from spinelib.imageio import read_xray

    image = read_xray(source["image_path"])
    return image, vertebra_mask(source["landmarks"], image.shape)[..., None]


def crop_data(data: SegmentationData, boxes_train: np.ndarray, boxes_val: np.ndarray, size: tuple[int, int],
              structures: Sequence[str] | None = None, progress: bool = True) -> SegmentationData:
    """A new problem of spine crops, cut from the **original-resolution** X-rays and masks
    (:func:`load_original`; clinical layout or AASCE).

    ``boxes_train`` may come from the true masks (training targets), ``boxes_val`` must come from
    a prediction. Crops are resized to ``size`` (image anti-aliased, masks nearest-neighbour).
    """
    from spinelib.imageio import resize_image, resize_mask

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


# --------------------------------------------------------------------------------------------
# 5. figures


def _case_layers(t: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    return {"found": t & p, "missed": t & ~p, "false alarm": p & ~t}


CASE_COLOURS = ("#E69F00", "#0072B2", "#CC79A7")
"""found, missed, false alarm: orange, dark blue, reddish purple (Okabe-Ito; light, dark and mid
grey in grayscale, so the three stay apart in print and for colour-blind readers)."""


def _short(name, width: int = 14) -> str:
    """A patient name cut to ``width`` characters (AASCE file names run to 30 and overlap their neighbours)."""
    name = str(name)
    return name if len(name) <= width else name[: width - 1] + "…"


def cases_figure(data: SegmentationData, result: ExperimentResult, structure: str | None = None,
                 n: int = 3, title: str | None = None):
    """The ``n`` best and ``n`` worst validation cases of one structure (by Dice), with the
    found (true and predicted), missed and false-alarm pixels in three colours."""
    import matplotlib.pyplot as plt

    from spinelib.figures import overlay

    structure = structure or result.structures[0]
    if structure not in result.structures:
        raise ValueError(f"{structure!r} is not one of {result.name}'s structures {result.structures}")
    c_res = result.structures.index(structure)
    c_dat = data.structures.index(structure)
    prob = result.val_prob()[..., c_res]
    cases = result.cases[result.cases["structure"] == structure].sort_values("dice", kind="stable")
    if np.ptp(cases["dice"].to_numpy(float)) < 1e-9:  # all alike (e.g. every mask black): no best or worst
        picks = [("CASE", r) for r in cases.iloc[:2 * n].itertuples()]
    else:
        picks = [("BEST", r) for r in cases.iloc[::-1][:n].itertuples()] + [("WORST", r) for r in cases.iloc[:n].itertuples()]
    fig, axes = plt.subplots(1, len(picks), figsize=(2.2 * len(picks), 4.4), squeeze=False)
    for ax, (label, row) in zip(axes[0], picks):
        i = int(row.case)
        t, p = data.val_masks[i, ..., c_dat] > 0.5, prob[i] > 0.5
        overlay(data.val_images[i, ..., 0], _case_layers(t, p), ax=ax, legend=ax is axes[0][0], colours=CASE_COLOURS,
                title=f"{label}: patient {_short(row.patient)}\nDice {row.dice:.2f}")
    fig.suptitle(title or f"{data.source.upper()} - {structure.replace('_', ' ')} ({result.name})", fontsize=10)
    fig.tight_layout()
    return fig


def white_fraction_figure(results: Mapping[str, ExperimentResult], true_fraction: float | None = None):
    """Predicted white fraction of the validation images per epoch, one line per experiment,
    against the true fraction (dashed): a collapse to an all-black mask runs along zero."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    markers = "osD^vP*X"
    for k, (label, r) in enumerate(results.items()):
        h = r.history
        if "val_white" in h:  # markers and a small offset keep lines that lie on top of each other visible
            ax.plot(h["epoch"] + 1 + 0.06 * (k - len(results) / 2), 100 * h["val_white"], marker=markers[k % 8],
                    ms=4, lw=1.2, label=label)
        if true_fraction is None:
            true_fraction = float(r.cases["true_fraction"].mean())
    if true_fraction is not None:
        ax.axhline(100 * true_fraction, color="k", ls="--", lw=1, label="true white fraction")
    ax.set_xlabel("epoch")
    ax.set_ylabel("predicted white pixels (% of image)")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_ylim(bottom=0)  # a share of the image is never negative
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Validation: how much does the network paint white?")
    fig.tight_layout()
    return fig


def train_val_figure(results: Mapping[str, ExperimentResult]):
    """Training (solid) and validation (dashed) Dice per epoch, one colour per experiment: a
    validation curve that stays flat while the training curve rises points at the inference path
    (e.g. batch-norm moving statistics), not at learning."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for i, (label, r) in enumerate(results.items()):
        colour = f"C{i}"
        h = r.history
        ax.plot(h["epoch"] + 1, h["dice"], "-", color=colour, marker="o", ms=3, label=f"{label}, training")
        ax.plot(h["epoch"] + 1, h["val_dice"], "--", color=colour, marker="s", ms=3, label=f"{label}, validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def dice_history_figure(results: Mapping[str, ExperimentResult]):
    """Validation Dice per epoch, one line per experiment."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for label, r in results.items():
        if "val_dice" in r.history:
            ax.plot(r.history["epoch"] + 1, r.history["val_dice"], marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# 6. the pages' plans and multi-step experiments

LINES: tuple[str, str] = ("Lat_Anterior_Vertebral_Line", "Lat_Posterior_Vertebral_Line")


RECIPE: dict = {"loss": "paper", "batch_norm": True, "bn_momentum": 0.9}
"""The U-Net page's recipe: the paper's network and loss, plus batch normalisation with a moving
average that forgets its initial statistics within a few dozen steps (page 2 shows why)."""


@dataclass(frozen=True)
class PagePlan:
    """Sizes and epochs of every experiment on the U-Net page, for one profile.

    The ``ci`` plan is sized so the page runs in about 15 minutes on an idle 2-core CPU; ``tiny``
    is a smoke run; ``paper`` and ``long`` are for longer runs (``long``: what
    ``scripts/train_unet_synthetic.py`` commits).
    """

    profile: str
    size: tuple[int, int]  # Table 3 input size
    filters: int
    batch_size: int
    epochs: int  # Table 3 networks
    single_epochs: int  # the multi-vs-single comparison (all of its networks)
    line_epochs: int  # the remedies of the paper's section 2.5.6 (per view)
    large_size: tuple[int, int]  # the "larger input" remedy
    large_filters: int
    aasce_size: tuple[int, int]
    aasce_images: int | None
    aasce_epochs: int
    single_views: tuple[str, ...] = ("AP", "LAT")  # views of the multi-vs-single comparison
    seed: int = 0

    def recipe(self, which: str) -> dict:
        """Keyword arguments of :func:`run_experiment` (:data:`RECIPE` plus sizes and epochs) for
        ``table3``, ``single``, ``lines`` (the remedies), ``large`` or ``aasce``."""
        base = dict(RECIPE, filters=self.filters, batch_size=self.batch_size, seed=self.seed)
        epochs = {"table3": self.epochs, "single": self.single_epochs, "lines": self.line_epochs,
                  "large": self.line_epochs, "aasce": self.aasce_epochs}
        if which not in epochs:
            raise ValueError(f"unknown recipe {which!r}; choose one of {list(epochs)}")
        out = dict(base, epochs=epochs[which], patience=max(epochs[which], 1))  # no early stopping
        if which == "large":
            out["filters"] = self.large_filters
        if which == "aasce":
            out["augment"] = {"flip": True}
        return out


def page_plan(profile, epochs: int | None = None, seed: int = 0) -> PagePlan:
    """The :class:`PagePlan` of a profile (a name or :class:`spinelib.config.Profile`, or
    ``"long"``); ``epochs`` overrides the Table 3 epochs (the others scale with it)."""
    from spinelib.config import get_profile

    if profile == "long":
        plan = dict(profile="long", size=(384, 192), filters=16, batch_size=4, epochs=60, single_epochs=20,
                    line_epochs=40, large_size=(768, 384), large_filters=8, aasce_size=(384, 192),
                    aasce_images=None, aasce_epochs=40)
    else:
        P = get_profile(profile)
        h, w = P.seg_size
        common = dict(profile=P.name, size=P.seg_size, filters=P.seg_filters, batch_size=min(P.seg_batch_size, 4),
                      large_size=(2 * h, 2 * w), aasce_size=P.seg_size, aasce_images=P.aasce_max_images)
        if P.name == "tiny":
            plan = dict(common, epochs=1, single_epochs=1, line_epochs=1, large_filters=P.seg_filters, aasce_epochs=1,
                        single_views=("AP",))
        elif P.name == "ci":
            # AASCE: all 481 X-rays (160 gave validation Dice 0.52, all 481 gave 0.71 in 10 epochs; +5 min)
            plan = dict(common, epochs=P.seg_epochs + 5, single_epochs=P.seg_epochs // 3, line_epochs=P.seg_epochs + 5,
                        large_filters=P.seg_filters // 2, aasce_images=None, aasce_epochs=P.seg_epochs * 2 // 3)
        else:
            plan = dict(common, batch_size=P.seg_batch_size, epochs=P.seg_epochs, single_epochs=P.seg_epochs,
                        line_epochs=P.seg_epochs, large_filters=P.seg_filters, aasce_epochs=P.seg_epochs)
    if epochs is not None:
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        scale = epochs / plan["epochs"]
        for k in ("single_epochs", "line_epochs", "aasce_epochs"):
            plan[k] = max(1, round(plan[k] * scale))
        plan["epochs"] = epochs
    return PagePlan(seed=seed, **plan)


ENCODER_LABELS = {"none": "U-Net", "lite0-imagenet": "Lite0 encoder, ImageNet", "lite0-random": "Lite0 encoder, random init"}


def _long_run_records(long_dir) -> list[tuple[Path, dict]]:
    """``(metrics.json path, record)`` of each committed long-run folder in ``long_dir`` (one or
    several; missing ones skipped). Fields a record predates are taken from a ``rescored.json``
    beside it (``scripts/rescore_aasce.py``), so every reader sees them the same way."""
    dirs = [long_dir] if isinstance(long_dir, (str, os.PathLike)) else list(long_dir)
    out = []
    for path in (Path(d) / "metrics.json" for d in dirs):
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        rescored = path.parent / "rescored.json"
        again = json.loads(rescored.read_text()) if rescored.is_file() else {}
        for name in ("dice_original_resolution", "outline_errors_in_frame", "training_fit", "span"):
            if not m.get(name) and again.get(name):
                m[name] = again[name]
        out.append((path, m))
    return out


LONG_RUN_SIZE = (384, 192)
"""The input size most AASCE long runs share; :func:`_long_run_label` names any other."""


def _long_run_label(s: dict) -> str:
    """``long run (committed): <network>; <options>`` from a ``train_aasce.py`` record's settings;
    the input size is named when it is not :data:`LONG_RUN_SIZE`, the long runs' common frame."""
    label = ENCODER_LABELS.get(s.get("encoder", "none"), s.get("encoder")) + ("; spine crop" if s.get("crop") else "")
    if not s.get("crop") and s.get("size") and tuple(s["size"]) != LONG_RUN_SIZE:
        label += f"; {s['size'][0]}x{s['size'][1]} input"
    if s.get("full_res_skip"):
        label += f"; stride-1 skip ({s['full_res_skip']} ch)"
    if s.get("decoder_filters"):
        label += f"; decoder {'-'.join(str(f) for f in s['decoder_filters'])}"
    if s.get("lr_schedule", "plateau") != "plateau":
        label += f"; {s['lr_schedule']} LR"
    if s.get("tta"):
        label += "; flip TTA"
    return f"long run (committed): {label}"


def aasce_comparison(profile_run: ExperimentResult | None, long_dir: str | os.PathLike | Sequence[str | os.PathLike],
                     profile: str = "", data: SegmentationData | None = None) -> pd.DataFrame:
    """The AASCE vertebra Dice of this page's profile run beside the committed long runs
    (``<dir>/metrics.json`` written by ``scripts/train_aasce.py``; one folder or several); any
    may be missing. Long-run rows are labelled ``long run (committed): <network>``, plus the
    learning-rate schedule, a stride-1 skip and test-time flips when they were used. The ``mask grid`` column
    says how the masks were drawn at the network's size: runs before
    :func:`spinelib.aasce.scale_landmarks` (no ``mask_convention`` in their record) were trained
    and scored on masks 0.4 px right of and below the bodies. ``dice, original size`` is the one
    frame-free measure (:func:`full_resolution_dice`): from the run's record, from a
    ``rescored.json`` beside it (``scripts/rescore_aasce.py``), or for the profile run computed
    here when its ``data`` is given. ``wrong pixels on the outline``: the share of wrongly
    labelled pixels within one pixel of the true outline (:func:`outline_error_summary`, same
    sources); the rest lie further out (edges off by more than a pixel, or gross errors)."""
    rows = {}
    if profile_run is not None:
        d = profile_run.summary.query("metric == 'dice'").iloc[0]
        c = profile_run.config
        rows[f"this page (profile {profile})"] = {
            "dice": d["mean"], "ci_low": d["ci_low"], "ci_high": d["ci_high"], "validation patients": int(d["n"]),
            "input": "x".join(str(s) for s in _input_size(profile_run)),
            "filters": c["filters"] if c.get("encoder", "none") == "none" else "Lite0", "loss": c["loss"],
            "epochs": profile_run.epochs_run,
            "training minutes": profile_run.train_seconds / 60, "mask grid": "pixel centres aligned",
            "dice, original size": math.nan if data is None else float(full_resolution_dice(
                data, profile_run.val_prob(), n_boot=10, progress=False).query("metric == 'dice'")["mean"].iloc[0]),
            "wrong pixels on the outline": math.nan if data is None else outline_error_summary(
                profile_run.val_prob(), data.val_masks, bands=(1.0,))["within_1px"]["share_of_wrong_pixels"],
            "source": "computed now",
        }
    for path, m in _long_run_records(long_dir):
        s = m["settings"]
        original, edges = m.get("dice_original_resolution"), m.get("outline_errors_in_frame")
        encoder = s.get("encoder", "none")
        crop = s.get("crop", False)
        size = "x".join(str(v) for v in s["size"])
        if crop:
            size = (f"spine finder {'x'.join(str(v) for v in s['stage1_size'])}, then crops "
                    f"{'x'.join(str(v) for v in (s.get('crop_size') or s['size']))}; Dice on the full X-ray at {size}")
        rows[_long_run_label(s)] = {
            "dice": m["dice_mean_over_val_patients"], "ci_low": m["dice_ci95"][0], "ci_high": m["dice_ci95"][1],
            "validation patients": m["n_val_patients"], "input": size,
            "filters": s["filters"] if encoder == "none" else "Lite0", "loss": s["loss"], "epochs": m["epochs_run"],
            "training minutes": m["train_seconds"] / 60,
            "mask grid": "pixel centres aligned" if m.get("mask_convention") else "naive (0.4 px offset)",
            "dice, original size": math.nan if original is None else original["mean"],
            "wrong pixels on the outline": math.nan if edges is None else edges["within_1px"]["share_of_wrong_pixels"],
            "source": f"{path} (commit {m['git_commit'][:12]})",
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def aasce_error_budget(long_dir: str | os.PathLike | Sequence[str | os.PathLike], yardstick: pd.DataFrame,
                       size: tuple[int, int], target: float = 0.90) -> pd.DataFrame:
    """Where the committed AASCE long runs stand, in two measures that say what limits them.

    - ``training fit``: the run's network on its own training images (no augmentation) beside the
      validation patients (:func:`training_fit`; from the record or its ``rescored.json``). Close
      together = underfitting: more data, capacity or cleaner labels, not more regularisation.
    - ``equivalent corner error (px)``: the Gaussian corner error, per coordinate in pixels of
      ``size``, that would cost as much Dice (interpolated in ``yardstick``, the table of
      :func:`spinelib.aasce.corner_error_dice` at ``size``); only for runs scored at ``size``.

    A last row gives the corner error that ``target`` allows.
    """
    if not {"sigma_px", "dice_mean"} <= set(yardstick.columns) or len(yardstick) < 2:
        raise ValueError("yardstick must be a spinelib.aasce.corner_error_dice table with at least 2 sigmas")
    y = yardstick.sort_values("dice_mean")

    def sigma(d: float) -> float:
        if not y["dice_mean"].min() <= d <= y["dice_mean"].max():
            return math.nan  # outside the yardstick: no extrapolation
        return float(np.interp(d, y["dice_mean"], y["sigma_px"]))

    size = tuple(int(v) for v in size)
    rows = {}
    for _, m in _long_run_records(long_dir):
        fit = m.get("training_fit")
        dice = m["dice_mean_over_val_patients"]
        same = tuple(m["settings"]["size"]) == size
        rows[_long_run_label(m["settings"])] = {
            "dice": dice, "training fit: train": math.nan if fit is None else fit["train"]["mean"],
            "training fit: validation": math.nan if fit is None else fit["val"]["mean"],
            "equivalent corner error (px)": sigma(dice) if same else math.nan}
    rows[f"target {target:g}"] = {"dice": target, "training fit: train": math.nan, "training fit: validation": math.nan,
                                  "equivalent corner error (px)": sigma(target)}
    return pd.DataFrame.from_dict(rows, orient="index")


def aasce_level_dice(prob: np.ndarray, data: SegmentationData, reach: float = 4.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Where on the spine an AASCE network goes wrong, from its validation probabilities ``prob``
    (``(N, H, W, 1)`` in the network's frame, in the order of ``data.val_*``; masks are drawn
    again from each X-ray's corners, :func:`spinelib.aasce.scale_landmarks`). Returns
    ``(levels, images)``:

    - ``levels``, one row per validation image and vertebra: ``image, patient, level`` (0 = T1 ...
      16 = L5), ``vertebra``, ``dice``. Each predicted pixel within ``reach`` px of a true body is
      given to the nearest body; ``dice`` compares those pixels with that body (a body nothing was
      predicted for scores 0).
    - ``images``, one row per validation image: ``image, patient, dice`` (thresholded at 0.5, as
      the runs are scored), ``stray_share`` (predicted pixels further than ``reach`` from every
      true body, share of all predicted), ``outside_span_share`` (predicted pixels more than 2 rows
      above T1's top or below L5's bottom: bodies the labels do not include, such as C7 or the
      sacrum) and ``dice_within_span`` (the Dice with those removed: what knowing where the
      labelled span starts and ends would be worth).
    """
    from scipy import ndimage as ndi

    from spinelib.aasce import N_VERTEBRAE, VERTEBRA_NAMES, scale_landmarks, vertebra_mask
    from spinelib.seg_metrics import dice

    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 4 or prob.shape[-1] != 1 or len(prob) != len(data.val_sources):
        raise ValueError(f"prob must be (N, H, W, 1) with one image per validation X-ray "
                         f"({len(data.val_sources)}), got {prob.shape}")
    if not reach > 0:
        raise ValueError(f"reach must be positive, got {reach!r}")
    size = prob.shape[1:3]
    levels, images = [], []
    for i, (record, p) in enumerate(zip(data.val_sources, prob[..., 0] > 0.5)):
        lm = scale_landmarks(record["landmarks"], (record["height"], record["width"]), size)
        label = np.zeros(size, np.int16)
        for v in range(N_VERTEBRAE):  # one body at a time; where two overlap, the upper keeps the pixel
            body = vertebra_mask(np.repeat(lm[v:v + 1], N_VERTEBRAE, axis=0), size)
            label[body & (label == 0)] = v + 1
        true = label > 0
        dist, (iy, ix) = ndi.distance_transform_edt(~true, return_indices=True)
        nearest = np.where(dist <= reach, label[iy, ix], 0)
        for v in range(N_VERTEBRAE):
            t, q = label == v + 1, p & (nearest == v + 1)
            levels.append((i, data.val_ids[i], v, VERTEBRA_NAMES[v], dice(t, q)))
        rows = np.flatnonzero(true.any(axis=1))
        inside = np.zeros(size, bool)
        inside[max(rows[0] - 2, 0):rows[-1] + 3] = True
        n = max(p.sum(), 1)
        images.append((i, data.val_ids[i], dice(p, true), (p & (nearest == 0)).sum() / n,
                       (p & ~inside).sum() / n, dice(p & inside, true)))
    return (pd.DataFrame(levels, columns=["image", "patient", "level", "vertebra", "dice"]),
            pd.DataFrame(images, columns=["image", "patient", "dice", "stray_share", "outside_span_share",
                                          "dice_within_span"]))


def aasce_level_summary(levels: pd.DataFrame, images: pd.DataFrame, low: float = 0.7) -> tuple[pd.DataFrame, dict]:
    """The tables of :func:`aasce_level_dice` summed up over patients (several X-rays of one
    patient averaged first, as everywhere in the book). Returns ``(per_level, span)``:
    ``per_level`` indexed by vertebra (T1 ... L5) with ``dice`` (mean over patients) and
    ``share below <low>`` (of images); ``span``: ``dice``, ``dice_within_span``,
    ``outside_span_share`` and ``stray_share``, each a mean over patients."""
    if not 0 < low < 1:
        raise ValueError(f"low must lie in (0, 1), got {low!r}")
    per_patient = levels.groupby(["vertebra", "level", "patient"], sort=False)["dice"].mean().reset_index()
    per_level = per_patient.groupby(["level", "vertebra"])["dice"].mean().reset_index(level=0, drop=True).to_frame()
    per_level[f"share below {low:g}"] = (levels.assign(low=levels["dice"] < low)
                                         .groupby("vertebra", sort=False)["low"].mean())
    cols = ["dice", "dice_within_span", "outside_span_share", "stray_share"]
    span = {c: float(v) for c, v in images.groupby("patient")[cols].mean().mean().items()}
    return per_level, span


def aasce_level_comparison(long_dir: str | os.PathLike | Sequence[str | os.PathLike],
                           profile_levels: pd.DataFrame | None = None, profile: str = "") -> pd.DataFrame:
    """Dice per vertebra (rows T1 ... L5) of this page's run (``profile_levels``: the first table of
    :func:`aasce_level_summary`) beside each committed long run that has one (``levels.csv``,
    written by ``scripts/train_aasce.py`` or ``scripts/rescore_aasce.py``), one column per run.
    A last row ``within labelled span`` gives the run's Dice with the pixels above T1 and below L5
    removed, and ``all`` the Dice as it is (both means over patients). Every column is scored
    against the aligned masks (:func:`spinelib.aasce.scale_landmarks`), also for runs trained and
    recorded on the shifted ones, whose ``all`` is then a little below their recorded Dice."""
    from spinelib.aasce import VERTEBRA_NAMES

    cols = {}
    if profile_levels is not None:
        cols[f"this page (profile {profile})"] = profile_levels["dice"]
    spans = {}
    for path, m in _long_run_records(long_dir):
        levels = path.parent / LEVELS_FILE
        if levels.is_file():
            label = _long_run_label(m["settings"]).removeprefix("long run (committed): ")
            cols[label] = pd.read_csv(levels, index_col="vertebra")["dice"]
            if m.get("span"):
                spans[label] = m["span"]
    out = pd.DataFrame(cols).reindex(list(VERTEBRA_NAMES))
    for row, key in (("all", "dice"), ("within labelled span", "dice_within_span")):
        out.loc[row] = [spans[c][key] if c in spans else math.nan for c in out.columns]
    return out


def level_dice_figure(table: pd.DataFrame, title: str = "AASCE validation Dice per vertebra",
                      target: float | None = 0.90):
    """Lines of :func:`aasce_level_comparison` (the vertebra rows only), one per run, and the
    ``target`` Dice as a dashed line (``None``: none)."""
    import matplotlib.pyplot as plt
    from spinelib.aasce import VERTEBRA_NAMES

    levels = table.loc[[v for v in VERTEBRA_NAMES if v in table.index]]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for col in levels.columns:
        ax.plot(levels.index, levels[col], marker="o", ms=3, label=_short(col, 70))
    if target is not None:
        ax.axhline(target, ls="--", lw=1, color="grey", label=f"target {target:g} (mean over the spine)")
    ax.set_ylabel("Dice (mean over patients)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower center")
    fig.tight_layout()
    return fig


def compare_with_long_run(final: pd.DataFrame, long_dir: str | os.PathLike, profile: str = "") -> pd.DataFrame:
    """:func:`final_table3` of this page beside the committed long run's (``long_dir`` written by
    ``scripts/train_unet_synthetic.py``); without a long run, this page's columns only."""
    cols = {f"this page (profile {profile})": final[["final_dice", "at_or_above_paper"]]}
    path = Path(long_dir) / "final_table3.csv"
    if path.is_file():
        meta = json.loads((Path(long_dir) / "metrics.json").read_text())
        label = f"long run (committed, {'x'.join(str(v) for v in meta['plan']['size'])}, commit {meta['git_commit'][:12]})"
        cols[label] = pd.read_csv(path, index_col=0)[["final_dice", "pipeline", "at_or_above_paper"]]
    out = pd.concat(cols, axis=1)
    out.insert(0, "paper_dice", final["paper_dice"])
    return out


def segmentation_headlines(
    table2: pd.DataFrame | None = None,
    table3: pd.DataFrame | None = None,
    final: pd.DataFrame | None = None,
    aasce: pd.DataFrame | None = None,
    synthetic_dataset: str = "synthetic patients",
    aasce_dataset: str = "AASCE 2019 training split",
    long_run: bool = False,
) -> list[dict]:
    """Headline rows (:func:`spinelib.report.record_headlines`) of the segmentation pages.

    ``table2``: :func:`table2` (synthetic; the paper gives a verdict, not a Dice, so ``paper`` is
    empty and the note says both); ``table3``: :func:`table3` (the paper's recipe, at the input
    size); ``final``: :func:`final_table3` (the book's pipeline, at the original resolution);
    ``aasce``: :func:`aasce_comparison` (real X-rays): its profile row, or with ``long_run=True``
    only the committed long run's row (profile ``"long run"``; ``scripts/train_aasce.py`` records
    it under ``results/headlines``). The paper has no AASCE number: the note gives the target.
    """
    rows: list[dict] = []

    def name(structure: str) -> str:
        return structure.replace("_", " ")

    if table2 is not None:
        for experiment, r in table2.iterrows():
            rows.append({
                "section": "Segmentation: Table 2 (failed experiments)",
                "quantity": f"Dice, {name(r['structure'])}: {experiment}",
                "paper": math.nan, "ours": r["dice"], "ci_low": r["dice_ci_low"], "ci_high": r["dice_ci_high"],
                "data": "synthetic", "dataset": synthetic_dataset,
                "note": f"paper: {r['paper_result'] or 'not reported'}; ours: {r['verdict']} "
                        f"({r['predicted white %']:.1f}% white predicted, {r['true white %']:.1f}% true)",
            })
    if table3 is not None:
        for structure, r in table3.iterrows():
            rows.append({
                "section": "Segmentation: Table 3 (paper's recipe)", "quantity": f"Dice, {name(structure)}",
                "paper": r["paper_dice"], "ours": r["dice"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                "data": "synthetic", "dataset": synthetic_dataset,
                "note": "one multi-output network per view, the paper's loss, Dice at the input size",
            })
    if final is not None:
        for structure, r in final.iterrows():
            note = r["pipeline"]
            if "input_frame_dice" in final and pd.notna(r["input_frame_dice"]):
                note += f"; {r['input_frame_dice']:.3f} in the network's input frame (the paper's protocol)"
            rows.append({
                "section": "Segmentation: final pipeline", "quantity": f"Dice, {name(structure)}",
                "paper": r["paper_dice"], "ours": r["final_dice"], "data": "synthetic",
                "dataset": synthetic_dataset, "note": note,
            })
    if aasce is not None:
        for label, r in aasce.iterrows():
            is_long = str(label).startswith("long run")
            if is_long != long_run:
                continue
            rows.append({
                "section": "Segmentation: real AP vertebrae",
                "quantity": "Dice, AASCE vertebral bodies T1-L5" + (f" ({str(label).split(': ', 1)[-1]})" if is_long else ""),
                "paper": math.nan, "ours": r["dice"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                "data": "real", "dataset": f"{aasce_dataset}, {int(r['validation patients'])} validation patients",
                "note": (f"{label if is_long else 'this run'}: input {r['input']}, {r['epochs']} "
                         f"epochs, {r['training minutes']:.0f} min training; target 0.90 (no paper number)"
                         + ("; trained and scored on masks 0.4 px off the bodies (before the alignment fix)"
                            if str(r.get("mask grid", "")).startswith("naive") else "")
                         + (f"; {r['dice, original size']:.3f} at each X-ray's own size"
                            if pd.notna(r.get("dice, original size", math.nan)) else "")),
                **({"profile": "long run"} if is_long else {}),
            })
    return rows


@dataclass
class Remedies:
    """The paper's three suggestions, per view, all measured at the original resolution.

    ``dice``: structure x setting (``paper's loss`` = the Table 3 network, ``Dice loss``,
    ``spine crop + Dice loss``, ``larger input + Dice loss`` for the two lines), mean Dice over
    validation patients; ``results``: the trained experiments, keyed ``(setting, view)``;
    ``crops``: the crop data per view and for the ``"lines"`` (validation crops cut around the
    *predicted* vertebral column) and ``boxes``: those crop boxes.
    """

    dice: pd.DataFrame
    results: dict
    crops: dict
    boxes: dict

    def input_frame_dice(self, setting: str = "spine crop + Dice loss") -> pd.Series:
        """Mean validation Dice per structure **in the network's own frame** (its input size,
        against the masks resized to it: the paper's protocol), for one setting; the lines come from
        their own crop network when there is one."""
        out = {}
        for (name, view), r in self.results.items():
            if name != setting:
                continue
            for structure, value in r.dice().items():
                if view == "lines" or structure not in out:
                    out[structure] = value
        return pd.Series(out, dtype=float).reindex(self.dice.index)

    def figure(self, structure: str = LINES[0], n: int = 2):
        """Best and worst validation crops for one structure (found, missed, false alarm)."""
        from spinelib.structures import view_of

        view = "lines" if structure in LINES and "lines" in self.crops else view_of(structure)
        return cases_figure(self.crops[view], self.results[("spine crop + Dice loss", view)], structure, n=n,
                            title=f"SYNTHETIC - {structure.replace('_', ' ')} in the predicted spine crop")


def _full_res(data: SegmentationData, prob: np.ndarray, n_boot: int, seed: int, boxes=None) -> pd.Series:
    summary = full_resolution_dice(data, prob, n_boot=n_boot, seed=seed, progress=False, boxes=boxes)
    return summary.query("metric == 'dice'").set_index("structure")["mean"].reindex(list(data.structures))


CROP_MARGINS: dict[str, tuple[float, float]] = {"AP": (0.05, 0.1), "LAT": (0.05, 1.0), "lines": (0.05, 0.1)}
"""(vertical, horizontal) margins of the spine crops, as fractions of the vertebral column's box.
In the AP view every structure lies on the column; in the LAT view the spinous processes reach up to
about one column width behind it (measured on the synthetic masks), so its crop is three column
widths wide; the vertebral lines run along the front and back of the bodies and get the tight crop."""


def remedy_experiments(
    views: Mapping[str, SegmentationData],
    table3_runs: Mapping[str, ExperimentResult],
    out_dir: str | os.PathLike,
    plan: PagePlan,
    n_boot: int = 1000,
    margins: Mapping[str, tuple[float, float]] = CROP_MARGINS,
) -> Remedies:
    """What the paper suggests for structures with too few white pixels (section 2.5.6),
    measured per view against its Table 3 network, at the original resolution
    (:func:`full_resolution_dice`, the one frame where different input sizes and crops compare):

    - ``Dice loss``: another loss, scale-free per structure (the paper's loss grows with the
      number of white pixels, so in a multi-output network the large structures set the pace);
    - ``spine crop + Dice loss``: crops around the vertebral column that the Table 3 network
      **predicts** on each validation X-ray (training crops around the true column), widened by
      :data:`CROP_MARGINS`, cut from the original X-ray at the same input size, so small
      structures get several times more pixels; the two lines get their own tight crop;
    - ``larger input + Dice loss``: the two vertebral lines at ``plan.large_size``.
    """
    out_dir = Path(out_dir)
    seed = plan.seed
    dice_recipe = dict(plan.recipe("lines"), loss="dice")
    columns: dict[str, pd.Series] = {}
    results, crops, boxes = {}, {}, {}
    for view, data in views.items():
        t3 = table3_runs[view]
        if tuple(t3.structures) != tuple(data.structures):
            raise ValueError(f"{t3.name} segments {t3.structures}, the {view} data has {data.structures}")
        columns.setdefault("paper's loss (Table 3 network)", pd.Series(dtype=float))
        columns["paper's loss (Table 3 network)"] = pd.concat(
            [columns["paper's loss (Table 3 network)"], _full_res(data, t3.val_prob(), n_boot, seed)])
        r = run_experiment(data, out_dir, f"remedy_dice_{view}", n_boot=n_boot, **dice_recipe)
        results[("Dice loss", view)] = r
        columns.setdefault("Dice loss", pd.Series(dtype=float))
        columns["Dice loss"] = pd.concat([columns["Dice loss"], _full_res(data, r.val_prob(), n_boot, seed)])
        column = data.structures.index(f"{view.capitalize()}_Vertebra")
        predicted, true = t3.val_prob()[..., column], data.train_masks[..., column]  # predicted, never the truth
        boxes[view] = spine_boxes(predicted, margin=margins[view])
        crops[view] = crop_data(data, spine_boxes(true, margin=margins[view]), boxes[view], plan.size, progress=False)
        r = run_experiment(crops[view], out_dir, f"remedy_crop_dice_{view}", n_boot=n_boot, **dice_recipe)
        results[("spine crop + Dice loss", view)] = r
        crop_dice = _full_res(data, r.val_prob(), n_boot, seed, boxes=boxes[view])
        if view == "LAT":  # the lines: a tight crop around the column
            boxes["lines"] = spine_boxes(predicted, margin=margins["lines"])
            crops["lines"] = crop_data(data, spine_boxes(true, margin=margins["lines"]), boxes["lines"], plan.size,
                                       structures=list(LINES), progress=False)
            r = run_experiment(crops["lines"], out_dir, "remedy_crop_dice_lines", n_boot=n_boot, **dice_recipe)
            results[("spine crop + Dice loss", "lines")] = r
            lines_data = data.select(list(LINES))
            crop_dice.loc[list(LINES)] = _full_res(lines_data, r.val_prob(), n_boot, seed,
                                                   boxes=boxes["lines"]).to_numpy()
        columns.setdefault("spine crop + Dice loss", pd.Series(dtype=float))
        columns["spine crop + Dice loss"] = pd.concat([columns["spine crop + Dice loss"], crop_dice])
        if view == "LAT":
            large = _resized_view_data(data, plan.large_size, list(LINES))
            r = run_experiment(large, out_dir, "remedy_large_dice_lines", n_boot=n_boot,
                               **dict(plan.recipe("large"), loss="dice"))
            results[("larger input + Dice loss", view)] = r
            columns["larger input + Dice loss"] = _full_res(data.select(list(LINES)), r.val_prob(), n_boot, seed)
    dice = pd.DataFrame(columns)
    order = [s for s in STRUCTURES if s in dice.index]
    dice = dice.reindex(order)
    dice.insert(0, "paper_dice", pd.Series(PAPER_DICE).reindex(order))
    dice.index.name = "structure"
    return Remedies(dice=dice, results=results, crops=crops, boxes=boxes)


def remedy_timing(remedies: Remedies) -> pd.DataFrame:
    """Training minutes and input size of every remedy network."""
    rows = [{"remedy": label, "view": view, "input": "x".join(str(v) for v in _input_size(r)),
             "structures": len(r.structures), "epochs": r.epochs_run, "training minutes": r.train_seconds / 60}
            for (label, view), r in remedies.results.items()]
    return pd.DataFrame(rows).set_index(["remedy", "view"])


def _input_size(result: ExperimentResult) -> tuple[int, ...]:
    with np.load(result.out_dir / PROB_FILE) as z:
        return tuple(int(s) for s in z["prob"].shape[1:3])


def _resized_view_data(data: SegmentationData, size: tuple[int, int], structures: Sequence[str]) -> SegmentationData:
    """The same patients and split at another input size (read again from the original files)."""
    from spinelib.clinical import load_view

    def load(records):
        x = np.zeros((len(records), *size, 1), np.float32)
        y = np.zeros((len(records), *size, len(structures)), np.float32)
        for i, record in enumerate(records):
            image, masks = load_view(record, data.view, size=size, structures=list(structures))
            x[i, ..., 0] = image / np.float32(255.0)
            y[i] = masks
        return x, y

    tx, ty = load(data.train_sources)
    vx, vy = load(data.val_sources)
    return replace(data, name=f"{data.name} {size[0]}x{size[1]}", structures=tuple(structures),
                   train_images=tx, train_masks=ty, val_images=vx, val_masks=vy)


@dataclass
class MultiSingle:
    """Eight single networks against one multi-output network per view."""

    dice: pd.DataFrame  # structure x {multi-output, single networks}
    timing: pd.DataFrame
    multi: dict
    single: dict


def multi_vs_single(views: Mapping[str, SegmentationData], out_dir: str | os.PathLike, plan: PagePlan,
                    n_boot: int = 1000, table3_runs: Mapping[str, ExperimentResult] | None = None) -> MultiSingle:
    """Train, for the same epochs (``plan.single_epochs``), one multi-output network per view and
    one network per structure (the paper's way); compare Dice per structure and training time.
    Only the views in ``plan.single_views`` are compared (all of them except in the smoke run).
    When the comparison's epochs equal the Table 3 epochs, the ``table3_runs`` networks are the
    multi-output side (they are the same experiment)."""
    out_dir = Path(out_dir)
    multi, single = {}, {}
    for view, data in views.items():
        if view not in plan.single_views:
            continue
        if table3_runs is not None and view in table3_runs and plan.single_epochs == plan.epochs:
            multi[view] = table3_runs[view]
        else:
            multi[view] = run_experiment(data, out_dir, f"multi_{view}", n_boot=n_boot, **plan.recipe("single"))
        for s in data.structures:
            single[s] = run_experiment(data, out_dir, f"single_{s}", structures=[s], n_boot=n_boot,
                                       **plan.recipe("single"))
    dice = pd.concat([compare_results({"one network per view": r}) for r in multi.values()])
    dice["one network per structure"] = pd.concat([r.dice() for r in single.values()]).reindex(dice.index)
    dice["difference"] = dice["one network per view"] - dice["one network per structure"]
    timing = timing_table({f"one network per view ({len(multi)})": list(multi.values()),
                           f"one network per structure ({len(single)})": list(single.values())})
    return MultiSingle(dice=dice, timing=timing, multi=multi, single=single)
