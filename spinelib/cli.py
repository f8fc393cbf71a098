"""The ``spinelib`` command: vertebrae, Cobb angles and masks on your own spine X-rays.

Subcommands (``spinelib <command> --help`` for each)::

    spinelib predict XRAY_OR_FOLDER... --out DIR [--model NAME_OR_DIR] [--overwrite]
    spinelib train DATA --out MODEL_DIR [--structure NAME] [--epochs N] ...
    spinelib evaluate PREDICTIONS --truth DATA --out DIR
    spinelib book [--profile tiny|ci|paper]
    spinelib synthetic --out DIR [--n 60] [--seed 0]

Exit codes (every subcommand): 0 success; 1 the work failed (``predict``: not one image could be
predicted; ``train``/``evaluate``: the data could not be used); 2 the command line is wrong or the
output folder is refused (it holds other results, or it is an input's folder). ``predict`` skips an
image it cannot read, reports it on stderr and in the summary CSV (``status`` = ``skipped``), goes
on with the batch, and still exits 0 when at least one image was predicted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

XRAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")
"""File types ``predict`` picks from a folder (files without a suffix are taken when DICOM)."""

CORNER_ORDER = ("TL", "TR", "BL", "BR")
SUMMARY_CSV = "predictions.csv"
MANIFEST = "spinelib-run.json"
"""Written into every ``predict`` output folder: what ran and which files it wrote (``--overwrite``
removes exactly those before writing again)."""
SCHEMA_NAME = "prediction.schema.json"
SCHEMA_ID = "spinelib-prediction/1"
SEG_SCHEMA_NAME = "segmentation.schema.json"
SEG_SCHEMA_ID = "spinelib-segmentation/1"

LIMITS = ("Research use only: AP (frontal) spine X-rays; the shipped model was trained on one public dataset "
          "(AASCE 2019, scoliosis patients). Not a medical device.")


class UsageError(Exception):
    """A refused command line (exit code 2)."""


# --------------------------------------------------------------------------------------------
# small helpers


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (the input's fingerprint in every prediction JSON)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _write_json(path: Path, obj) -> Path:
    from spinelib.core.imageio import atomic_write_bytes

    return atomic_write_bytes(path, (json.dumps(obj, indent=1, allow_nan=False) + "\n").encode())


def _write_csv(path: Path, frame) -> Path:
    from spinelib.core.imageio import atomic_write_bytes

    return atomic_write_bytes(path, frame.to_csv(index=False).encode())


def _err(message: str) -> None:
    print(f"spinelib: {message}", file=sys.stderr)


def prediction_schema(kind: str = "landmarks") -> dict:
    """The JSON schema (draft 2020-12) of ``predict``'s JSON (package data): ``kind="landmarks"``
    (:data:`SCHEMA_NAME`, vertebrae and angles) or ``"segmentation"`` (:data:`SEG_SCHEMA_NAME`)."""
    from importlib import resources

    name = {"landmarks": SCHEMA_NAME, "segmentation": SEG_SCHEMA_NAME}[kind]
    return json.loads(resources.files("spinelib").joinpath("schemas", name).read_text())


def validate_prediction(record: dict) -> None:
    """Raise ``ValueError`` naming the first problem when ``record`` breaks its schema (chosen by
    its ``schema`` field: :data:`SCHEMA_ID` or :data:`SEG_SCHEMA_ID`)."""
    import jsonschema

    kind = "segmentation" if isinstance(record, dict) and record.get("schema") == SEG_SCHEMA_ID else "landmarks"
    validator = jsonschema.Draft202012Validator(prediction_schema(kind))
    errors = sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        name = SEG_SCHEMA_NAME if kind == "segmentation" else SCHEMA_NAME
        raise ValueError(f"prediction JSON breaks {name} at {where}: {e.message}")


# --------------------------------------------------------------------------------------------
# predict: inputs and the output folder


def _is_candidate(path: Path) -> bool:
    from spinelib.core.imageio import has_dicm_magic

    if path.name.startswith("."):
        return False
    if path.suffix.lower() in XRAY_SUFFIXES:
        return True
    return has_dicm_magic(path)  # DICOM named IM0001, *.IMA, ...


def collect_inputs(inputs, ignored: list[Path] | None = None) -> tuple[list[Path], list[tuple[Path, str]], list[Path]]:
    """``(files, missing, folders)`` from the command line's inputs.

    A file is taken as given (whatever its type: a non-image is reported when it fails to read); a
    folder contributes, recursively and sorted, its files with an X-ray suffix
    (:data:`XRAY_SUFFIXES`) and DICOM files of any name (``DICM`` at byte 128); hidden files and
    folders are left out, and the folder's other files are appended to ``ignored`` when given. A
    path that does not exist goes to ``missing`` with the reason. Duplicates are dropped.
    """
    files, missing, folders, seen = [], [], [], set()
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            folders.append(p.resolve())
            visible = sorted(q for q in p.rglob("*") if q.is_file()
                             and not any(part.startswith(".") for part in q.relative_to(p).parts))
            found = [q for q in visible if _is_candidate(q)]
            if ignored is not None:
                taken = set(found)
                ignored.extend(q for q in visible if q not in taken)
        elif p.exists() or p.is_symlink():
            found = [p]
        else:
            missing.append((p, "no such file or folder"))
            continue
        for q in found:
            key = q.resolve()
            if key not in seen:
                seen.add(key)
                files.append(q)
    return files, missing, folders


def output_names(files: list[Path]) -> list[str]:
    """A distinct output stem per input: the file's stem, with ``-2``, ``-3``... on repeats
    (``a.png`` and ``a.dcm``, or two folders with ``IM0001``)."""
    names, used = [], {}
    for f in files:
        stem = f.stem or f.name
        stem = "".join(ch if ch.isalnum() or ch in "-_. " else "_" for ch in stem).strip() or "image"
        n = used.get(stem.lower(), 0) + 1
        used[stem.lower()] = n
        names.append(stem if n == 1 else f"{stem}-{n}")
    return names


def _manifest(out: Path) -> dict | None:
    p = out / MANIFEST
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def prepare_output_folder(out: Path, files: list[Path], folders: list[Path], overwrite: bool) -> list[Path]:
    """Refuse (:class:`UsageError`) an output folder that would write next to or over an input, or
    that already holds results; with ``overwrite``, return the files a previous ``predict`` listed
    in its manifest, for the caller to remove once the model has loaded (never anything else).

    Refused: ``out`` is the folder of an input file, an input folder or inside one; ``out`` is a
    file; ``out`` holds files and no ``predict`` manifest (not ours: never touched), or a manifest
    without ``--overwrite``.
    """
    out_r = out.resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    for f in files:
        if f.resolve().parent == out_r:
            raise UsageError(f"--out {out} is the folder of the input {f}: spinelib never writes next to its inputs; "
                             "choose another folder")
    for d in folders:
        if out_r == d or d in out_r.parents:
            raise UsageError(f"--out {out} is inside the input folder {d}: outputs would be read back as inputs; "
                             "choose a folder outside it")
    if not out.exists():
        return []
    entries = [p for p in out.iterdir() if not p.name.startswith(".")]
    if not entries:
        return []
    manifest = _manifest(out)
    if manifest is None:
        raise UsageError(f"--out {out} already holds {len(entries)} file(s) that spinelib did not write; "
                         "choose a new or empty folder")
    if not overwrite:
        raise UsageError(f"--out {out} already holds results of 'spinelib predict' ({len(manifest.get('files', []))} "
                         "file(s)); add --overwrite to replace them, or choose another folder")
    targets = [out / name for name in manifest.get("files", []) + [MANIFEST]]
    return [t for t in targets if t.parent.resolve() == out_r and t.is_file()]


# --------------------------------------------------------------------------------------------
# predict: one image


def read_input(path: Path) -> tuple[np.ndarray, dict]:
    """``(uint8 image, info)``: DICOM through :func:`spinelib.core.imageio.read_dicom` (pixel spacing
    and its tag in ``info``), anything else through :func:`spinelib.core.imageio.read_xray`."""
    from spinelib.core.imageio import is_dicom, read_dicom, read_xray

    if is_dicom(path):
        image, info = read_dicom(path)
        return image, {**info, "format": "DICOM"}
    from PIL import Image

    image = read_xray(path)
    try:
        with Image.open(path) as im:
            fmt = im.format
    except Exception:  # noqa: BLE001 - the format is informative only
        fmt = None
    return image, {"format": fmt, "pixel_spacing_mm": None, "pixel_spacing_source": None}


def _xy(point) -> list[float] | None:
    p = np.asarray(point, dtype=float)
    return None if not np.isfinite(p).all() else [round(float(p[0]), 3), round(float(p[1]), 3)]


def vertebra_records(corners, levels, scores=None, spacing=None) -> list[dict]:
    """One dict per vertebra: ``level``, ``index``, ``found``, ``score``, ``corners_px``
    (TL, TR, BL, BR as ``[x, y]``), ``center_px`` (mean of the corners) and, with
    ``spacing=(row_mm, column_mm)``, ``corners_mm`` :math:`(x\\,s_{col}, y\\,s_{row})` from the
    centre of the top-left pixel."""
    c = np.asarray(corners, dtype=float)
    out = []
    for v, level in enumerate(levels):
        found = bool(np.isfinite(c[v]).all())
        rec = {"level": str(level), "index": v, "found": found,
               "score": None if scores is None or not np.isfinite(scores[v]) else round(float(scores[v]), 4),
               "corners_px": {k: _xy(c[v, i]) for i, k in enumerate(CORNER_ORDER)} if found else None,
               "center_px": _xy(c[v].mean(axis=0)) if found else None,
               "corners_mm": None}
        if found and spacing is not None:
            row, col = spacing
            rec["corners_mm"] = {k: [round(float(c[v, i, 0]) * col, 3), round(float(c[v, i, 1]) * row, 3)]
                                 for i, k in enumerate(CORNER_ORDER)}
        out.append(rec)
    return out


def cobb_record(cobb, levels) -> dict | None:
    """``{"pt"|"mt"|"tl": {"angle_deg", "upper", "lower", "upper_index", "lower_index"}, "is_s"}``
    from a :class:`spinelib.geometry.cobb.CobbResult`; None when there is none."""
    if cobb is None:
        return None
    out = {}
    for key in ("pt", "mt", "tl"):
        up, low = cobb.end_vertebrae[key]
        out[key] = {"angle_deg": round(float(getattr(cobb, key)), 3), "upper": levels[int(up)], "lower": levels[int(low)],
                    "upper_index": int(up), "lower_index": int(low)}
    out["is_s"] = bool(getattr(cobb, "is_s", False))
    return out


def input_record(path: Path, digest: str, shape: tuple[int, int], info: dict) -> dict:
    """The ``input`` block of a prediction JSON: path, name, SHA-256, bytes, format, size, spacing."""
    spacing = info.get("pixel_spacing_mm")
    return {"path": str(path.resolve()), "name": path.name, "sha256": digest, "bytes": path.stat().st_size,
            "format": info.get("format"), "height": int(shape[0]), "width": int(shape[1]),
            "pixel_spacing_mm": None if spacing is None else [float(spacing[0]), float(spacing[1])],
            "pixel_spacing_source": info.get("pixel_spacing_source")}


def _safe_cobb(pred):
    try:
        return pred.cobb
    except (ValueError, TypeError):
        return None  # a vertebra not found: no angles


def predict_one(model, path: Path, out: Path, name: str, model_info: dict) -> dict:
    """Predict one X-ray and write ``<name>.json``, ``<name>_mask.png`` and ``<name>_overlay.png``
    into ``out``; returns its summary row. Raises ``ImageReadError``/``FileNotFoundError`` when the
    file cannot be read."""
    from spinelib import __version__
    from spinelib.core.imageio import save_png
    from spinelib.overlay import draw_prediction

    t0 = time.perf_counter()
    image, info = read_input(path)
    digest = sha256_file(path)
    pred = model.predict(image)
    levels = tuple(pred.levels)
    h, w = image.shape
    mask = np.asarray(pred.mask())
    if mask.shape != (h, w):
        raise RuntimeError(f"the model's mask is {mask.shape}, the X-ray {(h, w)}")
    cobb = _safe_cobb(pred)
    files = {"json": f"{name}.json", "mask": f"{name}_mask.png", "overlay": f"{name}_overlay.png"}
    spacing = info.get("pixel_spacing_mm")
    record = {
        "schema": SCHEMA_ID,
        "input": input_record(path, digest, (h, w), info),
        "model": model_info,
        "spinelib_version": __version__,
        "corner_order": list(CORNER_ORDER),
        "vertebrae": vertebra_records(pred.corners, levels, getattr(pred, "scores", None), spacing),
        "cobb": cobb_record(cobb, levels),
        "outputs": {"mask": files["mask"], "overlay": files["overlay"]},
        "limits": LIMITS,
    }
    validate_prediction(record)
    save_png(out / files["mask"], mask > 0)
    title = f"{model_info['name']} {model_info['version']}"
    save_png(out / files["overlay"], draw_prediction(image, pred.corners, cobb, levels, title=title))
    _write_json(out / files["json"], record)
    row = {"input": str(path), "name": name, "status": "ok", "error": "", "height": h, "width": w,
           "vertebrae_found": int(sum(v["found"] for v in record["vertebrae"])),
           "pixel_spacing_mm": "" if spacing is None else f"{spacing[0]:g} x {spacing[1]:g}",
           "pixel_spacing_source": info.get("pixel_spacing_source") or ""}
    for key in ("pt", "mt", "tl"):
        c = record["cobb"]
        row[f"{key}_deg"] = None if c is None else c[key]["angle_deg"]
        row[f"{key}_levels"] = "" if c is None else f"{c[key]['upper']}-{c[key]['lower']}"
    row.update({"json": files["json"], "mask": files["mask"], "overlay": files["overlay"], "sha256": digest,
                "seconds": round(time.perf_counter() - t0, 3)})
    return row


class SegmentationModel:
    """A segmentation model folder written by ``spinelib train`` on the clinical layout:
    ``model.keras`` + ``model.json`` (``kind: "segmentation"``, ``input_size``, ``structures``,
    ``threshold``).

    :meth:`segment`: the X-ray resized to the input size (:func:`spinelib.core.imageio.resize_image`),
    scaled :math:`x/255`, the probabilities resized back bilinearly to the X-ray's size and
    thresholded and cleaned by :func:`spinelib.seg.inference.postprocess`.
    """

    kind = "segmentation"

    def __init__(self, folder: str | os.PathLike):
        import keras

        self.folder = Path(folder)
        self.config = json.loads((self.folder / "model.json").read_text())
        if self.config.get("kind") != "segmentation":
            raise ValueError(f"{self.folder / 'model.json'} is not a segmentation model (kind {self.config.get('kind')!r})")
        self.name = str(self.config.get("name") or self.folder.name)
        self.version = str(self.config.get("version") or "0")
        self.structures = list(self.config["structures"])
        self.input_size = tuple(int(v) for v in self.config["input_size"])
        self.threshold = float(self.config.get("threshold", 0.5))
        self.network = keras.models.load_model(self.folder / "model.keras", compile=False)

    def segment(self, image) -> np.ndarray:
        """(H, W, C) ``bool`` masks, one channel per structure, at the X-ray's own size."""
        from skimage.transform import resize

        from spinelib.core.imageio import resize_image, to_uint8
        from spinelib.seg.inference import postprocess

        img = to_uint8(np.asarray(image))
        x = resize_image(img, self.input_size).astype(np.float32)[None, ..., None] / np.float32(255.0)
        prob = np.asarray(self.network.predict(x, verbose=0))[0]
        full = resize(prob, img.shape + (prob.shape[-1],), order=1, preserve_range=True, anti_aliasing=False)
        return postprocess(full.astype(np.float32), threshold=self.threshold)


