"""``spinelib train``: the dataset's layout (AASCE or the paper's clinical one), then the landmark
network (:mod:`spinelib.landmarks`) or a U-Net of one structure (:mod:`spinelib.seg.training`)."""

from __future__ import annotations

from pathlib import Path

from spinelib.cli.records import EXIT_OK, UsageError
from spinelib.cli.segment import save_segmentation_model


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
    from spinelib.data.clinical import scan_clinical
    from spinelib.data.clinical_arrays import load_segmentation_arrays
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
