"""The ``spinelib`` command end to end: predict (outputs, schema, skipped files, refused folders, exit
codes), evaluate, train, and the help texts.

Most tests run ``spinelib.cli.main`` in-process with a stand-in model (geometric vertebrae, or the
ground truth of an AASCE X-ray) so they take seconds; one test runs a small untrained network from
a model folder through the installed console script, one the shipped model on a real X-ray.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spinelib import cli
from spinelib.core.imageio import read_mask, save_png
from spinelib.data.bad_inputs.file_makers import write_dicom
from spinelib.landmarks.model import SpinePrediction

LEVELS = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
SPINELIB = Path(sys.executable).with_name("spinelib")


# --------------------------------------------------------------------------------------------
# a stand-in model with the documented interface of spinelib.landmarks.model


class FakePrediction:
    model_name, model_version = "fake-geometry", "0.0.1"
    to_dict = SpinePrediction.to_dict  # the real prediction's JSON blocks: the one writer 'predict' uses

    def __init__(self, corners: np.ndarray, shape: tuple[int, int]):
        self.corners = corners
        self.levels = LEVELS
        self.scores = np.linspace(0.9, 0.5, 17)
        self.image_shape = shape

    @property
    def cobb(self):
        from spinelib.geometry.cobb import cobb_angles

        if not np.isfinite(self.corners).all():
            return None  # a vertebra not found: no angles
        return cobb_angles(self.corners, self.image_shape[0])

    def mask(self):
        import cv2

        from spinelib.data.aasce import vertebra_mask

        found = np.isfinite(self.corners).all(axis=(1, 2))
        if found.all():  # the ground truth's own rasterisation
            return vertebra_mask(self.corners, self.image_shape).astype(np.uint8)
        out = np.zeros(self.image_shape, np.uint8)
        quads = [np.round(q[[0, 1, 3, 2]]).astype(np.int32) for q in self.corners[found]]
        return cv2.fillPoly(out, quads, 1)


def curved_spine(shape: tuple[int, int]) -> np.ndarray:
    """17 tilted boxes down the middle of an image: a C curve of about 30 degrees."""
    h, w = shape
    ys = np.linspace(0.08 * h, 0.95 * h, 18)
    out = np.zeros((17, 4, 2))
    for v in range(17):
        cy, cx = 0.5 * (ys[v] + ys[v + 1]), 0.5 * w + 0.06 * w * np.sin(np.pi * v / 16)
        half_w, half_h = 0.1 * w, 0.38 * (ys[1] - ys[0])
        t = np.deg2rad(15 * np.cos(np.pi * v / 16))
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        box = np.array([[-half_w, -half_h], [half_w, -half_h], [-half_w, half_h], [half_w, half_h]])
        out[v] = box @ rot.T + [cx, cy]
    return out


class FakeModel:
    name, version, config = "fake-geometry", "0.0.1", {}

    def __init__(self, corners_of=None):
        self.corners_of = corners_of or (lambda image: curved_spine(image.shape))
        self.calls = 0

    def predict(self, image):
        self.calls += 1
        return FakePrediction(self.corners_of(image), image.shape)


@pytest.fixture
def fake_model(monkeypatch):
    model = FakeModel()
    monkeypatch.setattr(cli.predict, "load_predictor", lambda name: model)
    return model


def spine_image(shape=(240, 100), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(60, 10, shape)
    img[:, shape[1] // 3: 2 * shape[1] // 3] += 80
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def xrays(tmp_path) -> dict[str, Path]:
    """Synthetic X-rays in every supported kind, plus two files that cannot be read."""
    d = tmp_path / "in"
    d.mkdir()
    paths = {}
    paths["png8"] = d / "case_png8.png"
    Image.fromarray(spine_image((240, 100), 1)).save(paths["png8"])
    paths["tif16"] = d / "case_tif16.tif"
    Image.fromarray((spine_image((200, 90), 2).astype(np.uint16) * 200)).save(paths["tif16"])
    paths["jpeg"] = d / "case_jpeg.jpg"
    Image.fromarray(spine_image((260, 110), 3)).convert("RGB").save(paths["jpeg"], quality=90)
    paths["dicom"] = write_dicom(d / "case_dicom.dcm", spine_image((220, 96), 4).astype(np.uint16) * 16,
                                 bits_stored=12, PixelSpacing=[0.2, 0.25], photometric="MONOCHROME1")
    paths["notes"] = d / "notes.txt"
    paths["notes"].write_text("not an image")
    paths["broken"] = d / "broken.png"
    paths["broken"].write_bytes(paths["png8"].read_bytes()[:60])
    return paths


def run(*argv) -> int:
    return cli.main([str(a) for a in argv])


def check_outputs(out: Path, row: pd.Series, source: Path) -> dict:
    """The three files of one prediction: JSON valid against the schema, mask of the input's size,
    corners inside the image (within a few pixels), fingerprint of the input."""
    from spinelib.core.imageio import image_size

    rec = json.loads((out / row["json"]).read_text())
    cli.validate_prediction(rec)
    h, w = image_size(source)
    assert (rec["input"]["height"], rec["input"]["width"]) == (h, w)
    assert rec["input"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert [v["level"] for v in rec["vertebrae"]] == list(LEVELS)
    mask = read_mask(out / row["mask"])
    assert mask.shape == (h, w) and 0.02 < mask.mean() < 0.6
    overlay = np.asarray(Image.open(out / row["overlay"]))
    assert overlay.shape == (h, w, 3)
    tol = 5.0  # a vertebra cut by the image's edge may have a corner just outside it (v2: T1 at -0.05 px)
    for v in rec["vertebrae"]:
        assert v["found"]
        xy = np.array(list(v["corners_px"].values()))
        assert (xy[:, 0] >= -tol).all() and (xy[:, 0] <= w - 1 + tol).all()
        assert (xy[:, 1] >= -tol).all() and (xy[:, 1] <= h - 1 + tol).all()
    return rec


# --------------------------------------------------------------------------------------------
# predict


def test_predict_every_format_and_skips_what_it_cannot_read(tmp_path, xrays, fake_model, capsys):
    out = tmp_path / "out"
    code = run("predict", *xrays.values(), "--out", out, "--quiet")
    assert code == cli.EXIT_OK
    summary = pd.read_csv(out / cli.SUMMARY_CSV)
    assert len(summary) == 6 and fake_model.calls == 4
    status = dict(zip(summary.input.map(lambda s: Path(s).name), summary.status))
    assert status == {"case_png8.png": "ok", "case_tif16.tif": "ok", "case_jpeg.jpg": "ok", "case_dicom.dcm": "ok",
                      "notes.txt": "skipped", "broken.png": "skipped"}
    err = capsys.readouterr().err
    assert "skipped" in err and "notes.txt" in err and "broken.png" in err
    ok = summary[summary.status == "ok"]
    for _, row in ok.iterrows():
        rec = check_outputs(out, row, Path(row["input"]))
        assert rec["model"]["name"] == "fake-geometry" and rec["model"]["version"] == "0.0.1"
        assert rec["cobb"] is not None and rec["cobb"]["pt"]["angle_deg"] > 10
    dicom = json.loads((out / "case_dicom.json").read_text())
    assert dicom["input"]["pixel_spacing_source"] == "PixelSpacing" and dicom["input"]["pixel_spacing_mm"] == [0.2, 0.25]
    for v in dicom["vertebrae"]:  # mm = (x * column spacing, y * row spacing)
        np.testing.assert_allclose(v["corners_mm"]["TL"], np.array(v["corners_px"]["TL"]) * [0.25, 0.2], atol=2e-3)
    png = json.loads((out / "case_png8.json").read_text())
    assert png["input"]["pixel_spacing_mm"] is None and all(v["corners_mm"] is None for v in png["vertebrae"])
    # the CSV carries the angles of every predicted image, the reason of every skipped one
    assert ok[["pt_deg", "mt_deg", "tl_deg"]].notna().all().all()
    assert summary[summary.status == "skipped"].error.str.contains("cannot read").all()
    # nothing was written next to the inputs
    assert sorted(p.name for p in xrays["png8"].parent.iterdir()) == sorted(p.name for p in xrays.values())


def test_predict_a_folder_recursively(tmp_path, xrays, fake_model, capsys):
    sub = xrays["png8"].parent / "more" / "deeper"
    sub.mkdir(parents=True)
    shutil.copy(xrays["png8"], sub / "case_png8.png")  # the same name again: a second output stem
    dicom_no_suffix = sub / "IM0001"
    shutil.copy(xrays["dicom"], dicom_no_suffix)
    shutil.copy(xrays["dicom"], sub / "scan.IMA")  # a DICOM of any name is found by its DICM magic
    (sub / ".hidden.png").write_bytes(b"x")
    out = tmp_path / "out"
    assert run("predict", xrays["png8"].parent, "--out", out, "--quiet") == cli.EXIT_OK
    assert "left out 1 file(s)" in capsys.readouterr().err  # notes.txt, named
    summary = pd.read_csv(out / cli.SUMMARY_CSV)
    names = set(summary.input.map(lambda s: Path(s).name))
    # .txt files in a folder are not X-rays (left out, counted); the broken PNG is tried and reported
    assert names == {"case_png8.png", "case_tif16.tif", "case_jpeg.jpg", "case_dicom.dcm", "broken.png", "IM0001",
                     "scan.IMA"}
    assert (summary.status == "ok").sum() == 7
    assert {"case_png8", "case_png8-2", "IM0001"} <= set(summary.name)
    assert (out / "case_png8-2.json").is_file()


def test_nothing_readable_exits_1(tmp_path, xrays, fake_model):
    out = tmp_path / "out"
    assert run("predict", xrays["notes"], xrays["broken"], tmp_path / "missing.png", "--out", out,
               "--quiet") == cli.EXIT_FAILED
    summary = pd.read_csv(out / cli.SUMMARY_CSV)
    assert (summary.status == "skipped").all() and len(summary) == 3
    assert run("predict", tmp_path / "nowhere", "--out", tmp_path / "out2", "--quiet") == cli.EXIT_FAILED


def test_output_folder_rules(tmp_path, xrays, fake_model, capsys, monkeypatch):
    png = xrays["png8"]
    out = tmp_path / "out"
    assert run("predict", png, "--out", out, "--quiet") == cli.EXIT_OK
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    # a second run into the same folder is refused and touches nothing
    assert run("predict", png, "--out", out, "--quiet") == cli.EXIT_USAGE
    assert "--overwrite" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # --overwrite replaces exactly the earlier results
    assert run("predict", xrays["jpeg"], "--out", out, "--quiet", "--overwrite") == cli.EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["case_jpeg.json", "case_jpeg_mask.png", "case_jpeg_overlay.png", cli.SUMMARY_CSV, cli.MANIFEST])
    # --overwrite with a model that does not load keeps the earlier results
    kept = sorted(p.name for p in out.iterdir())
    monkeypatch.setattr(cli.predict, "load_predictor", lambda name: (_ for _ in ()).throw(FileNotFoundError("no such model")))
    assert run("predict", png, "--out", out, "--quiet", "--overwrite") == cli.EXIT_FAILED
    assert sorted(p.name for p in out.iterdir()) == kept
    monkeypatch.setattr(cli.predict, "load_predictor", lambda name: fake_model)
    # a folder holding someone else's files is refused even with --overwrite
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.docx").write_bytes(b"precious")
    assert run("predict", png, "--out", foreign, "--overwrite", "--quiet") == cli.EXIT_USAGE
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.docx"]
    # never next to an input, never inside an input folder
    assert run("predict", png, "--out", png.parent, "--quiet") == cli.EXIT_USAGE
    assert run("predict", png.parent, "--out", png.parent / "results", "--quiet") == cli.EXIT_USAGE
    assert not (png.parent / "results").exists()
    assert run("predict", png, "--out", png, "--quiet") == cli.EXIT_USAGE  # a file as --out
    assert fake_model.calls == 2


def test_model_that_cannot_load_exits_1(tmp_path, xrays, monkeypatch, capsys):
    def refuse(name):
        raise FileNotFoundError(f"no model folder {name}")

    monkeypatch.setattr(cli.predict, "load_predictor", refuse)
    assert run("predict", xrays["png8"], "--out", tmp_path / "o", "--model", tmp_path / "nope", "--quiet") == 1
    assert "cannot load the model" in capsys.readouterr().err


def test_a_vertebra_not_found_gives_no_angles(tmp_path, xrays, monkeypatch):
    def partial(image):
        c = curved_spine(image.shape)
        c[16] = np.nan
        return c

    monkeypatch.setattr(cli.predict, "load_predictor", lambda name: FakeModel(partial))
    out = tmp_path / "o"
    assert run("predict", xrays["png8"], "--out", out, "--quiet") == 0
    rec = json.loads((out / "case_png8.json").read_text())
    cli.validate_prediction(rec)
    assert rec["cobb"] is None and rec["vertebrae"][16]["found"] is False and rec["vertebrae"][16]["corners_px"] is None
    assert pd.read_csv(out / cli.SUMMARY_CSV).vertebrae_found.tolist() == [16]


def test_the_json_is_the_predictions_own_to_dict(tmp_path, xrays, monkeypatch):
    """One writer: the vertebrae and angles of NAME.json are SpinePrediction.to_dict(rounded=True)
    of the real prediction class, with the DICOM's pixel spacing; the record validates."""
    from spinelib.geometry.cobb import cobb_angles

    made = []

    class RealPredictionModel(FakeModel):
        def predict(self, image):
            c = curved_spine(image.shape)
            made.append(SpinePrediction(corners=c, scores=np.linspace(0.9, 0.5, 17), image_shape=image.shape,
                                        levels=LEVELS, cobb=cobb_angles(c, image_height=image.shape[0]),
                                        model_name=self.name, model_version=self.version))
            return made[-1]

    monkeypatch.setattr(cli.predict, "load_predictor", lambda name: RealPredictionModel())
    out = tmp_path / "o"
    assert run("predict", xrays["dicom"], "--out", out, "--quiet") == 0
    rec = json.loads((out / "case_dicom.json").read_text())
    cli.validate_prediction(rec)
    own = json.loads(json.dumps(made[0].to_dict(pixel_spacing=(0.2, 0.25), rounded=True)))
    assert {k: rec[k] for k in ("corner_order", "vertebrae", "cobb")} == {k: own[k] for k in ("corner_order", "vertebrae", "cobb")}
    assert rec["vertebrae"][0]["corners_mm"]["TL"] == pytest.approx(
        [rec["vertebrae"][0]["corners_px"]["TL"][0] * 0.25, rec["vertebrae"][0]["corners_px"]["TL"][1] * 0.2], abs=1e-3)
    full = made[0].to_dict()  # not rounded: the library's full floats
    assert full["vertebrae"][3]["corners_px"]["BR"] == [float(v) for v in made[0].corners[3, 3]]


