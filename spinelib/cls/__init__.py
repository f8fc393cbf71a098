"""Classification: EfficientNet-Lite0 (:mod:`~spinelib.cls.efficientnet_lite`), backbones
(:mod:`~spinelib.cls.backbones`), frozen feature extractors (:mod:`~spinelib.cls.extractors`), the
paper's dense head (:mod:`~spinelib.cls.heads`), cross-validation by patient (:mod:`~spinelib.cls.cv`),
metrics (:mod:`~spinelib.cls.metrics`), Grad-CAM (:mod:`~spinelib.cls.gradcam`) and morphometrics
from predicted masks (:mod:`~spinelib.paper.segment_measure`)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines, unless set
