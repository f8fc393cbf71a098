"""Provenance: what data, code and settings produced a result, and proof that inputs stayed intact.

- :func:`data_fingerprint` - one SHA-256 for a dataset folder (or file), from its contents;
- :func:`run_info` - package versions, platform, seed, profile and dataset fingerprints of a run;
- :func:`write_results` - a results table written atomically with a ``<name>.run.json`` sidecar;
- :func:`tree_hashes` and :func:`assert_unchanged` - every file's SHA-256 under a folder, and a
  context manager that fails if a block added, removed or changed any file under the given roots.

The fingerprint (``sha256`` over a canonical byte stream) is

.. math:: F = \\operatorname{SHA256}\\big(m \\,\\|\\, n \\,\\|\\, B \\,\\|\\,
          \\textstyle\\big\\Vert_{f \\in \\text{files, sorted by relative path}}
          (\\text{relpath}_f \\,\\|\\, \\text{size}_f \\,\\|\\, c_f)\\big)

with :math:`m` the method, :math:`n` the number of files and :math:`B` their total size. For a
tree of at most :data:`FULL_HASH_MAX_BYTES` bytes (``method="full"``), :math:`c_f` is the SHA-256
of the whole file: any change of any byte changes :math:`F`. A larger tree (``method="sampled"``)
uses the first and last :data:`SAMPLE_BYTES` bytes of each file instead, so a 10 GB dataset is
fingerprinted in seconds; a change of size, name, head or tail is seen, one in the middle of a
large file may not be. Modification times never enter: a copy of the same data has the same
fingerprint.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import os
import platform
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FULL_HASH_MAX_BYTES: int = 256 * 2**20
"""Trees up to this total size (256 MiB) are fingerprinted from their full contents."""

SAMPLE_BYTES: int = 64 * 2**10
"""Bytes hashed from the start and from the end of each file of a larger tree (64 KiB)."""

PACKAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("spinelib", ("spinelib",)),
    ("tensorflow", ("tensorflow", "tensorflow-cpu")),
    ("keras", ("keras",)),
    ("numpy", ("numpy",)),
    ("scipy", ("scipy",)),
    ("scikit-learn", ("scikit-learn",)),
    ("scikit-image", ("scikit-image",)),
    ("pandas", ("pandas",)),
    ("pillow", ("pillow",)),
    ("pydicom", ("pydicom",)),
)
"""(name in the report, distribution names tried in order) of the versions :func:`run_info` records."""

_CHUNK = 2**20


# --------------------------------------------------------------------------------------------
# walking a tree


@dataclass(frozen=True)
class _Entry:
    rel: str  # relative POSIX path ('.' -> the file's own name when the root is a file)
    path: Path
    kind: str  # "file", "broken-link", "dir-link"
    size: int
    link: str = ""


def _walk(root: Path) -> list[_Entry]:
    """Every file under ``root`` sorted by relative path; links to files are read through, links to
    folders are recorded but not followed (no loops), broken links are recorded by their target."""
    if not root.exists() and not root.is_symlink():
        raise FileNotFoundError(f"{root} does not exist")
    if not root.is_dir():
        return [_file_entry(root, root.name)]
    out: list[_Entry] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        for name in dirnames:
            p = d / name
            if p.is_symlink():
                out.append(_Entry(p.relative_to(root).as_posix(), p, "dir-link", 0, os.readlink(p)))
        for name in filenames:
            p = d / name
            out.append(_file_entry(p, p.relative_to(root).as_posix()))
    return sorted(out, key=lambda e: e.rel)


def _file_entry(p: Path, rel: str) -> _Entry:
    if p.is_symlink() and not p.exists():
        return _Entry(rel, p, "broken-link", 0, os.readlink(p))
    return _Entry(rel, p, "file", p.stat().st_size)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _sha256_sampled(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            f.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def _entry_digest(e: _Entry, sampled: bool = False) -> str:
    if e.kind == "broken-link":
        return f"broken-link:{e.link}"
    if e.kind == "dir-link":
        return f"dir-link:{e.link}"
    return _sha256_sampled(e.path, e.size) if sampled else _sha256_file(e.path)


# --------------------------------------------------------------------------------------------
# fingerprints


def fingerprint_details(path: str | os.PathLike, max_files: int | None = None) -> dict:
    """:func:`data_fingerprint` with what went into it: ``{"fingerprint", "method", "n_files",
    "bytes", "n_hashed"}``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}: {path!r}")
    if max_files is not None and (not isinstance(max_files, (int, np.integer)) or max_files < 1):
        raise ValueError(f"max_files must be a positive integer or None, got {max_files!r}")
    entries = _walk(Path(path))
    total = sum(e.size for e in entries)
    method = "full" if total <= FULL_HASH_MAX_BYTES else "sampled"
    hashed = entries if max_files is None else entries[: int(max_files)]
    h = hashlib.sha256(f"spinelib-fingerprint-v1\0{method}\0{len(entries)}\0{total}\0".encode())
    for e in hashed:
        h.update(f"{e.rel}\0{e.size}\0{_entry_digest(e, sampled=method == 'sampled')}\n".encode())
    return {"fingerprint": h.hexdigest(), "method": method, "n_files": len(entries), "bytes": total,
            "n_hashed": len(hashed)}


