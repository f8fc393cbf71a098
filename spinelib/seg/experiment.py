"""One cached segmentation experiment: train a U-Net on :class:`~spinelib.data.segdata.SegmentationData`, predict the validation patients, evaluate them per case."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from spinelib.core.config import set_seed
from spinelib.core.plans import Plan
from spinelib.core.runs import quiet_tensorflow, run_key, write_json
from spinelib.core.structures import STRUCTURES
from spinelib.data.clsdata import ClassificationInputs, resize_images
from spinelib.data.segdata import SegmentationData
from spinelib.data.splits import patient_kfold, patient_split
from spinelib.seg.metrics import evaluate_masks, summarise

RESULT_FILE, CASES_FILE, PROB_FILE, KEY_FILE = "result.json", "cases.csv", "val_prob.npz", "experiment_key.txt"


ENCODERS = ("none", "lite0-imagenet", "lite0-random")
"""Contracting paths of :func:`run_experiment`: the plain U-Net's own, or EfficientNet-Lite0
(:func:`spinelib.seg.unet.lite0_unet`) with ImageNet weights or a random start."""


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines one experiment (its cache key, with the data fingerprint)."""

    loss: str = "paper"
    filters: int = 16
    depth: int = 5
    batch_norm: bool = False
    bn_momentum: float = 0.99  # Keras' default; 0.9 for short runs (see spinelib.seg.unet.unet)
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
    encoder: str = "none"  # "none": the U-Net of spinelib.seg.unet.unet; "lite0-imagenet" / "lite0-random": lite0_unet
    lr_schedule: str = "plateau"  # or "cosine" (spinelib.seg.training.cosine_lr)
    full_res_skip: int = 0  # lite0_unet only: channels of a stride-1 skip from the X-ray (0 = none)
    decoder_filters: tuple | None = None  # lite0_unet only: 5 decoder widths (None = spinelib.seg.unet.LITE0_DECODER)
    stop_black: int = 0  # stop after this many all-black validation epochs in a row (0 = never; train_segmentation)

    def to_dict(self) -> dict:
        d = json.loads(json.dumps(asdict(self)))
        # the key of every run from before these fields existed stays the same
        for field, default in (("encoder", "none"), ("lr_schedule", "plateau"), ("full_res_skip", 0),
                               ("decoder_filters", None), ("stop_black", 0)):
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


def patient_summary(cases: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
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
    from spinelib.seg.inference import predict

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
    every image and channel) lies on the true outline (:func:`spinelib.seg.metrics.outline_errors`):
    per band, the share of all wrong pixels within it and the mean per-image Dice if those were
    right; plus the mean per-image Dice as it is."""
    from spinelib.seg.metrics import distance_to_outline, outline_errors_from_distance

    p, t = np.asarray(prob) > 0.5, np.asarray(masks) > 0.5
    if p.shape != t.shape or p.ndim != 4:
        raise ValueError(f"prob and masks must both be (N, H, W, C), got {p.shape} and {t.shape}")
    pairs = [(t[i, ..., c], p[i, ..., c]) for i in range(len(t)) for c in range(t.shape[-1])]
    dists = [distance_to_outline(ti) for ti, _ in pairs]  # once per image, whatever the bands
    out: dict = {"mean_image_dice": None}
    for band in bands:
        rows = [outline_errors_from_distance(ti, pi, d, band) for (ti, pi), d in zip(pairs, dists)]
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

    Probabilities are thresholded at 0.5, or cleaned by :func:`spinelib.seg.inference.postprocess`
    when ``postprocess_kwargs`` is given. Returns ``(cases, summary)``.
    """
    from spinelib.seg.inference import postprocess

    prob = np.asarray(prob, dtype=np.float32)
    if prob.shape != masks.shape:
        raise ValueError(f"probabilities {prob.shape} and masks {masks.shape} differ in shape")
    pred = postprocess(prob, **postprocess_kwargs) if postprocess_kwargs is not None else prob > 0.5
    cases = evaluate_masks(masks, pred.astype(np.float32), list(structures), case_ids=list(range(len(prob))))
    cases.insert(1, "patient", [str(patient_ids[i]) for i in cases["case"]])
    return cases, patient_summary(cases, n_boot, seed)


