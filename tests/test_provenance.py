"""Provenance: dataset fingerprints, run information, results with sidecars, unchanged-input checks."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import spinelib.core.provenance as prov
from spinelib.core.config import REPO_ROOT, find_dataset
from spinelib.core.provenance import (
    InputsChangedError,
    assert_unchanged,
    data_fingerprint,
    fingerprint_details,
    run_info,
    sidecar_path,
    tree_hashes,
    write_results,
)


def _tree(root, files: dict[str, bytes]):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


FILES = {"Normal/P1/AP/AP.jpg": b"\xff\xd8 x-ray one", "Normal/P1/AP/Ap_Vertebra.png": b"\x89PNG mask",
         "labels.csv": b"a,b\n1,2\n", "empty.txt": b""}


# ---------------------------------------------------------------------------------- fingerprints


def test_fingerprint_depends_on_contents_and_names_not_times(tmp_path):
    a = _tree(tmp_path / "a", FILES)
    b = _tree(tmp_path / "b", FILES)
    os.utime(b / "labels.csv", (1_000_000, 1_000_000))  # another modification time
    fa = data_fingerprint(a)
    assert len(fa) == 64 and int(fa, 16) >= 0
    assert data_fingerprint(b) == fa  # a copy elsewhere, other mtimes: same fingerprint
    assert fingerprint_details(a) == {"fingerprint": fa, "method": "full", "n_files": 4,
                                      "bytes": sum(map(len, FILES.values())), "n_hashed": 4}

    (b / "labels.csv").write_bytes(b"a,b\n1,3\n")  # one byte, same size
    assert data_fingerprint(b) != fa
    (b / "labels.csv").write_bytes(FILES["labels.csv"])
    assert data_fingerprint(b) == fa
    (b / "labels.csv").rename(b / "labels2.csv")  # a rename
    assert data_fingerprint(b) != fa
    (b / "labels2.csv").rename(b / "labels.csv")
    (b / "new.txt").write_bytes(b"")  # an added empty file
    assert data_fingerprint(b) != fa


def test_fingerprint_of_a_file_and_errors(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"abc")
    assert data_fingerprint(p) != data_fingerprint(_tree(tmp_path / "t", {"x.bin": b"abd"}) / "x.bin")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data_fingerprint(tmp_path / "nowhere")
    with pytest.raises(TypeError):
        data_fingerprint(42)
    with pytest.raises(ValueError, match="max_files"):
        data_fingerprint(tmp_path, max_files=0)


def test_large_trees_use_head_and_tail(tmp_path, monkeypatch):
    big = bytes(range(256)) * (3 * prov.SAMPLE_BYTES // 256)  # 3 samples long
    root = _tree(tmp_path / "d", {"big.bin": big, "small.bin": b"xyz"})
    full = fingerprint_details(root)
    monkeypatch.setattr(prov, "FULL_HASH_MAX_BYTES", 1000)
    sampled = fingerprint_details(root)
    assert full["method"] == "full" and sampled["method"] == "sampled"
    assert sampled["fingerprint"] != full["fingerprint"]  # the method enters the hash
    middle = bytearray(big)
    middle[len(big) // 2] ^= 0xFF  # a byte in the middle: not sampled (documented)
    (root / "big.bin").write_bytes(bytes(middle))
    assert data_fingerprint(root) == sampled["fingerprint"]
    head = bytearray(big)
    head[10] ^= 0xFF
    (root / "big.bin").write_bytes(bytes(head))
    assert data_fingerprint(root) != sampled["fingerprint"]
    tail = bytearray(big)
    tail[-10] ^= 0xFF
    (root / "big.bin").write_bytes(bytes(tail))
    assert data_fingerprint(root) != sampled["fingerprint"]


def test_max_files_hashes_the_first_files_only(tmp_path):
    root = _tree(tmp_path / "d", {"a.txt": b"1", "b.txt": b"2", "c.txt": b"3"})
    before = data_fingerprint(root, max_files=1)
    assert fingerprint_details(root, max_files=1)["n_hashed"] == 1
    (root / "c.txt").write_bytes(b"4")  # same size, beyond max_files: not seen
    assert data_fingerprint(root, max_files=1) == before
    (root / "d.txt").write_bytes(b"5")  # a new file changes the count: seen
    assert data_fingerprint(root, max_files=1) != before


@pytest.mark.skipif(find_dataset("aasce") is None, reason="../shared/data/aasce is absent")
def test_real_aasce_fingerprint_is_stable_and_fast():
    import time

    root = find_dataset("aasce")
    t0 = time.perf_counter()
    d1 = fingerprint_details(root)
    seconds = time.perf_counter() - t0
    assert d1["method"] == "full" and d1["n_files"] > 481 * 2  # images and .mat files
    assert fingerprint_details(root) == d1
    assert seconds < 30, f"fingerprinting {d1['bytes'] / 2**20:.0f} MiB took {seconds:.1f} s"


# ---------------------------------------------------------------------------------- tree hashes


def test_tree_hashes_and_links(tmp_path):
    root = _tree(tmp_path / "d", FILES)
    os.symlink(tmp_path / "missing.png", root / "Normal" / "P1" / "AP" / "broken.png")
    os.symlink("..", root / "Normal" / "loop")
    h = tree_hashes(root)
    assert h["labels.csv"] == hashlib.sha256(FILES["labels.csv"]).hexdigest()
    assert h["Normal/P1/AP/broken.png"] == f"broken-link:{tmp_path / 'missing.png'}"
    assert h["Normal/loop"] == "dir-link:.."  # recorded, not followed
    assert set(h) == set(FILES) | {"Normal/P1/AP/broken.png", "Normal/loop"}
    assert tree_hashes(root / "labels.csv") == {"labels.csv": h["labels.csv"]}


def test_assert_unchanged(tmp_path):
    root = _tree(tmp_path / "d", FILES)
    other = _tree(tmp_path / "o", {"x.txt": b"x"})
    with assert_unchanged(root, other):
        (tmp_path / "outside.txt").write_text("writing elsewhere is fine")
        _ = (root / "labels.csv").read_bytes()
    with pytest.raises(InputsChangedError, match=r"changed labels.csv"):
        with assert_unchanged(root):
            (root / "labels.csv").write_bytes(b"changed")
    with pytest.raises(InputsChangedError, match=r"added Normal/P1/AP/Ap_Pedicle.png"):
        with assert_unchanged(other, root):
            (root / "Normal/P1/AP/Ap_Pedicle.png").write_bytes(b"")
    with pytest.raises(InputsChangedError, match=r"removed empty.txt"):
        with assert_unchanged(root):
            (root / "empty.txt").unlink()
    assert issubclass(InputsChangedError, AssertionError)


def test_assert_unchanged_when_the_block_raises(tmp_path):
    root = _tree(tmp_path / "d", {"a.txt": b"a"})
    with pytest.raises(KeyError):  # no change: the block's own error comes through
        with assert_unchanged(root):
            raise KeyError("boom")
    with pytest.raises(InputsChangedError) as e:  # a change and an error: both reported
        with assert_unchanged(root):
            (root / "a.txt").write_bytes(b"b")
            raise KeyError("boom")
    assert isinstance(e.value.__cause__, KeyError)
    with pytest.raises(ValueError, match="at least one root"):
        with assert_unchanged():
            pass
    with pytest.raises(FileNotFoundError):
        with assert_unchanged(tmp_path / "nowhere"):
            pass


# ---------------------------------------------------------------------------------- run info


def test_run_info(tmp_path):
    import numpy
    import sklearn

    data = _tree(tmp_path / "d", FILES)
    info = run_info("tiny", 7, {"clinical": data, "aasce": None})
    assert info["seed"] == 7 and info["profile"]["name"] == "tiny" and tuple(info["profile"]["seg_size"]) == (64, 32)
    assert info["packages"]["numpy"] == numpy.__version__
    assert info["packages"]["scikit-learn"] == sklearn.__version__
    for name in ("spinelib", "tensorflow", "keras", "numpy", "scikit-learn", "scikit-image"):
        assert info["packages"][name], name
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert info["platform"]["cpu_count"] == os.cpu_count()
    assert info["datasets"]["aasce"] is None
    assert info["datasets"]["clinical"]["fingerprint"] == data_fingerprint(data)
    assert info["datasets"]["clinical"]["n_files"] == 4
    stamp = dt.datetime.fromisoformat(info["timestamp_utc"])
    assert stamp.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - stamp).total_seconds()) < 60
    if (REPO_ROOT / ".git").is_dir():
        assert len(info["spinelib"]["git_commit"] or "") == 40
    json.dumps(info)  # JSON-ready as is
    none = run_info()
    assert none["profile"] is None and none["seed"] is None and none["datasets"] == {}


def test_run_info_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="'clinical'.*nowhere"):
        run_info("tiny", 0, {"clinical": tmp_path / "nowhere"})
    with pytest.raises(TypeError, match="seed"):
        run_info("tiny", "0", {})
    with pytest.raises(ValueError, match="unknown profile"):
        run_info("huge", 0, {})
    with pytest.raises(TypeError, match="data_dirs"):
        run_info("tiny", 0, [tmp_path])


def test_run_info_does_not_import_tensorflow():
    code = ("import sys; from spinelib.core.provenance import run_info; run_info('tiny', 0, {}); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------------- results


def test_write_results_csv_with_sidecar(tmp_path):
    info = run_info("tiny", 0, {})
    frame = pd.DataFrame({"dice": [0.5, np.nan], "n": [1, 2]}, index=pd.Index(["Ap_Vertebra", "Ap_Pedicle"], name="structure"))
    path = write_results(tmp_path / "out" / "dice.csv", frame, info)
    assert path == tmp_path / "out" / "dice.csv"
    back = pd.read_csv(path, index_col="structure")
    pd.testing.assert_frame_equal(back, frame)
    side = json.loads(sidecar_path(path).read_text())
    assert sidecar_path(path).name == "dice.run.json"
    assert side["results_file"] == "dice.csv"
    assert side["results_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert side["packages"] == info["packages"] and side["seed"] == 0
    # a dict of scalars is one row; a list of dicts is rows; a default index is not written
    write_results(tmp_path / "one.csv", {"auc": np.float32(0.75), "n": np.int64(3)}, info)
    assert (tmp_path / "one.csv").read_text() == "auc,n\n0.75,3\n"
    write_results(tmp_path / "rows.csv", [{"a": 1}, {"a": 2}], info)
    assert (tmp_path / "rows.csv").read_text() == "a\n1\n2\n"
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_write_results_json(tmp_path):
    info = {"seed": 1, "path": tmp_path, "when": dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)}
    obj = {"dice": np.float64(0.8), "per_case": np.array([0.7, np.nan]), "ids": ("a", "b"), "ok": np.bool_(True)}
    path = write_results(tmp_path / "summary.json", obj, info)
    assert json.loads(path.read_text()) == {"dice": 0.8, "per_case": [0.7, None], "ids": ["a", "b"], "ok": True}
    side = json.loads((tmp_path / "summary.run.json").read_text())
    assert side["path"] == str(tmp_path) and side["when"].startswith("2024-01-02")
    frame = pd.DataFrame({"x": [1, 2]}, index=pd.Index(["p", "q"], name="id"))
    write_results(tmp_path / "f.json", frame, info)
    assert json.loads((tmp_path / "f.json").read_text()) == [{"id": "p", "x": 1}, {"id": "q", "x": 2}]


def test_write_results_errors_and_atomicity(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"\.csv or \.json"):
        write_results(tmp_path / "x.xlsx", {"a": 1}, {})
    with pytest.raises(TypeError, match="info"):
        write_results(tmp_path / "x.csv", {"a": 1}, "info")
    with pytest.raises(TypeError, match="results must be"):
        write_results(tmp_path / "x.csv", 3.5, {})
    with pytest.raises(TypeError, match="cannot write a"):
        write_results(tmp_path / "x.json", {"a": object()}, {})
    target = write_results(tmp_path / "r.csv", {"a": 1}, {"run": 1})
    before, side_before = target.read_bytes(), sidecar_path(target).read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_results(target, {"a": 2}, {"run": 2})
    monkeypatch.undo()
    assert target.read_bytes() == before and sidecar_path(target).read_bytes() == side_before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_git_commit_reads_checkouts_and_worktrees_without_git(tmp_path):
    from spinelib.core.provenance import git_commit

    sha, other = "a" * 40, "b" * 40
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text(sha + "\n")
    assert git_commit(repo) == sha
    # a worktree: .git is a file naming its folder under the main repository's .git/worktrees
    wt_git = repo / ".git" / "worktrees" / "wt"
    wt_git.mkdir(parents=True)
    (wt_git / "HEAD").write_text("ref: refs/heads/feature\n")
    (wt_git / "commondir").write_text("../..\n")
    (repo / ".git" / "packed-refs").write_text(f"# pack-refs\n{other} refs/heads/feature\n")
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / ".git").write_text(f"gitdir: {wt_git}\n")
    assert git_commit(wt) == other
    assert git_commit(tmp_path / "not-a-repo") is None
