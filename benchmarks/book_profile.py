#!/usr/bin/env python
"""Where a book build's time goes: per page, and per training run (issue 16).

    .venv/bin/python benchmarks/book_profile.py                       # the ci build in outputs/ci, _build
    .venv/bin/python benchmarks/book_profile.py --output-dir outputs/ci --timings _build/timings-ci.csv \\
        --out benchmarks/book_profile_ci

Reads what the build left: ``_build/timings-<profile>.csv`` (each page's wall seconds, and CPU
seconds where the build recorded them) and every training run under the output folder
(``train_state.json``: images, batch, input size, network; ``history.csv``: the seconds of each
epoch). Writes ``<out>.csv`` (one row per training run), ``<out>-pages.csv`` (one row per page)
and ``<out>.md`` (both tables, the slowest first, with each page's share of the build).
Nothing is trained or executed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "benchmarks.md"
PAGE_MARKERS = ("<!-- book-profile:start -->", "<!-- book-profile:end -->")
RUN_FOLDERS = {"segmenters": "05", "unet-aasce": "04"}
"""Run folders not named after their page: page 5's measuring U-Nets (``segmenters-<key>``) and
page 4's in-domain U-Net on AASCE masks (``unet-aasce``); the others start with the page number."""


RUN_PAGES = {"03_unet/aasce": "03b"}
"""Runs that live in another page's folder: page 3b trains its AASCE run in page 3's run folder."""


def page_of_run(folder: str, run: str = "") -> str:
    """The page that trains a run (``run``: its path under the output folder) of an output folder
    (``02_table2`` -> ``02``)."""
    if run in RUN_PAGES:
        return RUN_PAGES[run]
    for prefix, page in RUN_FOLDERS.items():
        if folder.startswith(prefix):
            return page
    return folder.split("_")[0]


def training_runs(output_dir: Path) -> pd.DataFrame:
    """One row per training run (a folder with ``train_state.json`` and ``history.csv``) under ``output_dir``."""
    rows = []
    for state_path in sorted(output_dir.rglob("train_state.json")):
        run = state_path.parent
        hist = run / "history.csv"
        if not hist.is_file():
            continue
        state = json.loads(state_path.read_text())
        cfg = state.get("config", {})
        h = pd.read_csv(hist)
        if h.empty or "epoch_seconds" not in h:
            continue
        rel = run.relative_to(output_dir)
        seconds = float(h["epoch_seconds"].sum())
        n_train = int(cfg.get("n_train", 0))
        epochs = len(h)
        shape = cfg.get("input_shape", [])
        rows.append({
            "page": page_of_run(rel.parts[0], rel.as_posix()), "run": rel.as_posix(), "network": cfg.get("model", ""),
            "parameters": cfg.get("params"), "input": "x".join(str(v) for v in shape[:2]),
            "batch": cfg.get("batch_size"), "train_images": n_train, "val_images": cfg.get("n_val"),
            "epochs": epochs, "training_seconds": round(seconds, 1), "seconds_per_epoch": round(seconds / epochs, 2),
            "first_epoch_seconds": round(float(h["epoch_seconds"].iloc[0]), 1),
            "train_images_per_second": round(n_train * epochs / seconds, 2) if seconds > 0 else float("nan"),
            "best_val_dice": round(float(h["val_dice"].max()), 4) if "val_dice" in h else float("nan"),
            "last_val_dice": round(float(h["val_dice"].iloc[-1]), 4) if "val_dice" in h else float("nan"),
        })
    return pd.DataFrame(rows)


