"""Does a training run repeat from one process to the next? The same run in fresh processes, one
after the other, and a fingerprint of each one's final weights (issue 16: page 3b's Dice moved
outside its own CI between two builds of the same code).

    python benchmarks/repeat_training.py random --runs 4
    python benchmarks/repeat_training.py page3b --runs 3 --epochs 2

``random``: ``train_segmentation`` on random arrays the size of page 3b's training set (378 X-rays of
256x128 plus 8 for validation), a 16-filter batch-norm U-Net, the paper's loss, batch 8, flip +
the default augmentation, ``--epochs`` epochs. ``page3b``: page 3b's own run (the ``ci`` plan's AASCE
data and ``recipe("aasce")``), cut to ``--epochs`` epochs (default: the plan's); needs the AASCE data.

Each run prints the MD5 of its weights' bytes (equal only when every weight is equal to the bit),
their float64 sum and its wall seconds; the report counts the distinct fingerprints and writes
``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def fingerprint(model) -> dict:
    weights = model.get_weights()
    md5 = hashlib.md5(b"".join(w.tobytes() for w in weights)).hexdigest()
    return {"md5": md5, "sum": float(sum(float(w.astype("float64").sum()) for w in weights))}


def run_random(epochs: int) -> dict:
    import numpy as np

    from spinelib.core.config import set_seed
    from spinelib.seg.training import train_segmentation
    from spinelib.seg.unet import unet

    rng = np.random.default_rng(0)
    n, h, w = 386, 256, 128
    x = rng.random((n, h, w, 1), dtype=np.float32)
    y = (rng.random((n, h, w, 1)) > 0.8).astype(np.float32)
    set_seed(0)
    model = unet((h, w, 1), filters=16, batch_norm=True, bn_momentum=0.9)
    with tempfile.TemporaryDirectory() as d:
        train_segmentation(model, x[:-8], y[:-8], x[-8:], y[-8:], loss="paper", epochs=epochs, batch_size=8,
                           out_dir=d, verbose=0, augment={"flip": True}, seed=0)
    return fingerprint(model)


def run_page3b(epochs: int | None, aasce_dir: str | None) -> dict:
    from spinelib.core import config, plans
    from spinelib.core.config import get_profile
    from spinelib.data import segdata
    from spinelib.seg import experiment

    root = config.find_dataset("aasce", aasce_dir)
    if root is None:
        raise SystemExit("page3b needs the AASCE data (../shared/data/aasce or --aasce-dir)")
    plan = plans.page_plan(get_profile("ci"))
    config.set_seed(0)
    data = segdata.prepare_aasce_data(root, plan.aasce_size, max_images=plan.aasce_images, seed=0)
    recipe = dict(plan.recipe("aasce"))
    if epochs is not None:
        recipe.update(epochs=epochs, patience=epochs)
    with tempfile.TemporaryDirectory() as d:
        res = experiment.run_experiment(data, Path(d), "aasce", n_boot=10, **recipe)
        out = fingerprint(res.load_model("last"))
    out["val_dice"] = float(res.history["val_dice"].iloc[-1])
    return out


def child(args) -> None:
    t0 = time.perf_counter()
    out = run_random(args.epochs or 1) if args.what == "random" else run_page3b(args.epochs, args.aasce_dir)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print("RESULT " + json.dumps(out), flush=True)


def report(args, runs: list[dict]) -> dict:
    from spinelib.core.provenance import cpu_info, git_commit

    cpu = cpu_info()
    distinct = sorted({r["md5"] for r in runs})
    record = {
        "what": args.what, "epochs": args.epochs, "runs": runs, "distinct_weights": len(distinct),
        "machine": f"{cpu['model']}, CPU family {cpu['family'] or '?'}, {cpu['cores']} cores",
        "commit": git_commit(ROOT), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "precision": os.environ.get("SPINELIB_PRECISION", "float32 (default)"),
    }
    lines = [f"# Repeatability: `{args.what}`, {len(runs)} fresh processes", "",
             f"{record['date']}, {record['machine']}, commit `{record['commit']}`, "
             f"`python benchmarks/repeat_training.py {args.what} --runs {args.runs}"
             + (f" --epochs {args.epochs}" if args.epochs else "") + "`.", "",
             f"**{len(distinct)} distinct final weights in {len(runs)} runs.**", "",
             "| run | weights (MD5) | weight sum | " + ("last val Dice | " if args.what == "page3b" else "") + "seconds |",
             "|---|---|---|" + ("---|" if args.what == "page3b" else "") + "---|"]
    for i, r in enumerate(runs, 1):
        dice = f"{r['val_dice']:.6f} | " if "val_dice" in r else ""
        lines.append(f"| {i} | `{r['md5'][:12]}` | {r['sum']:.10g} | {dice}{r['seconds']} |")
    Path(f"{args.out}.json").write_text(json.dumps(record, indent=2) + "\n")
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("random", "page3b"))
    ap.add_argument("--runs", type=int, default=3, help="fresh processes (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of each run (random: 1; page3b: the plan's)")
    ap.add_argument("--aasce-dir", default=None)
    ap.add_argument("--out", default=None, help="report path without suffix (default: benchmarks/repeat_<what>)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.runs < 2 and not args.child:
        ap.error("--runs must be at least 2 (one run cannot repeat)")
    if args.child:
        child(args)
        return 0
    args.out = args.out or str(HERE / f"repeat_{args.what}")
    cmd = [sys.executable, __file__, args.what, "--child"] + (["--epochs", str(args.epochs)] if args.epochs else []) \
        + (["--aasce-dir", args.aasce_dir] if args.aasce_dir else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    runs = []
    for i in range(args.runs):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not found:
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"run {i + 1} failed (exit {proc.returncode})")
        runs.append(json.loads(found[-1][7:]))
        print(f"run {i + 1}/{args.runs}: {runs[-1]}", flush=True)
    record = report(args, runs)
    print(f"{record['distinct_weights']} distinct final weights in {len(runs)} runs -> {args.out}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
