"""Synthetic spine X-rays: determinism, layout, masks that follow the anatomy, pathologies, cache."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.measure import label, regionprops

from spinelib.core.structures import (
    AP_STRUCTURES,
    LAT_STRUCTURES,
    PAPER_TABLE1,
    STRUCTURES,
)
from spinelib.data.synthetic.generator import (
    IRREGULARITIES,
    METADATA_COLUMNS,
    SyntheticConfig,
    generate_dataset,
    generate_patient,
    irregularity_plan,
    main,
    patient_label,
    read_metadata,
    write_patient,
)

SCALE = 0.2


def tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@lru_cache(maxsize=None)
def patient(k: int, scale: float = SCALE):
    return generate_patient(k, patient_label(k), seed=0, scale=scale)


def find_patient(kind: str, scale: float):
    """First damaged patient (seed 0) carrying ``kind``."""
    for k in range(1, 80, 2):
        p = patient(k, scale)
        if any(d["kind"] == kind for d in p.metadata["pathology_details"]):
            return p
    raise AssertionError(f"no patient with {kind} among the first 40 damaged ones")


def frame(corners: dict, a: str, b: str, c: str, d: str):
    """Unit vectors along the endplates (a->b, d->c) and their downward normal."""
    p = {k: np.array(v, float) for k, v in corners.items()}
    e = (p[b] - p[a]) + (p[c] - p[d])
    e /= np.hypot(*e)
    return e, np.array([-e[1], e[0]])


# --------------------------------------------------------------------------------------------
# determinism


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("syn-a"), tmp_path_factory.mktemp("syn-b")
    generate_dataset(a, 3, seed=0, scale=SCALE, progress=False)
    generate_dataset(b, 3, seed=0, scale=SCALE, progress=False)
    return a, b


def test_same_seed_gives_identical_bytes(two_runs):
    a, b = two_runs
    ha, hb = tree_hashes(a), tree_hashes(b)
    assert len(ha) == 3 * (2 + 3 + 5 + 1) + 2  # images, masks, meta.json per patient + csv + json
    assert ha == hb


def test_two_worker_processes_write_the_same_bytes_as_one(two_runs, tmp_path):
    """Issue 16: the book's 60-patient sets are drawn by one process per core; the files are the
    same as one process writes (a patient depends only on (seed, index)), metadata order included."""
    generate_dataset(tmp_path / "two", 3, seed=0, scale=SCALE, progress=False, workers=2)
    assert tree_hashes(tmp_path / "two") == tree_hashes(two_runs[0])


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_bad_worker_counts_are_refused_before_anything_is_written(workers, tmp_path):
    with pytest.raises(ValueError, match="workers"):
        generate_dataset(tmp_path / "w", 3, seed=0, scale=SCALE, progress=False, workers=workers)
    assert not (tmp_path / "w").exists()


def test_different_seed_differs_and_patient_k_does_not_depend_on_n(two_runs, tmp_path):
    a, _ = two_runs
    other = tmp_path / "seed1"
    generate_dataset(other, 2, seed=1, scale=SCALE, progress=False)
    ho, ha = tree_hashes(other), tree_hashes(a)
    assert ho["Normal/ID (1)/AP/AP.jpg"] != ha["Normal/ID (1)/AP/AP.jpg"]
    assert ho["Damaged/ID (2)/LAT/Lat_Vertebra.png"] != ha["Damaged/ID (2)/LAT/Lat_Vertebra.png"]
    fewer = tmp_path / "n2"
    generate_dataset(fewer, 2, seed=0, scale=SCALE, progress=False)
    hf = tree_hashes(fewer)
    for rel, digest in hf.items():
        if rel.startswith(("Normal/", "Damaged/")):
            assert ha[rel] == digest, rel
    # generate_patient with the dataset seed is patient k of the dataset
    p = generate_patient(1, 1, seed=0, scale=SCALE)
    assert np.array_equal(p.images["AP"], patient(1).images["AP"])
    assert json.loads((a / "Damaged/ID (2)/meta.json").read_text())["seed"] == p.seed


# --------------------------------------------------------------------------------------------
# layout, files and masks


def test_layout_and_names_are_exact(two_runs):
    a, _ = two_runs
    files = set(tree_hashes(a))
    expected = {"metadata.csv", "synthetic.json"}
    for k, cls in ((1, "Normal"), (2, "Damaged"), (3, "Normal")):
        base = f"{cls}/ID ({k})"
        expected |= {f"{base}/meta.json", f"{base}/AP/AP.jpg", f"{base}/LAT/LAT.jpg"}
        expected |= {f"{base}/AP/{s}.png" for s in AP_STRUCTURES}
        expected |= {f"{base}/LAT/{s}.png" for s in LAT_STRUCTURES}
    assert files == expected
    df = read_metadata(a)
    assert list(df.columns) == list(METADATA_COLUMNS)
    assert df.class_name.tolist() == ["Normal", "Damaged", "Normal"]
    assert df.label.tolist() == [0, 1, 0]
    assert not any(p.name.endswith(".tmp") for p in a.rglob("*")), "atomic writes left a temporary file"


def test_written_files_are_gray_jpegs_and_binary_masks_of_the_same_size(two_runs):
    a, _ = two_runs
    df = read_metadata(a)
    for row in df.itertuples():
        folder = a / row.folder
        for view, structures in (("AP", AP_STRUCTURES), ("LAT", LAT_STRUCTURES)):
            with Image.open(folder / view / f"{view}.jpg") as im:
                assert im.format == "JPEG" and im.mode == "L"
                size = im.size
            h, w = (row.ap_height, row.ap_width) if view == "AP" else (row.lat_height, row.lat_width)
            assert size == (w, h)
            for s in structures:
                with Image.open(folder / view / f"{s}.png") as m:
                    assert m.mode == "1" and m.size == size, (folder, s)
                    assert np.asarray(m).any(), f"{folder}/{view}/{s}.png is empty"


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_masks_are_full_size_nonempty_and_on_bright_anatomy(k):
    p = patient(k)
    assert set(p.masks) == set(STRUCTURES)
    for s, m in p.masks.items():
        view = "AP" if s in AP_STRUCTURES else "LAT"
        assert m.dtype == bool and m.shape == p.images[view].shape, s
        assert m.any(), s
    for view, body in (("AP", "Ap_Vertebra"), ("LAT", "Lat_Vertebra")):
        img = p.images[view].astype(float)
        anatomy = np.zeros(img.shape, bool)
        for s in (AP_STRUCTURES if view == "AP" else LAT_STRUCTURES):
            anatomy |= p.masks[s]
        assert img[p.masks[body]].mean() > img[~anatomy].mean() + 20, view
    # thin LAT lines: one connected polyline each, a few pixels wide at most
    for s in ("Lat_Anterior_Vertebral_Line", "Lat_Posterior_Vertebral_Line"):
        m = p.masks[s]
        assert label(m, connectivity=2).max() == 1, s
        assert m.mean() < 0.01


def test_sizes_within_table1_at_scale_one():
    for k in (0, 1):
        p = generate_patient(k, patient_label(k), seed=0, scale=1.0)
        r = PAPER_TABLE1[p.class_name]
        for view in ("AP", "LAT"):
            h, w = p.images[view].shape
            assert r["min_height"] <= h <= r["max_height"], (p.class_name, view, h)
            assert r["min_width"] <= w <= r["max_width"], (p.class_name, view, w)
            assert p.masks["Ap_Vertebra" if view == "AP" else "Lat_Vertebra"].shape == (h, w)
        assert (p.metadata["ap_height"], p.metadata["ap_width"]) == p.images["AP"].shape


def test_scale_shrinks_proportionally():
    big, small = patient(0, 0.4), patient(0, 0.2)
    for key in ("ap_height", "ap_width", "lat_height", "lat_width"):
        assert abs(big.metadata[key] / small.metadata[key] - 2) < 0.02


# --------------------------------------------------------------------------------------------
# labels and pathologies


def test_labels_and_pathology_counts():
    for k in range(12):
        p = patient(k)
        details = p.metadata["pathology_details"]
        assert p.label == patient_label(k) == k % 2
        assert p.metadata["n_vertebrae"] == len(p.metadata["vertebrae"]) == len(p.metadata["disks"]) + 1
        assert 12 <= p.metadata["n_vertebrae"] <= 17
        if p.class_name == "Normal":
            assert details == [] and p.metadata["pathologies"] == ""
            assert p.metadata["cobb_angle_deg"] < 5
            assert all(d["lat"]["listhesis_offset_px"] == 0 for d in p.metadata["disks"])
            assert min(v["lat"]["wedge_ratio"] for v in p.metadata["vertebrae"]) > 0.85
        else:
            assert 1 <= len(details) <= 3
            assert p.metadata["pathologies"] == ";".join(f"{d['kind']}@{d['level']}" for d in details)
    assert [patient_label(k, 0.25) for k in range(8)] == [0, 0, 0, 1, 0, 0, 0, 1]


def _vertebra_heights_from_mask(mask: np.ndarray, v: dict, at: float = 0.1) -> tuple[float, float]:
    """Heights of one LAT body measured on the Lat_Vertebra mask along two chords parallel to
    the posterior wall, at ``at`` of the depth from the anterior and from the posterior side."""
    sa, sp = np.array(v["corners"]["superior_anterior"]), np.array(v["corners"]["superior_posterior"])
    e = (sp - sa) / np.hypot(*(sp - sa))  # the walls are normal to the superior endplate
    n = np.array([-e[1], e[0]])
    c = np.array(v["center"])
    lab = label(mask)
    region = lab == lab[int(round(c[1])), int(round(c[0]))]
    rel = np.argwhere(region)[:, ::-1] - c
    u, w = rel @ e, rel @ n
    keep = np.abs(w) < 0.8 * max(v["anterior_height_px"], v["posterior_height_px"])
    u, w = u[keep], w[keep]
    lo, hi = u.min(), u.max()
    ant = w[np.abs(u - (lo + at * (hi - lo))) < 1.0]
    post = w[np.abs(u - (hi - at * (hi - lo))) < 1.0]
    return float(np.ptp(ant)), float(np.ptp(post))


def test_wedge_fracture_reduces_anterior_height_in_the_mask():
    p = find_patient("wedge_fracture", 0.5)
    fracture = next(d for d in p.metadata["pathology_details"] if d["kind"] == "wedge_fracture")
    levels = [v["level"] for v in p.metadata["vertebrae"]]
    i = levels.index(fracture["level"])
    ratios = {}
    for j in (i - 1, i, i + 1):
        ant, post = _vertebra_heights_from_mask(p.masks["Lat_Vertebra"], p.metadata["vertebrae"][j]["lat"])
        ratios[j] = ant / post
    assert 0.3 <= fracture["severity"] <= 0.6
    assert ratios[i] < 0.8
    assert ratios[i] < min(ratios[i - 1], ratios[i + 1]) - 0.15
    # the truth at the same chords (linear between the anterior and posterior walls)
    lat = p.metadata["vertebrae"][i]["lat"]
    a, b = lat["anterior_height_px"], lat["posterior_height_px"]
    assert abs(lat["wedge_ratio"] - fracture["wedge_ratio"]) < 1e-9
    expected = (a + 0.1 * (b - a)) / (b - 0.1 * (b - a))
    assert abs(ratios[i] - expected) < 0.06, (ratios[i], expected)
    # and the body is shorter in AP too
    ap_h = [v["ap"]["height_px"] / v["ap"]["width_px"] for v in p.metadata["vertebrae"]]
    assert ap_h[i] < min(ap_h[i - 1], ap_h[i + 1])


def _disk_height_from_mask(mask: np.ndarray, upper: dict, lower: dict) -> float:
    """Mean disk height: area of the disk component over the mean endplate length."""
    a, b = np.array(upper["corners"]["inferior_anterior"]), np.array(upper["corners"]["inferior_posterior"])
    c, d = np.array(lower["corners"]["superior_anterior"]), np.array(lower["corners"]["superior_posterior"])
    mid = (a + b + c + d) / 4
    lab = label(mask)
    k = lab[int(round(mid[1])), int(round(mid[0]))]
    assert k > 0, "disk centre is not inside the disk mask"
    area = regionprops((lab == k).astype(int))[0].area
    return area / ((np.hypot(*(b - a)) + np.hypot(*(d - c))) / 2)


def test_disk_height_loss_narrows_that_disk_mask():
    p = find_patient("disk_height_loss", 0.5)
    loss = next(d for d in p.metadata["pathology_details"] if d["kind"] == "disk_height_loss")
    names = [d["level"] for d in p.metadata["disks"]]
    i = names.index(loss["level"])
    verts = p.metadata["vertebrae"]
    heights = {j: _disk_height_from_mask(p.masks["Lat_Disk_Height"], verts[j]["lat"], verts[j + 1]["lat"])
               for j in (i - 1, i, i + 1) if 0 <= j < len(names)}
    neighbours = [h for j, h in heights.items() if j != i]
    assert 0.5 <= loss["severity"] <= 0.8
    assert heights[i] < 0.7 * np.mean(neighbours), heights
    assert abs(heights[i] - p.metadata["disks"][i]["lat"]["height_px"]) < max(2.5, 0.35 * heights[i])


def test_listhesis_translates_the_body_anteriorly():
    p = find_patient("listhesis", SCALE)
    slip = next(d for d in p.metadata["pathology_details"] if d["kind"] == "listhesis")
    names = [v["level"] for v in p.metadata["vertebrae"]]
    i = names.index(slip["level"])
    assert slip["relative_to"] == names[i + 1]
    disk = p.metadata["disks"][i]["lat"]
    assert 0.15 <= slip["severity"] <= 0.4
    assert abs(disk["listhesis_fraction"] - slip["severity"]) < 0.03
    # the anterior corner of the slipped body is ahead (smaller x) of the one below
    up, down = p.metadata["vertebrae"][i]["lat"]["corners"], p.metadata["vertebrae"][i + 1]["lat"]["corners"]
    assert up["inferior_anterior"][0] < down["superior_anterior"][0]


def test_scoliosis_cobb_angle_in_metadata_and_in_the_ap_mask():
    p = find_patient("scoliosis", 0.3)
    curve = next(d for d in p.metadata["pathology_details"] if d["kind"] == "scoliosis")
    cobb = p.metadata["cobb_angle_deg"]
    assert 15 <= cobb <= 45.5 and curve["cobb_angle_deg"] == cobb
    angles = [a for v in p.metadata["vertebrae"] for a in (v["ap"]["superior_endplate_deg"], v["ap"]["inferior_endplate_deg"])]
    assert abs((max(angles) - min(angles)) - cobb) < 0.1
    # the masks follow the curve: principal axes of the body components spread by about the Cobb angle
    lab = label(p.masks["Ap_Vertebra"])
    tilts = []
    for r in regionprops(lab):
        if r.area < 50:
            continue
        yx = r.coords - r.coords.mean(axis=0)
        _, vecs = np.linalg.eigh(np.cov(yx.T))
        dy, dx = vecs[:, -1]
        tilts.append(np.degrees(np.arctan2(dy, dx)) % 180)
    tilts = np.array(tilts)
    tilts[tilts > 90] -= 180
    assert abs(np.ptp(tilts) - cobb) < 8, (np.ptp(tilts), cobb)


# --------------------------------------------------------------------------------------------
# dataset: cache, irregularities, CLI, bad input


def test_cache_reuses_refuses_and_overwrites(tmp_path):
    root = tmp_path / "ds"
    df = generate_dataset(root, 2, seed=3, scale=SCALE, progress=False)
    jpg = root / "Normal/ID (1)/AP/AP.jpg"
    stamp = jpg.stat().st_mtime_ns
    again = generate_dataset(root, 2, seed=3, scale=SCALE, progress=False)
    pd.testing.assert_frame_equal(df, again)
    assert jpg.stat().st_mtime_ns == stamp, "a cached dataset was regenerated"
    assert json.loads((root / "synthetic.json").read_text())["settings"]["seed"] == 3
    with pytest.raises(ValueError, match="other settings.*seed"):
        generate_dataset(root, 2, seed=4, scale=SCALE, progress=False)
    new = generate_dataset(root, 3, seed=4, scale=SCALE, progress=False, overwrite=True)
    assert len(new) == 3 and (root / "Normal/ID (3)").is_dir()
    assert new.seed.tolist() != df.seed.tolist()[:3]
    # an interrupted run (marker left, no synthetic.json) is redone
    (root / "synthetic.json").unlink()
    (root / ".synthetic-incomplete.json").write_text("{}")
    assert len(generate_dataset(root, 2, seed=4, scale=SCALE, progress=False)) == 2
    assert not (root / ".synthetic-incomplete.json").exists() and not (root / "Normal/ID (3)").exists()
    # a folder that is not a synthetic dataset is never written into
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a synthetic dataset"):
        generate_dataset(foreign, 2, scale=SCALE, progress=False, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_irregular_layout(tmp_path):
    root = tmp_path / "raw"
    df = generate_dataset(root, 6, seed=0, scale=SCALE, irregular=True, progress=False)
    plan = irregularity_plan(6)
    assert sorted(plan.values()) == sorted(IRREGULARITIES)
    assert df.irregularities.tolist() == [plan.get(k, "") for k in range(6)]
    folder = {k: root / df.folder[k] for k in range(6)}
    inv = {v: k for k, v in plan.items()}
    f = folder[inv["renamed_view:LAT/lat.png"]]
    assert (f / "LAT/lat.png").is_file() and not (f / "LAT/LAT.jpg").exists()
    with Image.open(f / "LAT/lat.png") as im:
        assert im.format == "PNG"
    assert (folder[inv["renamed_view:LAT/LAT .png"]] / "LAT" / "LAT .png").is_file()
    f = folder[inv["renamed_view:AP/Ap.JPEG"]]
    with Image.open(f / "AP/Ap.JPEG") as im:
        assert im.format == "JPEG"
    f = folder[inv["lowercase_mask:AP/ap_pedicle.png"]]
    assert (f / "AP/ap_pedicle.png").is_file() and "Ap_Pedicle.png" not in {p.name for p in (f / "AP").iterdir()}
    f = folder[inv["outside_view_folder:AP.jpg"]]
    assert (f / "AP.jpg").is_file() and not (f / "AP/AP.jpg").exists() and (f / "AP/Ap_Vertebra.png").is_file()
    f = folder[inv["missing_view:LAT"]]
    assert not (f / "LAT").exists() and (f / "AP/AP.jpg").is_file()
    assert json.loads((f / "meta.json").read_text())["irregularities"] == "missing_view:LAT"
    # the default is the cleaned layout
    assert read_metadata(tmp_path / "raw").irregularities.astype(bool).sum() == 6
    assert irregularity_plan(200)[168] == "missing_view:LAT"


def test_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--n", "2", "--seed", "5", "--scale", str(SCALE), "--quiet"]) == 0
    assert "2 patients" in capsys.readouterr().out
    assert read_metadata(out).seed.nunique() == 2
    assert main(["--out", str(out), "--n", "2", "--seed", "6", "--scale", str(SCALE), "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_write_patient_in_memory_round_trip(tmp_path):
    p = patient(1)
    folder = write_patient(p, tmp_path)
    assert folder == tmp_path / "Damaged" / "ID (2)"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["pathologies"] == p.metadata["pathologies"]
    with Image.open(folder / "LAT/Lat_Disk_Height.png") as m:
        assert np.array_equal(np.asarray(m), p.masks["Lat_Disk_Height"])
    v = meta["vertebrae"][0]
    assert set(v["ap"]["corners"]) == {"superior_left", "superior_right", "inferior_right", "inferior_left"}
    assert set(v["lat"]["corners"]) == {"superior_anterior", "superior_posterior", "inferior_posterior",
                                        "inferior_anterior"}


@pytest.mark.parametrize("call, error", [
    (lambda: generate_patient(0, 2), ValueError),
    (lambda: generate_patient(0, "broken"), ValueError),
    (lambda: generate_patient(-1, 0), ValueError),
    (lambda: generate_patient(0, 0, seed=-3), TypeError),
    (lambda: generate_patient(0, 0, scale=0), ValueError),
    (lambda: generate_patient(0, 0, scale="big"), TypeError),
    (lambda: generate_patient(0, 0, n_vertebrae=(3, 20)), ValueError),
    (lambda: SyntheticConfig(n_patients=0), ValueError),
    (lambda: SyntheticConfig(damaged_fraction=1.5), ValueError),
    (lambda: SyntheticConfig(jpeg_quality=0), ValueError),
    (lambda: write_patient("not a patient", "/tmp"), TypeError),
    (lambda: read_metadata("/nonexistent/synthetic"), FileNotFoundError),
])
def test_bad_inputs_raise_clear_errors(call, error):
    with pytest.raises(error):
        call()


def test_generate_patient_accepts_a_generator_and_class_names():
    a = generate_patient(4, "Damaged", seed=np.random.default_rng(7), scale=SCALE)
    b = generate_patient(4, "damaged", seed=np.random.default_rng(7), scale=SCALE)
    assert a.class_name == "Damaged" and a.seed == b.seed
    assert np.array_equal(a.images["LAT"], b.images["LAT"])
