"""``spinelib predict``: the inputs (files and folders), the output folder's rules, one X-ray's
JSON, mask and overlay, and the batch with its summary CSV and manifest."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from spinelib.cli.records import (
    EXIT_FAILED,
    EXIT_OK,
    LIMITS,
    MANIFEST,
    SCHEMA_ID,
    SUMMARY_CSV,
    UsageError,
    input_record,
    read_input,
    report_error,
    sha256_file,
    validate_prediction,
    write_csv,
    write_json,
)
from spinelib.cli.segment import SegmentationModel, segment_one

XRAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")
"""File types ``predict`` picks from a folder (files without a suffix are taken when DICOM)."""

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


def predict_one(model, path: Path, out: Path, name: str, model_info: dict) -> dict:
    """Predict one X-ray and write ``<name>.json``, ``<name>_mask.png`` and ``<name>_overlay.png``
    into ``out``; returns its summary row. The JSON's vertebrae and angles are the prediction's own
    :meth:`spinelib.landmarks.model.SpinePrediction.to_dict` (rounded), with the input's block
    (:func:`spinelib.cli.records.input_record`), the model and the output files around them. Raises ``ImageReadError``/``FileNotFoundError`` when the
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
    files = {"json": f"{name}.json", "mask": f"{name}_mask.png", "overlay": f"{name}_overlay.png"}
    spacing = info.get("pixel_spacing_mm")
    blocks = pred.to_dict(pixel_spacing=spacing, rounded=True)  # the one writer of vertebrae and angles
    record = {
        "schema": SCHEMA_ID,
        "input": input_record(path, digest, (h, w), info),
        "model": model_info,
        "spinelib_version": __version__,
        "corner_order": blocks["corner_order"],
        "vertebrae": blocks["vertebrae"],
        "cobb": blocks["cobb"],
        "outputs": {"mask": files["mask"], "overlay": files["overlay"]},
        "limits": LIMITS,
    }
    validate_prediction(record)
    save_png(out / files["mask"], mask > 0)
    title = f"{model_info['name']} {model_info['version']}"
    save_png(out / files["overlay"], draw_prediction(image, pred.corners, pred.cobb, levels, title=title))
    write_json(out / files["json"], record)
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
        report_error(f"skipped {p}: {why}")
    if ignored:
        report_error(f"left out {len(ignored)} file(s) of the input folders that are not X-ray files "
             f"({', '.join(XRAY_SUFFIXES)} or DICOM), e.g. {ignored[0]}")
    if not files:
        report_error("no X-ray to predict (give image files or folders holding "
             f"{', '.join(XRAY_SUFFIXES)} files)")
        return EXIT_FAILED
    out = Path(args.out)
    stale = prepare_output_folder(out, files, folders, args.overwrite)
    try:
        model = load_predictor(args.model)
    except (FileNotFoundError, ValueError, OSError, ImportError, KeyError) as e:
        report_error(f"cannot load the model {args.model or '(shipped default)'}: {e}")
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
    write_csv(out / SUMMARY_CSV, frame)
    n_ok = int((frame.status == "ok").sum())
    write_json(out / MANIFEST, {"command": "predict", "model": model_info, "n_ok": n_ok,
                                 "n_skipped": int(len(frame) - n_ok), "files": written + [SUMMARY_CSV]})
    print(f"{n_ok} of {len(frame)} X-ray(s) predicted into {out} ({SUMMARY_CSV}); "
          f"{len(frame) - n_ok} skipped")
    return EXIT_OK if n_ok else EXIT_FAILED
