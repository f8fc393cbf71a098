"""Choose the book profile that CI can afford on this machine: ``ci`` when its predicted time fits.

CI (``.ci/run``) has 90 minutes for setup, the book build and the test suite. The ``ci`` book's time
depends on the CPU more than on anything else: the same build took 55 min on a Zen 5 EPYC (AVX-512,
TensorFlow's oneDNN on) and about 3 h on a Zen 3 one. So this script times a short probe of the
book's typical work (training steps of page 3's U-Net: 256x128, first width 16, batch norm, batch 4)
and scales the reference times in ``benchmarks/ci_budget.json``, which were measured on one machine
together with the probe, by how much slower or faster the probe runs here::

    predicted = elapsed + (book + render + checks + tests) x (probe here / probe there)

It prints ``ci`` when ``predicted + margin <= budget`` and ``tiny`` otherwise, on stdout (the only
thing there); why, on stderr. ``SPINELIB_CI_BOOK_PROFILE`` in ``.ci/run`` overrides the choice.

Examples::

    python scripts/choose_ci_profile.py                    # probe this machine (about 30 s)
    python scripts/choose_ci_profile.py --elapsed-minutes 5
    python scripts/choose_ci_profile.py --step-seconds 0.4 # decide for a known probe time, no probe
    python scripts/choose_ci_profile.py --measure-reference --book-minutes 55.3 --tests-minutes 17
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "benchmarks" / "ci_budget.json"
PROBE = {"size": [256, 128], "filters": 16, "batch_norm": True, "bn_momentum": 0.9, "batch": 4, "outputs": 5,
         "loss": "paper", "warm_steps": 2, "timed_steps": 12}
"""The probe: page 3's Table 3 network (profile ci) on random arrays, ``train_on_batch`` steps."""
REFERENCE_PARTS = ("book_minutes", "render_minutes", "checks_minutes", "tests_minutes")


def probe_step_seconds(probe: dict = PROBE) -> float:
    """Median seconds of one training step of the probe network (after ``warm_steps`` untimed ones)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from spinelib.seg.losses import get_loss
    from spinelib.seg.unet import unet

    h, w = probe["size"]
    rng = np.random.default_rng(0)
    x = rng.random((probe["batch"], h, w, 1), dtype=np.float32)
    y = (rng.random((probe["batch"], h, w, probe["outputs"])) > 0.9).astype(np.float32)
    model = unet((h, w, 1), filters=probe["filters"], n_classes=probe["outputs"], batch_norm=probe["batch_norm"],
                 bn_momentum=probe["bn_momentum"])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=get_loss(probe["loss"]))
    for _ in range(probe["warm_steps"]):
        model.train_on_batch(x, y)
    times = []
    for _ in range(probe["timed_steps"]):
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def predict_minutes(step_seconds: float, reference: dict, elapsed_minutes: float = 0.0) -> float:
    """Minutes CI will have spent at its end: ``elapsed_minutes`` plus the reference parts scaled by
    ``step_seconds / reference['step_seconds']``."""
    if not step_seconds > 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds!r}")
    ratio = step_seconds / float(reference["step_seconds"])
    return float(elapsed_minutes) + ratio * sum(float(reference[k]) for k in REFERENCE_PARTS)


def choose(step_seconds: float, reference: dict, elapsed_minutes: float = 0.0, budget_minutes: float = 90.0,
           margin_minutes: float = 15.0) -> tuple[str, str]:
    """``(profile, reason)``: ``"ci"`` when the predicted end plus the margin fits the budget."""
    predicted = predict_minutes(step_seconds, reference, elapsed_minutes)
    ratio = step_seconds / float(reference["step_seconds"])
    fits = predicted + margin_minutes <= budget_minutes
    reason = (f"probe {step_seconds:.3f} s per step here, {float(reference['step_seconds']):.3f} s on the reference "
              f"machine ({reference.get('machine', 'unknown')}): {ratio:.2f}x its time; predicted end of CI "
              f"{predicted:.0f} min (elapsed {elapsed_minutes:.0f} + book, HTML, checks and tests scaled), "
              f"+ {margin_minutes:.0f} min margin {'<=' if fits else '>'} {budget_minutes:.0f} min budget")
    return ("ci" if fits else "tiny"), reason


def machine() -> str:
    """The CPU's model name, family and vector width (:func:`spinelib.core.provenance.cpu_info`)."""
    from spinelib.core.provenance import cpu_info

    cpu = cpu_info()
    width = "AVX-512" if "avx512f" in cpu["flags"] else ("AVX2" if "avx2" in cpu["flags"] else "no AVX2")
    return f"{cpu['model']}, CPU family {cpu['family'] or '?'}, {width}, {cpu['cores']} cores"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, default=REFERENCE, help="reference times (default: %(default)s)")
    p.add_argument("--elapsed-minutes", type=float, default=0.0, help="minutes CI has already spent (default: 0)")
    p.add_argument("--budget-minutes", type=float, default=90.0, help="CI's limit (default: %(default)s)")
    p.add_argument("--margin-minutes", type=float, default=15.0,
                   help="kept free for noise and a slower machine than predicted (default: %(default)s)")
    p.add_argument("--step-seconds", type=float, help="decide for this probe time instead of measuring one")
    p.add_argument("--measure-reference", action="store_true",
                   help="probe this machine and write the reference file with the minutes given below")
    for part in REFERENCE_PARTS:
        p.add_argument(f"--{part.replace('_', '-')}", type=float, help="with --measure-reference: reference minutes")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.measure_reference:
        missing = [k for k in REFERENCE_PARTS if getattr(args, k) is None]
        if missing:
            raise SystemExit(f"--measure-reference needs {', '.join('--' + k.replace('_', '-') for k in missing)}")
        step = args.step_seconds or probe_step_seconds()
        ref = {"step_seconds": round(step, 4), "probe": PROBE, "machine": machine(),
               "measured": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               **{k: getattr(args, k) for k in REFERENCE_PARTS}}
        args.reference.write_text(json.dumps(ref, indent=1) + "\n")
        print(f"[ci-profile] wrote {args.reference}: {step:.3f} s per probe step on {ref['machine']}", file=sys.stderr)
        return 0
    if not args.reference.is_file():
        raise SystemExit(f"no reference file {args.reference}; make one with --measure-reference")
    reference = json.loads(args.reference.read_text())
    step = args.step_seconds if args.step_seconds is not None else probe_step_seconds(reference.get("probe", PROBE))
    profile, reason = choose(step, reference, args.elapsed_minutes, args.budget_minutes, args.margin_minutes)
    print(f"[ci-profile] {profile}: {reason}; this machine: {machine()}", file=sys.stderr)
    print(profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