def _key(data: SegmentationData, cfg: ExperimentConfig) -> str:
    return run_key({"data": data.fingerprint(), "config": cfg.to_dict()}, digest="sha1", length=16)


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

    ``config``: fields of :class:`ExperimentConfig` - ``loss`` (a :mod:`spinelib.seg.losses` name),
    ``filters``, ``depth``, ``batch_norm``, ``bn_momentum``, ``up``, ``epochs``, ``batch_size``, ``lr``,
    ``augment``, ``patience``, ``lr_schedule`` ("plateau" or "cosine"), ``checkpoint`` ("last" or "best" epoch), ``tta`` (flip
    test-time augmentation), ``postprocess`` (kwargs of
    :func:`spinelib.seg.inference.postprocess`, ``None`` = threshold 0.5), ``seed``, ``encoder`` (:data:`ENCODERS`),
    ``stop_black`` (stop after that many all-black validation epochs in a row; 0 = never).

    The run lives in ``out_dir/name``. If it finished before with the same data and config,
    the stored result is returned without training; an interrupted run resumes from its last
    epoch; a run with another config is deleted and redone (``rerun=True`` forces that).
    The network has one sigmoid output per structure (a multi-output network when several).
    """
    import keras

    from spinelib.core.config import set_seed
    from spinelib.seg.training import train_segmentation
    from spinelib.seg.unet import LITE0_DECODER, lite0_unet, unet

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
    from spinelib.seg.training import LR_SCHEDULES

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

    policy = keras.mixed_precision.global_policy()
    keras.backend.clear_session()  # one graph per experiment: no retracing warnings, memory freed
    keras.mixed_precision.set_global_policy(policy)  # clear_session resets it to float32 (its key says which ran)
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
                                     verbose=verbose, lr_schedule=cfg.lr_schedule, stop_black=cfg.stop_black)
        return _finish(data, run_dir, name, cfg, key, n_boot, model=trained.model)


def _finish(data: SegmentationData, run_dir: Path, name: str, cfg: ExperimentConfig, key: str,
            n_boot: int, model=None) -> ExperimentResult:
    import keras

    from spinelib.seg.inference import predict

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

    write_json(run_dir / RESULT_FILE, meta)
    return result


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


def input_size(result: ExperimentResult) -> tuple[int, ...]:
    with np.load(result.out_dir / PROB_FILE) as z:
        return tuple(int(s) for s in z["prob"].shape[1:3])


def train_aasce_unets(data: ClassificationInputs, out_dir: str | os.PathLike, sizes: Plan,
                      k: int, seed: int = 0, folds: Sequence[int] | None = None, batch_size: int = 8,
                      progress: bool = True) -> dict[int, Path]:
    """In-domain pre-training: one U-Net per fold of the patient cross-validation of ``data``
    (AASCE), trained on the vertebra masks of that fold's *training* patients only (15 % of them
    held out for checkpointing), saved as ``out_dir/unet-aasce/fold<f>/best.keras`` and reused.

    Returns ``{fold: path}`` for ``folds`` (default: all ``k``). A finished fold is not retrained
    (:func:`spinelib.seg.training.train_segmentation` resumes from its folder).
    """
    from spinelib.seg.training import train_segmentation
    from spinelib.seg.unet import unet

    if data.dataset != "aasce" or data.masks is None:
        raise ValueError("train_aasce_unets needs AASCE inputs with vertebra masks (load_aasce_inputs)")
    all_folds = list(patient_kfold(data.patient_ids, data.labels, k=k, seed=seed))
    wanted = range(k) if folds is None else folds
    x = resize_images(data.ap, sizes.indomain_size) / np.float32(255)
    m = resize_images(data.masks.astype(np.float32), sizes.indomain_size, order=0)
    paths = {}
    for f in tqdm(list(wanted), desc="in-domain U-Nets", disable=not progress):
        train, _ = all_folds[f]
        fold_dir = Path(out_dir) / "unet-aasce" / f"fold{f}"
        best = fold_dir / "best.keras"
        state = fold_dir / "train_state.json"
        done = state.is_file() and json.loads(state.read_text()).get("epoch", 0) >= sizes.indomain_epochs
        if not (best.is_file() and done):
            inner_tr, inner_val = patient_split(data.patient_ids[train], val_fraction=0.15, seed=seed)
            tr, va = train[inner_tr], train[inner_val]
            set_seed(seed + f)
            model = unet((*sizes.indomain_size, 1), filters=sizes.indomain_filters)
            train_segmentation(model, x[tr], m[tr], x[va], m[va], loss="dice", epochs=sizes.indomain_epochs,
                               batch_size=batch_size, out_dir=fold_dir, seed=seed + f, patience=max(3, sizes.indomain_epochs),
                               verbose=0)
        paths[f] = best
    return paths
