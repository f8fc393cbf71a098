"""The paper's segmentation pipeline against this project's, on one machine and one dataset (issue 16).

**The paper's pipeline, as the paper ran it**: eight single-structure U-Nets of its architecture
(:func:`spinelib.seg.unet.unet` with its defaults: filters 32-512, depth 5, no batch norm), the
paper's loss, Adam 1e-3, batch 1, ``model.fit`` on in-memory NumPy arrays with validation data.

**The recommended pipeline** (what the book's pages run): one multi-output U-Net per view (3 AP
and 5 LAT structures) of the same architecture with batch normalisation (momentum 0.9, the book's
``spinelib.core.plans.RECIPE``), the Dice loss (page 3's remedies), batch 8, trained by
:func:`spinelib.seg.training.train_segmentation` (``tf.data`` from arrays decoded and resized once,
seeded epoch plans, checkpoints and ``history.csv`` every epoch). Not included: the spine crop of
page 3's final Table 3 (a second stage) and the classifier.

Both get the same arrays (:func:`spinelib.data.segdata.prepare_view_data` on a synthetic dataset of
:func:`spinelib.data.synthetic.generator.generate_dataset`, decoded and resized once, timed
apart). Each pipeline runs in its own process, one after the other, so that its peak resident
memory is its own. Measured:

- training images per second in steady state (the second of two timed epochs, no validation);
- time until every structure's validation Dice (threshold 0.5, mean over validation images) reaches
  ``--dice-target``: wall time of all training (tracing, validation, checkpoints included), without
  the benchmark's own Dice probe after each epoch; a network stops once its structures are there;
- inference per patient: both views, all 8 masks (no classifier), one ``predict`` call per network;
- peak resident memory of the process (``resource.getrusage``);
- FLOP/s against the CPU's nominal peak: convolution FLOPs counted from the layers (2 per
  multiply-add), training = 3 x forward (forward, gradient of the input, gradient of the weights);
  the peak is cores x 2 FMA units x SIMD float32 lanes x 2 flops x the clock of ``/proc/cpuinfo``.

Usage (from the repository root)::

    python benchmarks/paper_vs_pipeline.py --update-page          # full scale: 512x256, 60 patients; many hours on 2 cores
    python benchmarks/paper_vs_pipeline.py --height 128 --width 64 --patients 16 --synthetic-scale 0.25 \\
        --max-epochs 12 --dice-target 0.3 --update-page            # a reduced scale

Writes ``<out-dir>/<name>.json`` and ``<out-dir>/<name>.md`` (default ``benchmarks/paper_vs_pipeline.*``);
``--update-page`` also copies the Markdown into ``docs/benchmarks.md`` between its markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "benchmarks.md"
PAGE_START, PAGE_END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"
FULL_SCALE = dict(height=512, width=256, patients=60, synthetic_scale=1.0, filters=32, dice_target=0.5,
                  max_epochs=100)
"""The issue's scale: the paper's 512x256 input and network, the ``ci`` book's 60 synthetic patients."""
PIPELINES = ("paper", "pipeline")
LABELS = {"paper": "paper's pipeline", "pipeline": "recommended pipeline"}


# ---------------------------------------------------------------------------------------------
# the machine


