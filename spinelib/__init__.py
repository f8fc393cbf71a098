"""spinelib: segmentation and classification of spine X-rays.

The tested library half of the book "Segmentation and Classification of Spine X-Rays,
reproduced". Modules, in the order data flows through them:

Data
- :mod:`spinelib.core.structures`        the 8 anatomical structures, the two views, the paper's numbers
- :mod:`spinelib.core.config`            profiles (tiny / ci / paper), dataset discovery, seeding, parameter checks
- :mod:`spinelib.core.imageio`           robust reading of X-rays, masks and DICOM; atomic writes
- :mod:`spinelib.data.clinical`          the paper's clinical folder layout (loader)
- :mod:`spinelib.data.audit`             dataset audit tables (Table 1, exclusions, mask coverage, problems)
- :mod:`spinelib.data.aasce`             the AASCE 2019 / SpineWeb 16 AP X-rays with landmarks and Cobb angles
- :mod:`spinelib.data.splits`            patient-level splits and folds
- :mod:`spinelib.data.synthetic.generator`         synthetic spine X-rays in the paper's layout
  (anatomy in :mod:`spinelib.data.synthetic.anatomy`)

Segmentation
- :mod:`spinelib.seg.unet`              the paper's U-Net and its variants
- :mod:`spinelib.seg.losses`            cross-entropy, Jaccard, Dice, Tversky, focal and the paper's loss
- :mod:`spinelib.seg.metrics`       Dice, IoU, HD95 per case; bootstrap summaries
- :mod:`spinelib.seg.training`      tf.data pipeline, training with resume, post-processing, inference
- :mod:`spinelib.seg.experiment`   the experiments of pages 2 and 3 (Tables 2 and 3, crops, remedies)

Classification
- :mod:`spinelib.cls.efficientnet_lite` EfficientNet-Lite0 with its real ImageNet weights, read without torch
- :mod:`spinelib.cls.backbones`         backbones, offline weight files, the feature cache
- :mod:`spinelib.cls.heads`        the paper's dense head, patient-level cross-validation
- :mod:`spinelib.cls.metrics`       the paper's Figure 9 measures, ROC/PR, calibration
- :mod:`spinelib.cls.gradcam`           Grad-CAM heat maps
- :mod:`spinelib.geometry.morphometrics`     wedge ratios, disk heights, listhesis, Cobb angle from masks
- :mod:`spinelib.paper.final_classifier`   the experiments of pages 4 and 5 (Table 4, final classifier)

Record and book
- :mod:`spinelib.core.provenance`        run information, dataset fingerprints, untouched-input checks
- :mod:`spinelib.paper.report`            headline numbers of every page for the results page
- :mod:`spinelib.viz`           plots used by the book
- :mod:`spinelib.book`              execute the notebooks with papermill and render the book
"""

__version__ = "0.1.0"
