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
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("spinelib", "aasce", "spine-project-examples")


def metadata(user: str, notebook: Path) -> dict:
    slug = notebook.stem.replace("_", "-")
    title = notebook.stem.split("_", 1)[1].replace("_", " ").capitalize()
    return {
        "id": f"{user}/spine-xray-{slug}",
        "title": f"Spine X-ray {notebook.stem[:2]}: {title}",
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
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        folder = out / nb.stem
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(nb, folder / nb.name)
        (folder / "kernel-metadata.json").write_text(json.dumps(metadata(args.user, nb), indent=2) + "\n")
        print(f"wrote {folder / 'kernel-metadata.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
