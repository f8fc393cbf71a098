"""Write a Kaggle ``kernel-metadata.json`` per notebook, so ``kaggle kernels push`` works.

Usage::

    python scripts/make_kaggle_metadata.py --user YOUR_KAGGLE_NAME
    kaggle kernels push -p kaggle/01_data_analysis

Each kernel folder gets a copy of its notebook and metadata that attaches three Kaggle datasets
(upload them once, under these slugs, from your own copies):

- ``<user>/spinelib``: this repository (the ``spinelib`` folder at its top level); each notebook
  puts ``/kaggle/input/spinelib`` on ``sys.path`` when it runs on Kaggle;
- ``<user>/aasce``: the AASCE 2019 training split in its published layout (``data/``, ``labels/``);
- ``<user>/spine-project-examples``: the two example patients.

Inside Kaggle, ``spinelib.core.config.find_dataset`` finds ``/kaggle/input/<slug>`` and outputs go to
``/kaggle/working``. Kernels run without internet, like everything in this project.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("spinelib", "aasce", "spine-project-examples")


MAX_TITLE = 50
"""Kaggle accepts kernel titles (and slugs) of 5 to 50 characters."""


def slugify(title: str) -> str:
    """Kaggle's kernel slug of a title: lower case, every run of characters other than ``a-z0-9``
    replaced by one hyphen, hyphens trimmed at both ends (``"Spine X-ray 01: Data analysis"`` ->
    ``"spine-x-ray-01-data-analysis"``). ``kaggle kernels push`` warns and files the kernel under
    this slug when the ``id`` in ``kernel-metadata.json`` is anything else."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def kernel_title(notebook: Path) -> str:
    """``"Spine X-ray NN: Words of the notebook name"`` (5..50 characters)."""
    words = notebook.stem.split("_", 1)[1].replace("_", " ").capitalize()
    title = f"Spine X-ray {notebook.stem.split('_')[0]}: {words}"
    if not 5 <= len(title) <= MAX_TITLE:
        raise ValueError(f"Kaggle title {title!r} has {len(title)} characters; Kaggle accepts 5..{MAX_TITLE}")
    return title


def metadata(user: str, notebook: Path) -> dict:
    """``kernel-metadata.json`` of one notebook; its ``id`` is ``<user>/<slugify(title)>``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", user or ""):
        raise ValueError(f"Kaggle user name {user!r} must be letters, digits, '-' or '_'")
    title = kernel_title(notebook)
    return {
        "id": f"{user}/{slugify(title)}",
        "title": title,
        "code_file": notebook.name,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": True,
        "enable_gpu": False,
        "enable_internet": False,
        "dataset_sources": [f"{user}/{d}" for d in DATASETS],
        "competition_sources": [],
        "kernel_sources": [],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--user", required=True, help="your Kaggle user name")
    parser.add_argument("--out", default=str(ROOT / "kaggle"), help="where the kernel folders go")
    args = parser.parse_args(argv)
    out = Path(args.out)
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb")):
        folder = out / nb.stem
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(nb, folder / nb.name)
        (folder / "kernel-metadata.json").write_text(json.dumps(metadata(args.user, nb), indent=2) + "\n")
        print(f"wrote {folder / 'kernel-metadata.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
