"""spinelib: segmentation and classification of spine X-rays.

The tested library half of the book "Segmentation and Classification of Spine X-Rays,
reproduced". Modules, in the order data flows through them:

Data
- :mod:`spinelib.structures`        the 8 anatomical structures, the two views, the paper's numbers
- :mod:`spinelib.config`            profiles (tiny / ci / paper), dataset discovery, seeding, parameter checks
- :mod:`spinelib.imageio`           robust reading of X-rays, masks and DICOM; atomic writes
- :mod:`spinelib.clinical`          the paper's clinical folder layout (loader)
- :mod:`spinelib.audit`             dataset audit tables (Table 1, exclusions, mask coverage, problems)
- :mod:`spinelib.aasce`             the AASCE 2019 / SpineWeb 16 AP X-rays with landmarks and Cobb angles
- :mod:`spinelib.splits`            patient-level splits and folds
- :mod:`spinelib.synthetic`         synthetic spine X-rays in the paper's layout
  (anatomy in :mod:`spinelib.synthetic_anatomy`)

Segmentation
- :mod:`spinelib.unet`              the paper's U-Net and its variants
- :mod:`spinelib.losses`            cross-entropy, Jaccard, Dice, Tversky, focal and the paper's loss
- :mod:`spinelib.seg_metrics`       Dice, IoU, HD95 per case; bootstrap summaries
- :mod:`spinelib.segmentation`      tf.data pipeline, training with resume, post-processing, inference
- :mod:`spinelib.seg_experiments`   the experiments of pages 2 and 3 (Tables 2 and 3, crops, remedies)

Classification
- :mod:`spinelib.efficientnet_lite` EfficientNet-Lite0 with its real ImageNet weights, read without torch
- :mod:`spinelib.backbones`         backbones, offline weight files, the feature cache
- :mod:`spinelib.classifier`        the paper's dense head, patient-level cross-validation
- :mod:`spinelib.cls_metrics`       the paper's Figure 9 measures, ROC/PR, calibration
- :mod:`spinelib.gradcam`           Grad-CAM heat maps
- :mod:`spinelib.morphometrics`     wedge ratios, disk heights, listhesis, Cobb angle from masks
- :mod:`spinelib.cls_experiments`   the experiments of pages 4 and 5 (Table 4, final classifier)

Record and book
- :mod:`spinelib.provenance`        run information, dataset fingerprints, untouched-input checks
- :mod:`spinelib.report`            headline numbers of every page for the results page
- :mod:`spinelib.figures`           plots used by the book
- :mod:`spinelib.book`              execute the notebooks with papermill and render the book
"""

__version__ = "0.1.0"