def data_fingerprint(path: str | os.PathLike, max_files: int | None = None) -> str:
    """SHA-256 (hex) of a dataset folder or file from its contents (see the module docstring).

    Trees up to :data:`FULL_HASH_MAX_BYTES` hash every byte; larger ones the relative paths, sizes
    and the first and last :data:`SAMPLE_BYTES` of each file. With ``max_files``, only the first
    ``max_files`` files (sorted by relative path) are hashed, the count and total size of all files
    still enter. Same data -> same fingerprint, on any machine, whatever the modification times.
    """
    return fingerprint_details(path, max_files)["fingerprint"]


def tree_hashes(root: str | os.PathLike) -> dict[str, str]:
    """``{relative path: sha256 of the contents}`` of every file under ``root`` (a file: its name).

    Broken links map to ``'broken-link:<target>'`` and links to folders (not followed) to
    ``'dir-link:<target>'``.
    """
    return {e.rel: _entry_digest(e) for e in _walk(Path(root))}


class InputsChangedError(AssertionError):
    """Raised by :func:`assert_unchanged` when files under a protected root changed."""


def _diff(before: dict[str, str], after: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return added, removed, changed


@contextmanager
def assert_unchanged(*roots: str | os.PathLike) -> Iterator[None]:
    """Fail if the block adds, removes or changes any file under any of ``roots``.

    Every file's SHA-256 is taken before and after (:func:`tree_hashes`); a difference raises
    :class:`InputsChangedError` (an ``AssertionError``) listing the files. If the block itself
    raises, that exception propagates, chained to an :class:`InputsChangedError` when inputs
    changed too.

    >>> with assert_unchanged(dataset_dir):           # doctest: +SKIP
    ...     ds = scan_clinical(dataset_dir)
    """
    if not roots:
        raise ValueError("assert_unchanged needs at least one root")
    paths = [Path(r) for r in roots]
    before = {p: tree_hashes(p) for p in paths}

    def check() -> None:
        lines = []
        for p in paths:
            after = tree_hashes(p) if (p.exists() or p.is_symlink()) else {}
            for what, names in zip(("added", "removed", "changed"), _diff(before[p], after)):
                if names:
                    shown = ", ".join(names[:10]) + (f" ... ({len(names)} in all)" if len(names) > 10 else "")
                    lines.append(f"{p}: {what} {shown}")
        if lines:
            raise InputsChangedError("input files were modified: " + "; ".join(lines))

    try:
        yield
    except BaseException as e:
        try:
            check()
        except InputsChangedError as changed:
            raise changed from e
        raise
    check()


# --------------------------------------------------------------------------------------------
# run information


def _version(dists: tuple[str, ...]) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for d in dists:
        try:
            return version(d)
        except PackageNotFoundError:
            continue
    return None


def _read_git_head(git: Path) -> str | None:
    """The commit ``.git/HEAD`` names, read from the files (a worktree's ``.git`` file is followed)."""
    if git.is_file():  # a worktree: "gitdir: <path>"
        text = git.read_text().strip()
        if not text.startswith("gitdir:"):
            return None
        git = (git.parent / text.split(":", 1)[1].strip()).resolve()
        common = git / "commondir"
        refs = (git / common.read_text().strip()).resolve() if common.is_file() else git
    else:
        refs = git
    head = (git / "HEAD").read_text().strip()
    if not head.startswith("ref:"):
        return head or None
    ref = head.split(":", 1)[1].strip()
    if (refs / ref).is_file():
        return (refs / ref).read_text().strip()
    packed = refs / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0]
    return None


