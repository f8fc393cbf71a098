"""Page 3: the paper's Table 3, the remedies for thin structures and one network per view against one per structure."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spinelib.core.plans import Plan
from spinelib.core.runs import quiet_tensorflow
from spinelib.core.structures import PAPER_DICE, STRUCTURES
from spinelib.data.segdata import SegmentationData, load_original, resized_view_data
from spinelib.seg.experiment import (
    ExperimentResult,
    compare_results,
    evaluate_probabilities,
    input_size,
    run_experiment,
    timing_table,
)
from spinelib.seg.spine_crop import crop_experiment, full_resolution_dice
from spinelib.viz import cases_figure


def table3(results: Sequence[ExperimentResult] | ExperimentResult, paper: Mapping[str, float] = PAPER_DICE,
           views: Mapping[str, SegmentationData] | None = None, n_boot: int = 1000) -> pd.DataFrame:
    """Dice per structure beside the paper's Table 3 (structures in the paper's order):
    ``paper_dice, dice, ci_low, ci_high, n_patients, experiment, difference, at_or_above_paper``.

    ``dice`` is measured at the network's input size, against masks resized to it (the paper's
    way). With ``views`` (view name -> the :class:`SegmentationData` the results were trained on),
    a column ``dice_original_resolution`` adds :func:`full_resolution_dice`: probabilities
    resized to each X-ray's size against the original masks.
    """
    from spinelib.core.structures import view_of

    if isinstance(results, ExperimentResult):
        results = [results]
    rows = {}
    for r in results:
        s = r.summary.query("metric == 'dice'").set_index("structure")
        full = None
        if views is not None:
            data = views[view_of(r.structures[0])].select(list(r.structures))
            full = full_resolution_dice(data, r.val_prob(), n_boot=n_boot, progress=False)
            full = full.query("metric == 'dice'").set_index("structure")["mean"]
        for structure in r.structures:
            d = s.loc[structure]
            rows[structure] = {
                "paper_dice": paper.get(structure, np.nan), "dice": d["mean"], "ci_low": d["ci_low"],
                "ci_high": d["ci_high"], "n_patients": int(d["n"]), "experiment": r.name,
            }
            if full is not None:
                rows[structure]["dice_original_resolution"] = full[structure]
    order = [s for s in STRUCTURES if s in rows] + [s for s in rows if s not in STRUCTURES]
    df = pd.DataFrame.from_dict(rows, orient="index").reindex(order)
    df["difference"] = df["dice"] - df["paper_dice"]
    df["at_or_above_paper"] = df["dice"] >= df["paper_dice"]
    df.index.name = "structure"
    return df


def final_table3(remedy_dice: pd.DataFrame, pipeline: str = "spine crop + Dice loss",
                 input_frame: pd.Series | None = None, ci: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """The book's final answer per structure: the Dice of one fixed ``pipeline`` (a column of
    :attr:`Remedies.dice`, chosen before looking at the numbers, at the original resolution)
    beside the paper's. Columns ``paper_dice, final_dice, pipeline, at_or_above_paper``; with
    ``input_frame`` (:meth:`Remedies.input_frame_dice`: the same networks measured in their own
    input frame, the paper's protocol) also ``input_frame_dice, input_frame_at_or_above_paper``;
    with ``ci`` (:attr:`Remedies.dice_ci`) also ``ci_low, ci_high``, the 95 % CI of ``final_dice``."""
    if pipeline not in remedy_dice.columns:
        raise ValueError(f"no column {pipeline!r} in the remedies table; columns: {list(remedy_dice.columns)}")
    out = pd.DataFrame({"paper_dice": remedy_dice["paper_dice"], "final_dice": remedy_dice[pipeline]})
    if ci is not None:
        if pipeline not in ci:
            raise ValueError(f"no 95% CI for {pipeline!r}; the intervals are for {list(ci)}")
        out[["ci_low", "ci_high"]] = ci[pipeline][["ci_low", "ci_high"]].reindex(out.index)
    out["pipeline"] = f"{pipeline} (original resolution)"
    out["at_or_above_paper"] = out["final_dice"] >= out["paper_dice"]
    if input_frame is not None:
        out["input_frame_dice"] = input_frame.reindex(out.index)
        out["input_frame_at_or_above_paper"] = out["input_frame_dice"] >= out["paper_dice"]
    return out


def inference_variants(
    result: ExperimentResult,
    data: SegmentationData,
    variants: Mapping[str, dict] | None = None,
    n_boot: int = 1000,
) -> pd.DataFrame:
    """Dice per structure for one trained network under several inference settings.

    ``variants`` maps a label to ``{"tta": bool, "postprocess": dict | None}``; the default
    compares plain thresholding, :func:`spinelib.seg.inference.postprocess` (small components
    removed, holes filled), flip test-time augmentation, and both. Also reports the prediction
    time of each. Returns a table with one column per variant (plus ``seconds`` rows).
    """
    from spinelib.seg.inference import predict

    if variants is None:
        pp = {"threshold": 0.5, "min_size_fraction": 0.0005, "fill_holes": True}
        variants = {"threshold 0.5": {}, "post-processing": {"postprocess": pp},
                    "flip TTA": {"tta": True}, "flip TTA + post-processing": {"tta": True, "postprocess": pp}}
    if data.structures != result.structures:
        data = data.select(result.structures)
    model = result.load_model()
    probs, seconds, cols = {}, {}, {}
    for label, v in variants.items():
        unknown = set(v) - {"tta", "postprocess"}
        if unknown:
            raise ValueError(f"variant {label!r}: unknown setting(s) {sorted(unknown)}; use tta and postprocess")
        tta = bool(v.get("tta", False))
        t0 = time.perf_counter()
        if tta not in probs:
            with quiet_tensorflow():
                probs[tta] = predict(model, data.val_images, batch_size=8, tta_flip=tta)
        prob = probs[tta]
        _, summary = evaluate_probabilities(prob, data.val_masks, data.structures, data.val_ids,
                                            v.get("postprocess"), n_boot=n_boot)
        seconds[label] = time.perf_counter() - t0
        cols[label] = summary.query("metric == 'dice'").set_index("structure")["mean"]
    df = pd.DataFrame(cols).reindex(list(data.structures))
    df.loc["seconds (predict + evaluate)"] = pd.Series(seconds)
    return df


def line_width_table(data: SegmentationData, structures: Sequence[str] | None = None,
                     sizes: Sequence[tuple[int, int]] = ((256, 128), (512, 256)), n: int = 6) -> pd.DataFrame:
    """How wide a structure is, in pixels, at the original resolution and at input ``sizes``.

    Width is measured per row: white pixels / rows with any white pixel (for the near-vertical
    lines, their horizontal thickness). ``rows hit %`` is the share of the structure's rows
    (top to bottom of the structure) that still hold a white pixel after nearest-neighbour
    resizing: below 100 % the line is dotted, which is what the network is asked to learn.
    Uses the first ``n`` validation patients' original masks.
    """
    from spinelib.core.imageio import resize_mask
    from spinelib.data.clinical_arrays import load_view

    if not data.val_sources or not hasattr(data.val_sources[0], "views"):
        raise ValueError(f"{data.name}: line_width_table needs the dataset's patient records (prepare_view_data)")
    names = list(structures or data.structures)
    rows = []
    for record in data.val_sources[:n]:
        _, masks = load_view(record, data.view, structures=names)
        for c, s in enumerate(names):
            m = masks[..., c]
            frames = [("original", m)] + [(f"{h}x{w}", resize_mask(m, (h, w))) for h, w in sizes]
            for label, mm in frames:
                r = np.flatnonzero(mm.any(axis=1))
                span = (r.max() - r.min() + 1) if r.size else 0
                rows.append({"structure": s, "frame": label, "height": mm.shape[0],
                             "width px": mm.sum() / max(r.size, 1), "rows hit %": 100 * r.size / max(span, 1)})
    df = pd.DataFrame(rows)
    return df.groupby(["structure", "frame"], sort=False)[["height", "width px", "rows hit %"]].mean()


def resolution_ceiling(data: SegmentationData, sizes: Sequence[tuple[int, int]],
                       structures: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The best Dice any network working at an input size can reach at the **original**
    resolution: each validation patient's true mask, resized to the size (nearest neighbour, as
    the training targets) and back (as :func:`full_resolution_dice` does with predictions).
    One column per size (``"HxW"``), one row per structure. A thin line that the resizing turns
    into dots cannot come back whole, however good the network."""
    from spinelib.core.imageio import resize_mask

    names = list(structures or data.structures)
    sub = data.select(names) if names != list(data.structures) else data
    originals = [load_original(data, record, names)[1] for record in data.val_sources]
    cols = {}
    for h, w in sizes:
        prob = np.stack([np.stack([resize_mask(m[..., c], (h, w)) for c in range(len(names))], axis=-1)
                         for m in originals]).astype(np.float32)
        cols[f"{h}x{w}"] = _full_res(sub, prob, n_boot, seed)["mean"]
    return pd.DataFrame(cols).rename_axis("structure")


LINES: tuple[str, str] = ("Lat_Anterior_Vertebral_Line", "Lat_Posterior_Vertebral_Line")


def compare_with_long_run(final: pd.DataFrame, long_dir: str | os.PathLike, profile: str = "") -> pd.DataFrame:
    """:func:`final_table3` of this page beside the committed long run's (``long_dir`` written by
    ``scripts/train_unet_synthetic.py``); without a long run, this page's columns only."""
    cols = {f"this page (profile {profile})": final[["final_dice"]]}
    path = Path(long_dir) / "final_table3.csv"
    if path.is_file():
        meta = json.loads((Path(long_dir) / "metrics.json").read_text())
        label = f"long run (committed, {'x'.join(str(v) for v in meta['plan']['size'])}, commit {meta['git_commit'][:12]})"
        cols[label] = pd.read_csv(path, index_col=0)[["final_dice", "pipeline"]]
    out = pd.concat(cols, axis=1)
    out.insert(0, "paper (reference)", final["paper_dice"])
    return out


@dataclass
class Remedies:
    """The paper's three suggestions, per view, all measured at the original resolution.

    ``dice``: structure x setting (``paper's loss`` = the Table 3 network, ``Dice loss``,
    ``spine crop + Dice loss``, ``larger input + Dice loss`` for the two lines), mean Dice over
    validation patients; ``results``: the trained experiments, keyed ``(setting, view)``;
    ``crops``: the crop data per view and for the ``"lines"`` (validation crops cut around the
    *predicted* vertebral column) and ``boxes``: those crop boxes; ``dice_ci``: per setting, the
    95 % CI of each of its ``dice`` values (structure x ``ci_low, ci_high``, bootstrap over
    validation patients).
    """

    dice: pd.DataFrame
    results: dict
    crops: dict
    boxes: dict
    dice_ci: dict = field(default_factory=dict)

    def input_frame_dice(self, setting: str = "spine crop + Dice loss") -> pd.Series:
        """Mean validation Dice per structure **in the network's own frame** (its input size,
        against the masks resized to it: the paper's protocol), for one setting; the lines come from
        their own crop network when there is one."""
        out = {}
        for (name, view), r in self.results.items():
            if name != setting:
                continue
            for structure, value in r.dice().items():
                if view == "lines" or structure not in out:
                    out[structure] = value
        return pd.Series(out, dtype=float).reindex(self.dice.index)

    def figure(self, structure: str = LINES[0], n: int = 2):
        """Best and worst validation crops for one structure (found, missed, false alarm)."""
        from spinelib.core.structures import view_of

        view = "lines" if structure in LINES and "lines" in self.crops else view_of(structure)
        return cases_figure(self.crops[view], self.results[("spine crop + Dice loss", view)], structure, n=n,
                            title=f"SYNTHETIC - {structure.replace('_', ' ')} in the predicted spine crop")


def _full_res(data: SegmentationData, prob: np.ndarray, n_boot: int, seed: int, boxes=None) -> pd.DataFrame:
    """Per structure of ``data``: ``mean, ci_low, ci_high`` of the Dice at the original resolution
    (:func:`full_resolution_dice`: over validation patients, percentile-bootstrap 95 % CI)."""
    summary = full_resolution_dice(data, prob, n_boot=n_boot, seed=seed, progress=False, boxes=boxes)
    return (summary.query("metric == 'dice'").set_index("structure")[["mean", "ci_low", "ci_high"]]
            .reindex(list(data.structures)))


CROP_MARGINS: dict[str, tuple[float, float]] = {"AP": (0.05, 0.1), "LAT": (0.05, 1.0), "lines": (0.05, 0.1)}
"""(vertical, horizontal) margins of the spine crops, as fractions of the vertebral column's box.
In the AP view every structure lies on the column; in the LAT view the spinous processes reach up to
about one column width behind it (measured on the synthetic masks), so its crop is three column
widths wide; the vertebral lines run along the front and back of the bodies and get the tight crop."""


def remedy_experiments(
    views: Mapping[str, SegmentationData],
    table3_runs: Mapping[str, ExperimentResult],
    out_dir: str | os.PathLike,
    plan: Plan,
    n_boot: int = 1000,
    margins: Mapping[str, tuple[float, float]] = CROP_MARGINS,
) -> Remedies:
    """What the paper suggests for structures with too few white pixels (section 2.5.6),
    measured per view against its Table 3 network, at the original resolution
    (:func:`full_resolution_dice`, the one frame where different input sizes and crops compare):

    - ``Dice loss``: another loss, scale-free per structure (the paper's loss grows with the
      number of white pixels, so in a multi-output network the large structures set the pace);
    - ``spine crop + Dice loss``: crops around the vertebral column that the Table 3 network
      **predicts** on each validation X-ray (training crops around the true column), widened by
      :data:`CROP_MARGINS`, cut from the original X-ray at the same input size, so small
      structures get several times more pixels; the two lines get their own tight crop;
    - ``larger input + Dice loss``: the two vertebral lines at ``plan.table3_large_size``.
    """
    out_dir = Path(out_dir)
    seed = plan.seed
    dice_recipe = dict(plan.recipe("lines"), loss="dice")
    columns: dict[str, pd.DataFrame] = {}  # setting -> structure x (mean, ci_low, ci_high)
    results, crops, boxes = {}, {}, {}
    for view, data in views.items():
        t3 = table3_runs[view]
        if tuple(t3.structures) != tuple(data.structures):
            raise ValueError(f"{t3.name} segments {t3.structures}, the {view} data has {data.structures}")
        _add_rows(columns, "paper's loss (Table 3 network)", _full_res(data, t3.val_prob(), n_boot, seed))
        r = run_experiment(data, out_dir, f"remedy_dice_{view}", n_boot=n_boot, **dice_recipe)
        results[("Dice loss", view)] = r
        _add_rows(columns, "Dice loss", _full_res(data, r.val_prob(), n_boot, seed))
        column = data.structures.index(f"{view.capitalize()}_Vertebra")
        predicted, true = t3.val_prob()[..., column], data.train_masks[..., column]  # predicted, never the truth
        crop = crop_experiment(data, predicted, true, out_dir, f"remedy_crop_dice_{view}", plan.table3_size,
                               margins[view], n_boot=n_boot, **dice_recipe)
        boxes[view], crops[view] = crop.boxes, crop.data
        results[("spine crop + Dice loss", view)] = crop.result
        crop_dice = _full_res(data, crop.result.val_prob(), n_boot, seed, boxes=crop.boxes)
        if view == "LAT":  # the lines: a tight crop around the column
            lines = crop_experiment(data, predicted, true, out_dir, "remedy_crop_dice_lines", plan.table3_size,
                                    margins["lines"], structures=list(LINES), n_boot=n_boot, **dice_recipe)
            boxes["lines"], crops["lines"] = lines.boxes, lines.data
            results[("spine crop + Dice loss", "lines")] = lines.result
            lines_data = data.select(list(LINES))
            crop_dice.loc[list(LINES)] = _full_res(lines_data, lines.result.val_prob(), n_boot, seed,
                                                   boxes=lines.boxes).to_numpy()
        _add_rows(columns, "spine crop + Dice loss", crop_dice)
        if view == "LAT":
            large = resized_view_data(data, plan.table3_large_size, list(LINES))
            r = run_experiment(large, out_dir, "remedy_large_dice_lines", n_boot=n_boot,
                               **dict(plan.recipe("large"), loss="dice"))
            results[("larger input + Dice loss", view)] = r
            _add_rows(columns, "larger input + Dice loss", _full_res(data.select(list(LINES)), r.val_prob(), n_boot, seed))
    dice = pd.DataFrame({setting: frame["mean"] for setting, frame in columns.items()})
    order = [s for s in STRUCTURES if s in dice.index]
    dice = dice.reindex(order)
    dice.insert(0, "paper_dice", pd.Series(PAPER_DICE).reindex(order))
    dice.index.name = "structure"
    dice_ci = {setting: frame[["ci_low", "ci_high"]].reindex(order).rename_axis("structure")
               for setting, frame in columns.items()}
    return Remedies(dice=dice, results=results, crops=crops, boxes=boxes, dice_ci=dice_ci)


def _add_rows(columns: dict[str, pd.DataFrame], setting: str, frame: pd.DataFrame) -> None:
    """Append one view's rows (structure x ``mean, ci_low, ci_high``) to a setting's column."""
    columns[setting] = frame if setting not in columns else pd.concat([columns[setting], frame])


def remedy_timing(remedies: Remedies) -> pd.DataFrame:
    """Training minutes and input size of every remedy network."""
    rows = [{"remedy": label, "view": view, "input": "x".join(str(v) for v in input_size(r)),
             "structures": len(r.structures), "epochs": r.epochs_run, "training minutes": r.train_seconds / 60}
            for (label, view), r in remedies.results.items()]
    return pd.DataFrame(rows).set_index(["remedy", "view"])


@dataclass
class MultiSingle:
    """Eight single networks against one multi-output network per view."""

    dice: pd.DataFrame  # structure x {multi-output, single networks}
    timing: pd.DataFrame
    multi: dict
    single: dict


def multi_vs_single(views: Mapping[str, SegmentationData], out_dir: str | os.PathLike, plan: Plan,
                    n_boot: int = 1000, table3_runs: Mapping[str, ExperimentResult] | None = None) -> MultiSingle:
    """Train, for the same epochs (``plan.table3_single_epochs``), one multi-output network per view and
    one network per structure (the paper's way); compare Dice per structure and training time.
    Only the views in ``plan.table3_single_views`` are compared (all of them except in the smoke run).
    When the comparison's epochs equal the Table 3 epochs, the ``table3_runs`` networks are the
    multi-output side (they are the same experiment)."""
    out_dir = Path(out_dir)
    multi, single = {}, {}
    for view, data in views.items():
        if view not in plan.table3_single_views:
            continue
        if table3_runs is not None and view in table3_runs and plan.table3_single_epochs == plan.table3_epochs:
            multi[view] = table3_runs[view]
        else:
            multi[view] = run_experiment(data, out_dir, f"multi_{view}", n_boot=n_boot, **plan.recipe("single"))
        for s in data.structures:
            single[s] = run_experiment(data, out_dir, f"single_{s}", structures=[s], n_boot=n_boot,
                                       **plan.recipe("single"))
    dice = pd.concat([compare_results({"one network per view": r}) for r in multi.values()])
    dice["one network per structure"] = pd.concat([r.dice() for r in single.values()]).reindex(dice.index)
    dice["difference"] = dice["one network per view"] - dice["one network per structure"]
    timing = timing_table({f"one network per view ({len(multi)})": list(multi.values()),
                           f"one network per structure ({len(single)})": list(single.values())})
    return MultiSingle(dice=dice, timing=timing, multi=multi, single=single)
