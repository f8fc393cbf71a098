"""Packaging: compatible ranges in pyproject.toml, exact pins in requirements.lock that satisfy them,
a requires-python true to the pins, the console script, the package data; and (slow) a fresh
virtual environment installed from the lock file that runs the installed ``spinelib``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = {canonicalize_name(n): Version(v) for n, v in
        (line.split("==") for line in (ROOT / "requirements.lock").read_text().split() if "==" in line)}


def _requirements(group: str | None = None) -> list[Requirement]:
    project = PYPROJECT["project"]
    raw = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(r) for r in raw]


@pytest.mark.parametrize("group", [None, "book", "test"])
def test_ranges_in_pyproject_pins_in_the_lock(group):
    for req in _requirements(group):
        specs = list(req.specifier)
        assert specs, f"{req.name} has no version range"
        assert not any(s.operator in ("==", "===") for s in specs), f"{req}: exact pins belong in requirements.lock"
        assert any(s.operator in ("<", "<=", "~=") for s in specs), f"{req}: give an upper bound (<NEXT)"
        name = canonicalize_name(req.name)
        assert name in LOCK, f"{req.name} is not pinned in requirements.lock"
        assert req.specifier.contains(LOCK[name], prereleases=True), f"lock pins {req.name}=={LOCK[name]} outside {req}"


def test_the_lock_pins_every_line_exactly():
    lines = [line for line in (ROOT / "requirements.lock").read_text().splitlines() if line.strip()]
    assert all("==" in line and ";" not in line for line in lines)
    for keep in ("opencv-python-headless", "seaborn", "pydicom", "jsonschema", "tensorflow-cpu"):
        assert canonicalize_name(keep) in LOCK


def test_requires_python_is_true_to_the_pins():
    spec = SpecifierSet(PYPROJECT["project"]["requires-python"])
    # numpy 2.4, scipy 1.17, pandas 3.1, scikit-learn 1.9 and keras 3.15 need Python 3.11
    assert not spec.contains("3.10") and spec.contains("3.11")
    # tensorflow-cpu 2.21 publishes wheels up to Python 3.13
    assert spec.contains("3.13") and not spec.contains("3.14")
    assert spec.contains(f"{sys.version_info.major}.{sys.version_info.minor}")


def test_dicom_extra_names_the_decoders():
    names = {canonicalize_name(r.name) for r in _requirements("dicom")}
    assert names == {"pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg"}


def test_console_script_and_package_data():
    from importlib import resources
    from importlib.metadata import entry_points

    assert PYPROJECT["project"]["scripts"]["spinelib"] == "spinelib.cli:main"
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "spinelib"]
    assert ep.load().__module__ == "spinelib.cli"
    schema = json.loads(resources.files("spinelib").joinpath("schemas", "prediction.schema.json").read_text())
    assert schema["$id"] == "spinelib-prediction/1"
    assert "schemas/*.json" in PYPROJECT["tool"]["setuptools"]["package-data"]["spinelib"]


def _aasce_xray() -> Path | None:
    from spinelib.core.config import find_dataset

    root = find_dataset("aasce")
    if root is None:
        return None
    images = sorted((root / "data" / "training").glob("*.jpg"))
    return images[0] if images else None


@pytest.mark.slow
def test_fresh_venv_from_the_lock_runs_the_installed_command(tmp_path):
    """python -m venv; pip install -r requirements.lock; a wheel of spinelib (--no-deps); then the
    installed ``spinelib --help`` and ``spinelib predict`` on a real AASCE X-ray."""
    xray = _aasce_xray()
    if xray is None:
        pytest.skip("../shared/data/aasce is not on this machine")
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"

    def sh(*cmd, timeout=1800, cwd=tmp_path):
        done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
        assert done.returncode == 0, f"{cmd}: {done.stdout[-1500:]}\n{done.stderr[-3000:]}"
        return done

    base = getattr(sys, "_base_executable", sys.executable)
    sh(base, "-m", "venv", venv)
    py, exe = venv / "bin" / "python", venv / "bin" / "spinelib"
    sh(py, "-m", "pip", "install", "-q", "-r", ROOT / "requirements.lock")
    # build from a copy: setuptools leaves build/ in the folder it builds
    src = tmp_path / "src"
    shutil.copytree(ROOT / "spinelib", src / "spinelib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    sh(py, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", src)
    (wheel,) = (tmp_path / "dist").glob("spinelib-*.whl")
    sh(py, "-m", "pip", "install", "-q", "--no-deps", wheel)
    # the installed package, not the checkout: run from a folder outside the repository
    where = sh(py, "-c", "import spinelib, spinelib.cli; print(spinelib.__file__)").stdout.strip()
    assert str(venv) in where
    help_text = sh(exe, "--help").stdout
    assert "predict" in help_text and "evaluate" in help_text
    sh(exe, "predict", "--help")
    check = sh(py, "-m", "pip", "check", timeout=300)
    assert "No broken requirements" in check.stdout
    model_args: list[str] = []
    shipped = subprocess.run([str(py), "-c", "from spinelib.landmarks.model import load_model; load_model(None)"],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    if shipped.returncode != 0:
        # no shipped weights yet: a small untrained model folder written by the installed package
        folder = tmp_path / "model"
        made = subprocess.run([str(py), "-c", (
            "import sys; from spinelib.landmarks.model import save_model; "
            "from spinelib.landmarks.network import landmark_net; "
            f"save_model(landmark_net(input_shape=(128, 64, 1), weights=None), {str(folder)!r}, "
            "{'name': 'untrained-venv', 'version': '0', 'input_size': [128, 64]})")],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        if made.returncode != 0:
            pytest.skip(f"no model to run predict with in the fresh venv: {made.stderr.strip().splitlines()[-1:]}")
        model_args = ["--model", str(folder)]
    out = tmp_path / "out"
    done = sh(exe, "predict", xray, "--out", out, "--quiet", *model_args, timeout=900)
    assert "1 of 1" in done.stdout
    rec = json.loads(next(p for p in out.glob("*.json") if p.name != "spinelib-run.json").read_text())
    assert rec["input"]["name"] == xray.name and len(rec["vertebrae"]) == 17
    assert (out / rec["outputs"]["mask"]).is_file() and (out / rec["outputs"]["overlay"]).is_file()
