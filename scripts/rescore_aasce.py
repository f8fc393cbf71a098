#!/usr/bin/env python
"""Score a finished AASCE long run again, from its saved validation probabilities.

    .venv/bin/python scripts/rescore_aasce.py --record results/aasce_unet_lite0 --work /tmp/seg_work/aasce_lite0

Runs of ``scripts/train_aasce.py`` before the mask-grid fix (``spinelib.data.aasce.scale_landmarks``)
were trained and scored on masks 0.4 px off the bodies. This script does not retrain anything: it
reads the probabilities the run saved (``<work>/aasce_vertebra/val_prob.npz``) and measures them
(1) in the network's frame against the aligned masks and (2) at each X-ray's own size against the
corners drawn there, the one measure that does not depend on any frame, and (3) vertebra by
vertebra (``spinelib.paper.aasce_runs.aasce_level_dice``). It writes ``<record>/rescored.json``
(with this command and the git commit; fields an earlier rescoring measured and this one did not
are kept, its command listed) and ``<record>/levels.csv`` beside the run's own record.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", required=True, help="the run's committed folder (its metrics.json)")
    ap.add_argument("--work", required=True, help="the run's training folder (holds aasce_vertebra/val_prob.npz)")
    ap.add_argument("--aasce-dir", default=None, help="AASCE folder (default: the run's, else ../shared/data/aasce)")
    ap.add_argument("--training-fit", action="store_true",
                    help="also load the run's network (<work>/aasce_vertebra/last.keras) and measure its Dice on its "
                         "own training images beside the validation ones (spinelib.seg.experiment.training_fit)")
    args = ap.parse_args(argv)

    import numpy as np

    from spinelib.core.config import dataset_missing_message, find_dataset
    from spinelib.core.provenance import git_commit
    from spinelib.data import segdata
    from spinelib.paper import aasce_runs
    from spinelib.seg import experiment, long_runs, spine_crop

    record = Path(args.record)
    metrics = json.loads((record / "metrics.json").read_text())
    s = metrics["settings"]
    if s.get("crop"):
        print("rescoring two-stage (--crop) runs is not supported: their crop boxes are not saved", file=sys.stderr)
        return 2
    prob_path = Path(args.work) / "aasce_vertebra" / experiment.PROB_FILE
    if not prob_path.is_file():
        print(f"{prob_path} does not exist: the run's training folder is needed", file=sys.stderr)
        return 2
    root = find_dataset("aasce", args.aasce_dir or s.get("aasce_dir"))
    if root is None:
        print(dataset_missing_message("aasce"), file=sys.stderr)
        return 2
    data = segdata.prepare_aasce_data(root, tuple(s["size"]), max_images=s.get("max_images"),
                                 val_fraction=s["val_fraction"], seed=s["seed"], progress=False)
    prob = np.load(prob_path)["prob"].astype(np.float32)
    if prob.shape != data.val_masks.shape or len(set(data.val_ids)) != metrics["n_val_patients"]:
        print(f"{prob_path} holds {prob.shape}, the run's split gives {data.val_masks.shape}: not the same run",
              file=sys.stderr)
        return 2
    _, frame = experiment.evaluate_probabilities(prob, data.val_masks, data.structures, data.val_ids, seed=s["seed"])
    full = spine_crop.full_resolution_dice(data, prob, progress=False, seed=s["seed"])
    per_level, span = aasce_runs.aasce_level_summary(*aasce_runs.aasce_level_dice(prob, data))  # where on the spine it errs

    def dice(summary):
        d = summary.query("metric == 'dice'").iloc[0]
        return {"mean": float(d["mean"]), "ci95": [float(d["ci_low"]), float(d["ci_high"])]}

    out = {
        "command": ".venv/bin/python scripts/rescore_aasce.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "git_commit": git_commit(REPO, mark_dirty=True),
        "probabilities": "the run's own validation probabilities (float16), no retraining",
        "dice_in_frame_aligned_masks": dice(frame),
        "dice_original_resolution": dice(full) | {
            "how": "probabilities resized to each X-ray's own size, against the corners drawn there "
                   "(spinelib.seg.spine_crop.full_resolution_dice)"},
        "outline_errors_in_frame": experiment.outline_error_summary(prob, data.val_masks),
        "span": span | {"how": "spinelib.paper.aasce_runs.aasce_level_dice, in the network's frame; per vertebra: "
                                + long_runs.LEVELS_FILE},
        "recorded_dice": metrics["dice_mean_over_val_patients"],
        "recorded_on": "aligned masks" if metrics.get("mask_convention") else "naive masks (0.4 px offset)",
    }
    if args.training_fit:
        import keras

        model_path = prob_path.parent / "last.keras"
        if not model_path.is_file():
            print(f"{model_path} does not exist: --training-fit needs the run's network", file=sys.stderr)
            return 2
        model = keras.models.load_model(model_path, compile=False)
        out["training_fit"] = experiment.training_fit(model, data, batch_size=s["batch_size"], seed=s["seed"]) | {
            "frame": "the network's frame"}
    path = record / "rescored.json"
    if path.is_file():  # keep what an earlier rescoring measured and this one did not (e.g. --training-fit)
        before = json.loads(path.read_text())
        kept = sorted(k for k in before if k not in out and k != "earlier_commands")
        out = {k: before[k] for k in kept} | out
        out["earlier_commands"] = before.get("earlier_commands", []) + [
            {"command": before.get("command"), "git_commit": before.get("git_commit")}]
    path.write_text(json.dumps(out, indent=2))
    per_level.to_csv(record / long_runs.LEVELS_FILE)
    long_runs.write_readme(record, metrics)  # the README shows what rescored.json adds
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
