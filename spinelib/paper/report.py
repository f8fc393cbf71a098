"""Headline results: each page records its key numbers; the results page lays them side by side.

A *headline* is one comparable number: what the paper reports and what we measured, on which data
(``real`` or ``synthetic``), with which profile, and the page that produced it. Pages call
:func:`record_headlines` at their end; :func:`collect_headlines` reads all of them back (both live
in :mod:`spinelib.core.headlines`, so the reusable layers can record theirs; re-exported here) and
:func:`headline_table` renders the book's "paper vs. this book" table with links.
"""

from __future__ import annotations

import html
import math

import pandas as pd

from spinelib.core.headlines import (  # re-exported: pages and scripts call report.record_headlines
    COLUMNS,
    DATA_KINDS,
    collect_headlines,
    record_headlines,
)

__all__ = ["COLUMNS", "DATA_KINDS", "collect_headlines", "record_headlines", "headline_table",
           "segmentation_headlines", "findings", "FINDINGS_MARKER",
           "page_of", "page_number", "with_current_pages"]


MOVED_SECTIONS = {"Segmentation: real AP vertebrae": "03b_aasce_segmentation"}
"""Sections whose page was split off: records written before the split (the committed long runs'
``results/headlines``, which ``scripts/train_aasce.py`` filed under ``03_unet_segmentation`` before the split) link to
the page that shows them now."""


def page_of(page: str, section: str) -> str:
    """The page a headline of ``section`` links to (:data:`MOVED_SECTIONS` before the recorded one)."""
    return MOVED_SECTIONS.get(str(section), str(page))


