"""Inference and training speed of what ships, against issue 16's targets, on this machine.

Measured, each in one run and one process per part (so that peak memory is the part's own):

1. **The shipped landmark model** (:func:`spinelib.landmarks.model.load_model`) on real AASCE X-rays
   (synthetic AP X-rays when the AASCE folder is absent): seconds to load, the first
   ``predict_file`` (graph tracing included), then the median per X-ray in steady state, split into
   reading, resizing, the network (both flip variants) and the rest (decoding, Cobb angles); beside
   it the network called eagerly, as ``predict_file`` did before :func:`spinelib.seg.inference.compiled_forward`.
   Target: <= 0.5 s per X-ray.
2. **One patient's full inference** at 512x256: both views read and resized, one multi-output U-Net
   per view (3 AP and 5 LAT masks; :func:`spinelib.seg.unet.unet` with batch normalisation, the book's
   recipe) through :func:`spinelib.seg.inference.predict`, the three measured masks brought to the
   measuring frame, :func:`spinelib.geometry.morphometrics.patient_features` and a logistic
   classifier's probability (page 5's segment-then-measure route). For each first-level width in
   ``--filters`` (16: the book's measuring U-Nets; 32: the paper's network), with and without flip
   TTA. The networks' weights are untrained (time does not depend on the values), so the masks
   measured are the patient's true ones in the same frame. Target: <= 1.0 s per patient.
3. **Training at 512x256, batch 8**: the paper's U-Net (filters 32, one output) stepped with
   ``train_on_batch`` and the paper's loss, seconds per step, achieved convolution FLOP/s, and the
   process's peak resident memory (target: <= 4 GB); then one epoch through the book's
   :func:`spinelib.seg.training.train_segmentation` (``tf.data``, checkpoints) for its peak memory:
   the book's 5-output batch-norm network, the same with ``accumulate=2``, the paper's network, and
   the 5-output network under ``mixed_bfloat16`` (bfloat16 activations: what ``SPINELIB_PRECISION=auto``
   trains in on a CPU with bfloat16 instructions).
4. **The CPU's peak**: the nominal figure cores x FMA units x float32 lanes x 2 x clock, at the clock
   ``/proc/cpuinfo`` reports and at ``--boost-ghz``, and a measured one: the best of large float32
   matrix products in TensorFlow (the same oneDNN/Eigen kernels the convolutions use). Target for
   training FLOP/s: >= 65 % of peak; the record says of which.

Usage (from the repository root; about 5 minutes on 2 idle cores)::

    python benchmarks/inference_speed.py                 # writes benchmarks/inference_speed.{json,md}
    python benchmarks/inference_speed.py --report-only   # Markdown again from the JSON

The 1-minute load average is recorded at the start and end of each part: above the core count the
machine was shared and the times are inflated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "inference_speed"
DEFAULT_AASCE = REPO.parent / "shared" / "data" / "aasce"
PARTS = ("landmarks", "patient", "training", "layers", "peak")
PAGE = REPO / "docs" / "benchmarks.md"
PAGE_MARKERS = ("<!-- inference:start -->", "<!-- inference:end -->")
TARGETS = {"landmark_seconds": 0.5, "patient_seconds": 1.0, "training_peak_fraction": 0.65, "training_memory_mb": 4096}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def median_seconds(fn, n: int, warm: int = 1) -> dict:
    for _ in range(warm):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median": round(float(np.median(times)), 4), "min": round(float(np.min(times)), 4), "n": n}


def aasce_files(root: Path, n: int) -> list[Path]:
    from spinelib.data.aasce import load_aasce

    frame = load_aasce(root, max_images=n)
    return [Path(p) for p in frame["image_path"]]


def synthetic_root(n_patients: int) -> Path:
    """A synthetic dataset in a temporary folder that is removed when the process exits."""
    import atexit
    import shutil

    from spinelib.data.synthetic.generator import generate_dataset

    tmp = Path(tempfile.mkdtemp(prefix="spinelib-bench-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    generate_dataset(tmp / "synthetic", n_patients=n_patients, seed=7, progress=False)
    return tmp / "synthetic"


# ---------------------------------------------------------------------------------------------
# 1. the shipped landmark model


def part_landmarks(args) -> dict:
    import tensorflow as tf

    from spinelib.core.imageio import read_xray, resize_image, to_uint8
    from spinelib.geometry.cobb import cobb_angles
    from spinelib.landmarks import encoding
    from spinelib.landmarks.model import load_model
    from spinelib.landmarks.train import as_unit
    from spinelib.seg.inference import compiled_forward

    root = Path(args.aasce)
    if (root / "labels").is_dir():
        files, source = aasce_files(root, args.xrays), f"real AASCE X-rays ({root.name})"
    else:
        sroot = synthetic_root(args.xrays)
        files, source = sorted(sroot.rglob("*AP*.png"))[: args.xrays], "synthetic AP X-rays (no AASCE folder)"
    start = load()
    t = time.perf_counter()
    model = load_model()
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    model.predict_file(files[0])
    first_s = time.perf_counter() - t
    per, shapes, stages = [], [], {"read": [], "resize": [], "network": [], "network_eager": [], "rest": []}
    forward = compiled_forward(model.network)
    for f in files:
        per.append(median_seconds(lambda: model.predict_file(f), args.repeats, warm=0)["median"])
        t0 = time.perf_counter()
        img = read_xray(f)
        t1 = time.perf_counter()
        shapes.append(list(img.shape))
        x = resize_image(to_uint8(img), model.input_size)[None, ..., None]
        t2 = time.perf_counter()
        both = as_unit(np.concatenate([x, x[:, :, ::-1]]))
        outs = [o.numpy() for o in forward(tf.constant(both))]
        t3 = time.perf_counter()
        [o.numpy() for o in model.network(both[:1], training=False)]
        [o.numpy() for o in model.network(both[1:], training=False)]
        t4 = time.perf_counter()
        corners = encoding.decode(outs[0][0], outs[1][0])[0]
        cobb_angles(corners, image_height=x.shape[1])
        t5 = time.perf_counter()
        for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            stages[k].append(v)
    return {"source": source, "model": f"{model.name} {model.version}", "input": list(model.input_size),
            "tta_flip": bool(model.config.get("tta_flip", True)), "xrays": len(files),
            "xray_shapes_min_max": [min(shapes), max(shapes)], "load_seconds": round(load_s, 3),
            "first_predict_seconds": round(first_s, 3),
            "predict_file_seconds": {"median": round(float(np.median(per)), 4), "max": round(float(np.max(per)), 4)},
            "stages_median_seconds": {k: round(float(np.median(v)), 4) for k, v in stages.items()},
            "load_average": [start, load()], "peak_rss_mb": peak_rss_mb()}


# ---------------------------------------------------------------------------------------------
# 2. one patient, both views, 8 masks and the class


def part_patient(args) -> dict:
    from skimage.transform import resize
    from sklearn.linear_model import LogisticRegression

    from spinelib.core.imageio import read_xray
    from spinelib.core.structures import AP_STRUCTURES, LAT_STRUCTURES
    from spinelib.data.clinical import load_view, scan_clinical
    from spinelib.geometry import morphometrics
    from spinelib.seg.inference import predict
    from spinelib.seg.unet import unet

    size = tuple(args.size)
    root = synthetic_root(args.patients)
    dataset = scan_clinical(root, progress=False)
    records = list(dataset.patients)
    truth = {}
    for rec in records:  # the measured structures' true masks in the measuring frame (not timed)
        masks = {}
        for view, names in (("AP", ["Ap_Vertebra"]), ("LAT", ["Lat_Vertebra", "Lat_Disk_Height"])):
            _, m = load_view(rec, view, structures=names)
            for c, name in enumerate(names):
                masks[name] = morphometrics.downscale_mask(m[..., c], 1024)[0]
        truth[rec.patient_id] = masks
    feats = [morphometrics.patient_features(t["Ap_Vertebra"], t["Lat_Vertebra"], t["Lat_Disk_Height"])
             for t in truth.values()]
    columns = sorted(feats[0])
    rng = np.random.default_rng(0)
    clf = LogisticRegression().fit(rng.normal(size=(40, len(columns))), np.arange(40) % 2)
    out = {"patients": len(records), "input": list(size), "source": "synthetic patients (spinelib generator)",
           "networks": {}, "load_average_start": load()}
    for filters in args.filters:
        nets = {"AP": unet((*size, 1), filters=filters, n_classes=len(AP_STRUCTURES), batch_norm=True, bn_momentum=0.9),
                "LAT": unet((*size, 1), filters=filters, n_classes=len(LAT_STRUCTURES), batch_norm=True, bn_momentum=0.9)}
        for tta in (False, True):
            def one_patient(rec, tta=tta):
                stage = {}
                t = time.perf_counter()
                x = {v: read_xray(rec.views[v].image_path, size=size) for v in ("AP", "LAT")}
                stage["read_resize"] = time.perf_counter() - t
                t = time.perf_counter()
                prob = {v: predict(nets[v], x[v][None, ..., None] / np.float32(255), tta_flip=tta)[0] for v in x}
                stage["networks"] = time.perf_counter() - t
                t = time.perf_counter()
                frame = truth[rec.patient_id]
                for v, c, name in (("AP", 0, "Ap_Vertebra"), ("LAT", 0, "Lat_Vertebra"), ("LAT", 1, "Lat_Disk_Height")):
                    resize(prob[v][..., c], frame[name].shape, order=1, anti_aliasing=False)  # as segment_measure
                f = morphometrics.patient_features(frame["Ap_Vertebra"], frame["Lat_Vertebra"], frame["Lat_Disk_Height"])
                clf.predict_proba(np.nan_to_num(np.array([[f[k] for k in columns]], float)))
                stage["measure_classify"] = time.perf_counter() - t
                return stage

            one_patient(records[0])  # graph tracing
            rows = [one_patient(rec) for rec in records for _ in range(args.repeats)]
            totals = [sum(r.values()) for r in rows]
            out["networks"][f"filters{filters}_tta{int(tta)}"] = {
                "filters": filters, "tta_flip": tta,
                "parameters": int(sum(n.count_params() for n in nets.values())),
                "seconds_per_patient": {"median": round(float(np.median(totals)), 4), "max": round(float(np.max(totals)), 4)},
                "stages_median_seconds": {k: round(float(np.median([r[k] for r in rows])), 4) for k in rows[0]}}
    out["load_average_end"] = load()
    out["peak_rss_mb"] = peak_rss_mb()
    return out


# ---------------------------------------------------------------------------------------------
# 3. training at 512x256, batch 8


def part_training(args) -> dict:
    from spinelib.seg.losses import get_loss
    from spinelib.seg.unet import forward_flops, unet

    import keras

    size, batch = tuple(args.size), 8
    rng = np.random.default_rng(0)
    x = rng.random((batch, *size, 1), dtype=np.float32)
    y = (rng.random((batch, *size, 1)) > 0.9).astype(np.float32)
    start = load()
    model = unet((*size, 1))  # the paper's network
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=get_loss("paper"))
    model.train_on_batch(x, y)  # tracing
    model.train_on_batch(x, y)
    step = median_seconds(lambda: model.train_on_batch(x, y), args.steps, warm=0)
    flops = forward_flops(model)
    gflops = 3 * flops * batch / step["median"] / 1e9
    rec = {"network": "the paper's U-Net (filters 32, depth 5, 1 output, no batch norm)", "input": list(size),
           "batch": batch, "parameters": int(model.count_params()), "forward_gflop_per_image": round(flops / 1e9, 2),
           "seconds_per_step": step, "seconds_per_image": round(step["median"] / batch, 4),
           "training_gflops": round(gflops, 1), "flop_rule": "convolutions only, training = 3 x forward",
           "peak_rss_mb_train_on_batch": peak_rss_mb(), "load_average": [start, load()]}
    return rec


BOOK_NETWORK = dict(filters=32, n_classes=5, batch_norm=True, bn_momentum=0.9)
"""The book's multi-output LAT network (:func:`spinelib.seg.unet.unet` arguments)."""