def git_commit(repo: str | os.PathLike, mark_dirty: bool = False) -> str | None:
    """The checked-out commit of ``repo``, read from ``.git`` without running git (None when
    unknown). With ``mark_dirty`` (the long-run records), ``git status`` is asked whether tracked
    files differ, and ``" (with uncommitted changes)"`` is appended when they do."""
    import subprocess

    try:
        commit = _read_git_head(Path(repo) / ".git")
    except OSError:
        return None
    if commit is None or not mark_dirty:
        return commit
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return commit
    return commit + (" (with uncommitted changes)" if dirty else "")


def cpu_info() -> dict:
    """The CPU as ``/proc/cpuinfo`` and the scheduler describe it: ``model``, ``family``,
    ``model_number``, ``cores`` (this process may use), ``clock_mhz`` (the clock the kernel reports;
    NaN when unknown), ``flags`` (set), ``float32_lanes`` (16 with AVX-512, 8 with AVX/AVX2, else 4) and
    ``fma_units_per_core`` (2 with FMA: AMD Zen 2-4 and Intel since Haswell have two 256-bit FMA pipes)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lanes = 16 if "avx512f" in flags else 8 if flags & {"avx", "avx2"} else 4
    return {"model": info.get("model name", platform.processor()), "family": info.get("cpu family"),
            "model_number": info.get("model"), "cores": cores, "clock_mhz": float(info.get("cpu MHz", "nan")),
            "flags": flags, "float32_lanes": lanes, "fma_units_per_core": 2 if "fma" in flags else 1}


def run_info(profile=None, seed: int | None = None,
             data_dirs: Mapping[str, str | os.PathLike | None] | None = None) -> dict:
    """Everything needed to say what produced a result (JSON-ready).

    ``{"spinelib": {"version", "git_commit"}, "packages": {name: version}, "python",
    "platform": {"system", "release", "machine", "processor", "cpu_count"}, "seed",
    "profile": {"name", ...fields} or None, "datasets": {name: {"path", "fingerprint", "method",
    "n_files", "bytes", "n_hashed"} or None}, "timestamp_utc"}``.

    ``profile`` is a profile name, a :class:`spinelib.core.config.Profile` or None; a dataset given as
    ``None`` (not on this machine) is recorded as None; a given path that does not exist raises
    ``FileNotFoundError``. No package is imported (versions come from the installed metadata).
    """
    from spinelib import __version__
    from spinelib.core.config import REPO_ROOT, Profile, get_profile

    if profile is not None and not isinstance(profile, Profile):
        profile = get_profile(profile)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be an integer or None, got {type(seed).__name__}: {seed!r}")
    if data_dirs is not None and not isinstance(data_dirs, Mapping):
        raise TypeError(f"data_dirs must be a dict of name -> path or None, got {type(data_dirs).__name__}")
    datasets: dict[str, dict | None] = {}
    for name, d in (data_dirs or {}).items():
        if d is None:
            datasets[name] = None
            continue
        p = Path(d)
        if not p.exists():
            raise FileNotFoundError(f"dataset {name!r}: {p} does not exist")
        datasets[name] = {"path": str(p.resolve()), **fingerprint_details(p)}
    packages = {name: _version(dists) for name, dists in PACKAGES}
    if packages["spinelib"] is None:
        packages["spinelib"] = __version__
    return {
        "spinelib": {"version": __version__, "git_commit": git_commit(REPO_ROOT)},
        "packages": packages,
        "python": platform.python_version(),
        "platform": {"system": platform.system(), "release": platform.release(),
                     "machine": platform.machine(), "processor": platform.processor(),
                     "cpu_count": os.cpu_count(), "executable": sys.executable},
        "seed": None if seed is None else int(seed),
        "profile": None if profile is None else profile.to_dict(),
        "datasets": datasets,
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------------
# writing results


def to_jsonable(obj):
    """``obj`` with NumPy scalars/arrays, paths, tuples, sets, DataFrames and non-finite floats
    turned into plain JSON values (NaN and infinities become ``null``)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, pd.Series):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in (sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj)]
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    raise TypeError(f"cannot write a {type(obj).__name__} to JSON: {obj!r}")


