"""A tiny AASCE dataset for the tests: now :func:`spinelib.data.tiny_datasets.fake_aasce`, re-exported
here for the tests that import this module."""

from spinelib.data.tiny_datasets import fake_aasce  # noqa: F401