def draw_masks(image, masks, names, title: str | None = None) -> np.ndarray:
    """The X-ray (RGB) with each mask's outline drawn in its own colour and a legend of names."""
    import cv2

    from spinelib.overlay import line_width, to_rgb

    rgb = to_rgb(image).copy()
    colors = [(60, 220, 60), (255, 150, 0), (230, 60, 230), (0, 200, 255), (255, 40, 40)]
    lw = line_width(rgb.shape[:2])
    scale = max(0.4, min(rgb.shape[:2]) / 900)
    lines = ([(title, (255, 255, 255))] if title else []) + [(n, colors[i % len(colors)]) for i, n in enumerate(names)]
    for c in range(masks.shape[-1]):
        contours, _ = cv2.findContours(masks[..., c].astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(rgb, contours, -1, colors[c % len(colors)], lw, cv2.LINE_AA)
    for i, (text, color) in enumerate(lines):
        cv2.putText(rgb, text, (10, int(34 * scale + 4) * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, color,
                    max(1, lw // 2 + 1), cv2.LINE_AA)
    return rgb


def segment_one(model: SegmentationModel, path: Path, out: Path, name: str, model_info: dict) -> dict:
    """Segment one X-ray with a segmentation model folder: ``<name>.json``
    (:data:`SEG_SCHEMA_ID`), ``<name>_mask.png`` (the first structure), ``<name>_<structure>.png``
    for further ones, ``<name>_overlay.png``; returns its summary row."""
    from spinelib import __version__
    from spinelib.core.imageio import save_png

    t0 = time.perf_counter()
    image, info = read_input(path)
    digest = sha256_file(path)
    masks = model.segment(image)
    h, w = image.shape
    files = {"json": f"{name}.json", "mask": f"{name}_mask.png", "overlay": f"{name}_overlay.png"}
    structures = []
    for c, s in enumerate(model.structures):
        file = files["mask"] if c == 0 else f"{name}_{s}.png"
        structures.append({"name": s, "mask": file, "pixels": int(masks[..., c].sum()),
                           "fraction": round(float(masks[..., c].mean()), 6)})
    record = {"schema": SEG_SCHEMA_ID, "input": input_record(path, digest, (h, w), info), "model": model_info,
              "spinelib_version": __version__, "structures": structures,
              "outputs": {"mask": files["mask"], "overlay": files["overlay"]}, "limits": LIMITS}
    validate_prediction(record)
    for c, st in enumerate(structures):
        save_png(out / st["mask"], masks[..., c])
    save_png(out / files["overlay"], draw_masks(image, masks, model.structures,
                                                title=f"{model_info['name']} {model_info['version']}"))
    _write_json(out / files["json"], record)
    return {"input": str(path), "name": name, "status": "ok", "error": "", "height": h, "width": w,
            "structures": " ".join(model.structures), "fraction": structures[0]["fraction"],
            "json": files["json"], "mask": files["mask"], "overlay": files["overlay"], "sha256": digest,
            "extra_files": " ".join(st["mask"] for st in structures[1:]),
            "seconds": round(time.perf_counter() - t0, 3)}


def load_predictor(name_or_dir: str | None):
    """The model ``predict`` runs: :func:`spinelib.landmarks.model.load_model` (None or a name: the
    shipped model; a folder: a model folder written by ``spinelib train`` / ``save_model``).

    A segmentation model folder (``model.json`` with ``kind: "segmentation"``) loads as a
    :class:`SegmentationModel`: ``predict`` then writes its masks, no vertebrae or angles."""
    from spinelib.landmarks.model import load_model

    if name_or_dir is not None and (Path(name_or_dir) / "model.json").is_file():
        config = json.loads((Path(name_or_dir) / "model.json").read_text())
        if config.get("kind") == "segmentation":
            return SegmentationModel(name_or_dir)
    return load_model(name_or_dir)


def cmd_predict(args) -> int:
    from tqdm.auto import tqdm

    from spinelib.core.imageio import ImageReadError

    ignored: list[Path] = []
    files, missing, folders = collect_inputs(args.inputs, ignored)
    for p, why in missing:
        _err(f"skipped {p}: {why}")
    if ignored:
        _err(f"left out {len(ignored)} file(s) of the input folders that are not X-ray files "
             f"({', '.join(XRAY_SUFFIXES)} or DICOM), e.g. {ignored[0]}")
    if not files:
        _err("no X-ray to predict (give image files or folders holding "
             f"{', '.join(XRAY_SUFFIXES)} files)")
        return EXIT_FAILED
    out = Path(args.out)
    stale = prepare_output_folder(out, files, folders, args.overwrite)
    try:
        model = load_predictor(args.model)
    except (FileNotFoundError, ValueError, OSError, ImportError, KeyError) as e:
        _err(f"cannot load the model {args.model or '(shipped default)'}: {e}")
        return EXIT_FAILED
    for target in stale:  # --overwrite: the earlier run's files, once the model is known to load
        target.unlink(missing_ok=True)
    model_info = {"name": str(model.name), "version": str(model.version),
                  "source": "shipped" if args.model is None else str(args.model)}
    out.mkdir(parents=True, exist_ok=True)
    names = output_names(files)
    rows, written = [], []
    for p, why in missing:
        rows.append({"input": str(p), "name": "", "status": "skipped", "error": why})
    bar = tqdm(list(zip(files, names)), desc="spinelib predict", unit="image", file=sys.stderr,
               disable=args.quiet or None, dynamic_ncols=True)
    for path, name in bar:
        try:
            if getattr(model, "kind", "landmarks") == "segmentation":
                row = segment_one(model, path, out, name, model_info)
            else:
                row = predict_one(model, path, out, name, model_info)
            written += [row["json"], row["mask"], row["overlay"]] + row.pop("extra_files", "").split()
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - one bad X-ray never stops the batch
            msg = str(e) if isinstance(e, (ImageReadError, OSError)) else f"{type(e).__name__}: {e}"
            tqdm.write(f"spinelib: skipped {path}: {msg}", file=sys.stderr)
            row = {"input": str(path), "name": name, "status": "skipped", "error": msg}
        rows.append(row)
    import pandas as pd

    frame = pd.DataFrame(rows)
    _write_csv(out / SUMMARY_CSV, frame)
    n_ok = int((frame.status == "ok").sum())
    _write_json(out / MANIFEST, {"command": "predict", "model": model_info, "n_ok": n_ok,
                                 "n_skipped": int(len(frame) - n_ok), "files": written + [SUMMARY_CSV]})
    print(f"{n_ok} of {len(frame)} X-ray(s) predicted into {out} ({SUMMARY_CSV}); "
          f"{len(frame) - n_ok} skipped")
    return EXIT_OK if n_ok else EXIT_FAILED


# --------------------------------------------------------------------------------------------
# train


def detect_layout(root: Path) -> str:
    """``"aasce"`` (``data/`` + ``labels/`` folders, the challenge's layout) or ``"clinical"``
    (``Normal``/``Damaged`` patient folders, the paper's); ``ValueError`` otherwise."""
    if (root / "labels").is_dir() and (root / "data").is_dir():
        return "aasce"
    names = {p.name.lower() for p in root.rglob("*") if p.is_dir()} if root.is_dir() else set()
    if {"normal", "damaged"} & names:
        return "clinical"
    raise ValueError(f"{root} is neither an AASCE folder (data/ + labels/) nor the paper's clinical layout "
                     "(<root>/<Normal|Damaged>/<patient>/<AP|LAT>/)")


def _check_model_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()) and not overwrite and not (out / "work").is_dir():
        raise UsageError(f"--out {out} already holds files; add --overwrite or choose another folder")


def cmd_train(args) -> int:
    root = Path(args.data)
    if not root.is_dir():
        raise UsageError(f"training data {root} is not a folder")
    try:
        layout = args.layout if args.layout != "auto" else detect_layout(root)
    except ValueError as e:
        raise UsageError(str(e)) from e
    out = Path(args.out)
    _check_model_out(out, args.overwrite)
    if layout == "aasce":
        return _train_landmarks(root, out, args)
    return _train_segmentation(root, out, args)


def _train_landmarks(root: Path, out: Path, args) -> int:
    from spinelib.data.aasce import load_aasce
    from spinelib.landmarks.aasce_run import aasce_split
    from spinelib.landmarks.model import save_model
    from spinelib.landmarks.train import (
        SETTINGS,
        prepare_landmark_data,
        train_landmarks,
    )

    frame = load_aasce(root, max_images=args.max_images)
    size = tuple(args.size) if args.size else tuple(SETTINGS["size"])
    # the AASCE runs' recipe: a patient split, training images with flagged labels left out
    split = aasce_split(frame, val_fraction=args.val_fraction, seed=args.seed, exclude_flagged=not args.keep_flagged)
    train_idx, val_idx = split.train, split.val
    if len(train_idx) == 0:
        raise ValueError(f"no training X-ray left in {root}: spinelib.data.label_audit flags the labels of all "
                         f"{len(split.excluded)} training X-rays (--keep-flagged trains on them anyway)")
    (out / "work").mkdir(parents=True, exist_ok=True)
    data = prepare_landmark_data(frame, size=size, cache=out / "work" / f"data_{size[0]}x{size[1]}.npz",
                                 progress=not args.quiet)
    settings = {"size": size, "seed": args.seed, "weights": None if args.no_pretrained else SETTINGS["weights"]}
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
    result = train_landmarks(data, train_idx, val_idx, work_dir=out / "work", progress=not args.quiet, **settings)
    config = {"name": args.name or "aasce-vertebrae", "version": args.version, "kind": "landmarks",
              "input_size": [int(size[0]), int(size[1])], "trained_on": str(root), "n_train": int(len(train_idx)),
              "n_val": int(len(val_idx)), "excluded_flagged_labels": list(split.excluded), "settings": {k: (list(v) if isinstance(v, tuple) else v)
                                                       for k, v in result.settings.items()}}
    save_model(result.model, out, config, overwrite=args.overwrite)
    print(f"landmark model written to {out} ({len(train_idx)} training, {len(val_idx)} validation X-rays)")
    return EXIT_OK


def _train_segmentation(root: Path, out: Path, args) -> int:
    from spinelib.core.structures import STRUCTURES, view_of
    from spinelib.data.clinical import load_segmentation_arrays, scan_clinical
    from spinelib.data.splits import patient_split
    from spinelib.seg.training import train_segmentation
    from spinelib.seg.unet import unet

    structure = next((s for s in STRUCTURES if s.lower() == (args.structure or "").lower()), None)
    if structure is None:
        raise UsageError(f"--structure must be one of {', '.join(STRUCTURES)} for the clinical layout, "
                         f"got {args.structure!r}")
    view = view_of(structure)
    size = tuple(args.size) if args.size else (256, 128)
    dataset = scan_clinical(root, progress=not args.quiet)
    x, y, ids = load_segmentation_arrays(dataset, view, size, structures=[structure], progress=not args.quiet,
                                         on_error="skip")
    tr, va = patient_split(ids, val_fraction=args.val_fraction, seed=args.seed)
    import keras

    keras.utils.set_random_seed(args.seed)
    model = unet((size[0], size[1], 1), filters=args.filters, n_classes=1)
    result = train_segmentation(model, x[tr], y[tr], x[va], y[va], loss="dice", epochs=args.epochs or 30,
                                batch_size=args.batch_size or 4, out_dir=out / "work", seed=args.seed,
                                augment=True, verbose=0 if args.quiet else 2)
    best = keras.models.load_model(out / "work" / "best.keras", compile=False) if (out / "work" / "best.keras").is_file() \
        else result.model if hasattr(result, "model") else model
    config = {"name": args.name or f"clinical-{structure.lower()}", "version": args.version, "kind": "segmentation",
              "input_size": [int(size[0]), int(size[1])], "normalisation": "x / 255 (uint8 gray to [0, 1])",
              "structures": [structure], "view": view, "threshold": 0.5, "trained_on": str(root),
              "n_train": int(len(tr)), "n_val": int(len(va))}
    save_segmentation_model(best, out, config)
    print(f"segmentation model ({structure}) written to {out} ({len(tr)} training, {len(va)} validation patients)")
    return EXIT_OK


def save_segmentation_model(model, folder: Path, config: dict) -> Path:
    """``folder/model.keras`` + ``folder/model.json`` (``kind: "segmentation"``, input size,
    normalisation, structures, threshold): the model folder a notebook reloads with
    ``keras.models.load_model(folder / "model.keras", compile=False)``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".model.tmp.keras"
    model.save(tmp)
    os.replace(tmp, folder / "model.keras")
    _write_json(folder / "model.json", config)
    return folder


# --------------------------------------------------------------------------------------------
# evaluate


def _read_predictions(folder: Path) -> list[dict]:
    records = []
    for p in sorted(folder.glob("*.json")):
        if p.name == MANIFEST:
            continue
        try:
            rec = json.loads(p.read_text())
        except ValueError:
            continue
        if rec.get("schema") in (SCHEMA_ID, SEG_SCHEMA_ID):
            rec["_json"] = p
            records.append(rec)
    if not records:
        raise ValueError(f"{folder} holds no 'spinelib predict' JSON")
    return records


def _corners_of(rec: dict) -> np.ndarray:
    out = np.full((len(rec["vertebrae"]), 4, 2), np.nan)
    for v in rec["vertebrae"]:
        if v["found"]:
            out[v["index"]] = [v["corners_px"][k] for k in CORNER_ORDER]
    return out


def _landmark_error(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean Euclidean corner distance (px) over the vertebrae found,
    :math:`\frac1{4n}\sum\lVert p - t\rVert` (:func:`spinelib.geometry.corners.landmark_errors`)."""
    from spinelib.geometry.corners import landmark_errors

    d = landmark_errors(pred, true)
    return float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")


def evaluate_aasce(records: list[dict], root: Path, split: str = "training") -> "pd.DataFrame":
    """One row per prediction whose input is an AASCE X-ray (matched by SHA-256 of the file):
    ``dice`` of the predicted mask PNG against the ground-truth quadrilaterals
    (:func:`spinelib.data.aasce.vertebra_mask`), ``corner_dice`` of the quadrilaterals drawn from the
    predicted corners (:func:`spinelib.geometry.corners.quadrilateral_dice`), the mean corner
    error (px), the three angles predicted and true, and the image's SMAPE
    :math:`100 \sum_j |p_j - t_j| / \sum_j (p_j + t_j)`."""
    import pandas as pd

    from spinelib.core.imageio import read_mask
    from spinelib.data.aasce import load_aasce, vertebra_mask
    from spinelib.geometry.corners import quadrilateral_dice
    from spinelib.seg.metrics import dice

    frame = load_aasce(root, split=split)
    by_name = {str(r.image_name): r for r in frame.itertuples()}
    rows = []
    for rec in records:
        if rec["schema"] != SCHEMA_ID:
            continue  # segmentation predictions have no corners: scored on the clinical layout
        r = by_name.get(rec["input"]["name"])
        if r is None or sha256_file(r.image_path) != rec["input"]["sha256"]:
            continue
        shape = (int(r.height), int(r.width))
        truth = vertebra_mask(r.landmarks, shape)
        pred_mask = read_mask(rec["_json"].parent / rec["outputs"]["mask"], shape=shape)
        corners = _corners_of(rec)
        true_angles = np.array([r.cobb_pt, r.cobb_mt, r.cobb_tl], float)
        c = rec["cobb"]
        pred_angles = np.array([c[k]["angle_deg"] for k in ("pt", "mt", "tl")], float) if c else np.full(3, np.nan)
        denom = float(np.sum(pred_angles + true_angles))
        row = {"case": rec["input"]["name"], "dice": dice(truth, pred_mask),
               "corner_dice": quadrilateral_dice(corners, np.asarray(r.landmarks, float), shape),
               "landmark_error_px": _landmark_error(corners, np.asarray(r.landmarks, float)),
               "vertebrae_found": int(np.isfinite(corners).all(axis=(1, 2)).sum()),
               "smape": 100.0 * float(np.sum(np.abs(pred_angles - true_angles))) / denom if denom > 0 else float("nan")}
        for k, p, t in zip(("pt", "mt", "tl"), pred_angles, true_angles):
            row[f"{k}_pred"], row[f"{k}_true"] = float(p), float(t)
        rows.append(row)
    return pd.DataFrame(rows)


def evaluate_clinical(records: list[dict], root: Path, structure: str = "Ap_Vertebra") -> "pd.DataFrame":
    """One row per prediction whose input is a patient X-ray of the clinical layout (matched by
    SHA-256): Dice of the predicted mask against the ``structure`` mask."""
    import pandas as pd

    from spinelib.core.imageio import read_mask
    from spinelib.core.structures import view_of
    from spinelib.data.clinical import scan_clinical
    from spinelib.seg.metrics import dice

    view = view_of(structure)
    dataset = scan_clinical(root, progress=False)
    by_sha = {}
    for p in dataset.patients:
        vr = p.views.get(view)
        if vr is not None and structure in vr.mask_paths:
            by_sha[sha256_file(vr.image_path)] = (p.patient_id, vr)
    rows = []
    for rec in records:
        hit = by_sha.get(rec["input"]["sha256"])
        if hit is None:
            continue
        pid, vr = hit
        shape = (rec["input"]["height"], rec["input"]["width"])
        truth = read_mask(vr.mask_paths[structure], shape=shape)
        pred_mask = read_mask(rec["_json"].parent / rec["outputs"]["mask"], shape=shape)
        rows.append({"case": pid, "dice": dice(truth, pred_mask)})
    return pd.DataFrame(rows)


def summarise_evaluation(per_case) -> dict:
    """Means with 95 % bootstrap intervals (:func:`spinelib.seg.metrics.bootstrap_ci`) and, with
    angles, the challenge's SMAPE over all cases (:func:`spinelib.geometry.cobb.smape`)."""
    from spinelib.seg.metrics import bootstrap_ci

    out: dict = {"n_cases": int(len(per_case))}
    for col in ("dice", "corner_dice", "landmark_error_px"):
        if col in per_case and per_case[col].notna().any():
            v = per_case[col].dropna().to_numpy(float)
            lo, hi = bootstrap_ci(v) if len(v) > 1 else (float(v[0]), float(v[0]))
            out[col] = {"mean": float(v.mean()), "median": float(np.median(v)), "ci95": [float(lo), float(hi)]}
    if "pt_pred" in per_case:
        from spinelib.geometry.cobb import smape

        ok = per_case[["pt_pred", "mt_pred", "tl_pred"]].notna().all(axis=1)
        pred = per_case.loc[ok, ["pt_pred", "mt_pred", "tl_pred"]].to_numpy(float)
        true = per_case.loc[ok, ["pt_true", "mt_true", "tl_true"]].to_numpy(float)
        if len(pred):
            out["smape"] = float(smape(pred, true))
            out["angle_mae_deg"] = {k: float(np.mean(np.abs(pred[:, i] - true[:, i]))) for i, k in enumerate(("pt", "mt", "tl"))}
        out["n_without_angles"] = int((~ok).sum())
    return out


def cmd_evaluate(args) -> int:
    preds, truth, out = Path(args.predictions), Path(args.truth), Path(args.out)
    if not preds.is_dir():
        raise UsageError(f"predictions {preds} is not a folder (give a 'spinelib predict' output folder)")
    if not truth.is_dir():
        raise UsageError(f"ground truth {truth} is not a folder")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(f"--out {out} already holds files; add --overwrite or choose another folder")
    try:
        records = _read_predictions(preds)
        layout = args.layout if args.layout != "auto" else detect_layout(truth)
        per_case = evaluate_aasce(records, truth, args.split) if layout == "aasce" else \
            evaluate_clinical(records, truth, args.structure)
    except (ValueError, FileNotFoundError) as e:
        _err(str(e))
        return EXIT_FAILED
    if per_case.empty:
        _err(f"none of the {len(records)} prediction(s) in {preds} is of an X-ray in {truth} (matched by SHA-256)")
        return EXIT_FAILED
    summary = {"layout": layout, "truth": str(truth), "predictions": str(preds), "n_predictions": len(records),
               **summarise_evaluation(per_case)}
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "per_case.csv", per_case)
    _write_json(out / "summary.json", summary)
    print(json.dumps(summary, indent=1))
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# book and synthetic


def cmd_book(args) -> int:
    from spinelib import book

    argv = ["--profile", args.profile, "--seed", str(args.seed)] + (["--no-render"] if args.no_render else [])
    if args.only:
        argv += ["--only", *args.only]
    return book.main(argv)


def cmd_synthetic(args) -> int:
    from spinelib.data.synthetic import generator

    argv = ["--out", args.out, "--n", str(args.n), "--seed", str(args.seed), "--scale", str(args.scale)]
    argv += ["--irregular"] * args.irregular + ["--overwrite"] * args.overwrite + ["--quiet"] * args.quiet
    return generator.main(argv)


# --------------------------------------------------------------------------------------------
# the parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; defaults are written into each help string."""


def build_parser() -> argparse.ArgumentParser:
    """The ``spinelib`` argument parser with its five subcommands."""
    from spinelib import __version__

    parser = argparse.ArgumentParser(
        prog="spinelib", formatter_class=_Formatter,
        description="Vertebrae, Cobb angles and masks on AP spine X-rays; training and evaluation; the book.",
        epilog="Exit codes: 0 success; 1 the work failed (predict: no image could be predicted); "
               "2 wrong command line or refused output folder.\n" + LIMITS)
    parser.add_argument("--version", action="version", version=f"spinelib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "predict", formatter_class=_Formatter, help="find the 17 vertebrae (T1-L5) and the Cobb angles on X-rays",
        description="Find the 17 vertebrae T1-L5 (4 corners each) on AP spine X-rays and measure the three Cobb "
                    "angles (AASCE 2019 rule).\n\nPer X-ray, in --out:\n"
                    "  NAME.json          vertebrae with level names and corners in the X-ray's pixels (and in mm when\n"
                    "                     a DICOM gives PixelSpacing or ImagerPixelSpacing), the three angles with their\n"
                    "                     end vertebrae, the model's name and version, the input's SHA-256; validated\n"
                    f"                     against the package's {SCHEMA_NAME}\n"
                    "  NAME_mask.png      the 17 vertebra quadrilaterals, 1-bit, the X-ray's own size\n"
                    "  NAME_overlay.png   the X-ray with vertebrae, mid-lines, end vertebrae and angles drawn\n"
                    f"and for the batch {SUMMARY_CSV} (one row per input, status ok or skipped with the reason).\n\n"
                    "Inputs: PNG, JPEG, TIFF, BMP (8/16-bit) and DICOM (modality LUT, window/VOI LUT, MONOCHROME1;\n"
                    "first frame). Compressed DICOM (JPEG Lossless, JPEG-LS, JPEG 2000) needs: pip install \"spinelib[dicom]\".\n"
                    "A file that cannot be read is reported and skipped; the batch goes on. Exit code 0 when at least one\n"
                    "X-ray was predicted, 1 when none was, 2 when --out is refused.",
        epilog=LIMITS)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="X-ray files, or folders searched recursively")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (created; never an input's folder; refused when it holds earlier results)")
    p.add_argument("--model", default=None, metavar="NAME_OR_DIR",
                   help="a model folder written by 'spinelib train' (a segmentation folder writes its masks only: "
                        "no vertebrae, no angles), or a shipped model's name (default: the shipped AASCE vertebra "
                        "model)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier 'spinelib predict' in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

    t = sub.add_parser(
        "train", formatter_class=_Formatter, help="train a model folder that 'predict' loads",
        description="Train a model and write a model folder (model.keras + model.json: input size, normalisation, "
                    "levels or structures, threshold).\n\n"
                    "  AASCE layout (DATA/data/training + DATA/labels/training): the landmark network of the 17\n"
                    "    vertebrae's corners (spinelib.landmarks); 'spinelib predict --model OUT' runs it.\n"
                    "  Clinical layout (DATA/<Normal|Damaged>/<patient>/<AP|LAT>/ with mask PNGs): a U-Net for one of\n"
                    "    the 8 structures (--structure), trained with the Dice loss (spinelib.seg.training);\n"
                    "    'spinelib predict --model OUT' writes its masks; keras.models.load_model(OUT/model.keras).\n"
                    "Validation is a patient-level split (--val-fraction). AASCE: training images whose labels\n"
                    "spinelib.data.label_audit flags are left out of training (listed in model.json). Training\n"
                    "resumes from OUT/work when run again with the same settings.",
        epilog="Training is slow on a CPU: try --max-images 20 --epochs 1 first to check the data and the folder.")
    t.add_argument("data", metavar="DATA", help="dataset folder (AASCE or the paper's clinical layout)")
    t.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder to write")
    t.add_argument("--layout", choices=("auto", "aasce", "clinical"), default="auto", help="dataset layout (default: auto, from the folders)")
    t.add_argument("--structure", default="Ap_Vertebra", help="clinical layout: the structure to segment (default: Ap_Vertebra)")
    t.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="network input size (default: 512 256 landmarks, 256 128 segmentation)")
    t.add_argument("--epochs", type=int, default=None, metavar="N", help="epochs (default: the library's: 40 landmarks, 30 U-Net)")
    t.add_argument("--batch-size", type=int, default=None, metavar="N", help="batch size (default: 8 landmarks, 4 U-Net)")
    t.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                   help="fraction of patients held out for validation (default: 0.2)")
    t.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the split, initialisation and augmentation (default: 0)")
    t.add_argument("--filters", type=int, default=32, metavar="N", help="clinical layout: U-Net filters of the first level (default: 32, the paper's)")
    t.add_argument("--max-images", type=int, default=None, metavar="N", help="AASCE: use only the first N X-rays (a quick check)")
    t.add_argument("--keep-flagged", action="store_true",
                   help="AASCE: train on X-rays whose labels the label audit flags too (default: left out)")
    t.add_argument("--no-pretrained", action="store_true", help="AASCE: no ImageNet encoder weights")
    t.add_argument("--name", default=None, help="model name recorded in model.json and every prediction")
    t.add_argument("--version", default="0.1.0", help="model version recorded in model.json (default: 0.1.0)")
    t.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser(
        "evaluate", formatter_class=_Formatter, help="score 'predict' results against ground truth",
        description="Score a 'spinelib predict' output folder against ground truth. Predictions are matched to the\n"
                    "ground-truth X-rays by the SHA-256 of the input file.\n\n"
                    "  AASCE layout: Dice of the vertebra mask against the ground-truth quadrilaterals, mean corner\n"
                    "    error (px), the three Cobb angles and SMAPE (the challenge's measure).\n"
                    "  Clinical layout: Dice against the structure's mask (--structure).\n"
                    "Writes OUT/per_case.csv and OUT/summary.json (means, 95 % bootstrap intervals, SMAPE).")
    e.add_argument("predictions", metavar="PREDICTIONS", help="a 'spinelib predict' output folder")
    e.add_argument("--truth", required=True, metavar="DATA", help="ground truth: AASCE folder or clinical layout")
    e.add_argument("--out", required=True, metavar="DIR", help="where per_case.csv and summary.json go")
    e.add_argument("--layout", choices=("auto", "aasce", "clinical"), default="auto", help="ground-truth layout (default: auto, from the folders)")
    e.add_argument("--split", default="training", help="AASCE split holding the X-rays (default: training)")
    e.add_argument("--structure", default="Ap_Vertebra", help="clinical layout: the structure scored (default: Ap_Vertebra)")
    e.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("book", formatter_class=_Formatter, help="execute every notebook and render the book",
                       description="What scripts/build_book.sh runs after setting up the environment: generate the "
                                   "synthetic dataset, execute every notebook with papermill, render _build/html.")
    b.add_argument("--profile", default="ci", choices=("tiny", "ci", "paper"), help="sizes and epochs of every page (default: ci)")
    b.add_argument("--seed", type=int, default=0, help="seed of every page (default: 0)")
    b.add_argument("--only", nargs="*", help="execute only notebooks whose name contains these")
    b.add_argument("--no-render", action="store_true", help="execute the notebooks, skip the HTML")
    b.set_defaults(func=cmd_book)

    s = sub.add_parser("synthetic", formatter_class=_Formatter, help="generate synthetic spine X-rays in the paper's layout",
                       description="Generate synthetic AP + LAT spine X-rays with the 8 masks in the paper's clinical "
                                   "layout (spinelib.data.synthetic.generator): the book's embedded dataset.")
    s.add_argument("--out", required=True, metavar="DIR", help="dataset folder (reused if generated with the same settings)")
    s.add_argument("--n", type=int, default=60, help="number of patients (default: 60)")
    s.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    s.add_argument("--scale", type=float, default=1.0, help="image scale; 1.0 = the paper's Table 1 sizes (default: 1.0)")
    s.add_argument("--irregular", action="store_true", help="inject the raw release's file irregularities")
    s.add_argument("--overwrite", action="store_true", help="replace a dataset generated with other settings")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_synthetic)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spinelib`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        _err(str(e))
        return EXIT_USAGE
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as e:  # bad data: say what, exit 1
        _err(f"{args.command} failed: {e}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