def cpu_description() -> dict:
    """CPU model, cores, clock, SIMD width and the nominal float32 peak it implies."""
    from spinelib.core.provenance import cpu_info

    cpu = cpu_info()
    cores, lanes, fma, mhz = cpu["cores"], cpu["float32_lanes"], cpu["fma_units_per_core"], cpu["clock_mhz"]
    peak = cores * fma * lanes * 2 * mhz / 1e3
    return {
        "cpu_model": cpu["model"], "cores": cores, "clock_mhz": mhz,
        "clock_source": "the 'cpu MHz' of /proc/cpuinfo, the clock the kernel reports; turbo not counted",
        "simd": "avx512" if lanes == 16 else "avx2" if lanes == 8 else "sse", "float32_lanes": lanes,
        "fma_units_per_core": fma, "peak_gflops": round(peak, 1),
        "peak_formula": f"{cores} cores x {fma} FMA units x {lanes} float32 lanes x 2 flops x {mhz / 1e3:.3f} GHz",
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "machine": platform.machine(), "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------------------------------------
# the data (parent process, no TensorFlow)


def prepare_data(args, work: Path) -> tuple[Path, dict]:
    """Synthetic patients -> both views' arrays at the input size, split by patient, saved once."""
    from spinelib.data.segdata import prepare_view_data
    from spinelib.data.synthetic.generator import generate_dataset

    t0 = time.perf_counter()
    root = work / "synthetic"
    generate_dataset(root, n_patients=args.patients, seed=args.seed, scale=args.synthetic_scale, progress=False)
    t1 = time.perf_counter()
    arrays, summary = {}, {}
    for view in ("AP", "LAT"):
        d = prepare_view_data(root, view, (args.height, args.width), val_fraction=args.val_fraction,
                              seed=args.seed, progress=False)
        arrays |= {f"{view}_train_x": d.train_images, f"{view}_train_y": d.train_masks,
                   f"{view}_val_x": d.val_images, f"{view}_val_y": d.val_masks}
        summary[view] = {"structures": list(d.structures), "train_images": len(d.train_ids),
                         "val_images": len(d.val_ids), "val_patients": len(set(d.val_ids))}
    path = work / "arrays.npz"
    np.savez(path, **arrays)
    summary |= {"patients": args.patients, "synthetic_scale": args.synthetic_scale,
                "input": [args.height, args.width], "generate_seconds": round(t1 - t0, 1),
                "decode_resize_seconds": round(time.perf_counter() - t1, 1)}
    return path, summary


# ---------------------------------------------------------------------------------------------
# child processes: one pipeline each (TensorFlow is imported here only)


def probe_callback(images, masks, structures, stop_at: dict):
    """A Keras callback: after every epoch the validation Dice of each structure (per image at
    threshold 0.5, then the mean; both empty counts 1) and the training seconds so far without the
    probe's own time; it stops training once every structure ``s`` is at ``stop_at[s]``. Call
    ``start()`` right before training."""
    import keras

    from spinelib.seg.inference import predict
    from spinelib.seg.metrics import dice

    class DiceProbe(keras.callbacks.Callback):
        def start(self):
            self.t0, self.own, self.rows = time.perf_counter(), 0.0, []

        def on_epoch_end(self, epoch, logs=None):
            t = time.perf_counter()
            prob = predict(self.model, images, batch_size=8)
            scores = {s: float(np.mean([dice(prob[i, ..., c] > 0.5, masks[i, ..., c] > 0.5) for i in range(len(prob))]))
                      for c, s in enumerate(structures)}
            self.rows.append({"epoch": epoch + 1, "seconds": round(t - self.t0 - self.own, 2), "dice": scores})
            if all(scores[s] >= stop_at[s] for s in structures):
                self.model.stop_training = True
            self.own += time.perf_counter() - t

    return DiceProbe()


def epoch_timer():
    """A Keras callback that records the wall seconds of every epoch in ``.seconds``."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.t)

    return EpochTimer()


def seconds_per_call(fn, n: int) -> float:
    """Mean wall seconds of ``fn(i)`` for ``i < n``, after one untimed call."""
    fn(0)
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t) / n


def build(kind: str, cfg: dict, n_classes: int, name: str):
    """The paper's U-Net (``kind="paper"``) or the recommended one (batch norm, momentum 0.9)."""
    from spinelib.core.config import set_seed
    from spinelib.seg.unet import unet

    set_seed(cfg["seed"])
    shape = (cfg["height"], cfg["width"], 1)
    if kind == "paper":
        return unet(shape, filters=cfg["filters"], depth=cfg["depth"], n_classes=n_classes, name=name)
    return unet(shape, filters=cfg["filters"], depth=cfg["depth"], n_classes=n_classes, batch_norm=True,
                bn_momentum=0.9, name=name)


def compile_paper(model):
    import keras

    from spinelib.seg.losses import paper_loss
    from spinelib.seg.metrics import dice_metric

    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=paper_loss,
                  metrics=[keras.metrics.MeanMetricWrapper(dice_metric, name="dice")])


def throughput(kind: str, cfg: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """Steady-state training speed: two epochs over ``cfg["throughput_images"]`` images (the
    training X-rays repeated), the second one timed; no validation."""
    import keras

    from spinelib.seg.losses import get_loss
    from spinelib.seg.metrics import dice_metric, white_fraction_metric
    from spinelib.seg.training import epoch_dataset

    reps = int(np.ceil(cfg["throughput_images"] / len(x)))
    x, y = np.concatenate([x] * reps)[:cfg["throughput_images"]], np.concatenate([y] * reps)[:cfg["throughput_images"]]
    model = build(kind, cfg, y.shape[-1], f"{kind}_throughput")
    timer = epoch_timer()
    if kind == "paper":
        compile_paper(model)
        batch = cfg["paper_batch"]
        model.fit(x, y, batch_size=batch, epochs=2, shuffle=True, verbose=0, callbacks=[timer])
    else:
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=get_loss(cfg["pipeline_loss"]),
                      metrics=[keras.metrics.MeanMetricWrapper(dice_metric, name="dice"),
                               keras.metrics.MeanMetricWrapper(white_fraction_metric, name="white")])
        batch = cfg["pipeline_batch"]
        ds, steps = epoch_dataset(x, y, batch, epochs=2, seed=cfg["seed"])
        model.fit(ds, epochs=2, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=[timer])
    from spinelib.seg.unet import forward_flops

    seconds = timer.seconds[1]
    flops = 3 * forward_flops(model)
    ips = len(x) / seconds
    return {"network": f"{y.shape[-1]} output(s)", "batch": batch, "images": len(x),
            "epoch_seconds": round(seconds, 3), "images_per_second": round(ips, 3),
            "train_gflop_per_image": round(flops / 1e9, 3), "achieved_gflops": round(ips * flops / 1e9, 2),
            "jit_compile": bool(model.jit_compile)}


