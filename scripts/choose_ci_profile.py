"""Choose the book profile that CI can afford on this machine: ``ci`` when its predicted time fits.

CI (``.ci/run``) has 90 minutes for setup, the book build and the test suite. The ``ci`` book's time
depends on the CPU more than on anything else, but not in proportion to any one benchmark: its U-Net
training runs about 3.6x slower on a Zen 3 EPYC (AVX2) than on a Zen 5 one (AVX-512, TensorFlow's
oneDNN on), the rest of the book (NumPy, pandas, the classifiers) much less. So this script times a
short probe of the book's typical training work (steps of page 3's U-Net: 256x128, first width 16,
batch norm, batch 4) and reads the book's time off the references in ``benchmarks/ci_budget.json``:
whole CI runs (book, HTML, checks, tests) measured on machines of known probe time. Between two
references the prediction is the straight line through them; beyond them it is the larger of that
line and the nearest reference scaled by the probe (a machine faster than every reference is not
assumed to be faster than the line says; a slower one is assumed at least as slow as the probe says).
References whose probes lie within 10 % of each other count as one point, at their mean probe and the
longest of their times: two machines of one probe speed differ by their other work (an Intel Xeon and
a Zen 5 EPYC, both AVX-512, probed 0.246 and 0.248 s and took 77 and 82 min), which is noise to the
line, not a slope::

    predicted = elapsed + line(probe here) through (probe there, CI minutes there)

It prints ``ci`` when ``predicted + margin <= budget`` and ``tiny`` otherwise, on stdout (the only
thing there); why, on stderr. ``SPINELIB_CI_BOOK_PROFILE`` in ``.ci/run`` overrides the choice.

Examples::

    python scripts/choose_ci_profile.py                    # probe this machine (about 30 s)
    python scripts/choose_ci_profile.py --elapsed-minutes 5
    python scripts/choose_ci_profile.py --step-seconds 0.4 # decide for a known probe time, no probe
    python scripts/choose_ci_profile.py --measure-reference --book-minutes 55.3 --render-minutes 0.2 \\
        --checks-minutes 0.3 --tests-minutes 17 --how "the ci book from scratch, 09:17-10:13 UTC"
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


def references(budget: dict) -> list[dict]:
    """The reference runs of a budget file, fastest probe first (a file of one run without a
    ``references`` list is that one run)."""
    refs = budget.get("references", [budget])
    for ref in refs:
        missing = [k for k in ("step_seconds", *REFERENCE_PARTS) if k not in ref]
        if missing:
            raise ValueError(f"a reference run lacks {', '.join(missing)}: {ref.get('machine', ref)}")
        if not float(ref["step_seconds"]) > 0:
            raise ValueError(f"a reference's step_seconds must be positive, got {ref['step_seconds']!r}")
    return sorted(refs, key=lambda r: float(r["step_seconds"]))


def ci_minutes(ref: dict) -> float:
    """The minutes of one reference run: book, HTML, checks and tests."""
    return sum(float(ref[k]) for k in REFERENCE_PARTS)


SAME_PROBE = 0.10
"""References whose probe times differ by at most this fraction of the faster one are one point."""


def reference_points(refs: list[dict]) -> tuple[list[float], list[float]]:
    """``(probe seconds, CI minutes)`` of the points the prediction is read off, fastest first: each
    run of references (``refs`` sorted by probe) within :data:`SAME_PROBE` of its group's fastest
    is one point at their mean probe time and their longest CI time."""
    groups: list[list[dict]] = []
    for ref in refs:
        if groups and float(ref["step_seconds"]) <= float(groups[-1][0]["step_seconds"]) * (1 + SAME_PROBE):
            groups[-1].append(ref)
        else:
            groups.append([ref])
    steps = [sum(float(r["step_seconds"]) for r in g) / len(g) for g in groups]
    return steps, [max(ci_minutes(r) for r in g) for g in groups]


def predict_minutes(step_seconds: float, budget: dict, elapsed_minutes: float = 0.0) -> float:
    """Minutes CI will have spent at its end: ``elapsed_minutes`` plus the reference runs' minutes at
    this probe time (the module's rule: the line through the two nearest references; beyond them,
    never less than the nearest reference scaled by the probe)."""
    if not step_seconds > 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds!r}")
    steps, minutes = reference_points(references(budget))
    nearest = min(range(len(steps)), key=lambda i: abs(steps[i] - step_seconds))
    scaled = minutes[nearest] * step_seconds / steps[nearest]
    if len(steps) == 1:
        return float(elapsed_minutes) + scaled
    i = min(max(sum(s <= step_seconds for s in steps) - 1, 0), len(steps) - 2)  # the segment [i, i + 1]
    slope = max(0.0, (minutes[i + 1] - minutes[i]) / (steps[i + 1] - steps[i]))
    line = minutes[i] + slope * (step_seconds - steps[i])
    inside = steps[0] <= step_seconds <= steps[-1]
    return float(elapsed_minutes) + (line if inside else max(line, scaled))


def choose(step_seconds: float, budget: dict, elapsed_minutes: float = 0.0, budget_minutes: float = 90.0,
           margin_minutes: float = 15.0) -> tuple[str, str]:
    """``(profile, reason)``: ``"ci"`` when the predicted end plus the margin fits the budget."""
    predicted = predict_minutes(step_seconds, budget, elapsed_minutes)
    fits = predicted + margin_minutes <= budget_minutes
    known = "; ".join(f"{float(r['step_seconds']):.3f} s -> {ci_minutes(r):.0f} min ({r.get('machine', 'unknown')})"
                      for r in references(budget))
    reason = (f"probe {step_seconds:.3f} s per step here; references {known}; predicted end of CI "
              f"{predicted:.0f} min (elapsed {elapsed_minutes:.0f} + book, HTML, checks and tests), "
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
    p.add_argument("--how", default="", help="with --measure-reference: how the minutes were measured")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.measure_reference:
        missing = [k for k in REFERENCE_PARTS if getattr(args, k) is None]
        if missing:
            raise SystemExit(f"--measure-reference needs {', '.join('--' + k.replace('_', '-') for k in missing)}")
        step = args.step_seconds or probe_step_seconds()
        ref = {"machine": machine(), "measured": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "step_seconds": round(step, 4), **{k: getattr(args, k) for k in REFERENCE_PARTS}, "how": args.how}
        old = json.loads(args.reference.read_text()) if args.reference.is_file() else {}
        kept = [r for r in (references(old) if old else []) if r.get("machine") != ref["machine"]]
        budget = {"probe": old.get("probe", PROBE), "references": sorted(kept + [ref], key=lambda r: r["step_seconds"])}
        args.reference.write_text(json.dumps(budget, indent=1, ensure_ascii=False) + "\n")
        print(f"[ci-profile] wrote {args.reference}: {step:.3f} s per probe step on {ref['machine']} "
              f"({len(kept)} other reference(s) kept)", file=sys.stderr)
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
