"""Time the paper's U-Net on this machine: seconds per image per training step.

Configurations: the paper's network (filters 32, depth 5) at 512x256 and 256x128, with one output
channel (one network per structure, as the paper) and with 5 channels (one network for all LAT
structures), plus the ``ci`` profile's narrower network (filters 16) at 256x128. Each: batch 8,
``--warmup`` untimed steps (graph tracing / XLA compilation), then ``--steps`` timed
``train_on_batch`` steps with the paper's loss, and a timed ``predict`` of one batch.

Usage::

    python scripts/bench_unet.py [--steps 3] [--warmup 2] [--batch 8] [--out benchmarks/unet_speed.csv]

Writes one row per configuration to the CSV (atomically). The machine is shared: the 1-minute
load average at the start of each row is recorded so noisy numbers can be spotted.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONFIGS = [  # (height, width, filters, n_classes)
    (512, 256, 32, 1),
    (512, 256, 32, 5),
    (256, 128, 32, 1),
    (256, 128, 32, 5),
    (256, 128, 16, 1),
]


def bench(height: int, width: int, filters: int, n_classes: int, batch: int, warmup: int, steps: int) -> dict:
    import keras
    import numpy as np

    from spinelib.losses import paper_loss
    from spinelib.unet import unet

    keras.utils.set_random_seed(0)
    model = unet((height, width, 1), filters=filters, n_classes=n_classes)
    model.compile(keras.optimizers.Adam(1e-3), loss=paper_loss)
    rng = np.random.default_rng(0)
    x = rng.random((batch, height, width, 1), dtype=np.float32)
    y = (rng.random((batch, height, width, n_classes)) > 0.9).astype(np.float32)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    for _ in range(warmup):
        model.train_on_batch(x, y)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t)
    model.predict(x, batch_size=batch, verbose=0)  # warm-up of the predict function
    t = time.perf_counter()
    model.predict(x, batch_size=batch, verbose=0)
    infer = time.perf_counter() - t
    step = float(np.median(times))
    return {
        "height": height, "width": width, "filters": filters, "depth": 5, "n_classes": n_classes,
        "params": model.count_params(), "batch": batch, "timed_steps": steps,
        "warmup_seconds": round(warm, 2), "sec_per_step": round(step, 3),
        "sec_per_step_min": round(min(times), 3), "sec_per_step_max": round(max(times), 3),
        "sec_per_image_train": round(step / batch, 4), "sec_per_image_predict": round(infer / batch, 4),
        "jit_compile": bool(model.jit_compile), "load_avg_1min": round(load, 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "unet_speed.csv"))
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 1 or args.batch < 1:
        ap.error("--steps, --warmup and --batch must be positive")

    import pandas as pd
    import tensorflow as tf

    from spinelib.imageio import atomic_write_bytes

    rows = []
    t_all = time.perf_counter()
    for h, w, f, c in CONFIGS:
        row = bench(h, w, f, c, args.batch, args.warmup, args.steps)
        row.update({"cpu_count": os.cpu_count(), "tensorflow": tf.__version__, "machine": platform.machine()})
        rows.append(row)
        print(f"{h}x{w} filters={f} n_classes={c}: {row['sec_per_step']:.2f} s/step, "
              f"{row['sec_per_image_train']:.3f} s/image (train), {row['sec_per_image_predict']:.3f} s/image "
              f"(predict), warm-up {row['warmup_seconds']:.1f} s", flush=True)
    df = pd.DataFrame(rows)
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    atomic_write_bytes(args.out, buf.getvalue().encode())
    print(f"wrote {args.out} ({time.perf_counter() - t_all:.0f} s in total)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
