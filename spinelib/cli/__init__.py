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

One module per subcommand: :mod:`spinelib.cli.predict`, :mod:`spinelib.cli.train`,
:mod:`spinelib.cli.evaluate`, :mod:`spinelib.cli.book` (``book`` and ``synthetic``); what they share
(exit codes, the schemas, the input block, JSON/CSV writing) is :mod:`spinelib.cli.records`, the
segmentation model folders :mod:`spinelib.cli.segment`. This module holds the parser and
:func:`main`, and re-exports the names the subcommands' users and tests read (a re-export is a
copy of the name: to replace ``predict``'s model loader in a test, patch
``spinelib.cli.predict.load_predictor``, not ``spinelib.cli.load_predictor``).
"""

from __future__ import annotations

import argparse
import os

from spinelib.cli.book import cmd_book, cmd_synthetic
from spinelib.cli.evaluate import (
    cmd_evaluate,
    detect_layout,
    evaluate_aasce,
    evaluate_clinical,
    summarise_evaluation,
)
from spinelib.cli.predict import (
    XRAY_SUFFIXES,
    cmd_predict,
    collect_inputs,
    load_predictor,
    output_names,
    predict_one,
    prepare_output_folder,
)
from spinelib.cli.records import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    LIMITS,
    MANIFEST,
    SCHEMA_ID,
    SCHEMA_NAME,
    SEG_SCHEMA_ID,
    SEG_SCHEMA_NAME,
    SUMMARY_CSV,
    UsageError,
    input_record,
    prediction_schema,
    read_input,
    report_error,
    sha256_file,
    validate_prediction,
)
from spinelib.cli.segment import SegmentationModel, draw_masks, save_segmentation_model, segment_one
from spinelib.cli.train import cmd_train
from spinelib.landmarks.model import CORNER_ORDER, cobb_record, vertebra_records

__all__ = ["main", "build_parser", "CORNER_ORDER", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "LIMITS", "MANIFEST",
           "SCHEMA_ID", "SCHEMA_NAME", "SEG_SCHEMA_ID", "SEG_SCHEMA_NAME", "SUMMARY_CSV", "XRAY_SUFFIXES",
           "SegmentationModel", "UsageError", "cmd_book", "cmd_evaluate", "cmd_predict", "cmd_synthetic", "cmd_train",
           "cobb_record", "collect_inputs", "detect_layout", "draw_masks", "evaluate_aasce", "evaluate_clinical",
           "input_record", "load_predictor", "output_names", "predict_one", "prediction_schema",
           "prepare_output_folder", "read_input", "report_error", "save_segmentation_model", "segment_one",
           "sha256_file", "summarise_evaluation", "validate_prediction", "vertebra_records"]


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
    b.add_argument("--jobs", type=int, default=None,
                   help="pages executed side by side (default: $SPINELIB_BOOK_JOBS or 1; build_book.sh runs 2)")
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
        report_error(str(e))
        return EXIT_USAGE
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as e:  # bad data: say what, exit 1
        report_error(f"{args.command} failed: {e}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        report_error("interrupted")
        return 130
