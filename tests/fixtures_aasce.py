"""A tiny AASCE dataset in the published format, written in a temporary folder for the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def fake_aasce(root: Path, n: int = 3, shape=(60, 30), mat: bool = True) -> Path:
    """A tiny dataset in the published format; vertebra v is a box at rows 2+3v..4+3v."""
    from scipy.io import savemat

    (root / "data" / "training").mkdir(parents=True)
    (root / "labels" / "training").mkdir(parents=True)
    h, w = shape
    names, marks = [], []
    for i in range(n):
        name = f"sunhl-1th-0{i}-Jan-2017-{100 + i // 2} {'AB'[i % 2]} AP.jpg"
        Image.fromarray(np.full(shape, 50 + i, np.uint8)).save(root / "data" / "training" / name)
        pts = []
        for v in range(17):
            top, bot = 2 + 3 * v, 4 + 3 * v
            pts += [(10, top), (20, top), (10, bot), (20, bot)]  # TL, TR, BL, BR
        pts = np.array(pts, float)
        names.append(name)
        marks.append(np.concatenate([pts[:, 0] / w, pts[:, 1] / h]))
        if mat:
            savemat(root / "labels" / "training" / f"{name}.mat", {"p2": pts})
    lab = root / "labels" / "training"
    (lab / "filenames.csv").write_text("".join(f"{n}\n" for n in names))
    (lab / "landmarks.csv").write_text("".join(",".join(f"{v:.6f}" for v in m) + "\n" for m in marks))
    (lab / "angles.csv").write_text("".join(f"{10 + 20 * i},5,3\n" for i in range(n)))
    return root