def run_child(kind: str, cfg: dict) -> dict:
    """Train and time one pipeline; returns its record (written by ``main`` as JSON)."""
    import keras
    import tensorflow as tf

    from spinelib.core.runs import quiet_tensorflow
    from spinelib.seg.inference import predict
    from spinelib.seg.unet import forward_flops
    from spinelib.seg.training import train_segmentation

    load0, t_all = os.getloadavg()[0], time.perf_counter()
    with np.load(cfg["arrays"]) as z:
        arrays = {k: z[k] for k in z.files}
    with quiet_tensorflow():
        speed = throughput(kind, cfg, arrays["LAT_train_x"],
                           arrays["LAT_train_y"][..., :1] if kind == "paper" else arrays["LAT_train_y"])
    keras.backend.clear_session()
    # the networks: eight single-structure ones, or one multi-output one per view
    jobs = []
    for view in ("AP", "LAT"):
        names = cfg["structures"][view]
        if kind == "paper":
            jobs += [(view, [s], [c]) for c, s in enumerate(names)]
        else:
            jobs.append((view, list(names), list(range(len(names)))))
    networks = []
    for view, names, channels in jobs:
        tx, ty = arrays[f"{view}_train_x"], arrays[f"{view}_train_y"][..., channels]
        vx, vy = arrays[f"{view}_val_x"], arrays[f"{view}_val_y"][..., channels]
        label = names[0] if kind == "paper" else view
        model = build(kind, cfg, len(names), f"{kind}_{label}")
        # the paper's networks stop at the target; the recommended ones go on to the paper's best Dice too
        stop_at = {s: max(cfg["dice_target"], cfg.get("paper_best", {}).get(s, 0.0)) for s in names}
        probe = probe_callback(vx, vy, names, stop_at)
        with quiet_tensorflow():
            if kind == "paper":
                compile_paper(model)
                probe.start()
                model.fit(tx, ty, batch_size=cfg["paper_batch"], epochs=cfg["max_epochs"], validation_data=(vx, vy),
                          shuffle=True, verbose=0, callbacks=[probe])
                infer = seconds_per_call(lambda i: model.predict(vx[i:i + 1], verbose=0), len(vx))
            else:
                out = Path(cfg["work"]) / "pipeline" / view
                shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resumed one
                probe.start()
                train_segmentation(model, tx, ty, vx, vy, loss=cfg["pipeline_loss"], epochs=cfg["pipeline_max_epochs"],
                                   batch_size=cfg["pipeline_batch"], out_dir=out, seed=cfg["seed"],
                                   patience=cfg["pipeline_max_epochs"], verbose=0, callbacks=[probe])
                infer = seconds_per_call(lambda i: predict(model, vx[i:i + 1], batch_size=1), len(vx))
        reached = [r for r in probe.rows if min(r["dice"].values()) >= cfg["dice_target"]]
        networks.append({
            "network": label, "view": view, "structures": names, "params": int(model.count_params()),
            "forward_gflop_per_image": round(forward_flops(model) / 1e9, 3), "train_images": len(tx),
            "epochs": len(probe.rows), "reached_target": bool(reached),
            "seconds_to_target": reached[0]["seconds"] if reached else None,
            "seconds_trained": probe.rows[-1]["seconds"], "final_dice": probe.rows[-1]["dice"],
            "predict_seconds_per_image": round(infer, 4), "curve": probe.rows,
        })
        print(f"[{kind}] {label}: {len(probe.rows)} epoch(s), {probe.rows[-1]['seconds']:.0f} s, "
              f"Dice {probe.rows[-1]['dice']}", flush=True)
        del model, probe
        keras.backend.clear_session()
    return {"throughput": speed, "networks": networks,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "wall_seconds": round(time.perf_counter() - t_all, 1), "load_avg_1min": [load0, os.getloadavg()[0]],
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()}


