"""The shipped vertebra model: one call from an X-ray file to 17 vertebrae and 3 Cobb angles.

    from spinelib.landmarks.model import load_model
    model = load_model()                          # the AASCE model inside the package
    pred = model.predict_file("my_xray.dcm")      # PNG, JPEG, TIFF, 8/16-bit, DICOM; any size
    pred.corners      # (17, 4, 2) x, y in the X-ray's own pixels: TL, TR, BL, BR, T1 first
    pred.cobb.pt      # the main curve's Cobb angle (degrees); pred.cobb.end_vertebrae, pred.cobb.as_dict()
    pred.mask()       # (H, W) uint8: the 17 quadrilaterals drawn from the corners

A model folder holds ``model.json`` (name, version, input size, normalisation, levels, the
network's arguments, how it was trained and scored) and ``weights.npz`` (the weights in the
order of ``keras.Model.get_weights``, stored as float16 to keep the package small). Research use
only: trained on one public dataset of scoliosis patients' AP X-rays; not for clinical decisions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = "aasce_vertebrae_v2"
"""The model :func:`load_model` loads when given no name: the released AASCE landmark network
(v2: 512x256 input, 14 epochs; v1, 384x192, is still shipped and loads by name)."""

MODEL_FILE, WEIGHTS_FILE = "model.json", "weights.npz"
FORMAT = "spinelib-landmarks/1"


@dataclass
class SpinePrediction:
    """What the model read off one X-ray (corners in that X-ray's own pixels)."""

    corners: np.ndarray        # (17, 4, 2)
    scores: np.ndarray         # (17,) heat-map peak heights in [0, 1]
    image_shape: tuple[int, int]
    levels: tuple[str, ...]
    cobb: object               # spinelib.geometry.cobb.CobbResult
    model_name: str = ""
    model_version: str = ""

    def mask(self) -> np.ndarray:
        """(H, W) uint8 0/1: the quadrilaterals of the vertebrae drawn from the predicted corners."""
        from spinelib.data.aasce import vertebra_mask

        ok = np.all(np.isfinite(self.corners.reshape(len(self.corners), -1)), axis=1)
        if not ok.any():
            return np.zeros(self.image_shape, np.uint8)
        return vertebra_mask(self.corners[ok], self.image_shape).astype(np.uint8)

    def to_dict(self, pixel_spacing: tuple[float, float] | None = None, rounded: bool = False) -> dict:
        """JSON-ready, in the format of ``spinelib predict``'s JSON (``spinelib/schemas/prediction.schema.json``):
        ``corner_order``; ``vertebrae`` (:func:`vertebra_records`: per vertebra its level, index,
        found, score, corners and centre in pixels, and corners in mm with ``pixel_spacing =
        (row, column)`` mm per pixel); ``cobb`` (:func:`cobb_record`: the three angles with their end
        vertebrae); ``model`` (name, version) and ``image_shape``. ``rounded``: coordinates to
        0.001, scores to 0.0001, as the command writes them. The command adds the input's block, the
        output files and the schema id around these (:func:`spinelib.cli.predict.predict_one`)."""
        return {"image_shape": [int(s) for s in self.image_shape],
                "model": {"name": self.model_name, "version": self.model_version},
                "corner_order": list(CORNER_ORDER),
                "vertebrae": vertebra_records(self.corners, self.levels, self.scores, pixel_spacing, rounded),
                "cobb": cobb_record(self.cobb, self.levels, rounded)}


CORNER_ORDER = ("TL", "TR", "BL", "BR")
"""The order of a vertebra's four corners in ``SpinePrediction.corners`` and in the prediction JSON."""


def _number(value, decimals: int | None) -> float:
    return float(value) if decimals is None else round(float(value), decimals)


def _xy(point, decimals: int | None = 3) -> list[float] | None:
    p = np.asarray(point, dtype=float)
    return None if not np.isfinite(p).all() else [_number(p[0], decimals), _number(p[1], decimals)]


def vertebra_records(corners, levels, scores=None, spacing=None, rounded: bool = True) -> list[dict]:
    """One dict per vertebra: ``level``, ``index``, ``found``, ``score``, ``corners_px``
    (TL, TR, BL, BR as ``[x, y]``), ``center_px`` (mean of the corners) and, with
    ``spacing=(row_mm, column_mm)``, ``corners_mm`` :math:`(x\\,s_{col}, y\\,s_{row})` from the
    centre of the top-left pixel. A vertebra with a NaN corner is not ``found`` (its corners are
    None); ``rounded``: coordinates to 0.001 and scores to 0.0001 (the prediction JSON's)."""
    c = np.asarray(corners, dtype=float)
    d, ds = (3, 4) if rounded else (None, None)
    out = []
    for v, level in enumerate(levels):
        found = bool(np.isfinite(c[v]).all())
        rec = {"level": str(level), "index": v, "found": found,
               "score": None if scores is None or not np.isfinite(scores[v]) else _number(scores[v], ds),
               "corners_px": {k: _xy(c[v, i], d) for i, k in enumerate(CORNER_ORDER)} if found else None,
               "center_px": _xy(c[v].mean(axis=0), d) if found else None,
               "corners_mm": None}
        if found and spacing is not None:
            row, col = (float(s) for s in spacing)
            rec["corners_mm"] = {k: [_number(c[v, i, 0] * col, d), _number(c[v, i, 1] * row, d)]
                                 for i, k in enumerate(CORNER_ORDER)}
        out.append(rec)
    return out


def cobb_record(cobb, levels, rounded: bool = True) -> dict | None:
    """``{"pt"|"mt"|"tl": {"angle_deg", "upper", "lower", "upper_index", "lower_index"}, "is_s"}``
    from a :class:`spinelib.geometry.cobb.CobbResult`; None when there is none. ``rounded``:
    angles to 0.001 degrees (the prediction JSON's)."""
    if cobb is None:
        return None
    out = {}
    for key in ("pt", "mt", "tl"):
        up, low = cobb.end_vertebrae[key]
        out[key] = {"angle_deg": _number(getattr(cobb, key), 3 if rounded else None), "upper": levels[int(up)],
                    "lower": levels[int(low)], "upper_index": int(up), "lower_index": int(low)}
    out["is_s"] = bool(getattr(cobb, "is_s", False))
    return out


class VertebraModel:
    """A loaded landmark network and its preprocessing (see :func:`load_model`)."""

    def __init__(self, network, config: dict):
        self.network = network
        self.config = dict(config)
        self.name = str(config.get("name", ""))
        self.version = str(config.get("version", ""))
        self.input_size = tuple(int(v) for v in config["input_size"])
        self.levels = tuple(config.get("levels") or _levels())

    def __repr__(self) -> str:
        return f"VertebraModel({self.name!r}, version {self.version!r}, input {self.input_size[0]}x{self.input_size[1]})"

    def predict(self, image, tta_flip: bool | None = None) -> SpinePrediction:
        """One X-ray, a 2-D gray array of any size and dtype (scaled like :func:`spinelib.core.imageio.to_uint8`)."""
        from spinelib.core.imageio import resize_image, to_uint8
        from spinelib.data.aasce import scale_landmarks
        from spinelib.geometry.cobb import cobb_angles
        from spinelib.landmarks.train import predict_corners

        img = np.asarray(image)
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        if img.ndim != 2 or min(img.shape) < 8:
            raise ValueError(f"predict expects a 2-D gray X-ray of at least 8x8 pixels, got shape {img.shape}")
        if not np.issubdtype(img.dtype, np.number) or not np.all(np.isfinite(img)):
            raise ValueError("predict expects finite numeric pixels")
        h, w = img.shape
        x = resize_image(to_uint8(img), self.input_size)[None, ..., None]
        flip = self.config.get("tta_flip", True) if tta_flip is None else bool(tta_flip)
        corners, scores, _ = predict_corners(self.network, x, tta_flip=flip)
        corners = scale_landmarks(corners[0], self.input_size, (h, w))
        return SpinePrediction(corners=corners, scores=scores[0], image_shape=(h, w), levels=self.levels,
                               cobb=cobb_angles(corners, image_height=h), model_name=self.name,
                               model_version=self.version)

    def predict_file(self, path: str | os.PathLike, tta_flip: bool | None = None) -> SpinePrediction:
        """Read an X-ray file (:func:`spinelib.core.imageio.read_xray`: PNG, JPEG, TIFF, DICOM...) and predict."""
        from spinelib.core.imageio import read_xray

        return self.predict(read_xray(path), tta_flip=tta_flip)


def _levels() -> tuple[str, ...]:
    from spinelib.geometry.cobb import LEVELS

    return tuple(LEVELS)


def save_model(network, folder: str | os.PathLike, config: dict, overwrite: bool = False) -> Path:
    """Write a model folder: ``model.json`` (``config`` plus the network's input size and format)
    and ``weights.npz`` (float16). Refuses a folder that already holds a model unless ``overwrite``."""
    folder = Path(folder)
    if (folder / MODEL_FILE).exists() and not overwrite:
        raise FileExistsError(f"{folder} already holds a model; pass overwrite=True to replace it")
    from spinelib.landmarks.network import DECODER_FILTERS

    h, w = (int(v) for v in network.input_shape[1:3])
    arch = {"input_shape": [h, w, 1], "decoder_filters": list(DECODER_FILTERS), "head_filters": 32}
    arch.update(config.get("architecture", {}))
    cfg = {"format": FORMAT, "name": folder.name, "version": "0", "levels": list(_levels()), "normalisation":
           "gray uint8 / 255 (spinelib.core.imageio.read_xray, resized with anti-aliasing)", "tta_flip": True, **config,
           "input_size": [h, w], "architecture": arch}
    weights = network.get_weights()
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / WEIGHTS_FILE, **{f"w{i:03d}": np.asarray(v, np.float16) for i, v in enumerate(weights)})
    (folder / MODEL_FILE).write_text(json.dumps(cfg, indent=1) + "\n")
    return folder


