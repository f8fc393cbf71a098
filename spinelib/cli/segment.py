"""Segmentation model folders in ``spinelib predict`` and ``train``: a U-Net trained on the
paper's clinical layout (``model.keras`` + ``model.json``), loaded, run on one X-ray (masks,
outlines drawn, a JSON of :data:`spinelib.cli.records.SEG_SCHEMA_ID`), and saved."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from spinelib.cli.records import (
    LIMITS,
    SEG_SCHEMA_ID,
    input_record,
    read_input,
    sha256_file,
    validate_prediction,
    write_json,
)


class SegmentationModel:
    """A segmentation model folder written by ``spinelib train`` on the clinical layout:
    ``model.keras`` + ``model.json`` (``kind: "segmentation"``, ``input_size``, ``structures``,
    ``threshold``).

    :meth:`segment`: the X-ray resized to the input size (:func:`spinelib.core.imageio.resize_image`),
    scaled :math:`x/255`, the probabilities resized back bilinearly to the X-ray's size and
    thresholded and cleaned by :func:`spinelib.seg.inference.postprocess`.
    """

    kind = "segmentation"

    def __init__(self, folder: str | os.PathLike):
        import keras

        self.folder = Path(folder)
        self.config = json.loads((self.folder / "model.json").read_text())
        if self.config.get("kind") != "segmentation":
            raise ValueError(f"{self.folder / 'model.json'} is not a segmentation model (kind {self.config.get('kind')!r})")
        self.name = str(self.config.get("name") or self.folder.name)
        self.version = str(self.config.get("version") or "0")
        self.structures = list(self.config["structures"])
        self.input_size = tuple(int(v) for v in self.config["input_size"])
        self.threshold = float(self.config.get("threshold", 0.5))
        self.network = keras.models.load_model(self.folder / "model.keras", compile=False)

    def segment(self, image) -> np.ndarray:
        """(H, W, C) ``bool`` masks, one channel per structure, at the X-ray's own size."""
        from spinelib.core.imageio import resize_image, resize_probabilities, to_uint8
        from spinelib.seg.inference import postprocess

        img = to_uint8(np.asarray(image))
        x = resize_image(img, self.input_size).astype(np.float32)[None, ..., None] / np.float32(255.0)
        prob = np.asarray(self.network.predict(x, verbose=0))[0]
        return postprocess(resize_probabilities(prob, img.shape), threshold=self.threshold)


def draw_masks(image, masks, names, title: str | None = None) -> np.ndarray:
    """The X-ray (RGB) with each mask's outline drawn in its own colour and a legend of names."""
    import cv2

    from spinelib.overlay import line_width, to_rgb

    rgb = to_rgb(image).copy()
    colors = [(60, 220, 60), (255, 150, 0), (230, 60, 230), (0, 200, 255), (255, 40, 40)]
    lw = line_width(rgb.shape[:2])
    scale = max(0.4, min(rgb.shape[:2]) / 900)
    lines = ([(title, (255, 255, 255))] if title else []) + [(n, colors[i % len(colors)]) for i, n in enumerate(names)]
    for c in range(masks.shape[-1]):
        contours, _ = cv2.findContours(masks[..., c].astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(rgb, contours, -1, colors[c % len(colors)], lw, cv2.LINE_AA)
    for i, (text, color) in enumerate(lines):
        cv2.putText(rgb, text, (10, int(34 * scale + 4) * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, color,
                    max(1, lw // 2 + 1), cv2.LINE_AA)
    return rgb


def segment_one(model: SegmentationModel, path: Path, out: Path, name: str, model_info: dict) -> dict:
    """Segment one X-ray with a segmentation model folder: ``<name>.json``
    (:data:`SEG_SCHEMA_ID`), ``<name>_mask.png`` (the first structure), ``<name>_<structure>.png``
    for further ones, ``<name>_overlay.png``; returns its summary row."""
    from spinelib import __version__
    from spinelib.core.imageio import save_png

    t0 = time.perf_counter()
    image, info = read_input(path)
    digest = sha256_file(path)
    masks = model.segment(image)
    h, w = image.shape
    files = {"json": f"{name}.json", "mask": f"{name}_mask.png", "overlay": f"{name}_overlay.png"}
    structures = []
    for c, s in enumerate(model.structures):
        file = files["mask"] if c == 0 else f"{name}_{s}.png"
        structures.append({"name": s, "mask": file, "pixels": int(masks[..., c].sum()),
                           "fraction": round(float(masks[..., c].mean()), 6)})
    record = {"schema": SEG_SCHEMA_ID, "input": input_record(path, digest, (h, w), info), "model": model_info,
              "spinelib_version": __version__, "structures": structures,
              "outputs": {"mask": files["mask"], "overlay": files["overlay"]}, "limits": LIMITS}
    validate_prediction(record)
    for c, st in enumerate(structures):
        save_png(out / st["mask"], masks[..., c])
    save_png(out / files["overlay"], draw_masks(image, masks, model.structures,
                                                title=f"{model_info['name']} {model_info['version']}"))
    write_json(out / files["json"], record)
    return {"input": str(path), "name": name, "status": "ok", "error": "", "height": h, "width": w,
            "structures": " ".join(model.structures), "fraction": structures[0]["fraction"],
            "json": files["json"], "mask": files["mask"], "overlay": files["overlay"], "sha256": digest,
            "extra_files": " ".join(st["mask"] for st in structures[1:]),
            "seconds": round(time.perf_counter() - t0, 3)}


def save_segmentation_model(model, folder: Path, config: dict) -> Path:
    """``folder/model.keras`` + ``folder/model.json`` (``kind: "segmentation"``, input size,
    normalisation, structures, threshold): the model folder a notebook reloads with
    ``keras.models.load_model(folder / "model.keras", compile=False)``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".model.tmp.keras"
    model.save(tmp)
    os.replace(tmp, folder / "model.keras")
    write_json(folder / "model.json", config)
    return folder