def test_schema_rejects_broken_records(tmp_path, xrays, fake_model):
    out = tmp_path / "o"
    run("predict", xrays["png8"], "--out", out, "--quiet")
    rec = json.loads((out / "case_png8.json").read_text())
    for breakage in (lambda r: r["vertebrae"].pop(), lambda r: r["input"].update(sha256="xyz"),
                     lambda r: r["vertebrae"][0].update(level="C7"), lambda r: r.pop("model")):
        bad = json.loads(json.dumps(rec))
        breakage(bad)
        with pytest.raises(ValueError, match="prediction.schema.json"):
            cli.validate_prediction(bad)


# --------------------------------------------------------------------------------------------
# real AASCE X-rays


def _aasce_rows(aasce_dir, n=3):
    from spinelib.data.aasce import load_aasce

    return load_aasce(aasce_dir, max_images=n)


@pytest.mark.needs_shared
def test_predict_and_evaluate_real_aasce_xrays(tmp_path, aasce_dir, monkeypatch):
    """A stand-in model that returns each X-ray's ground truth: evaluate must then find Dice 1,
    corner error 0 and SMAPE ~0, and a model off by 5 px must score worse."""
    rows = _aasce_rows(aasce_dir, 3)
    truth = {hashlib.sha256(Path(r.image_path).read_bytes()).hexdigest(): r.landmarks for r in rows.itertuples()}
    current = {}

    class Oracle(FakeModel):
        def predict(self, image):
            return FakePrediction(current["corners"] + current["shift"], image.shape)

    orig = cli.predict.read_input

    def tracking_read(path):
        current["corners"] = truth[cli.sha256_file(path)]
        return orig(path)

    monkeypatch.setattr(cli.predict, "read_input", tracking_read)
    monkeypatch.setattr(cli.predict, "load_predictor", lambda name: Oracle())
    inputs = [Path(p) for p in rows.image_path]
    for shift, name in ((0.0, "exact"), (5.0, "shifted")):
        current["shift"] = np.array([shift, 0.0])
        out = tmp_path / name
        assert run("predict", *inputs, "--out", out, "--quiet") == 0
        summary = pd.read_csv(out / cli.SUMMARY_CSV)
        assert (summary.status == "ok").all()
        for _, row in summary.iterrows():
            check_outputs(out, row, Path(row["input"]))
        assert run("evaluate", out, "--truth", aasce_dir, "--out", tmp_path / f"eval_{name}") == 0
        result = json.loads((tmp_path / f"eval_{name}" / "summary.json").read_text())
        per_case = pd.read_csv(tmp_path / f"eval_{name}" / "per_case.csv")
        assert result["n_cases"] == 3 and len(per_case) == 3 and result["layout"] == "aasce"
        if shift == 0:
            assert result["dice"]["mean"] > 0.99 and result["landmark_error_px"]["mean"] < 1e-3
            assert result["corner_dice"]["mean"] > 0.99
            assert result["smape"] < 0.01  # ground-truth corners give the published angles
        else:
            assert 0.8 < result["dice"]["mean"] < 0.99
            np.testing.assert_allclose(per_case.corner_dice, per_case.dice, atol=0.01)
            np.testing.assert_allclose(result["landmark_error_px"]["mean"], 5.0, atol=1e-3)
            assert result["smape"] < 0.01  # a shift changes no angle