def available_models() -> list[str]:
    """Names of the models shipped inside the package."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / MODEL_FILE).is_file() and (p / WEIGHTS_FILE).is_file())


def _resolve(name_or_dir) -> Path:
    if name_or_dir is None:
        name_or_dir = DEFAULT_MODEL
    p = Path(name_or_dir)
    if (p / MODEL_FILE).is_file():
        return p
    shipped = MODELS_DIR / str(name_or_dir)
    if (shipped / MODEL_FILE).is_file():
        return shipped
    known = available_models()
    raise FileNotFoundError(f"no model {str(name_or_dir)!r}: neither a folder with {MODEL_FILE} nor a shipped model "
                            f"(shipped: {', '.join(known) if known else 'none in this installation'})")


def load_model(name_or_dir: str | os.PathLike | None = None) -> VertebraModel:
    """Load a shipped model by name (default :data:`DEFAULT_MODEL`) or a model folder by path."""
    from spinelib.core.config import keras_policy
    from spinelib.landmarks.network import landmark_net

    folder = _resolve(name_or_dir)
    config = json.loads((folder / MODEL_FILE).read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{folder / MODEL_FILE}: format {config.get('format')!r} is not {FORMAT!r}")
    arch = dict(config["architecture"])
    with keras_policy("float32"):  # trained and measured in float32: predict in it under any page policy
        network = landmark_net(tuple(arch.pop("input_shape")), weights=None, **arch)
    with np.load(folder / WEIGHTS_FILE) as z:
        weights = [z[k].astype(np.float32) for k in sorted(z.files)]
    expected = [tuple(v.shape) for v in network.get_weights()]
    if [w.shape for w in weights] != expected:
        raise ValueError(f"{folder / WEIGHTS_FILE} does not fit the network of {folder / MODEL_FILE} "
                         f"({len(weights)} arrays, the network has {len(expected)})")
    network.set_weights(weights)
    return VertebraModel(network, config)
