#!/usr/bin/env python
"""The long AASCE landmark run, then its record and the released model.

    .venv/bin/python scripts/train_landmarks.py --size 512 256 --epochs 14 \
        --work outputs/landmarks_512 --out results/aasce_landmarks_512 \
        --release spinelib/landmarks/models/aasce_vertebrae_v2 --version 2.0

Training (resumable) writes into ``--work`` (not committed); ``--out`` receives the small committed
record (:data:`spinelib.landmarks.aasce_run.RECORD_FILES`); ``--release`` the model folder that
ships in the package. ``--score-only`` skips training and scores the finished run in ``--work``.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--aasce-dir", default=None, help="AASCE training split (default: ../shared/data/aasce)")
    ap.add_argument("--size", type=int, nargs=2, default=(384, 192), metavar=("H", "W"), help="network input (multiples of 32)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="outputs/landmarks_aasce", help="training files (resumable; not committed)")
    ap.add_argument("--out", default="results/aasce_landmarks", help="the committed record")
    ap.add_argument("--release", default=None, metavar="DIR", help="also write the released model folder here")
    ap.add_argument("--version", default="1.0", help="version of the released model")
    ap.add_argument("--score-only", action="store_true", help="do not train; score the finished run in --work")
    args = ap.parse_args(argv)
    from spinelib.core.config import dataset_missing_message, find_dataset
    from spinelib.landmarks.aasce_run import (
        finish_aasce_landmarks,
        train_aasce_landmarks,
    )

    root = find_dataset("aasce", args.aasce_dir)
    if root is None:
        print(dataset_missing_message("aasce"), file=sys.stderr)
        return 2
    if not args.score_only:
        train_aasce_landmarks(root, args.work, epochs=args.epochs, size=tuple(args.size), batch_size=args.batch_size,
                              lr=args.lr, seed=args.seed)
    command = ".venv/bin/python scripts/train_landmarks.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    metrics = finish_aasce_landmarks(root, args.work, args.out, model_dir=args.release, command=command,
                                     version=args.version)
    lm = [r for r in metrics["summary"] if r["route"] == "landmarks" and r["images"] == "all"][0]
    print(f"landmark route: SMAPE {lm['smape']:.2f} % ({lm['smape_lo']:.2f}-{lm['smape_hi']:.2f}) over "
          f"{metrics['n_val_patients']} validation patients; record in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