def test_evaluate_refuses_and_fails_cleanly(tmp_path, xrays, fake_model, aasce_dir):
    out = tmp_path / "o"
    run("predict", xrays["png8"], "--out", out, "--quiet")
    # none of these predictions is of an AASCE X-ray
    assert run("evaluate", out, "--truth", aasce_dir, "--out", tmp_path / "e") == cli.EXIT_FAILED
    assert run("evaluate", tmp_path / "none", "--truth", aasce_dir, "--out", tmp_path / "e2") == cli.EXIT_USAGE
    assert run("evaluate", xrays["png8"].parent, "--truth", aasce_dir, "--out", tmp_path / "e3") == cli.EXIT_FAILED


def test_evaluate_clinical_layout(tmp_path, tiny_synthetic, monkeypatch):
    """Predictions on the synthetic AP X-rays scored against their Ap_Vertebra masks."""
    from spinelib.data.clinical import scan_clinical

    ds = scan_clinical(tiny_synthetic, progress=False)
    aps = [p.views["AP"].image_path for p in ds.patients[:2]]
    monkeypatch.setattr(cli.predict, "load_predictor", lambda name: FakeModel())
    out = tmp_path / "pred"
    assert run("predict", *aps, "--out", out, "--quiet") == 0
    assert run("evaluate", out, "--truth", tiny_synthetic, "--out", tmp_path / "e") == 0
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["layout"] == "clinical" and summary["n_cases"] == 2
    assert 0.0 <= summary["dice"]["mean"] < 0.9  # a geometric guess, not the truth


