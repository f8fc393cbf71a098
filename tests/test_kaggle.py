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
    notebooks = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks
    for nb in notebooks:
        meta = json.loads((tmp_path / nb.stem / "kernel-metadata.json").read_text())
        assert REQUIRED <= set(meta)
        assert meta["id"].startswith("someone/") and len(meta["id"].split("/")[1]) >= 5
        assert (tmp_path / nb.stem / meta["code_file"]).exists()
        assert meta["enable_internet"] is False and meta["kernel_type"] == "notebook"
        assert "someone/aasce" in meta["dataset_sources"]
