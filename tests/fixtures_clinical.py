"""Small clinical-layout trees for the tests: now :mod:`spinelib.data.tiny_datasets` (the bad-input
corpus of the library uses them too); re-exported here for the tests that import this module."""

from spinelib.data.tiny_datasets import (  # noqa: F401
    SHAPE,
    build_messy_tree,
    build_patientless_tree,
    expected_mask,
    write_patient,
    xray,
)