# --------------------------------------------------------------------------------------------
# the real model, through the installed command


def _landmark_model_available() -> bool:
    try:
        import spinelib.landmarks.model  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def small_model_folder(tmp_path_factory):
    if not _landmark_model_available():
        pytest.skip("spinelib.landmarks.model (load_model/save_model) is not in the package yet")
    from spinelib.landmarks.model import save_model
    from spinelib.landmarks.network import landmark_net

    folder = tmp_path_factory.mktemp("small_model")
    net = landmark_net(input_shape=(128, 64, 1), weights=None)
    save_model(net, folder, {"name": "untrained-test", "version": "0.0.0", "input_size": [128, 64]})
    return folder


def test_installed_command_with_a_model_folder(tmp_path, xrays, small_model_folder):
    assert SPINELIB.is_file(), f"the console script {SPINELIB} is not installed (pip install -e .)"
    out = tmp_path / "out"
    done = subprocess.run([str(SPINELIB), "predict", str(xrays["png8"]), str(xrays["dicom"]), str(xrays["notes"]),
                           "--out", str(out), "--model", str(small_model_folder)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "notes.txt" in done.stderr and "2 of 3" in done.stdout
    summary = pd.read_csv(out / cli.SUMMARY_CSV)
    for _, row in summary[summary.status == "ok"].iterrows():
        rec = json.loads((out / row["json"]).read_text())
        cli.validate_prediction(rec)
        assert rec["model"]["name"] == "untrained-test"
        assert read_mask(out / row["mask"]).shape == (rec["input"]["height"], rec["input"]["width"])
        for v in rec["vertebrae"]:
            if v["found"]:
                xy = np.array(list(v["corners_px"].values()))
                assert np.isfinite(xy).all()


@pytest.mark.needs_shared
def test_shipped_model_on_a_real_aasce_xray(tmp_path, aasce_dir):
    if not _landmark_model_available():
        pytest.skip("spinelib.landmarks.model is not in the package yet")
    from spinelib.landmarks.model import load_model

    try:
        load_model(None)
    except (FileNotFoundError, OSError, ValueError) as e:
        pytest.skip(f"the package ships no trained weights yet ({e})")
    row = _aasce_rows(aasce_dir, 1).iloc[0]
    out = tmp_path / "out"
    done = subprocess.run([str(SPINELIB), "predict", row.image_path, "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rec = check_outputs(out, pd.read_csv(out / cli.SUMMARY_CSV).iloc[0], Path(row.image_path))
    # the shipped model finds this training X-ray's vertebrae within a few vertebra heights
    pred = np.array([[v["corners_px"][k] for k in cli.CORNER_ORDER] for v in rec["vertebrae"]])
    assert np.median(np.linalg.norm(pred - row.landmarks, axis=-1)) < 60


# --------------------------------------------------------------------------------------------
# help, train, book, synthetic


@pytest.mark.parametrize("command, words", [
    ([], ["predict", "train", "evaluate", "book", "synthetic", "Exit codes"]),
    (["predict"], ["NAME.json", "NAME_mask.png", "NAME_overlay.png", "predictions.csv", "spinelib[dicom]",
                   "--overwrite", "skipped", "AP"]),
    (["train"], ["AASCE", "clinical", "--structure", "model.json"]),
    (["evaluate"], ["SMAPE", "Dice", "per_case.csv", "SHA-256"]),
    (["book"], ["--profile"]),
    (["synthetic"], ["--n", "--seed"]),
])
def test_help_answers(command, words, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(command + ["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for w in words:
        assert w in text, (command, w)


def test_console_script_help_and_usage_errors():
    assert SPINELIB.is_file()
    done = subprocess.run([str(SPINELIB), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "predict" in done.stdout
    done = subprocess.run([str(SPINELIB), "predict"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--out" in done.stderr
    done = subprocess.run([str(SPINELIB), "frobnicate"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2


def test_train_refuses_unknown_layout_and_structure(tmp_path, tiny_synthetic, capsys):
    (tmp_path / "empty").mkdir()
    assert run("train", tmp_path / "empty", "--out", tmp_path / "m") == cli.EXIT_USAGE
    assert "neither an AASCE folder" in capsys.readouterr().err
    assert run("train", tiny_synthetic, "--out", tmp_path / "m", "--structure", "Femur") == cli.EXIT_USAGE
    assert "Ap_Vertebra" in capsys.readouterr().err
    assert run("train", tmp_path / "nowhere", "--out", tmp_path / "m") == cli.EXIT_USAGE


def test_train_a_segmentation_model_folder(tmp_path, tiny_synthetic):
    out = tmp_path / "model"
    assert run("train", tiny_synthetic, "--out", out, "--structure", "Ap_Pedicle", "--size", 32, 16, "--epochs", 1, "--filters", 4,
               "--batch-size", 2, "--val-fraction", 0.3, "--quiet") == 0
    config = json.loads((out / "model.json").read_text())
    assert config["kind"] == "segmentation" and config["structures"] == ["Ap_Pedicle"]
    assert config["input_size"] == [32, 16] and config["threshold"] == 0.5
    import keras

    net = keras.models.load_model(out / "model.keras", compile=False)
    assert tuple(net.input_shape[1:3]) == (32, 16)
    # predict with that folder: masks at each X-ray's size, a segmentation JSON; then evaluate it
    from spinelib.data.clinical import scan_clinical

    aps = [p.views["AP"].image_path for p in scan_clinical(tiny_synthetic, progress=False).patients[:2]]
    pred = tmp_path / "pred"
    assert run("predict", *aps, "--out", pred, "--model", out, "--quiet") == 0
    summary = pd.read_csv(pred / cli.SUMMARY_CSV)
    assert (summary.status == "ok").all() and len(summary) == 2
    for _, row in summary.iterrows():
        rec = json.loads((pred / row["json"]).read_text())
        cli.validate_prediction(rec)
        assert rec["schema"] == cli.SEG_SCHEMA_ID and rec["structures"][0]["name"] == "Ap_Pedicle"
        assert read_mask(pred / row["mask"]).shape == (rec["input"]["height"], rec["input"]["width"])
        assert np.asarray(Image.open(pred / row["overlay"])).shape[:2] == read_mask(pred / row["mask"]).shape
    assert run("evaluate", pred, "--truth", tiny_synthetic, "--structure", "Ap_Pedicle", "--out", tmp_path / "e") == 0
    scores = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert scores["n_cases"] == 2 and 0.0 <= scores["dice"]["mean"] <= 1.0


def test_synthetic_subcommand(tmp_path):
    out = tmp_path / "syn"
    assert run("synthetic", "--out", out, "--n", 2, "--scale", 0.1, "--quiet") == 0
    assert (out / "metadata.csv").is_file() and len(pd.read_csv(out / "metadata.csv")) == 2


def test_book_subcommand_calls_the_builder(monkeypatch):
    from spinelib import book

    seen = {}
    monkeypatch.setattr(book, "build", lambda profile, seed, notebooks=None, render=True, jobs=1: seen.update(
        profile=profile, seed=seed, notebooks=notebooks, render=render, jobs=jobs))
    monkeypatch.delenv("SPINELIB_BOOK_JOBS", raising=False)
    assert run("book", "--profile", "tiny", "--no-render", "--only", "01") == 0
    assert seen == {"profile": "tiny", "seed": 0, "notebooks": ["01"], "render": False, "jobs": 1}
    assert run("book", "--profile", "tiny", "--jobs", "2") == 0 and seen["jobs"] == 2


def test_helpers():
    names = cli.output_names([Path("a/x.png"), Path("b/x.png"), Path("c/x.dcm"), Path("y.png")])
    assert names == ["x", "x-2", "x-3", "y"]
    assert cli.sha256_file(Path(__file__)) == hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    recs = cli.vertebra_records(np.ones((17, 4, 2)), LEVELS, np.ones(17), spacing=(0.5, 2.0))
    assert recs[0]["corners_mm"]["BR"] == [2.0, 0.5]
    save_png  # imported for the writers the CLI shares


@pytest.mark.slow
def test_train_a_landmark_model_folder_that_predict_loads(tmp_path, capsys):
    """`spinelib train` on an AASCE-format folder (4 tiny X-rays, 1 epoch, no ImageNet weights)
    writes a model folder; `spinelib predict --model` that folder runs it."""
    if not _landmark_model_available():
        pytest.skip("spinelib.landmarks.model is not in the package yet")
    sys.path.insert(0, str(Path(__file__).parent))
    from fixtures_aasce import fake_aasce

    root = fake_aasce(tmp_path / "aasce", n=4, shape=(128, 64))
    out = tmp_path / "model"
    assert run("train", root, "--out", out, "--size", 128, 64, "--epochs", 1, "--batch-size", 2,
               "--val-fraction", 0.5, "--no-pretrained", "--name", "tiny-aasce", "--quiet") == cli.EXIT_FAILED
    assert "--keep-flagged" in capsys.readouterr().err  # the audit flags these box-shaped labels
    assert run("train", root, "--out", out, "--size", 128, 64, "--epochs", 1, "--batch-size", 2, "--keep-flagged",
               "--val-fraction", 0.5, "--no-pretrained", "--name", "tiny-aasce", "--quiet") == 0
    config = json.loads((out / "model.json").read_text())
    assert config["name"] == "tiny-aasce" and config["input_size"] == [128, 64] and config["kind"] == "landmarks"
    assert config["n_train"] == 2 and config["n_val"] == 2
    assert (out / "work" / "history.csv").is_file()
    xray = next((root / "data" / "training").glob("*.jpg"))
    pred = tmp_path / "pred"
    assert run("predict", xray, "--out", pred, "--model", out, "--quiet") == 0
    rec = json.loads(next(p for p in pred.glob("*.json") if p.name != cli.MANIFEST).read_text())
    cli.validate_prediction(rec)
    assert rec["model"]["name"] == "tiny-aasce" and rec["input"]["height"] == 128


def test_overlay_draws_curves_and_checks_inputs():
    from spinelib.geometry.cobb import cobb_angles
    from spinelib.overlay import CURVE_COLORS, VERTEBRA_COLOR, draw_prediction

    image = spine_image((400, 160), 5)
    corners = curved_spine(image.shape)
    cobb = cobb_angles(corners, image.shape[0])
    before = image.copy()
    rgb = draw_prediction(image, corners, cobb, LEVELS, title="test")
    np.testing.assert_array_equal(image, before)  # the input is left alone
    assert rgb.shape == (400, 160, 3) and rgb.dtype == np.uint8
    colors = {tuple(c) for c in rgb.reshape(-1, 3)}
    assert VERTEBRA_COLOR in colors and CURVE_COLORS["pt"] in colors
    # the main curve's lower end vertebra (below the legend): its mid-line centre is drawn in red
    low = cobb.end_vertebrae["pt"][1]
    cx, cy = np.round(corners[low].mean(axis=0)).astype(int)
    assert cy > 100
    patch = rgb[cy - 2:cy + 3, cx - 2:cx + 3].reshape(-1, 3).astype(int)
    assert np.abs(patch - CURVE_COLORS["pt"]).sum(axis=1).min() < 60  # anti-aliased red
    partial = corners.copy()
    partial[16] = np.nan
    assert draw_prediction(image, partial, None, LEVELS).shape == rgb.shape
    with pytest.raises(ValueError, match="shape"):
        draw_prediction(image, corners[:, :3], None, LEVELS)
    with pytest.raises(ValueError, match="level names"):
        draw_prediction(image, corners, None, LEVELS[:5])
