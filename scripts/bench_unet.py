"""Time the paper's U-Net on this machine: seconds per image per training step.

Configurations: the paper's network (filters 32, depth 5) at 512x256 and 256x128, with one output
channel (one network per structure, as the paper) and with 5 channels (one network for all LAT
structures), plus the ``ci`` profile's narrower network (filters 16) at 256x128. Each: batch 8,
``--warmup`` untimed steps (graph tracing / XLA compilation), then ``--steps`` timed
``train_on_batch`` steps with the paper's loss, and a timed ``predict`` of one batch.

Usage::

    python scripts/bench_unet.py [--steps 3] [--warmup 2] [--batch 8] [--out benchmarks/unet_speed.csv]
    python scripts/bench_unet.py --lite0 --batch 4 --out benchmarks/lite0_unet_speed.csv

``--precision mixed_bfloat16`` (or ``both``) times the same networks under Keras' mixed-precision
policy: bfloat16 convolutions with float32 weights, which pays on a CPU with bfloat16 instructions
(``amx_bf16`` or ``avx512_bf16`` in ``/proc/cpuinfo``: 3.8x per step on an Intel Xeon with AMX,
``benchmarks/unet_precision_xeon.csv``; 2.0x on a Zen 5 EPYC, ``benchmarks/unet_precision_zen5.csv``);
the book trains in float32 unless ``SPINELIB_PRECISION`` says otherwise.

``--lite0`` times the AASCE long runs' network instead (``spinelib.seg.unet.lite0_unet`` at 384x192,
ImageNet weights, Dice loss): as it is, with a stride-1 skip, and with a wider decoder.

Writes one row per configuration to the CSV (atomically). The machine is shared: the 1-minute
load average at the start of each row is recorded so noisy numbers can be spotted.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent

CONFIGS = [  # (height, width, filters, n_classes)
    (512, 256, 32, 1),
    (512, 256, 32, 5),
    (256, 128, 32, 1),
    (256, 128, 32, 5),
    (256, 128, 16, 1),
    (256, 128, 16, 5),  # the ci book's page 3 networks (5 LAT outputs)
]
PRECISIONS = ("float32", "mixed_bfloat16")

LITE0_CONFIGS = [  # (height, width, full_res_skip, decoder_filters); None = spinelib.seg.unet.LITE0_DECODER
    (384, 192, 0, None),
    (384, 192, 16, None),
    (384, 192, 16, (256, 128, 64, 32, 32)),
    (384, 192, 16, (192, 96, 48, 32, 24)),
]


def bench(height: int, width: int, filters: int | None, n_classes: int, batch: int, warmup: int, steps: int,
          lite0: tuple | None = None, precision: str = "float32") -> dict:
    """One configuration; ``lite0=(full_res_skip, decoder_filters)`` times ``lite0_unet`` instead;
    ``precision``: a Keras dtype policy (:data:`PRECISIONS`), set while the network is built."""
    import keras
    import numpy as np

    from spinelib.seg.losses import paper_loss, soft_dice_loss
    from spinelib.seg.unet import LITE0_DECODER, lite0_unet, unet

    from spinelib.core.config import use_training_precision

    keras.utils.set_random_seed(0)
    use_training_precision(precision)
    if lite0 is None:
        model = unet((height, width, 1), filters=filters, n_classes=n_classes)
        model.compile(keras.optimizers.Adam(1e-3), loss=paper_loss)
    else:
        skip, decoder = lite0
        model = lite0_unet((height, width, 1), n_classes=n_classes, full_res_skip=skip,
                           decoder_filters=tuple(decoder or LITE0_DECODER))
        model.compile(keras.optimizers.Adam(1e-3), loss=soft_dice_loss)
    use_training_precision("float32")
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
    row = {} if lite0 is None else {"network": "lite0_unet", "full_res_skip": lite0[0],
                                    "decoder_filters": "-".join(str(f) for f in (lite0[1] or LITE0_DECODER))}
    return row | {
        "height": height, "width": width, "filters": filters, "depth": 5, "n_classes": n_classes,
        "params": model.count_params(), "batch": batch, "timed_steps": steps,
        "warmup_seconds": round(warm, 2), "sec_per_step": round(step, 3),
        "sec_per_step_min": round(min(times), 3), "sec_per_step_max": round(max(times), 3),
        "sec_per_image_train": round(step / batch, 4), "sec_per_image_predict": round(infer / batch, 4),
        "jit_compile": bool(model.jit_compile), "precision": precision, "load_avg_1min": round(load, 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", default=None, help="CSV (default benchmarks/unet_speed.csv, "
                                                "with --lite0 benchmarks/lite0_unet_speed.csv)")
    ap.add_argument("--precision", choices=(*PRECISIONS, "both"), default="float32",
                    help="Keras dtype policy of the networks timed (both: each configuration twice)")
    ap.add_argument("--lite0", action="store_true", help="time the Lite0-encoder U-Net variants of the AASCE runs")
    args = ap.parse_args(argv)
    args.out = args.out or str(REPO / "benchmarks" / ("lite0_unet_speed.csv" if args.lite0 else "unet_speed.csv"))
    if args.steps < 1 or args.warmup < 1 or args.batch < 1:
        ap.error("--steps, --warmup and --batch must be positive")

    import pandas as pd
    import tensorflow as tf

    from spinelib.core.imageio import atomic_write_bytes

    rows = []
    t_all = time.perf_counter()
    configs = [(h, w, None, 1, (skip, dec)) for h, w, skip, dec in LITE0_CONFIGS] if args.lite0 else \
        [(h, w, f, c, None) for h, w, f, c in CONFIGS]
    precisions = PRECISIONS if args.precision == "both" else (args.precision,)
    for (h, w, f, c, lite0), precision in [(cfg, p) for cfg in configs for p in precisions]:
        row = bench(h, w, f, c, args.batch, args.warmup, args.steps, lite0=lite0, precision=precision)
        row.update({"cpu_count": os.cpu_count(), "tensorflow": tf.__version__, "machine": platform.machine()})
        rows.append(row)
        what = f"lite0 skip={lite0[0]} decoder={row['decoder_filters']}" if lite0 else f"filters={f} n_classes={c}"
        print(f"{h}x{w} {what} {precision}: {row['sec_per_step']:.2f} s/step, "
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
