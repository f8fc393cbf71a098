"""Names that moved in issue 13 still import from their old paths, as the same objects (notebooks,
scripts and users' code keep working)."""

from __future__ import annotations

import importlib

import pytest

MOVED = [
    # (old module, new module, names)
    ("spinelib.core.imageio", "spinelib.core.dicom", ["read_dicom", "dicom_pixel_spacing", "DICOM_EXTRA_HINT"]),
    ("spinelib.core.imageio", "spinelib.core.image_files",
     ["ImageReadError", "to_uint8", "is_dicom", "has_dicm_magic", "DEFAULT_MAX_PIXELS", "DICOM_SUFFIXES"]),
    ("spinelib.geometry.corners", "spinelib.geometry.vertebral_bodies", ["separate_bodies", "assign_levels"]),
    ("spinelib.paper.report", "spinelib.core.headlines", ["record_headlines", "collect_headlines", "COLUMNS",
                                                          "DATA_KINDS"]),
    ("spinelib.cli", "spinelib.landmarks.model", ["vertebra_records", "cobb_record", "CORNER_ORDER"]),
    ("spinelib.cli", "spinelib.cli.predict", ["load_predictor", "predict_one", "collect_inputs", "output_names"]),
    ("spinelib.cli", "spinelib.cli.records", ["validate_prediction", "sha256_file", "read_input", "UsageError",
                                              "EXIT_OK", "SUMMARY_CSV", "MANIFEST"]),
    ("spinelib.seg.training", "spinelib.seg.augment", ["augment_pair", "affine_matrix", "AUGMENT_DEFAULTS"]),
    ("spinelib.data.clinical", "spinelib.data.clinical_arrays", ["load_view", "load_segmentation_arrays",
                                                                 "load_classification_pairs", "structures_for"]),
    ("spinelib.data.synthetic.rendering", "spinelib.data.synthetic.painting", ["Painter", "Background", "expose",
                                                                               "texture_tile"]),
]


@pytest.mark.parametrize("old,new,names", MOVED, ids=lambda v: v if isinstance(v, str) else "")
def test_old_import_path_gives_the_same_object(old, new, names):
    a, b = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(a, name) is getattr(b, name), f"{old}.{name} is not {new}.{name}"
