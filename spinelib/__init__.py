"""spinelib: segmentation and classification of spine X-rays.

The tested library half of the book "Segmentation and Classification of Spine X-Rays,
reproduced", in layers. Reusable layers know nothing of the book's pages; one layer on top
(:mod:`spinelib.paper`) is the book's experiments. Imports point down only (``tests/test_layout.py``).

core (the ground floor)
- :mod:`spinelib.core.structures`   the 8 anatomical structures, the two views, the paper's numbers
- :mod:`spinelib.core.config`       profiles (tiny / ci / paper), dataset discovery, seeding, parameter checks
- :mod:`spinelib.core.plans`        the one plan object: every experiment's sizes per profile (``plan(profile)``, a ``Plan``)
- :mod:`spinelib.core.image_files`  what every reader shares: ImageReadError, file and size checks, to_uint8
- :mod:`spinelib.core.dicom`        DICOM as displayed (modality LUT, VOI LUT or window, MONOCHROME1), pixel spacing
- :mod:`spinelib.core.imageio`      robust reading of X-rays and masks (DICOM too, re-exported); resizing; atomic writes
- :mod:`spinelib.core.provenance`   run information, dataset fingerprints, untouched-input checks, git commit
- :mod:`spinelib.core.runs`         the one cache key, JSON records, quiet TensorFlow, CPU cost
- :mod:`spinelib.core.stats`        the one bootstrap (cases, or patients with all their images)
- :mod:`spinelib.core.headlines`    headline numbers on disk: record_headlines, collect_headlines (any layer records)

data
- :mod:`spinelib.data.clinical`     the paper's clinical folder layout, scanned (names only)
- :mod:`spinelib.data.clinical_arrays`  its pixels: one view, segmentation arrays, classification pairs
- :mod:`spinelib.data.aasce`        the AASCE 2019 / SpineWeb 16 AP X-rays with landmarks and Cobb angles
- :mod:`spinelib.data.splits`       patient-level splits and folds
- :mod:`spinelib.data.audit`        dataset audit tables (Table 1, exclusions, mask coverage, problems)
- :mod:`spinelib.data.label_audit`  AASCE label checks
- :mod:`spinelib.data.segdata`      train/validation arrays of a segmentation problem, split by patient
- :mod:`spinelib.data.clsdata`      two-view inputs and labels of the classification problems
- :mod:`spinelib.data.synthetic`    synthetic spine X-rays in the paper's layout (generator, anatomy, painting, rendering)
- :mod:`spinelib.data.tiny_datasets`  tiny clinical-layout trees and an AASCE-format folder written on disk
- :mod:`spinelib.data.bad_inputs`   the bad-input corpus: each odd input with its decided behaviour, its runner, the file writers

geometry
- :mod:`spinelib.geometry.cobb`              Cobb angles from landmarks (the AASCE 2019 rule)
- :mod:`spinelib.geometry.vertebral_bodies`  a vertebra mask's bodies, top to bottom, with their levels
- :mod:`spinelib.geometry.corners`           each body's four corners; their agreement with the truth, the mask route's floor
- :mod:`spinelib.geometry.morphometrics`   wedge ratios, disk heights, listhesis, Cobb angle from masks

classification (cls)
- :mod:`spinelib.cls.efficientnet_lite`  EfficientNet-Lite0 with its real ImageNet weights, read without torch
- :mod:`spinelib.cls.backbones`    backbones, offline weight files, the feature cache, saved U-Nets as encoders
- :mod:`spinelib.cls.extractors`   frozen feature extractors (random, ImageNet, a local file, in-domain)
- :mod:`spinelib.cls.heads`        the paper's dense head and its training
- :mod:`spinelib.cls.cv`           cross-validation by patient: one fold loop, one logistic pipeline, cached runs
- :mod:`spinelib.cls.metrics`      the paper's Figure 9 measures, ROC/PR, calibration
- :mod:`spinelib.cls.gradcam`      Grad-CAM heat maps

segmentation (seg)
- :mod:`spinelib.seg.unet`         the paper's U-Net and its variants (one with a Lite0 encoder)
- :mod:`spinelib.seg.losses`       cross-entropy, Jaccard, Dice, Tversky, focal and the paper's loss
- :mod:`spinelib.seg.metrics`      Dice, IoU, HD95 per case; bootstrap summaries
- :mod:`spinelib.seg.augment`      the seeded affine + intensity augmentation of an X-ray and its masks
- :mod:`spinelib.seg.training`     tf.data pipeline, training with resume, on one device or several
- :mod:`spinelib.seg.inference`    prediction, post-processing, whole folders
- :mod:`spinelib.seg.experiment`   one cached experiment: train, predict the validation patients, evaluate
- :mod:`spinelib.seg.spine_crop`   crop boxes from a predicted spine, crop / uncrop, Dice at the original size,
                                    the two-stage crop pipeline (``crop_experiment``, ``two_stage_crop``)
- :mod:`spinelib.seg.aasce_masks`  how exact the AASCE masks are (corner error -> Dice yardstick)
- :mod:`spinelib.seg.long_runs`    the AASCE long-run record (metrics.json + rescored.json) and its README

- :mod:`spinelib.landmarks`        the vertebra landmark network, training, evaluation, shipped model
- :mod:`spinelib.viz`, :mod:`spinelib.overlay`   plots used by the book; prediction overlays

the book's experiments (paper): one module per page, none importing another
- :mod:`spinelib.paper.page`             the one setup call of every page
- :mod:`spinelib.paper.table2_losses`    page 2: Table 2 (losses that give black masks)
- :mod:`spinelib.paper.table3_unet`      page 3: Table 3, remedies for thin structures, multi vs single
- :mod:`spinelib.paper.aasce_runs`       page 3b: the AASCE runs beside the committed long runs; the long run itself
- :mod:`spinelib.paper.table4_backbones` page 4: Table 4 (backbones x weights, cost)
- :mod:`spinelib.paper.final_classifier` page 5: the final classifier, evaluation, the morphometric one
- :mod:`spinelib.paper.segment_measure`  page 5: segment, then measure
- :mod:`spinelib.paper.report`           the headline table and findings of every page (re-exports core.headlines)

- :mod:`spinelib.book`   execute the notebooks with papermill and render the book
- :mod:`spinelib.cli`    the ``spinelib`` command: one module per subcommand (predict, train, evaluate, book)
"""

__version__ = "0.1.0"