# ---------------------------------------------------------------------------------------------
# the comparison (parent process)


def first_seconds(network: dict, level) -> float | None:
    """Training seconds of one network until each of its structures ``s`` has validation Dice >=
    ``level`` (a number, or a dict structure -> number); None when it never got there."""
    def at(s):
        return level[s] if isinstance(level, dict) else level

    hit = [r["seconds"] for r in network["curve"] if all(v >= at(s) for s, v in r["dice"].items())]
    return hit[0] if hit else None


def time_to(networks: list[dict], level) -> float | None:
    """Training seconds until every structure has validation Dice >= ``level`` (see
    :func:`first_seconds`), the networks one after the other as on one machine; None when one never
    gets there."""
    times = [first_seconds(n, level) for n in networks]
    return None if None in times else round(sum(times), 1)


def best_dice(networks: list[dict]) -> dict[str, float]:
    """The highest validation Dice each structure reached over its network's epochs."""
    return {s: max(r["dice"][s] for r in n["curve"]) for n in networks for s in n["structures"]}


def summarise(kind: str, child: dict, peak_gflops: float, target: float) -> dict:
    nets = child["networks"]
    speed = child["throughput"]
    by_structure = {}
    for n in nets:
        for s in n["structures"]:
            hit = [r["seconds"] for r in n["curve"] if r["dice"][s] >= target]
            by_structure[s] = hit[0] if hit else None
    return {
        "description": LABELS[kind], "networks": len(nets),
        "params": sum(n["params"] for n in nets),
        "images_per_second": speed["images_per_second"],
        # a patient is one X-ray through every network (AP ones on its AP view, LAT ones on its LAT view)
        "patients_per_second": round(speed["images_per_second"] / len(nets), 4),
        "train_gflop_per_patient": round(3 * sum(n["forward_gflop_per_image"] for n in nets), 2),
        "achieved_gflops": speed["achieved_gflops"],
        "fraction_of_peak": round(speed["achieved_gflops"] / peak_gflops, 3),
        "seconds_to_target": time_to(nets, target),
        "seconds_to_target_by_structure": by_structure,
        "seconds_trained": round(sum(n["seconds_trained"] for n in nets), 1),
        "epochs": {n["network"]: n["epochs"] for n in nets},
        "final_dice": {s: round(v, 3) for n in nets for s, v in n["final_dice"].items()},
        "best_dice": {s: round(v, 3) for s, v in best_dice(nets).items()},
        "inference_seconds_per_patient": round(sum(n["predict_seconds_per_image"] for n in nets), 4),
        "peak_rss_mb": child["peak_rss_mb"], "wall_seconds": child["wall_seconds"],
        "throughput": speed, "per_network": nets,
        "tensorflow": child["tensorflow"], "keras": child["keras"], "load_avg_1min": child["load_avg_1min"],
    }


def compare(paper: dict, pipeline: dict, target: float) -> dict:
    """Ratios of the two pipelines at three "same validation Dice" levels: the fixed target on all
    8 structures; the highest level both reached on all 8; and each structure at the best Dice the
    paper's pipeline reached on it (its time: until each of its networks first reached its best)."""
    def ratio(a, b):
        return None if a is None or b in (None, 0) else round(a / b, 2)

    reachable = [max(min(r["dice"].values()) for r in n["curve"])
                 for p in (paper, pipeline) for n in p["per_network"]]
    common = round(min(target, *reachable) - 5e-4, 3)  # rounded down: reached by both
    if common <= 0.01:  # a level that all-black masks nearly meet says nothing
        common = None
    t_common = {k: time_to(p["per_network"], common) if common else None
                for k, p in (("paper", paper), ("pipeline", pipeline))}
    paper_best = best_dice(paper["per_network"])
    t_best = {"paper": None, "pipeline": None}
    if min(paper_best.values()) > 0.01:  # else the paper's pipeline painted a structure black throughout: no level
        t_best = {"paper": time_to(paper["per_network"], {s: v - 1e-9 for s, v in paper_best.items()}),
                  "pipeline": time_to(pipeline["per_network"], paper_best)}
    lower_bound = None
    if paper["seconds_to_target"] is None and pipeline["seconds_to_target"] is not None:
        lower_bound = round(paper["seconds_trained"] / pipeline["seconds_to_target"], 2)
    return {
        "dice_target": target,
        "speedup_to_target": ratio(paper["seconds_to_target"], pipeline["seconds_to_target"]),
        "speedup_to_target_at_least": lower_bound,
        "common_dice": common, "seconds_to_common_dice": t_common,
        "speedup_to_common_dice": ratio(t_common["paper"], t_common["pipeline"]),
        "seconds_to_paper_best_dice": t_best,
        "speedup_to_paper_best_dice": ratio(t_best["paper"], t_best["pipeline"]),
        "paper_structures_black_throughout": sorted(k for k, v in paper_best.items() if v <= 0.01),
        "speedup_images_per_second": ratio(pipeline["images_per_second"], paper["images_per_second"]),
        "speedup_patients_per_second": ratio(pipeline["patients_per_second"], paper["patients_per_second"]),
        "inference_speedup": ratio(paper["inference_seconds_per_patient"], pipeline["inference_seconds_per_patient"]),
        "memory_ratio": ratio(pipeline["peak_rss_mb"], paper["peak_rss_mb"]),
        "goal_speedup": 8.0,
    }