PIPELINES = {
    "pipeline": ("one multi-output U-Net (filters 32, 5 LAT outputs, batch norm), the book's train_segmentation",
                 BOOK_NETWORK, 1, "float32"),
    "pipeline-accumulate": ("the same, accumulate=2: micro-batches of 4, one Adam step per 8 X-rays",
                            BOOK_NETWORK, 2, "float32"),
    "pipeline-paper": ("the paper's U-Net (filters 32, one output, no batch norm) through train_segmentation",
                       dict(), 1, "float32"),
    "pipeline-bf16": ("the 5-output batch-norm network under Keras's mixed_bfloat16 policy (SPINELIB_PRECISION)",
                      BOOK_NETWORK, 1, "mixed_bfloat16"),
}
"""Child part -> (what, :func:`spinelib.seg.unet.unet` arguments, ``accumulate``, Keras dtype policy) of
the memory runs through the book's training function, 512x256, batch 8."""


def part_training_pipeline(args, variant: str = "pipeline") -> dict:
    from spinelib.core.config import use_training_precision
    from spinelib.seg.training import train_segmentation
    from spinelib.seg.unet import unet

    what, kwargs, accumulate, precision = PIPELINES[variant]
    precision = use_training_precision(precision)
    size, n, outputs = tuple(args.size), 24, kwargs.get("n_classes", 1)
    rng = np.random.default_rng(0)
    x = (rng.random((n, *size)) * 255).astype(np.uint8)
    y = (rng.random((n, *size, outputs)) > 0.9).astype(np.uint8)
    start = load()
    model = unet((*size, 1), **kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        train_segmentation(model, x[:16], y[:16], x[16:], y[16:], loss="dice", epochs=1, batch_size=8,
                           out_dir=tmp, verbose=0, accumulate=accumulate)
        seconds = time.perf_counter() - t
    return {"network": what, "input": list(size), "batch": 8, "accumulate": accumulate, "train_images": 16,
            "val_images": 8, "precision": precision, "epoch_seconds_with_tracing": round(seconds, 1), "peak_rss_mb": peak_rss_mb(),
            "load_average": [start, load()]}


def part_layers(args) -> dict:
    """Where a training step of the paper's U-Net goes: each convolution's forward and backward
    pass (input and kernel gradients) timed alone, at its place in the network, against the whole
    ``train_on_batch`` step; the rest of the step is activations, pooling, concatenation, the loss
    and Adam."""
    import tensorflow as tf

    from spinelib.seg.losses import get_loss
    from spinelib.seg.unet import layer_flops, unet

    import keras

    size, batch = tuple(args.size), 8
    rng = np.random.default_rng(0)
    model = unet((*size, 1))
    x = rng.random((batch, *size, 1), dtype=np.float32)
    y = (rng.random((batch, *size, 1)) > 0.9).astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=get_loss("paper"))
    model.train_on_batch(x, y)
    start = load()
    step = median_seconds(lambda: model.train_on_batch(x, y), args.steps, warm=1)
    rows = []
    for layer in model.layers:
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            continue
        inp = tf.constant(rng.random((batch, *layer.input.shape[1:]), dtype=np.float32))

        @tf.function
        def fwd_bwd(t, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(t)
                out = layer(t)
                loss = tf.reduce_sum(out)
            return tape.gradient(loss, [t, layer.kernel])

        fwd_bwd(inp)
        t = median_seconds(lambda: [g.numpy() for g in fwd_bwd(inp)], max(args.steps - 1, 2), warm=0)
        flops = 3 * layer_flops(layer) * batch
        rows.append({"layer": layer.name, "kind": type(layer).__name__, "input": list(layer.input.shape[1:]),
                     "output": list(layer.output.shape[1:]), "seconds": t["median"],
                     "gflop": round(flops / 1e9, 2), "gflops": round(flops / t["median"] / 1e9, 1)})
    conv = sum(r["seconds"] for r in rows)
    return {"network": "the paper's U-Net", "input": list(size), "batch": batch, "step_seconds": step,
            "conv_seconds": round(conv, 3), "layers": rows, "load_average": [start, load()]}


# ---------------------------------------------------------------------------------------------
# 4. the CPU's peak


def part_peak(args) -> dict:
    import tensorflow as tf

    from spinelib.core.provenance import cpu_info

    cpu = {k: v for k, v in cpu_info().items() if k != "flags"}
    per_ghz = cpu["cores"] * cpu["fma_units_per_core"] * cpu["float32_lanes"] * 2
    n = 4096
    a = tf.random.uniform((n, n), dtype=tf.float32)
    b = tf.random.uniform((n, n), dtype=tf.float32)
    matmul = tf.function(lambda a, b: tf.linalg.matmul(a, b))
    start = load()
    t = median_seconds(lambda: matmul(a, b).numpy(), args.repeats, warm=2)
    measured = 2 * n**3 / t["min"] / 1e9
    m = 2048  # OpenBLAS's sgemm (NumPy), the best-tuned float32 kernel on the machine
    a32, b32 = (np.random.default_rng(i).random((m, m), dtype=np.float32) for i in (0, 1))
    tb = median_seconds(lambda: a32 @ b32, max(args.repeats, 4), warm=1)
    blas = 2 * m**3 / tb["min"] / 1e9
    best = max(measured, blas)
    return {"cpu": cpu, "gflops_per_ghz": per_ghz,
            "nominal_gflops_at_reported_clock": round(per_ghz * cpu["clock_mhz"] / 1e3, 1),
            "nominal_gflops_at_boost": round(per_ghz * args.boost_ghz, 1), "boost_ghz": args.boost_ghz,
            "matmul": {"n": n, "seconds": t, "gflops_best": round(measured, 1), "what": "tf.linalg.matmul (Eigen)"},
            "sgemm": {"n": m, "seconds": tb, "gflops_best": round(blas, 1), "what": "NumPy @ (OpenBLAS sgemm)"},
            "measured_peak_gflops": round(best, 1), "effective_clock_ghz": round(best / per_ghz, 2),
            "load_average": [start, load()]}


# ---------------------------------------------------------------------------------------------
# the record


def run_part(part: str, argv: list[str]) -> dict:
    """Run one part in a child process (its own peak memory) and return its JSON."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", part, "--child-out", str(out), *argv]
    subprocess.run(cmd, check=True, cwd=REPO)
    rec = json.loads(out.read_text())
    out.unlink()
    return rec


def verdicts(rec: dict) -> dict:
    lm, pat, tr, pk = rec["landmarks"], rec["patient"], rec["training"], rec["peak"]
    best_patient = min(v["seconds_per_patient"]["median"] for v in pat["networks"].values() if v["tta_flip"] is False)
    gf = tr["step"]["training_gflops"]
    return {
        "landmark_seconds": {"measured": lm["predict_file_seconds"]["median"], "target": TARGETS["landmark_seconds"]},
        "patient_seconds": {"measured": {k: v["seconds_per_patient"]["median"] for k, v in pat["networks"].items()},
                            "best_without_tta": best_patient, "target": TARGETS["patient_seconds"]},
        "training_peak_fraction": {
            "of_reported_clock": round(gf / pk["nominal_gflops_at_reported_clock"], 3),
            "of_boost_clock": round(gf / pk["nominal_gflops_at_boost"], 3),
            "of_measured_peak": round(gf / pk["measured_peak_gflops"], 3), "target": TARGETS["training_peak_fraction"]},
        "training_memory_mb": {"train_on_batch": tr["step"]["peak_rss_mb_train_on_batch"],
                               "train_segmentation": tr["pipeline"]["peak_rss_mb"],
                               **({"train_segmentation_accumulate_2": tr["pipeline_accumulate"]["peak_rss_mb"],
                                   "train_segmentation_paper_network": tr["pipeline_paper"]["peak_rss_mb"]}
                                  if "pipeline_paper" in tr else {}),
                               **({"train_segmentation_mixed_bfloat16": tr["pipeline_bf16"]["peak_rss_mb"]}
                                  if "pipeline_bf16" in tr else {}),
                               "target": TARGETS["training_memory_mb"]},
    }


def markdown(rec: dict) -> str:
    lm, pat, tr, pk, v = rec["landmarks"], rec["patient"], rec["training"], rec["peak"], rec["verdicts"]
    s = lm["stages_median_seconds"]
    lines = [
        "# Inference and training speed (issue 16)", "",
        f"Measured {rec['date']} on {pk['cpu']['model']} ({pk['cpu']['cores']} cores), TensorFlow {rec['tensorflow']}, "
        f"git commit `{rec['git_commit'][:12]}`, by `benchmarks/inference_speed.py`; `TF_ENABLE_ONEDNN_OPTS` "
        f"{rec.get('tf_enable_onednn_opts', 'unset')}. Load average (1 min) at the start "
        f"and end of each part: landmarks {lm['load_average']}, patient {[pat['load_average_start'], pat['load_average_end']]}, "
        f"training {tr['step']['load_average']}, peak {pk['load_average']}.", "",
        "| what | measured | target |", "|---|---|---|",
        f"| shipped landmark model, one X-ray (`predict_file`, flip TTA, median of {lm['xrays']} {lm['source']}) | "
        f"**{lm['predict_file_seconds']['median']:.3f} s** (worst {lm['predict_file_seconds']['max']:.3f} s) | <= 0.5 s |",
    ]
    for key, n in pat["networks"].items():
        lines.append(f"| one patient, both views, 8 masks and the class, {pat['input'][0]}x{pat['input'][1]}, "
                     f"U-Nets of first width {n['filters']}{', flip TTA' if n['tta_flip'] else ''} "
                     f"({n['parameters']:,} parameters) | **{n['seconds_per_patient']['median']:.3f} s** | <= 1.0 s |")
    f = v["training_peak_fraction"]
    lines += [
        f"| training the paper's U-Net, {tr['step']['input'][0]}x{tr['step']['input'][1]}, batch 8 | {tr['step']['seconds_per_image']:.3f} s per image, "
        f"{tr['step']['training_gflops']:.0f} GFLOP/s = {100 * f['of_reported_clock']:.0f} % of the reported-clock peak, "
        f"{100 * f['of_boost_clock']:.0f} % of the boost-clock peak, {100 * f['of_measured_peak']:.0f} % of the measured matrix-product peak | >= 65 % of peak |",
        f"| peak memory, training {tr['step']['input'][0]}x{tr['step']['input'][1]} at batch 8 | {tr['step']['peak_rss_mb_train_on_batch']:.0f} MB (`train_on_batch`), "
        f"{tr['pipeline']['peak_rss_mb']:.0f} MB (`train_segmentation`, 5 outputs, batch norm, tf.data)"
        + (f"; the same with `accumulate=2` (micro-batches of 4, one step per 8) {tr['pipeline_accumulate']['peak_rss_mb']:.0f} MB; "
           f"the paper's network through `train_segmentation` {tr['pipeline_paper']['peak_rss_mb']:.0f} MB"
           if "pipeline_paper" in tr else "")
        + (f"; the 5-output network in `mixed_bfloat16` {tr['pipeline_bf16']['peak_rss_mb']:.0f} MB"
           if "pipeline_bf16" in tr else "") + " | <= 4096 MB |",
        "",
        "## The landmark model, stage by stage", "",
        f"Model `{lm['model']}`, input {lm['input'][0]}x{lm['input'][1]}, X-rays from {lm['xray_shapes_min_max'][0]} to "
        f"{lm['xray_shapes_min_max'][1]} pixels. Loading takes {lm['load_seconds']:.2f} s and the first `predict_file` "
        f"{lm['first_predict_seconds']:.2f} s (the graph is traced once per model).", "",
        "| stage | median seconds |", "|---|---|",
        f"| read the file | {s['read']:.3f} |", f"| resize to the input (anti-aliased) | {s['resize']:.3f} |",
        f"| network, both flip variants, one compiled graph | {s['network']:.3f} |",
        f"| the same network called eagerly (before this change) | {s['network_eager']:.3f} |",
        f"| decode the heat map, Cobb angles | {s['rest']:.4f} |", "",
        "## One patient, stage by stage", "",
        "The networks' weights are untrained: time does not depend on their values, so the masks measured are the "
        "patient's true ones in the same frame (segment-then-measure's route: the probabilities resized to it, "
        "`patient_features`, a logistic classifier).", "",
        "| networks | read + resize both views | both networks | measure + classify | total |", "|---|---|---|---|---|",
    ]
    for key, n in pat["networks"].items():
        st = n["stages_median_seconds"]
        lines.append(f"| width {n['filters']}{', flip TTA' if n['tta_flip'] else ''} | {st['read_resize']:.3f} | "
                     f"{st['networks']:.3f} | {st['measure_classify']:.3f} | {n['seconds_per_patient']['median']:.3f} |")
    lines += [
        "", "## The peak assumed", "",
        f"Nominal float32 peak = {pk['cpu']['cores']} cores x {pk['cpu']['fma_units_per_core']} FMA units x "
        f"{pk['cpu']['float32_lanes']} lanes x 2 flops x clock = {pk['gflops_per_ghz']} GFLOP/s per GHz: "
        f"**{pk['nominal_gflops_at_reported_clock']:.0f} GFLOP/s** at the {pk['cpu']['clock_mhz'] / 1e3:.3f} GHz that "
        f"`/proc/cpuinfo` reports (CPU family {pk['cpu']['family']}, model {pk['cpu']['model_number']}"
        f"{AMD_FAMILIES.get(str(pk['cpu']['family']), '')}), "
        f"**{pk['nominal_gflops_at_boost']:.0f} GFLOP/s** at a {pk['boost_ghz']} GHz boost clock. "
        f"Measured: float32 matrix products reach **{pk['sgemm']['gflops_best']:.0f} GFLOP/s** in OpenBLAS "
        f"({pk['sgemm']['n']}x{pk['sgemm']['n']}, NumPy) and {pk['matmul']['gflops_best']:.0f} GFLOP/s in TensorFlow "
        f"({pk['matmul']['n']}x{pk['matmul']['n']}); the best, {pk['measured_peak_gflops']:.0f} GFLOP/s, is an effective "
        f"clock of at least {pk['effective_clock_ghz']:.2f} GHz at full FMA use"
        + (", above the reported clock: the CPU runs boosted, so the reported-clock peak is not a ceiling"
           if pk["measured_peak_gflops"] > pk["nominal_gflops_at_reported_clock"] else "")
        + ". The training FLOP/s count the convolutions only "
        f"({tr['step']['forward_gflop_per_image']:.1f} GFLOP forward per image; training = 3 x forward).", "",
    ]
    if "layers" in rec:
        lines += layers_markdown(rec["layers"], rec["peak"])
    lines += [
        "## Reproduce", "", "```bash", rec["command"], "```", "",
    ]
    for r in rec.get("reruns", []):
        lines.insert(-1, f"Measured again on {r['date']} (commit `{r['git_commit'][:12]}`): {', '.join(r['parts'])}, by `{r['command']}`.\n")
    return "\n".join(lines)


def layers_markdown(lay: dict, pk: dict) -> list[str]:
    """The section on where a training step goes (:func:`part_layers`)."""
    step = lay["step_seconds"]["median"]
    rows = sorted(lay["layers"], key=lambda r: -r["seconds"])
    peak = pk["measured_peak_gflops"]
    out = [
        "## Where a training step goes", "",
        f"The paper's U-Net, {lay['input'][0]}x{lay['input'][1]}, batch {lay['batch']}: one `train_on_batch` step takes "
        f"{step:.2f} s (median). Each convolution's forward and backward pass, timed alone at its place in the network, "
        f"adds up to **{lay['conv_seconds']:.2f} s ({100 * lay['conv_seconds'] / step:.0f} % of the step)**; the other "
        f"{max(step - lay['conv_seconds'], 0):.2f} s are activations, pooling, concatenation, the loss and Adam. "
        f"Load average {lay['load_average']}. The slowest layers first "
        f"(GFLOP/s against the measured peak of {peak:.0f}):", "",
        "| layer | input -> output | seconds | share of the step | GFLOP | GFLOP/s | of peak |", "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(f"| `{r['layer']}` ({r['kind']}) | {'x'.join(map(str, r['input']))} -> {'x'.join(map(str, r['output']))} | "
                   f"{r['seconds']:.3f} | {100 * r['seconds'] / step:.1f} % | {r['gflop']:.1f} | {r['gflops']:.0f} | "
                   f"{100 * r['gflops'] / peak:.0f} % |")
    return out + [""]


def put_on_page(page: Path, md: str, markers: tuple[str, str] = PAGE_MARKERS) -> None:
    """Replace what lies between the page's two markers by ``md``, its headings one level down."""
    from spinelib.core.provenance import put_between_markers

    put_between_markers(page, md, markers)


AMD_FAMILIES = {"25": ": AMD Zen 3", "26": ": AMD Zen 5"}
"""AMD's CPU families as ``/proc/cpuinfo`` numbers them (the EPYCs this project has run on)."""


def onednn_default() -> str:
    """TensorFlow's oneDNN setting when ``TF_ENABLE_ONEDNN_OPTS`` is unset: on for x86 CPUs with
    AVX512-VNNI, AVX-VNNI, AVX512-BF16 or AMX (TensorFlow's rule since 2.9), off on the others."""
    from spinelib.core.provenance import cpu_info

    flags = cpu_info()["flags"]
    found = [f for f in ("avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return f"on, for this CPU has {', '.join(found)}" if found else "off on this CPU (no VNNI, BF16 or AMX)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Writes <out>.json and <out>.md.")
    p.add_argument("--out", type=Path, default=OUT, help="output path without suffix (default: %(default)s)")
    p.add_argument("--aasce", default=str(DEFAULT_AASCE), help="AASCE folder (default: %(default)s)")
    p.add_argument("--xrays", type=int, default=8, help="X-rays for the landmark model (default: %(default)s)")
    p.add_argument("--patients", type=int, default=3, help="synthetic patients for the patient part (default: %(default)s)")
    p.add_argument("--filters", type=int, nargs="+", default=[16, 32], help="first-level widths of the U-Nets (default: 16 32)")
    p.add_argument("--size", type=int, nargs=2, default=[512, 256], metavar=("H", "W"), help="input size (default: 512 256)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per X-ray or patient (default: %(default)s)")
    p.add_argument("--steps", type=int, default=4, help="timed training steps (default: %(default)s)")
    p.add_argument("--boost-ghz", type=float, default=3.5,
                   help="the boost clock for the second nominal peak (default: %(default)s, AMD EPYC 7763's)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run (default: all)")
    p.add_argument("--report-only", action="store_true", help="rewrite the Markdown from the JSON, run nothing")
    p.add_argument("--update-page", action="store_true", help=f"also put the Markdown into {PAGE.relative_to(REPO)} between its markers")
    p.add_argument("--child", choices=(*PARTS, *PIPELINES), help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("xrays", "patients", "repeats", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        fn = {"landmarks": part_landmarks, "patient": part_patient, "training": part_training,
              "layers": part_layers, "peak": part_peak,
              **{k: (lambda a, k=k: part_training_pipeline(a, k)) for k in PIPELINES}}[args.child]
        args.child_out.write_text(json.dumps(fn(args)))
        return 0
    js, md = args.out.with_suffix(".json"), args.out.with_suffix(".md")
    if args.report_only:
        rec = json.loads(js.read_text())
        md.write_text(markdown(rec))
        if args.update_page:
            put_on_page(PAGE, markdown(rec))
        return 0
    if set(args.parts) != set(PARTS) and not js.is_file():
        raise SystemExit(f"--parts runs only some parts; the others come from {js}, which does not exist")
    rec = json.loads(js.read_text()) if js.is_file() else {}
    child_argv = [a for a in argv if a not in ("--report-only", "--update-page")]
    for part in args.parts:
        print(f"[inference_speed] {part} ...", flush=True)
        if part == "training":
            rec["training"] = {"step": run_part("training", child_argv),
                               **{k.replace("-", "_"): run_part(k, child_argv) for k in PIPELINES}}
        else:
            rec[part] = run_part(part, child_argv)
    import tensorflow as tf

    command = " ".join(["python benchmarks/inference_speed.py", *child_argv])
    from spinelib.core.provenance import git_commit

    stamp = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             "git_commit": git_commit(REPO, mark_dirty=True) or "unknown"}
    if set(args.parts) == set(PARTS):
        rec = {k: v for k, v in rec.items() if k != "reruns"}
        rec |= stamp | {"command": command}
    else:  # some parts measured again: the record says which, when and from which commit
        rec.setdefault("reruns", []).append(stamp | {"parts": list(args.parts), "command": command})
    rec |= {"tensorflow": tf.__version__, "python": platform.python_version(),
            "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", f"unset (TensorFlow's default: {onednn_default()})")}
    rec["verdicts"] = verdicts(rec)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = js.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    tmp.replace(js)
    md.write_text(markdown(rec))
    if args.update_page:
        put_on_page(PAGE, markdown(rec))
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
