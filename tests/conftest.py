"""Shared fixtures: dataset locations and one tiny synthetic dataset per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from spinelib.core.config import find_dataset, get_profile


@pytest.fixture(scope="session")
def examples_dir():
    path = find_dataset("spine-project-examples")
    if path is None:
        pytest.skip("../shared/data/spine-project-examples is not on this machine")
    return path


@pytest.fixture(scope="session")
def aasce_dir():
    path = find_dataset("aasce")
    if path is None:
        pytest.skip("../shared/data/aasce is not on this machine")
    return path


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    """The tiny profile's synthetic dataset, generated once for the whole session."""
    from spinelib.data.synthetic.generator import generate_dataset

    prof = get_profile("tiny")
    root = tmp_path_factory.mktemp("synthetic-tiny")
    generate_dataset(root, n_patients=prof.n_synthetic, seed=0, scale=prof.synthetic_scale, progress=False)
    return root