# ---------------------------------------------------------------------------------------------
# the report


def fmt(v, spec: str = ".2f", none: str = "not reached") -> str:
    return none if v is None else format(v, spec)


def markdown(rec: dict) -> str:
    m, s, c, d = rec["machine"], rec["scale"], rec["comparison"], rec["data"]
    p, q = rec["pipelines"]["paper"], rec["pipelines"]["pipeline"]
    reduced = rec["reduced_scale"]
    speed, best = c["speedup_to_target"], c["speedup_to_paper_best_dice"]
    if speed is not None:
        verdict = (f"The recommended pipeline brought all 8 structures to validation Dice {s['dice_target']} "
                   f"**{speed:.1f}x** faster than the paper's pipeline (goal: 8x; "
                   f"{'met' if speed >= 8 else f'missed: {speed / 8:.0%} of it'}).")
    elif c["speedup_to_target_at_least"] is not None:
        verdict = (f"The paper's pipeline did not bring all 8 structures to Dice {s['dice_target']} within "
                   f"{s['max_epochs']} epochs per network; the recommended pipeline did, at least "
                   f"**{c['speedup_to_target_at_least']:.1f}x** faster (the paper's whole training time / the "
                   f"recommended pipeline's time to the target; goal: 8x).")
    else:
        verdict = (f"Neither pipeline brought all 8 structures to Dice {s['dice_target']} within its epochs "
                   f"({s['max_epochs']} per network for the paper's, {s['pipeline_max_epochs']} for the recommended one).")
    black = c.get("paper_structures_black_throughout", [])
    if black:
        verdict += (f" The paper's pipeline predicted (nearly) all-black masks at every epoch on {len(black)} of "
                    f"the 8 structures (best Dice at most 0.01: {', '.join(b.replace('_', ' ') for b in black)}), "
                    "as page 2 found for its exact recipe, so no common Dice level above 0 exists for a "
                    "like-for-like time.")
    elif best is not None:
        verdict += (f" To the best Dice the paper's pipeline reached on each structure, the recommended one was "
                    f"**{best:.1f}x** faster.")
    elif c["seconds_to_paper_best_dice"]["pipeline"] is None:
        verdict += " The recommended pipeline did not reach the paper's best Dice on every structure."
    t_best = c["seconds_to_paper_best_dice"]

    def times(key):
        return f"{fmt(p[key], '.0f')} | {fmt(q[key], '.0f')}"

    def x(v):
        return "n/a" if v is None else f"{v:.2f}x"

    lines = [
        "# The paper's pipeline against the recommended one",
        "",
        f"Measured {rec['date_utc']} on one machine, one dataset (synthetic), one run each "
        f"(`benchmarks/paper_vs_pipeline.py`, git commit `{(rec['run_info']['spinelib']['git_commit'] or '?')[:12]}`).",
        "",
    ]
    if reduced:
        lines += [
            "```{warning}",
            f"**Reduced scale.** Input {s['height']}x{s['width']} (the paper: 512x256), {d['patients']} synthetic "
            f"patients at scale {s['synthetic_scale']}, {s['filters']} filters at the first level, at most "
            f"{s['max_epochs']} epochs per network of the paper's pipeline and {s['pipeline_max_epochs']} of the "
            f"recommended one, Dice target {s['dice_target']}. The issue's measurement is at full scale (command "
            "below); these numbers are not it.",
            "```",
            "",
        ]
    load = max(p["load_avg_1min"] + q["load_avg_1min"])
    if load > m["cores"]:
        verdict += (f" **The machine was shared during this run** (1-minute load average up to {load:.1f} on "
                    f"{m['cores']} cores, from other work): every time below is inflated, unevenly between the two "
                    "pipelines, which ran one after the other.")
    lines += [
        verdict,
        "",
        "| | paper's pipeline | recommended pipeline | ratio |",
        "|---|---|---|---|",
        f"| networks (parameters) | {p['networks']} ({p['params']:,}) | {q['networks']} ({q['params']:,}) | |",
        f"| training images per second, one network (steady state) | {p['images_per_second']:.2f} (batch "
        f"{p['throughput']['batch']}) | {q['images_per_second']:.2f} (batch {q['throughput']['batch']}) | "
        f"{x(c['speedup_images_per_second'])} |",
        f"| training patients per second, all 8 structures, both views | {p['patients_per_second']:.3f} | "
        f"{q['patients_per_second']:.3f} | {x(c['speedup_patients_per_second'])} |",
        f"| training seconds until all 8 structures reach Dice {s['dice_target']} | {times('seconds_to_target')} | "
        f"{x(speed)} |",
        f"| training seconds until all 8 reach Dice {fmt(c['common_dice'], '.3f', 'n/a')} (the highest level both "
        "reached; n/a when it is near 0) | "
        f"{fmt(c['seconds_to_common_dice']['paper'], '.0f')} | {fmt(c['seconds_to_common_dice']['pipeline'], '.0f')} | "
        f"{x(c['speedup_to_common_dice'])} |",
        f"| training seconds until every structure reaches the paper's pipeline's best Dice on it | "
        f"{fmt(t_best['paper'], '.0f')} | {fmt(t_best['pipeline'], '.0f')} | {x(best)} |",
        f"| training seconds in all (epochs per network) | {p['seconds_trained']:.0f} "
        f"({', '.join(str(v) for v in p['epochs'].values())}) | {q['seconds_trained']:.0f} "
        f"({', '.join(str(v) for v in q['epochs'].values())}) | |",
        f"| inference per patient (AP + LAT, 8 masks; no classifier) | {p['inference_seconds_per_patient']:.3f} s | "
        f"{q['inference_seconds_per_patient']:.3f} s | {x(c['inference_speedup'])} |",
        f"| peak resident memory of the process | {p['peak_rss_mb']:.0f} MB | {q['peak_rss_mb']:.0f} MB | |",
        f"| training FLOP/s (convolutions; training = 3 x forward) | {p['achieved_gflops']:.1f} GFLOP/s | "
        f"{q['achieved_gflops']:.1f} GFLOP/s | |",
        f"| ... of the nominal peak ({m['peak_gflops']:.0f} GFLOP/s) | {100 * p['fraction_of_peak']:.0f} % | "
        f"{100 * q['fraction_of_peak']:.0f} % | |",
        f"| training GFLOP per patient and epoch, all 8 structures | {p['train_gflop_per_patient']:.1f} | "
        f"{q['train_gflop_per_patient']:.1f} | |",
        "",
        "Per structure: validation Dice (threshold 0.5, mean over the "
        f"{d['AP']['val_images']} validation X-rays of each view, in the networks' {s['height']}x{s['width']} frame) "
        f"at the end and at best, and the training seconds of its network until it reached {s['dice_target']}:",
        "",
        "| structure | paper: Dice at end / best | recommended: Dice at end / best | paper: seconds to "
        f"{s['dice_target']} | recommended: seconds to {s['dice_target']} |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {k.replace('_', ' ')} | {p['final_dice'][k]:.3f} / {p['best_dice'][k]:.3f} | "
              f"{q['final_dice'][k]:.3f} / {q['best_dice'][k]:.3f} | "
              f"{fmt(p['seconds_to_target_by_structure'][k], '.0f')} | "
              f"{fmt(q['seconds_to_target_by_structure'][k], '.0f')} |" for k in p["final_dice"]]
    lines += [
        "",
        "## What ran",
        "",
        f"- **Paper's pipeline**: 8 U-Nets of the paper's architecture (filters {s['filters']}, depth {s['depth']}, "
        f"no batch norm), one per structure, the paper's loss, Adam 1e-3, batch {s['paper_batch']}, `model.fit` on "
        "NumPy arrays with validation data, one network after the other.",
        f"- **Recommended pipeline**: 2 multi-output U-Nets of the same architecture (3 AP + 5 LAT sigmoid outputs) "
        f"with batch normalisation (momentum 0.9), the loss `{s['pipeline_loss']}` of `spinelib.seg.losses`, batch {s['pipeline_batch']}, "
        "`spinelib.seg.training.train_segmentation` (`tf.data` from arrays decoded and resized once, seeded "
        "epoch plans, checkpoints every epoch). Left out: page 3's spine crop (a second network) and the classifier.",
        f"- **Data**: {d['patients']} synthetic patients ({d['AP']['train_images']} training and "
        f"{d['AP']['val_images']} validation X-rays per view, split by patient), generated in "
        f"{d['generate_seconds']:.0f} s and decoded and resized once in {d['decode_resize_seconds']:.0f} s "
        "(not in the times above; both pipelines get the same arrays).",
        "- **Times** are wall seconds of training (graph tracing, validation and checkpoints included, the "
        "benchmark's per-epoch Dice probe not). A network of the paper's pipeline stops at the epoch its structure "
        "reaches the target; one of the recommended pipeline goes on until each of its structures is also at the "
        "paper's pipeline's best Dice on it (which ran first), or its epochs run out. "
        "Inference: one `predict` call per network and X-ray, after a warm-up call. Peak memory: "
        "`ru_maxrss` of the pipeline's own process (data, one network at a time, TensorFlow).",
        f"- **FLOP/s**: convolution multiply-adds counted from the layers x 2 (forward "
        f"{p['per_network'][0]['forward_gflop_per_image']:.2f} GFLOP per image for one single-structure network); "
        f"training taken as 3 x forward; images per second from the second of two epochs over "
        f"{p['throughput']['images']} training X-rays (LAT view; the paper's network with 1 output, the recommended "
        f"one with 5), no validation. Peak: {m['peak_formula']} = {m['peak_gflops']:.1f} GFLOP/s "
        f"(clock: {m['clock_source']}).",
        "",
        "## The machine",
        "",
        f"{m['cpu_model']}, {m['cores']} cores at {m['clock_mhz']:.0f} MHz ({m['simd']}), {m['memory_gb']} GB, "
        f"{m['system']}; Python {m['python']}, TensorFlow {p['tensorflow']}, Keras {p['keras']}. Load average "
        f"(1 min) at the start and end of each pipeline: paper {p['load_avg_1min'][0]:.1f} / "
        f"{p['load_avg_1min'][1]:.1f}, recommended {q['load_avg_1min'][0]:.1f} / {q['load_avg_1min'][1]:.1f} "
        "(a shared machine: above the core count, the times are inflated).",
        "",
        "## Reproduce",
        "",
        "This run:",
        "",
        "```bash",
        rec["command"],
        "```",
        "",
        "Full scale (the paper's 512x256 input, 60 patients; many hours on 2 cores):",
        "",
        "```bash",
        rec["full_scale_command"],
        "```",
        "",
    ]
    return "\n".join(lines)


