"""The long-run scripts, run end to end at toy sizes: they write the committed record (metrics with
the exact command, per-case CSV, figures, README, a results-page headline) and leave their input
data untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from spinelib.core.config import REPO_ROOT, find_dataset
from spinelib.core.provenance import assert_unchanged

pytest.importorskip("keras")
AASCE = find_dataset("aasce")
TOY = ["--size", "64", "32", "--filters", "4", "--depth", "3", "--epochs", "1", "--batch-size", "4",
       "--max-images", "12", "--verbose", "0"]


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / name), *args], capture_output=True,
                          text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.skipif(AASCE is None, reason="AASCE dataset not on this machine")
@pytest.mark.parametrize("variant", ["full", "crop", "lite0"])
def test_train_aasce_writes_its_record_and_changes_no_input(tmp_path, variant):
    out = tmp_path / "results" / "aasce_toy"
    crop = variant == "crop"
    extra = {"full": [], "crop": ["--crop", "--stage1-size", "64", "32", "--stage1-filters", "4", "--stage1-epochs", "1",
                                  "--tta"],
             "lite0": ["--encoder", "lite0-imagenet", "--lr-schedule", "cosine", "--tta", "--full-res-skip", "4",
                       "--decoder-filters", "8", "8", "8", "8", "8"]}[variant]
    with assert_unchanged(AASCE):
        proc = run_script("train_aasce.py", *TOY, *extra, "--work", str(tmp_path / "work"), "--out", str(out))
    m = json.loads((out / "metrics.json").read_text())
    assert m["command"].startswith(".venv/bin/python scripts/train_aasce.py --size 64 32")
    assert m["settings"]["crop"] is crop and len(m["stages"]) == (2 if crop else 1)
    assert m["settings"]["encoder"] == ("lite0-imagenet" if variant == "lite0" else "none")
    if variant != "full":  # flip TTA (and a cosine schedule): the Dice without flips is recorded beside it
        assert m["settings"]["tta"] is True
        assert m["settings"]["lr_schedule"] == ("cosine" if variant == "lite0" else "plateau")
        plain = m["dice_without_tta"]
        assert 0.0 <= plain["mean"] <= 1.0 and plain["ci95"][0] <= plain["mean"] <= plain["ci95"][1]
        assert "Without the flip test-time augmentation" in (out / "README.md").read_text()
    else:
        assert m["dice_without_tta"] is None
    assert m["run"]["datasets"]["aasce"]["fingerprint"] and m["run"]["packages"]["tensorflow"]
    assert m["n_val_patients"] >= 1 and 0.0 <= m["dice_mean_over_val_patients"] <= 1.0
    assert m["dice_ci95"][0] <= m["dice_mean_over_val_patients"] <= m["dice_ci95"][1]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["dice_mean_over_val_patients"] == m["dice_mean_over_val_patients"]
    cases = pd.read_csv(out / "cases.csv")
    assert len(cases) == m["n_val_images"]  # one row per validation image, on the full X-ray
    for name in ("history.csv", "history.png", "cases.png", "README.md"):
        assert (out / name).stat().st_size > 0, name
    edge = m["outline_errors_in_frame"]
    assert 0.0 <= edge["within_1px"]["share_of_wrong_pixels"] <= edge["within_2px"]["share_of_wrong_pixels"] <= 1.0
    assert edge["mean_image_dice"] <= edge["within_1px"]["mean_image_dice_if_right"] + 1e-12
    full = m["dice_original_resolution"]
    assert 0.0 <= full["mean"] <= 1.0 and full["ci95"][0] <= full["mean"] <= full["ci95"][1]
    fit = m["training_fit"]  # the network on its own training images, beside the validation ones
    assert fit["n_val_patients"] == m["n_val_patients"] and fit["n_train_patients"] == m["n_train_patients"]
    assert 0.0 <= fit["train"]["mean"] <= 1.0 and "Training fit" in (out / "README.md").read_text()
    if variant == "full":  # no TTA, no crops: its validation half is the run's own validation Dice
        assert fit["val"]["mean"] == pytest.approx(m["dice_mean_over_val_patients"], abs=1e-4)
    levels = pd.read_csv(out / "levels.csv", index_col="vertebra")  # where on the spine it errs
    assert list(levels.index) == [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
    assert levels["dice"].between(0, 1).all()
    span = m["span"]
    # the same measure on the saved (float16) copy of the probabilities: a toy network's many values near 0.5 may round
    assert span["dice"] == pytest.approx(m["dice_mean_over_val_patients"], abs=0.02)
    assert all(0.0 <= span[k] <= 1.0 for k in ("dice_within_span", "outside_span_share", "stray_share"))
    assert "Where it errs" in (out / "README.md").read_text() and "`levels.csv` (Dice per vertebra)" in (out / "README.md").read_text()
    if variant == "lite0":
        assert m["settings"]["full_res_skip"] == 4 and m["settings"]["decoder_filters"] == [8] * 5
    if variant == "full":  # score the run again from its saved probabilities: the same numbers
        (out / "levels.csv").unlink()
        with assert_unchanged(AASCE):
            run_script("rescore_aasce.py", "--record", str(out), "--work", str(tmp_path / "work"), "--training-fit")
        assert pd.read_csv(out / "levels.csv")["dice"].between(0, 1).all()  # written again
        again = json.loads((out / "rescored.json").read_text())
        assert again["training_fit"]["val"]["mean"] == pytest.approx(fit["val"]["mean"], abs=1e-6)  # the same network
        assert again["training_fit"]["train"]["mean"] == pytest.approx(fit["train"]["mean"], abs=1e-6)
        assert again["dice_in_frame_aligned_masks"]["mean"] == pytest.approx(m["dice_mean_over_val_patients"], abs=0.05)  # float16 copy
        assert again["dice_original_resolution"]["mean"] == pytest.approx(full["mean"], abs=0.05)
        assert again["recorded_on"] == "aligned masks"
        assert set(again["outline_errors_in_frame"]) == {"mean_image_dice", "within_1px", "within_2px"}
        assert again["span"]["dice"] == pytest.approx(span["dice"], abs=0.05)  # float16 copy of the same probabilities
        run_script("rescore_aasce.py", "--record", str(out), "--work", str(tmp_path / "work"))  # without --training-fit
        third = json.loads((out / "rescored.json").read_text())
        assert third["training_fit"] == again["training_fit"]  # kept from the earlier rescoring
        assert "--training-fit" in third["earlier_commands"][-1]["command"] and "--training-fit" not in third["command"]
        from spinelib.seg import long_runs

        older = {k: v for k, v in m.items() if k not in ("dice_original_resolution", "training_fit", "span")}  # before the fields
        text = long_runs.write_readme(out, older).read_text()
        assert "measured afterwards from the run's saved probabilities" in text
        assert "Where it errs (measured afterwards" in text
        assert "rescore_aasce.py --training-fit" in text
        proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "train_aasce.py"), *TOY, "--full-res-skip", "4",
                               "--work", str(tmp_path / "w2"), "--out", str(tmp_path / "o2")], capture_output=True, text=True)
        assert proc.returncode == 2 and "--full-res-skip needs --encoder" in proc.stderr
    elif variant == "crop":  # crop boxes are not saved: a clear refusal
        proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "rescore_aasce.py"), "--record", str(out),
                               "--work", str(tmp_path / "work")], capture_output=True, text=True)
        assert proc.returncode == 2 and "not supported" in proc.stderr
    head = pd.read_csv(tmp_path / "results" / "headlines" / "aasce_toy.csv")
    assert list(head["profile"]) == ["long run"] and head.loc[0, "data"] == "real"
    assert head.loc[0, "ours"] == pytest.approx(m["dice_mean_over_val_patients"])


@pytest.mark.slow
def test_train_unet_synthetic_writes_its_record_and_changes_no_input(tmp_path, tiny_synthetic):
    from spinelib.core.config import get_profile

    P = get_profile("tiny")
    out = tmp_path / "results" / "unet_toy"
    with assert_unchanged(tiny_synthetic):  # the dataset exists with these settings: reused, not rewritten
        run_script("train_unet_synthetic.py", "--size", "64", "32", "--filters", "4", "--epochs", "1",
                   "--line-epochs", "1", "--n-synthetic", str(P.n_synthetic), "--scale", str(P.synthetic_scale),
                   "--synthetic-dir", str(tiny_synthetic), "--work", str(tmp_path / "work"), "--out", str(out))
    m = json.loads((out / "metrics.json").read_text())
    assert m["command"].startswith(".venv/bin/python scripts/train_unet_synthetic.py --size 64 32")
    assert m["run"]["datasets"]["synthetic"]["fingerprint"] and m["run"]["seed"] == 0
    final = pd.read_csv(out / "final_table3.csv", index_col=0)
    assert len(final) == 8 and final["final_dice"].between(0, 1).all()
    assert m["structures_at_or_above_paper"] == int(final["at_or_above_paper"].sum())
    head = pd.read_csv(tmp_path / "results" / "headlines" / "unet_toy.csv")
    assert len(head) == 16 and set(head["profile"]) == {"long run"} and set(head["data"]) == {"synthetic"}


def test_choose_ci_profile_reads_the_book_time_off_its_references(tmp_path):
    """CI builds the ci book where its predicted time fits the budget, the tiny one elsewhere; the
    prediction is read off the committed references by the probe's time here."""
    budget = json.loads((REPO_ROOT / "benchmarks" / "ci_budget.json").read_text())
    parts = ("book_minutes", "render_minutes", "checks_minutes", "tests_minutes")
    assert budget["references"], budget
    for ref in budget["references"]:
        assert ref["step_seconds"] > 0 and sum(ref[k] for k in parts) > 0 and ref["machine"] and ref["how"], ref
    one = dict(step_seconds=1.0, book_minutes=40, render_minutes=2, checks_minutes=1, tests_minutes=17, machine="A")
    fake = tmp_path / "budget.json"
    fake.write_text(json.dumps({"probe": budget["probe"], "references": [one]}))  # 60 min at probe 1.0 s
    decide = lambda *a: run_script("choose_ci_profile.py", "--reference", str(fake), *a)  # noqa: E731
    same = decide("--step-seconds", "1.0", "--elapsed-minutes", "5")
    assert same.stdout.strip() == "ci" and "predicted end of CI 65 min" in same.stderr, same.stderr
    slower = decide("--step-seconds", "1.3", "--elapsed-minutes", "5")  # one reference: scaled, 5 + 78 + 15 > 90
    assert slower.stdout.strip() == "tiny" and "predicted end of CI 83 min" in slower.stderr, slower.stderr
    assert decide("--step-seconds", "1.3", "--margin-minutes", "0").stdout.strip() == "ci"  # 78 <= 90
    # two references: a machine 3x slower on the probe took only 1.5x as long (the rest of the book scales less)
    slow = dict(one, step_seconds=3.0, book_minutes=70, machine="B")  # 90 min
    fake.write_text(json.dumps({"probe": budget["probe"], "references": [slow, one]}))
    assert "predicted end of CI 75 min" in decide("--step-seconds", "2.0").stderr  # on the line
    assert "predicted end of CI 60 min" in decide("--step-seconds", "1.0").stderr
    assert "predicted end of CI 51 min" in decide("--step-seconds", "0.4").stderr  # line 51 > scaled 60 x 0.4
    assert "predicted end of CI 48 min" in decide("--step-seconds", "0.2").stderr  # line 48 > scaled 12
    assert "predicted end of CI 120 min" in decide("--step-seconds", "4.0").stderr  # scaled 120 > line 105
    bad = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "choose_ci_profile.py"), "--reference",
                          str(tmp_path / "missing.json"), "--step-seconds", "1"], capture_output=True, text=True)
    assert bad.returncode != 0 and "no reference file" in bad.stderr
    # --measure-reference replaces the run of its own machine and keeps the others
    written = run_script("choose_ci_profile.py", "--reference", str(fake), "--measure-reference", "--step-seconds", "2.5",
                         "--book-minutes", "50", "--render-minutes", "1", "--checks-minutes", "1",
                         "--tests-minutes", "10", "--how", "a test")
    assert written.returncode == 0, written.stderr
    refs = json.loads(fake.read_text())["references"]
    assert [r["step_seconds"] for r in refs] == [1.0, 2.5, 3.0] and refs[1]["how"] == "a test"
    # two references of one probe speed (within 10 %) are one point, at their mean probe and the longer time,
    # not a steep line between them
    twin = dict(one, step_seconds=1.05, book_minutes=46, machine="C")  # 66 min
    fake.write_text(json.dumps({"probe": budget["probe"], "references": [one, twin]}))
    assert "predicted end of CI 66 min" in decide("--step-seconds", "1.025").stderr
    assert "predicted end of CI 84 min" in decide("--step-seconds", "1.3").stderr  # 66 x 1.3 / 1.025 (the line: 96)