def _as_frame(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    if isinstance(data, Mapping):
        if all(np.ndim(v) == 0 for v in data.values()):
            return pd.DataFrame([dict(data)])  # one row of scalars
        return pd.DataFrame(dict(data))
    if isinstance(data, (list, tuple)):
        return pd.DataFrame(list(data))
    raise TypeError(f"results must be a DataFrame, a dict or a list of dicts, got {type(data).__name__}")


def sidecar_path(path: str | os.PathLike) -> Path:
    """``results/dice.csv`` -> ``results/dice.run.json``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.run.json")


def write_results(path: str | os.PathLike, frame_or_dict, info: Mapping) -> Path:
    """Write results to ``path`` (``.csv`` or ``.json``) and ``info`` to ``<stem>.run.json`` beside
    it, both atomically (:func:`spinelib.core.imageio.atomic_write_bytes`); returns ``path``.

    - ``.csv``: a DataFrame (its index kept when it is not the default 0..n-1), a dict of columns,
      a dict of scalars (one row) or a list of row dicts;
    - ``.json``: a DataFrame as a list of row records, anything else as JSON (NumPy values,
      paths and NaN handled by :func:`to_jsonable`).

    The sidecar is ``info`` plus ``results_file`` (the file name) and ``results_sha256`` (of the
    bytes written), so a results file and its sidecar can be checked to belong together.
    """
    from spinelib.core.imageio import atomic_write_bytes

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}: {path!r}")
    if not isinstance(info, Mapping):
        raise TypeError(f"info must be a dict (e.g. from run_info()), got {type(info).__name__}")
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        frame = _as_frame(frame_or_dict)
        keep_index = not (isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0
                          and frame.index.step == 1 and frame.index.name is None)
        buf = io.StringIO()
        frame.to_csv(buf, index=keep_index, lineterminator="\n")
        data = buf.getvalue().encode()
    elif suffix == ".json":
        obj = frame_or_dict
        if isinstance(obj, pd.DataFrame) and not isinstance(obj.index, pd.RangeIndex):
            obj = obj.reset_index()
        data = (json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n").encode()
    else:
        raise ValueError(f"cannot write results to {p}: use a .csv or .json file name")
    sidecar = {**to_jsonable(dict(info)), "results_file": p.name,
               "results_sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_bytes(p, data)
    atomic_write_bytes(sidecar_path(p), (json.dumps(sidecar, indent=2, allow_nan=False) + "\n").encode())
    return p


def put_between_markers(page: str | os.PathLike, md: str, markers: tuple[str, str]) -> None:
    """Replace what lies between ``page``'s two ``markers`` (HTML comments, each once, in order) by
    the Markdown ``md``, its headings one level down: how a benchmark's record reaches its book page."""
    page = Path(page)
    text = page.read_text()
    start, end = markers
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"{page} needs one {start} before one {end}")
    before, rest = text.split(start)
    shifted = "\n".join("#" + line if line.startswith("#") else line for line in md.splitlines())
    page.write_text(f"{before}{start}\n{shifted}\n{end}{rest.split(end)[1]}")
