"""The bad-input corpus: :data:`CASES`, one row per kind of bad or odd input with its decided
behaviour, and :func:`run_case`, which makes a case's input and checks the outcome (see
:mod:`spinelib.data.bad_inputs`)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spinelib.core.imageio import ImageReadError
from spinelib.core.provenance import assert_unchanged
from spinelib.data.audit import PROBLEM_KINDS
from spinelib.data.bad_inputs.file_makers import (
    Trial,
    make_16bit_png,
    make_alpha_only_mask,
    make_blank_xray,
    make_cmyk_jpeg,
    make_dicom_compressed,
    make_dicom_garbage,
    make_dicom_monochrome1,
    make_dicom_no_pixels,
    make_directory_named_jpg,
    make_empty_mask,
    make_float_tiff,
    make_gray_mask,
    make_huge_png,
    make_inverted_mask,
    make_jpeg_named_png,
    make_mask_0_1,
    make_mask_0_128_255,
    make_mask_antialiased,
    make_mask_jpeg,
    make_mask_other_size_audit,
    make_mask_other_size_load,
    make_missing_file,
    make_multipage_tiff,
    make_palette_mask,
    make_png_alpha,
    make_rgb_mask,
    make_rgb_xray,
    make_text_as_png,
    make_transparent_background_mask,
    make_truncated_jpeg,
    make_truncated_png,
    make_zero_byte,
)
from spinelib.data.bad_inputs.folder_makers import (
    parameter_maker,
    make_aasce_mat_disagrees,
    make_aasce_missing_image,
    make_aasce_nan,
    make_aasce_no_labels,
    make_aasce_non_numeric,
    make_aasce_outside_corners,
    make_aasce_row_mismatch,
    make_aasce_wrong_count,
    make_broken_link_mask,
    make_broken_link_xray,
    make_duplicate_ids,
    make_duplicate_ids_unicode,
    make_empty_patient_folder,
    make_empty_root,
    make_landmarks_nan,
    make_missing_root,
    make_names_with_spaces,
    make_one_view_only,
    make_profile_override_unknown,
    make_root_is_file,
    make_symlink_loop,
    make_trailing_dots,
    make_truncated_xray_in_dataset,
    make_truncated_xray_training,
    make_two_candidates,
    make_unicode_names,
    make_unknown_class_folder,
    make_unknown_file,
)

OUTCOMES = ("error", "excluded", "ignored", "problem", "warned", "loaded")


@dataclass(frozen=True)
class Case:
    kind: str
    make: Callable[[Path], Trial]
    outcome: str
    expected: tuple  # error: (exception type, *keywords); problem: (problem kind, *keywords); else keywords
    behaviour: str


# ============================================================================================
# the table

E, X, I, P, W, L = OUTCOMES[0], OUTCOMES[1], OUTCOMES[2], OUTCOMES[3], OUTCOMES[4], OUTCOMES[5]

CASES: list[Case] = [
    # --- single image files
    Case("truncated JPEG", make_truncated_jpeg, E, (ImageReadError, "truncated"),
         "error: the file and 'truncated or corrupt image data'"),
    Case("truncated PNG (mask)", make_truncated_png, E, (ImageReadError, "truncated"),
         "error: the file and 'truncated or corrupt image data'"),
    Case("zero-byte image", make_zero_byte, E, (ImageReadError, "empty file", "0 bytes"),
         "error: 'empty file (0 bytes)'"),
    Case("text file named .png", make_text_as_png, E, (ImageReadError, "not a recognised image"),
         "error: 'not a recognised image format'"),
    Case("JPEG content under a .png name", make_jpeg_named_png, L, (),
         "loaded: the content decides the format, not the suffix"),
    Case("folder named like an image (AP.jpg/)", make_directory_named_jpg, E, (ImageReadError, "directory"),
         "error: 'is a directory, not an image file'"),
    Case("file that does not exist", make_missing_file, E, (FileNotFoundError, "no such file"),
         "FileNotFoundError naming the file"),
    Case("PNG X-ray with an alpha channel", make_png_alpha, L, (),
         "loaded: luminance 0.299R+0.587G+0.114B, alpha dropped"),
    Case("mask painted in the alpha channel only", make_alpha_only_mask, L, (),
         "loaded: when every opaque pixel is black, the alpha channel is the mask"),
    Case("colour mask with a transparent background", make_transparent_background_mask, L, (),
         "loaded: transparent pixels are background"),
    Case("16-bit PNG X-ray", make_16bit_png, L, (), "loaded: scaled to 0-255 by its own min/max, order kept"),
    Case("float32 TIFF X-ray", make_float_tiff, L, (), "loaded: scaled to 0-255 by its own min/max"),
    Case("RGB X-ray where grayscale is expected", make_rgb_xray, L, (), "loaded: converted to luminance"),
    Case("RGB (colour-coded) mask", make_rgb_mask, L, (), "loaded: any non-black pixel is foreground"),
    Case("8-bit grayscale mask where 1-bit is expected", make_gray_mask, L, (), "loaded: value > 0 is foreground"),
    Case("palette (P mode) mask", make_palette_mask, L, (), "loaded: palette resolved, value > 0 is foreground"),
    Case("CMYK JPEG", make_cmyk_jpeg, L, (), "loaded: converted to luminance"),
    Case("multi-page TIFF", make_multipage_tiff, L, (), "loaded: the first page"),
    Case("20000 x 20000 image (header-only PNG)", make_huge_png, E, (ImageReadError, "400,000,000 pixels", "max_pixels"),
         "error from the header before decoding (max_pixels, default 80 MP); image_size still works; < 8 MiB allocated"),
    Case("DICOM with a compressed transfer syntax (JPEG-LS)", make_dicom_compressed, E,
         (ImageReadError, "cannot decode dicom pixel data", "jpeg-ls"),
         "error naming the transfer syntax no installed decoder handles"),
    Case("DICOM MONOCHROME1", make_dicom_monochrome1, L, (), "loaded: inverted so bone is bright (as MONOCHROME2)"),
    Case("DICOM without pixel data", make_dicom_no_pixels, E, (ImageReadError, "no pixel data"),
         "error: 'DICOM file has no pixel data'"),
    Case("garbage with a .dcm suffix", make_dicom_garbage, E, (ImageReadError, "dicom"),
         "error: 'not a DICOM image (no DICM preamble ...)'"),
    # --- masks and X-rays inside a dataset
    Case("mask of another size than its X-ray (audit)", make_mask_other_size_audit, P, ("size mismatch", "40 x 24", "48 x 24"),
         "audit problem 'size mismatch' naming both sizes and the X-ray"),
    Case("mask of another size than its X-ray (loading)", make_mask_other_size_load, E,
         (ImageReadError, "mask is 40 x 24", "its x-ray"), "error naming the mask, the X-ray and both sizes"),
    Case("mask with values 0/1", make_mask_0_1, L, (), "loaded like 0/255 (value > 0); not flagged"),
    Case("mask with values 0/128/255", make_mask_0_128_255, P, ("non-binary mask", "3 grey levels"),
         "loaded (value > 0); audit problem 'non-binary mask'"),
    Case("anti-aliased mask", make_mask_antialiased, P, ("non-binary mask", "grey levels"),
         "loaded (value > 0, thin lines kept); audit problem 'non-binary mask'"),
    Case("mask saved as JPEG (lossy)", make_mask_jpeg, P, ("non-binary mask",),
         "loaded (value > 0); audit problem 'non-binary mask'"),
    Case("all-empty mask", make_empty_mask, P, ("empty mask",),
         "loaded as all zeros; audit problem 'empty mask'"),
    Case("inverted mask (white background)", make_inverted_mask, P, ("mostly foreground", "inverted"),
         "loaded; audit problem 'mostly foreground' (inverted?)"),
    Case("blank (constant) X-ray", make_blank_xray, P, ("blank X-ray", "same value"),
         "loaded; audit problem 'blank X-ray'"),
    Case("truncated X-ray inside a dataset", make_truncated_xray_in_dataset, P, ("unreadable", "truncated"),
         "audit problem 'unreadable' (the audit decodes every X-ray, not only its header)"),
    Case("truncated X-ray when building training arrays", make_truncated_xray_training, W, ("truncated", "skipped"),
         "on_error='raise' (default): error; on_error='skip': patient dropped with a warning naming the file"),
    # --- folder layout
    Case("patient folder with no files", make_empty_patient_folder, X, ("empty patient folder",),
         "patient excluded: 'empty patient folder (no files)'"),
    Case("patient folder with only one view", make_one_view_only, X, ("missing LAT image",),
         "patient excluded: 'missing LAT image'"),
    Case("two candidate files for one view", make_two_candidates, X, ("ambiguous", "2 candidates for AP image"),
         "patient excluded: 'ambiguous: 2 candidates for AP image: ...'"),
    Case("duplicate patient IDs (Normal and Damaged)", make_duplicate_ids, X, ("duplicate patient id", "also in Normal"),
         "both patients excluded: 'duplicate patient id'"),
    Case("duplicate IDs differing in case and Unicode form (NFC/NFD)", make_duplicate_ids_unicode, X,
         ("duplicate patient id",), "both excluded: IDs compared after NFC normalisation and case folding"),
    Case("names with spaces (' ID  (3) ', 'LAT .png')", make_names_with_spaces, L, (),
         "loaded: spaces collapsed in the ID, file listed in 'renamed'"),
    Case("unicode patient folder name", make_unicode_names, L, (), "loaded: the ID is kept as written"),
    Case("trailing dots (AP.jpg., P1.)", make_trailing_dots, L, (), "loaded: listed in 'renamed'"),
    Case("X-ray that is a broken symbolic link", make_broken_link_xray, X, ("broken symbolic link", "ap/ap.jpg"),
         "patient excluded: 'AP image AP/AP.jpg is a broken symbolic link (to ...)'"),
    Case("mask that is a broken symbolic link", make_broken_link_mask, P, ("broken link", "lat_vertebra"),
         "audit problem 'broken link'; the patient stays usable without that mask"),
    Case("symbolic link loop in a patient folder", make_symlink_loop, I, ("symbolic link loop",),
         "ignored: 'symbolic link loop'; the scan terminates"),
    Case("class folder with an unknown name (Abnormal/)", make_unknown_class_folder, I, ("not a class folder",),
         "ignored: 'not a class folder (expected Normal or Damaged)'"),
    Case("unknown file in a patient folder (notes.txt)", make_unknown_file, I, ("neither a view image",),
         "ignored: 'name is neither a view image (AP, LAT) nor a known mask'"),
    Case("empty dataset root", make_empty_root, E, (ValueError, "no class folders", "empty"),
         "error: 'no class folders ... (the folder is empty)'"),
    Case("dataset root that does not exist", make_missing_root, E, (FileNotFoundError, "does not exist"),
         "FileNotFoundError naming the folder"),
    Case("dataset root that is a file", make_root_is_file, E, (ValueError, "is a file"),
         "error: 'is a file, not a folder'"),
    # --- AASCE labels
    Case("AASCE landmarks row with 135 values", make_aasce_wrong_count, E, (ValueError, "row 2 has 135 values", "expected 136"),
         "error naming the CSV, the row and both counts"),
    Case("AASCE landmarks with NaN", make_aasce_nan, E, (ValueError, "row 3", "nan"),
         "error naming the CSV and the row"),
    Case("AASCE non-numeric angle", make_aasce_non_numeric, E, (ValueError, "row 1", "non-numeric"),
         "error naming the CSV and the row"),
    Case("AASCE corners outside the image", make_aasce_outside_corners, L, (),
         "loaded: corners clipped to the image, counted in n_clipped"),
    Case("AASCE filenames/landmarks row-count mismatch", make_aasce_row_mismatch, E,
         (ValueError, "3 rows", "lists 4 images"), "error naming both files and both counts"),
    Case("AASCE image listed but absent", make_aasce_missing_image, E, (FileNotFoundError, "row 2 of filenames.csv"),
         "FileNotFoundError naming the image and its row"),
    Case("AASCE root without labels/", make_aasce_no_labels, E, (FileNotFoundError, "does not exist"),
         "FileNotFoundError naming the missing folder"),
    Case("AASCE .mat landmarks disagree with the CSV", make_aasce_mat_disagrees, E, (ValueError, "differ from landmarks.csv"),
         "error naming the .mat file, the row and the difference"),
    Case("vertebra landmarks with NaN (array)", make_landmarks_nan, E, (ValueError, "nan", "T4"),
         "error naming the vertebra (no silently empty mask)"),
    # --- papermill parameters
    Case("parameter seed as a string", parameter_maker("seed", seed="0"), E, (TypeError, "integer", "str"),
         "TypeError naming the parameter and the type"),
    Case("parameter seed negative", parameter_maker("seed", seed=-1), E, (ValueError, "non-negative"),
         "ValueError: 'seed must be a non-negative integer'"),
    Case("unknown profile name", parameter_maker("profile", profile="fast"), E, (ValueError, "unknown profile", "tiny, ci, paper"),
         "ValueError listing the known profiles"),
    Case("profile given as a number", parameter_maker("profile", profile=3), E, (TypeError, "int"),
         "TypeError: 'profile must be a name (str)'"),
    Case("output_dir given as a number", parameter_maker("output_dir", output_dir=5), E, (TypeError, "path"),
         "TypeError: 'parameter output_dir must be a path (str) or None'"),
    Case("unknown profile field override", make_profile_override_unknown, E, (ValueError, "unknown profile field"),
         "ValueError naming the field"),
]
"""The corpus: one row per kind of bad or odd input."""


def case_table() -> pd.DataFrame:
    """The table as a frame: ``kind, outcome, expected, behaviour`` (for the book's page)."""
    rows = []
    for c in CASES:
        exp = ([c.expected[0].__name__] + list(c.expected[1:])) if c.outcome == "error" else list(c.expected)
        rows.append({"kind": c.kind, "outcome": c.outcome, "expected": ", ".join(map(str, exp)),
                     "behaviour": c.behaviour})
    return pd.DataFrame(rows)


# ============================================================================================
# running one case


@dataclass
class CaseResult:
    kind: str
    outcome: str
    message: str  # the error, reason, problem or warning text (empty for loaded)
    seconds: float


def _has_keywords(text: str, keywords, workdir: Path) -> None:
    """Every keyword in ``text``, searched with the temporary folder's path blanked out (pytest
    names that folder after the test, so a keyword could match the path instead of the problem)."""
    low = text.replace(str(workdir), "<tmp>").lower()
    missing = [k for k in keywords if k.lower() not in low]
    assert not missing, f"missing {missing} in: {text}"


def run_case(case: Case, workdir: Path) -> CaseResult:
    """Make the input under ``workdir``, run the call inside :func:`assert_unchanged`, and assert the
    decided outcome; returns what was observed. Raises ``AssertionError`` on any deviation
    (:class:`~spinelib.core.provenance.InputsChangedError` when an input file changed)."""
    assert case.outcome in OUTCOMES, case.outcome
    workdir.mkdir(parents=True, exist_ok=True)
    trial = case.make(workdir)
    t0 = time.perf_counter()
    message = ""
    with assert_unchanged(*trial.roots):
        if case.outcome == "error":
            exc_type, *keywords = case.expected
            try:
                trial.call()
            except exc_type as e:
                message = str(e)
            else:
                raise AssertionError(f"{case.kind}: no {exc_type.__name__} raised")
            assert trial.subject in message, f"{case.kind}: {trial.subject!r} not named in: {message}"
            _has_keywords(message, keywords, workdir)
        elif case.outcome == "warned":
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = trial.call()
            texts = [str(w.message) for w in caught if trial.subject in str(w.message)]
            assert texts, f"{case.kind}: no warning names {trial.subject}: {[str(w.message) for w in caught]}"
            message = texts[0]
            _has_keywords(message, case.expected, workdir)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = trial.call()
            if case.outcome == "excluded":
                rows = result.excluded[result.excluded["folder"] == Path(trial.subject)]
                assert len(rows) == 1, f"{case.kind}: {trial.subject} not excluded:\n{result.excluded}"
                assert Path(trial.subject) not in {p.folder for p in result.patients}
                message = rows["reason"].iloc[0]
                _has_keywords(message, case.expected, workdir)
            elif case.outcome == "ignored":
                assert Path(trial.subject) in result.ignored, f"{case.kind}: {trial.subject} not ignored"
                message = result.ignored_reasons[Path(trial.subject)]
                _has_keywords(message, case.expected, workdir)
            elif case.outcome == "problem":
                kind, *keywords = case.expected
                assert kind in PROBLEM_KINDS, kind
                paths = [result.root / p for p in result.problems["path"]]  # the audit's paths are relative
                rows = result.problems[[p == Path(trial.subject) for p in paths]]
                rows = rows[rows["kind"] == kind]
                assert len(rows) == 1, f"{case.kind}: no {kind!r} problem for {trial.subject}:\n{result.problems}"
                message = f"{kind}: {rows['problem'].iloc[0]}"
                _has_keywords(message, keywords, workdir)
        if case.outcome != "error" and trial.check is not None:
            trial.check(result)
    return CaseResult(case.kind, case.outcome, message, time.perf_counter() - t0)


# ============================================================================================
# tests