def pages(timings: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """Each build step's wall (and CPU) seconds with the training seconds of its runs."""
    t = pd.read_csv(timings)
    t["page"] = t["step"].str.extract(r"^(\d\d[a-z]?)_", expand=False)
    trained = runs.groupby("page")["training_seconds"].sum() if len(runs) else pd.Series(dtype=float)
    n_runs = runs.groupby("page").size() if len(runs) else pd.Series(dtype=int)
    t["training_runs"] = t["page"].map(n_runs).fillna(0).astype(int)
    t["training_seconds"] = t["page"].map(trained).fillna(0.0).round(1)
    t["share_of_build"] = (t["seconds"] / t["seconds"].sum()).round(3)
    return t.drop(columns="page")


def _blank_nan(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every missing number as None, which the Markdown shows as a dash."""
    return frame.astype(object).where(frame.notna(), None)


def markdown(page_table: pd.DataFrame, runs: pd.DataFrame, title: str, lanes: tuple[int, float] | None = None) -> str:
    """Both tables, narrow enough for a book page (the CSVs hold every column). ``lanes``: ``(jobs,
    wall seconds of all pages)`` of a build whose pages ran side by side (its ``build-info.json``)."""
    total = page_table["seconds"].sum()
    shown = page_table.sort_values("seconds", ascending=False)
    cpu = shown["cpu_seconds"] if "cpu_seconds" in shown else pd.Series(float("nan"), index=shown.index)
    pages_md = pd.DataFrame({
        "step": shown["step"].str.replace(".ipynb", "", regex=False), "wall (min)": shown["seconds"] / 60,
        "CPU (min)": cpu / 60, "U-Net runs": shown["training_runs"], "their training (min)": shown["training_seconds"] / 60,
        "share (%)": 100 * shown["share_of_build"]})
    lines = [f"# {title}", "",
             f"The steps below take **{total / 60:.1f} min** of wall time in all. Pages, the slowest first (training = the "
             "seconds of the page's own U-Net runs, from their `history.csv`; a run the build reused from an earlier one "
             "counts the seconds it once took, so profile a build from scratch):", "",
             _blank_nan(pages_md).to_markdown(index=False, floatfmt=".1f", missingval="–"), ""]
    if lanes is not None:
        lines[2:2] = [f"The pages ran in {lanes[0]} lanes side by side: **{lanes[1] / 60:.1f} min** from the first page's "
                      "start to the last one's end. Their rows below overlap, so they add up to more.", ""]
    if "measured" in shown:
        lines += ["How each step was measured:", ""] + [
            f"- {step.removesuffix('.ipynb')}: {note}" for step, note in zip(shown["step"], shown["measured"]) if isinstance(note, str)] + [""]
    lines += [f"U-Net training runs ({len(runs)}; the classifiers of pages 4-5 train without a `history.csv` and count in "
              "their page's time only), the slowest first; the CSV beside this file has every column:", ""]
    if len(runs):
        r = runs.sort_values("training_seconds", ascending=False)
        runs_md = pd.DataFrame({
            "run": r["run"].str.replace(r"-[0-9a-f]{12}", "", regex=True)  # segmenters-<cache key>/AP -> segmenters/AP
                   .str.replace(r"^(\d\d)[a-z0-9_]*/", r"\1/", regex=True),  # 03_unet/aasce -> 03/aasce: a narrow column
            "input": r["input"], "epochs": r["epochs"], "images/s": r["train_images_per_second"],
            "training (min)": r["training_seconds"] / 60})
        lines.append(_blank_nan(runs_md).to_markdown(index=False, floatfmt=".1f", missingval="–"))
    else:
        lines.append("(none)")
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="ci", help="the build's profile (default: ci)")
    ap.add_argument("--output-dir", type=Path, nargs="+",
                    help="the build's output folder(s) (default: outputs/<profile>; several when its pages ran apart)")
    ap.add_argument("--timings", type=Path, help="the build's timings (default: _build/timings-<profile>.csv)")
    ap.add_argument("--out", type=Path, help="output path without suffix (default: benchmarks/book_profile_<profile>)")
    ap.add_argument("--title", default=None, help="the Markdown's title")
    ap.add_argument("--update-page", action="store_true",
                    help=f"also put the Markdown into {PAGE.relative_to(REPO)} between its markers")
    args = ap.parse_args(argv)
    output_dirs = args.output_dir or [REPO / "outputs" / args.profile]
    timings = args.timings or REPO / "_build" / f"timings-{args.profile}.csv"
    out = args.out or REPO / "benchmarks" / f"book_profile_{args.profile}"
    for path, what in [(d, "output folder") for d in output_dirs] + [(timings, "timings file")]:
        if not path.exists():
            print(f"error: no {what} at {path}: build the book first (bash scripts/build_book.sh {args.profile})",
                  file=sys.stderr)
            return 2
    runs = pd.concat([training_runs(d) for d in output_dirs], ignore_index=True)
    page_table = pages(timings, runs)
    runs.to_csv(out.with_suffix(".csv"), index=False)
    page_table.to_csv(out.parent / f"{out.name}-pages.csv", index=False)
    info = timings.parent / "build-info.json"
    build = json.loads(info.read_text()) if info.is_file() else {}
    lanes = (int(build["jobs"]), float(build["pages_wall_seconds"])) if int(build.get("jobs", 1)) > 1 else None
    out.with_suffix(".md").write_text(markdown(page_table, runs, args.title or f"Where the {args.profile} book's time goes",
                                               lanes))
    if args.update_page:
        from spinelib.core.provenance import put_between_markers

        put_between_markers(PAGE, out.with_suffix(".md").read_text(), PAGE_MARKERS)
    print(f"{len(runs)} training runs, {len(page_table)} build steps -> {out}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