def update_page(page: Path, md: str) -> None:
    """Put ``md`` (its headings one level down) between the page's markers."""
    from spinelib.core.provenance import put_between_markers

    put_between_markers(page, md, (PAGE_START, PAGE_END))


def shown_arguments(argv: list[str]) -> list[str]:
    """The command line without this machine's paths (``--work-dir``, ``--out-dir``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--work-dir", "--out-dir"):
            skip = True
        elif not a.startswith(("--work-dir=", "--out-dir=")):
            out.append(a)
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--height", type=int, default=FULL_SCALE["height"])
    ap.add_argument("--width", type=int, default=FULL_SCALE["width"])
    ap.add_argument("--patients", type=int, default=FULL_SCALE["patients"], help="synthetic patients (both views)")
    ap.add_argument("--synthetic-scale", type=float, default=FULL_SCALE["synthetic_scale"],
                    help="size of the synthetic X-rays (1 = the paper's Table 1 sizes)")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--filters", type=int, default=FULL_SCALE["filters"], help="first-level filters (paper: 32)")
    ap.add_argument("--depth", type=int, default=5, help="resolution levels (paper: 5)")
    ap.add_argument("--dice-target", type=float, default=FULL_SCALE["dice_target"])
    ap.add_argument("--max-epochs", type=int, default=FULL_SCALE["max_epochs"], help="per network of the paper's pipeline")
    ap.add_argument("--pipeline-max-epochs", type=int, default=None,
                    help="per network of the recommended pipeline (default: as many optimizer steps as the paper's "
                         "networks may take, max-epochs x pipeline-batch / paper-batch)")
    ap.add_argument("--paper-batch", type=int, default=1)
    ap.add_argument("--pipeline-batch", type=int, default=8)
    ap.add_argument("--pipeline-loss", default="dice")
    ap.add_argument("--throughput-images", type=int, default=32, help="images of each timed throughput epoch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", default=str(REPO / "outputs" / "benchmarks" / "paper_vs_pipeline"),
                    help="synthetic data, arrays and checkpoints (deleted and remade)")
    ap.add_argument("--out-dir", default=str(REPO / "benchmarks"), help="where <name>.json and <name>.md go")
    ap.add_argument("--name", default="paper_vs_pipeline")
    ap.add_argument("--update-page", action="store_true", help=f"copy the Markdown into {PAGE.relative_to(REPO)}")
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild <name>.json/.md from the finished run in --work-dir (no training)")
    ap.add_argument("--child", choices=PIPELINES, help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.pipeline_max_epochs is None:
        args.pipeline_max_epochs = max(1, args.max_epochs * args.pipeline_batch // args.paper_batch)
    for name in ("height", "width", "patients", "filters", "depth", "max_epochs", "pipeline_max_epochs",
                 "paper_batch", "pipeline_batch", "throughput_images"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be positive")
    if args.height % 2 ** (args.depth - 1) or args.width % 2 ** (args.depth - 1):
        ap.error(f"--height and --width must be multiples of 2**(depth-1) = {2 ** (args.depth - 1)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:  # one pipeline, in its own process
        cfg = json.loads(Path(args.config).read_text())
        result = run_child(args.child, cfg)
        Path(cfg["result"][args.child]).write_text(json.dumps(result, indent=1))
        return 0

    from spinelib.core.provenance import run_info

    out = Path(args.out_dir)
    if args.report_only:  # the same record, its summaries and text recomputed from the children's results
        record = json.loads((out / f"{args.name}.json").read_text())
        cfg = json.loads((Path(args.work_dir) / "config.json").read_text())
        children = {k: json.loads(Path(cfg["result"][k]).read_text()) for k in PIPELINES}
        record["pipelines"] = {k: summarise(k, children[k], record["machine"]["peak_gflops"], cfg["dice_target"])
                               for k in PIPELINES}
        record["comparison"] = compare(record["pipelines"]["paper"], record["pipelines"]["pipeline"],
                                       cfg["dice_target"])
        return write_record(record, out, args.name, args.update_page)

    work = Path(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    machine = cpu_description()
    print(f"[benchmark] {machine['cpu_model']}: peak {machine['peak_gflops']} GFLOP/s ({machine['peak_formula']})")
    arrays, data = prepare_data(args, work)
    cfg = {k: v for k, v in vars(args).items() if k not in ("child", "config")}
    cfg |= {"arrays": str(arrays), "work": str(work), "structures": {v: data[v]["structures"] for v in ("AP", "LAT")},
            "result": {k: str(work / f"{k}.json") for k in PIPELINES}}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    children = {}
    for kind in PIPELINES:  # one after the other, never side by side; the paper's first
        if kind == "pipeline":  # its networks go on until they match the paper's best Dice too
            cfg["paper_best"] = best_dice(children["paper"]["networks"])
        (work / "config.json").write_text(json.dumps(cfg, indent=1))
        print(f"[benchmark] {LABELS[kind]} ...", flush=True)
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", kind, "--config",
                        str(work / "config.json")], check=True, env=env)
        children[kind] = json.loads(Path(cfg["result"][kind]).read_text())
    pipelines = {k: summarise(k, children[k], machine["peak_gflops"], args.dice_target) for k in PIPELINES}
    scale = {k: getattr(args, k) for k in ("height", "width", "synthetic_scale", "filters", "depth", "dice_target",
                                           "max_epochs", "pipeline_max_epochs", "paper_batch", "pipeline_batch",
                                           "pipeline_loss", "seed")}
    argv_shown = shown_arguments(sys.argv[1:] if argv is None else argv)
    full = [f"--{k.replace('_', '-')} {v}" for k, v in FULL_SCALE.items()]
    record = {
        "benchmark": args.name, "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "reduced_scale": any(getattr(args, k) != v for k, v in FULL_SCALE.items()),
        "scale": scale, "data": data, "machine": machine, "pipelines": pipelines,
        "comparison": compare(pipelines["paper"], pipelines["pipeline"], args.dice_target),
        "command": "python benchmarks/paper_vs_pipeline.py " + " ".join(shlex.quote(a) for a in argv_shown),
        "full_scale_command": "python benchmarks/paper_vs_pipeline.py " + " ".join(full) + " --update-page",
        "run_info": run_info(seed=args.seed),
    }
    return write_record(record, out, args.name, args.update_page)


def write_record(record: dict, out: Path, name: str, page: bool) -> int:
    from spinelib.core.runs import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", record)
    md = markdown(record)
    (out / f"{name}.md").write_text(md)
    if page:
        update_page(PAGE, md)
    print(md)
    print(f"[benchmark] wrote {out / (name + '.json')} and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