def with_current_pages(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (:func:`collect_headlines`) with each row's ``page`` the one that shows it now
    (:func:`page_of`), for figures that label rows by page."""
    if frame.empty:
        return frame
    return frame.assign(page=[page_of(p, s) for p, s in zip(frame["page"], frame["section"])])


def page_number(page: str) -> str:
    """``"03b_aasce_segmentation"`` -> ``"3b"``: the number the book gives a page."""
    return str(page).split("_")[0].lstrip("0")


def _fmt(value, ci_low=math.nan, ci_high=math.nan) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:.3f}" if isinstance(value, (int, float)) else html.escape(str(value))
    if isinstance(ci_low, (int, float)) and not math.isnan(ci_low) and not math.isnan(ci_high):
        text += f" <small>[{ci_low:.3f}, {ci_high:.3f}]</small>"
    return text


def _dataset_text(data: str, dataset: str) -> str:
    """The dataset description without repeating the badge (``SYNTHETIC synthetic, 60 patients``)."""
    text = str(dataset) if isinstance(dataset, str) else ""
    if not text.lower().startswith(str(data).lower()):
        return text
    rest = text[len(str(data)):].strip()
    if rest.startswith("(") and rest.endswith(")"):
        rest = rest[1:-1]
    return rest.lstrip(", ").strip()


def headline_table(frame: pd.DataFrame, link_prefix: str = "", show_profile: bool | None = None) -> str:
    """An HTML table of headlines in four columns, grouped by section (a heading row each): the
    quantity with its note below it, the paper's number as a reference (empty where the paper has
    none), ours with its 95% CI, the data (a REAL / SYNTHETIC badge and the dataset) with a link to
    the page that measured it.
    ``show_profile``: add each row's profile to its data cell (default: only when the rows do
    not all share one, which the page then states once)."""
    profiles = frame["profile"].astype(str).unique() if len(frame) else []
    show_profile = len(profiles) > 1 if show_profile is None else show_profile
    rows, section = [], None
    for _, r in frame.iterrows():
        if r["section"] != section:
            section = r["section"]
            rows.append(f'<tr class="headline-section"><th colspan="4">{html.escape(str(section))}</th></tr>')
        badge = "REAL" if r["data"] == "real" else "SYNTHETIC"
        colour = "#0072B2" if r["data"] == "real" else "#D55E00"
        page = page_of(r["page"], r["section"])
        link = f'<a href="{link_prefix}{html.escape(page)}.html">page {html.escape(page_number(page))}</a>'
        data = html.escape(_dataset_text(r["data"], r["dataset"]))
        if show_profile:
            data += f"; profile {html.escape(str(r['profile']))}"
        note = html.escape(str(r["note"])) if isinstance(r["note"], str) and r["note"] else ""
        rows.append(
            '<tr class="headline">'
            f"<td>{html.escape(str(r['quantity']))}" + (f'<br><small style="opacity:0.8">{note}</small>' if note else "")
            + f"</td><td>{_fmt(r['paper'])}</td><td>{_fmt(r['ours'], r['ci_low'], r['ci_high'])}</td>"
            f'<td><b style="color:{colour}">{badge}</b> <small>{data}</small><br>{link}</td></tr>'
        )
    head = ("<tr><th>quantity (note)</th><th>paper (reference)</th><th>this book [95% CI]</th>"
            "<th>data, page</th></tr>")
    return f'<table class="table">\n<thead>{head}</thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody></table>"


def segmentation_headlines(
    table2: pd.DataFrame | None = None,
    table3: pd.DataFrame | None = None,
    final: pd.DataFrame | None = None,
    aasce: pd.DataFrame | None = None,
    synthetic_dataset: str = "synthetic patients",
    aasce_dataset: str = "AASCE 2019 training split",
    long_run: bool = False,
) -> list[dict]:
    """Headline rows (:func:`spinelib.paper.report.record_headlines`) of the segmentation pages.

    ``table2``: :func:`table2` (synthetic; the paper gives a verdict, not a Dice, so ``paper`` is
    empty and the note says both); ``table3``: :func:`table3` (the paper's recipe, at the input
    size); ``final``: :func:`final_table3` (the book's pipeline, at the original resolution);
    ``aasce``: :func:`aasce_comparison` (real X-rays): its profile row, or with ``long_run=True``
    only the committed long run's row (profile ``"long run"``; ``scripts/train_aasce.py`` records
    it under ``results/headlines``). The paper has no AASCE number: the note gives the target.
    """
    rows: list[dict] = []

    def name(structure: str) -> str:
        return structure.replace("_", " ")

    if table2 is not None:
        for experiment, r in table2.iterrows():
            rows.append({
                "section": "Segmentation: Table 2 (failed experiments)",
                "quantity": f"Dice, {name(r['structure'])}: {experiment}",
                "paper": math.nan, "ours": r["dice"], "ci_low": r["dice_ci_low"], "ci_high": r["dice_ci_high"],
                "data": "synthetic", "dataset": synthetic_dataset,
                "note": f"paper: {r['paper_result'] or 'not reported'}; ours: {r['verdict']} "
                        f"({r['predicted white %']:.1f}% white predicted, {r['true white %']:.1f}% true)",
            })
    if table3 is not None:
        for structure, r in table3.iterrows():
            rows.append({
                "section": "Segmentation: Table 3 (paper's recipe)", "quantity": f"Dice, {name(structure)}",
                "paper": r["paper_dice"], "ours": r["dice"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                "data": "synthetic", "dataset": synthetic_dataset,
                "note": "one multi-output network per view, the paper's loss, Dice at the input size",
            })
    if final is not None:
        for structure, r in final.iterrows():
            note = r["pipeline"]
            if "input_frame_dice" in final and pd.notna(r["input_frame_dice"]):
                note += f"; {r['input_frame_dice']:.3f} in the network's input frame (the paper's protocol)"
            rows.append({
                "section": "Segmentation: final pipeline", "quantity": f"Dice, {name(structure)}",
                "paper": r["paper_dice"], "ours": r["final_dice"], "data": "synthetic",
                "dataset": synthetic_dataset, "note": note,
                **({"ci_low": r["ci_low"], "ci_high": r["ci_high"]} if "ci_low" in final else {}),
            })
    if aasce is not None:
        for label, r in aasce.iterrows():
            is_long = str(label).startswith("long run")
            if is_long != long_run:
                continue
            rows.append({
                "section": "Segmentation: real AP vertebrae",
                "quantity": "Dice, AASCE vertebral bodies T1-L5" + (f" ({str(label).split(': ', 1)[-1]})" if is_long else ""),
                "paper": math.nan, "ours": r["dice"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                "data": "real", "dataset": f"{aasce_dataset}, {int(r['validation patients'])} validation patients",
                "note": (f"{label if is_long else 'this run'}: input {r['input']}, {r['epochs']} "
                         f"epochs, {r['training minutes']:.0f} min training; target 0.90 (no paper number)"
                         + ("; trained and scored on masks 0.4 px off the bodies (before the alignment fix)"
                            if str(r.get("mask grid", "")).startswith("naive") else "")
                         + (f"; {r['dice, original size']:.3f} at each X-ray's own size"
                            if pd.notna(r.get("dice, original size", math.nan)) else "")),
                **({"profile": "long run"} if is_long else {}),
            })
    return rows


# ---------------------------------------------------------------------------------------------
# The intro's "what we found" list: rendered from the recorded headlines when the book is built.

FINDINGS_MARKER = "<!-- findings -->"
"""The line of ``intro.md`` that :func:`spinelib.book.render_intro` replaces with :func:`findings`."""


def _num(value: float, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(float(value)) else f"{float(value):.{digits}f}"


def _ci_text(r, digits: int = 3, unit: str = "") -> str:
    lo, hi = r.get("ci_low", math.nan), r.get("ci_high", math.nan)
    if pd.isna(lo) or pd.isna(hi):
        return ""
    return f" (95 % CI {_num(lo, digits)}–{_num(hi, digits)}{unit})"


def _span(values: pd.Series, digits: int = 2) -> str:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return "–"
    lo, hi = values.min(), values.max()
    return _num(lo, digits) if round(lo, digits) == round(hi, digits) else f"{_num(lo, digits)}–{_num(hi, digits)}"


def _pick(frame: pd.DataFrame, section: str | None = None, quantity: str | None = None,
          startswith: str | None = None) -> pd.DataFrame:
    if frame is None or frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    keep = pd.Series(True, index=frame.index)
    if section is not None:
        keep &= frame["section"].astype(str) == section
    if quantity is not None:
        keep &= frame["quantity"].astype(str) == quantity
    if startswith is not None:
        keep &= frame["quantity"].astype(str).str.startswith(startswith)
    return frame[keep]


def _link(page: str, prefix: str) -> str:
    number = page_number(page)
    if prefix.startswith("html:"):  # a link from a notebook's Markdown output: plain HTML, to the rendered page
        return f'<a href="{prefix[5:]}{page}.html">page {number}</a>'
    return f"[page {number}]({prefix}{page}.ipynb)"


REAL_BADGE = "**REAL (AASCE)**"
SYNTHETIC_BADGE = "**SYNTHETIC**"


def findings(committed: pd.DataFrame, build: pd.DataFrame, profile: str, link_prefix: str = "notebooks/") -> str:
    """The intro's "what we found" list, as Markdown, from headline frames (:func:`collect_headlines`).

    ``committed``: the long runs kept in ``results/headlines`` (real AASCE X-rays); ``build``: what
    the pages of this build recorded under ``outputs/<profile>/headlines``. ``link_prefix``: the
    folder of the pages from where the list stands (``"notebooks/"`` from the intro); prefixed
    ``html:`` the links are HTML to the rendered pages (for a notebook's Markdown output). Every line says whether
    it is **real** or **synthetic**, and every number is read from those frames: a headline that was
    not recorded leaves its line out, and a build without synthetic results says so.
    """
    lines: list[str] = []
    # Real: the committed long runs.
    seg = _pick(committed, section="Segmentation: real AP vertebrae")
    if len(seg):
        best = seg.loc[pd.to_numeric(seg["ours"]).idxmax()]
        lines.append(
            f"{REAL_BADGE} Vertebral bodies T1–L5 on held-out patients: Dice **{_num(best['ours'])}**"
            f"{_ci_text(best)} for the best of {len(seg)} committed U-Net runs (all of them "
            f"{_span(seg['ours'], 3)}); the target of 0.90 is {'met' if best['ours'] >= 0.90 else 'not met'}. "
            f"{_link('03b_aasce_segmentation', link_prefix)}")
    cobb = _pick(committed, section="Cobb angles (real AP)", quantity="SMAPE (%), landmarks, all validation images")
    if len(cobb):
        r = cobb.loc[pd.to_numeric(cobb["ours"]).idxmin()]  # the best committed landmark run
        same_run = committed["note"].astype(str) == str(r["note"])
        mask = _pick(committed[same_run], section="Cobb angles (real AP)",
                     quantity="SMAPE (%), mask + fitted corners, all validation images")
        extra = f"; read from the predicted masks instead, {_num(mask.iloc[0]['ours'], 1)} %" if len(mask) else ""
        runs = f"the best of {len(cobb)} committed runs" if len(cobb) > 1 else "the committed run"
        lines.append(
            f"{REAL_BADGE} Cobb angles from a landmark network (lower is better; {runs}): SMAPE "
            f"**{_num(r['ours'], 1)} %**{_ci_text(r, 1, ' %')} over {r['dataset'].split(', ')[-1]}{extra}. "
            f"{_link('07_cobb_angles', link_prefix)}")
        severe = _pick(committed[same_run], section="Cobb angles (real AP)", startswith="severe scoliosis")
        if len(severe):
            lines.append(f"{REAL_BADGE} Severe scoliosis (largest Cobb angle ≥ 40°) from the same run's predicted "
                         f"angles: AUROC **{_num(severe.iloc[0]['ours'])}**. {_link('07_cobb_angles', link_prefix)}")
    sev_img = _pick(build, section="Classification", quantity="severity (Cobb >= 40°) AUROC, Lite0 ImageNet + paper head")
    if len(sev_img):
        r = sev_img.iloc[0]
        lines.append(f"{REAL_BADGE} The same question for the paper's classifier (ImageNet features + its head), "
                     f"this build: AUROC **{_num(r['ours'])}**{_ci_text(r)}. {_link('05_classification_results', link_prefix)}")
    # Synthetic: this build's pages.
    synthetic: list[str] = []
    t2 = _pick(build, section="Segmentation: Table 2 (failed experiments)")
    if len(t2):
        name = t2["quantity"].astype(str).str.split(": ").str[-1]
        paper_rows = t2[name.isin(["bce", "jaccard", "jaccard_batchnorm", "paper"])]
        fast = t2[name.str.endswith("_0.9")]
        text = (f"{SYNTHETIC_BADGE} The paper's failed experiments (Table 2, AP pedicles): cross-entropy, Jaccard, "
                f"Jaccard + batch norm and the paper's loss reach Dice {_span(paper_rows['ours'])}")
        if len(fast):
            text += f"; with a batch-norm average that forgets quickly, {_span(fast['ours'])}"
        synthetic.append(text + f". {_link('02_segmentation_experiments', link_prefix)}")
    t3 = _pick(build, section="Segmentation: Table 3 (paper's recipe)")
    if len(t3):
        vert = t3["quantity"].astype(str).str.endswith("Vertebra")
        synthetic.append(
            f"{SYNTHETIC_BADGE} The paper's recipe on all 8 structures (Table 3): Dice {_span(t3.loc[vert, 'ours'])} "
            f"for the vertebrae, {_span(t3.loc[~vert, 'ours'])} for the 6 small structures (the paper, on its "
            f"clinical X-rays: {_span(t3.loc[vert, 'paper'])} and {_span(t3.loc[~vert, 'paper'])}). "
            f"{_link('03_unet_segmentation', link_prefix)}")
    final = _pick(build, section="Segmentation: final pipeline")
    if len(final):
        synthetic.append(
            f"{SYNTHETIC_BADGE} Spine crop + Dice loss, measured at the X-rays' own resolution: Dice "
            f"{_span(final['ours'])} over the {len(final)} structures (paper: {_span(final['paper'])}, "
            f"in its network's frame). {_link('03_unet_segmentation', link_prefix)}")
    cls = _pick(build, section="Classification")
    image = _pick(cls, startswith="normal/damaged accuracy, Lite0")
    if len(image):
        r = image.iloc[0]
        text = (f"{SYNTHETIC_BADGE} Normal against damaged, held-out patients: the paper's classifier "
                f"(ImageNet features + its head) **{_num(r['ours'])}**{_ci_text(r)}")
        seg_measure = _pick(cls, startswith="normal/damaged accuracy, segment then measure")
        if len(seg_measure):
            text += f"; segment, then measure the geometry: **{_num(seg_measure.iloc[0]['ours'])}**"
        size = _pick(cls, startswith="normal/damaged accuracy, shortcut check")
        if len(size):
            text += (f"; the image sizes alone, no pixel looked at: {_num(size.iloc[0]['ours'])} "
                     "(the bar to clear)")
        if pd.notna(r["paper"]):
            text += f". The paper's {_num(100 * r['paper'], 1)} % counted its training images too"
        synthetic.append(text + f". {_link('05_classification_results', link_prefix)}")
    if not synthetic:
        synthetic.append(f"{SYNTHETIC_BADGE} No synthetic result was recorded by this build (profile {profile}): "
                         "run pages 2–5 first.")
    lines += synthetic
    head = (f"Computed when this book was built, from the results the pages recorded (profile `{profile}`) "
            "and the long runs committed in `results/`:")
    return head + "\n\n" + "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1)) + "\n"
