"""Segmentation: the U-Nets (:mod:`~spinelib.seg.unet`), their losses (:mod:`~spinelib.seg.losses`)
and metrics (:mod:`~spinelib.seg.metrics`), training (:mod:`~spinelib.seg.training`), inference
(:mod:`~spinelib.seg.inference`), one cached experiment (:mod:`~spinelib.seg.experiment`), spine
crops (:mod:`~spinelib.seg.spine_crop`) and the AASCE long-run record (:mod:`~spinelib.seg.long_runs`)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines, unless set
