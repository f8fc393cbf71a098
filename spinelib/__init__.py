"""spinelib: segmentation and classification of spine X-rays.

The tested library half of the book "Segmentation and Classification of Spine X-Rays,
reproduced". Modules, in the order data flows through them:

- :mod:`spinelib.structures`  the 8 anatomical structures and the two views
- :mod:`spinelib.config`      profiles (tiny / ci / paper), dataset discovery, seeding
- :mod:`spinelib.imageio`     robust reading of X-rays and masks, atomic writes
- :mod:`spinelib.clinical`    the paper's clinical folder layout (loader)
- :mod:`spinelib.audit`       dataset audit tables (Table 1, exclusions, mask coverage)
- :mod:`spinelib.aasce`       the AASCE 2019 / SpineWeb 16 AP X-rays with landmarks
- :mod:`spinelib.synthetic`   synthetic spine X-rays in the paper's layout
- :mod:`spinelib.figures`     plots used by the book
"""

__version__ = "0.1.0"
