"""Build the book: synthetic data, every notebook executed by papermill, then Jupyter Book 1.

``python -m spinelib.book --profile ci`` is what ``scripts/build_book.sh`` runs. The notebooks
are executed once, into a staging copy of the book (``_build/src``); Jupyter Book then renders
those executed notebooks with execution switched off, so nothing runs twice.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from spinelib.core.config import (
    REPO_ROOT,
    default_output_dir,
    default_synthetic_dir,
    get_profile,
)

BOOK_FILES = ("_config.yml", "_toc.yml", "intro.md", "references.bib")
BOOK_DIRS = ("docs", "_ext")


def toc_files(root: Path = REPO_ROOT) -> list[str]:
    """Every ``file`` entry of ``_toc.yml`` (without suffix), in reading order, root first."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files: list[str] = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc.get("chapters", toc.get("parts", [])))
    return [str(Path(f).with_suffix("")) for f in files]


def toc_notebooks(root: Path = REPO_ROOT) -> list[Path]:
    """Notebooks listed in ``_toc.yml``, in reading order."""
    return [root / f"{f}.ipynb" for f in toc_files(root) if (root / f"{f}.ipynb").exists()]


def run_notebook(notebook: Path, output: Path, parameters: dict, cwd: Path | None = None,
                 timeout: int | None = None) -> float:
    """Execute one notebook headless with papermill; return wall seconds.

    Raises ``papermill.PapermillExecutionError`` (with the failing cell) when a cell fails.
    The kernel draws figures inline whatever ``MPLBACKEND`` the caller has (a headless ``Agg``
    would leave the book without a single figure), and TensorFlow's info logs stay out of the pages.
    """
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with kernel_environment():  # the kernel process inherits this environment
        pm.execute_notebook(
            str(notebook), str(output), parameters=parameters, cwd=str(cwd or notebook.parent),
            kernel_name="python3", progress_bar=False, log_output=False, execution_timeout=timeout,
        )
    return time.perf_counter() - t0


INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
KERNEL_ENV = {"MPLBACKEND": INLINE_BACKEND, "TF_CPP_MIN_LOG_LEVEL": "2"}


@contextlib.contextmanager
def kernel_environment():
    """:data:`KERNEL_ENV` in ``os.environ`` while the block runs (a page's kernel inherits it), the
    caller's values afterwards. Nested uses leave the outer one's values in place, so a build that
    runs pages side by side sets it once around all of them and no lane can unset it under another."""
    saved = {k: os.environ.get(k) for k in KERNEL_ENV}
    os.environ.update(KERNEL_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


PAGE_MINUTES = {"01_": 0.5, "02_": 5.2, "03_": 20.0, "03b_": 2.9, "04_": 9.0, "05_": 15.9, "06_": 0.1, "07_": 2.2}
"""Each page's minutes in a two-lane ``ci`` build from scratch (AMD Zen 5 EPYC, float32, 2026-12-04,
probe 0.152 s; lanes 01, 04, 05 and 02, 03, 03b, 07: 30.5 min of pages, lane 2 five minutes
longer): only used to share the pages out between lanes (:func:`plan_lanes`). With :data:`CHAINS`
they give lanes 01, 04, 05, 07 and 02, 03, 03b. Earlier, on an Intel Xeon (2026-12-03), balancing by
two-lane minutes without the 03 -> 03b chain put page 3b beside page 2, and both, training U-Nets
from their first minute, took 1.6x as long as beside the other pages (541 s against 327, 356
against 228): 44.3 min against 41.0."""
CHAINS: tuple[tuple[str, ...], ...] = (("04_", "05_"), ("03_", "03b_"))
"""Pages that run one after another in one lane: page 5 reads page 4's runs (the in-domain U-Net of
fold 0, Table 4's row 6 and the feature cache), so the two never train the same run at once; page 3b
writes its run into page 3's output folder (``03_unet``), and kept after it, it never trains beside
page 2 (see :data:`PAGE_MINUTES`)."""
LAST = ("06_",)
"""Pages that read every other page's results: they run after all lanes."""


def _page_key(name: str) -> str:
    return name.split("_")[0] + "_"


def plan_lanes(pages: list[Path], jobs: int) -> tuple[list[list[Path]], list[Path]]:
    """``(lanes, last)``: ``pages`` shared out between ``jobs`` lanes that run side by side (each
    lane's pages one after another, in book order), and the pages of :data:`LAST` that run after
    them. A chain of :data:`CHAINS` stays in one lane; the longest work goes first to the lane with
    the least (by :data:`PAGE_MINUTES`; an unknown page counts 5 minutes)."""
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    last = [p for p in pages if _page_key(p.name) in LAST]
    rest = [p for p in pages if p not in last]
    units: list[list[Path]] = []
    for chain in CHAINS:
        unit = [p for p in rest if _page_key(p.name) in chain]
        if unit:
            units.append(unit)
    chained = {p for u in units for p in u}
    units += [[p] for p in rest if p not in chained]
    minutes = lambda unit: sum(PAGE_MINUTES.get(_page_key(p.name), 5.0) for p in unit)  # noqa: E731
    lanes: list[list[Path]] = [[] for _ in range(min(jobs, max(len(units), 1)))]
    for unit in sorted(units, key=minutes, reverse=True):
        min(lanes, key=minutes).extend(unit)
    order = {p: i for i, p in enumerate(pages)}
    return [sorted(lane, key=order.get) for lane in lanes if lane], last


def hide_injected_parameters(notebook: str | os.PathLike) -> int:
    """Tag papermill's injected-parameters cell ``remove-cell``: it holds the absolute folders of the
    machine that built the book, which no reader needs (the page's setup cell says what they are
    for). Returns the number of cells tagged."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    n = 0
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
            n += 1
    if n:
        nbformat.write(nb, str(notebook))
    return n


GLUE_PREFIX = "application/papermill.record/"


def glue_markdown(name: str, text: str) -> None:
    """Store ``text`` (Markdown) in the running notebook under ``name``, without showing it, for the
    page's prose to paste with ``{glue:md}`name``` (Jupyter Book's glue, read from the executed
    notebook; works wherever the role stands on the page, above the cell too). The same output
    format as ``myst_nb.glue(name, Markdown(text), display=False)``, without needing myst-nb in the
    kernel (on Kaggle, say)."""
    from IPython.display import display

    display({GLUE_PREFIX + "text/markdown": text}, raw=True,
            metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})


def render_intro(src: Path, output_dir: Path, profile: str, results_dir: Path | None = None) -> bool:
    """Replace the findings marker of ``<src>/intro.md`` with :func:`spinelib.paper.report.findings`:
    the real numbers of the long runs committed in ``results/headlines`` and the synthetic (and
    profile-run real) numbers this build's pages recorded under ``output_dir/headlines``.
    Returns whether the marker was found."""
    from spinelib.paper import report

    intro = src / "intro.md"
    if not intro.exists():
        return False
    text = intro.read_text()
    if report.FINDINGS_MARKER not in text:
        return False
    committed = report.collect_headlines(results_dir or REPO_ROOT / "results")
    found = report.findings(committed, report.collect_headlines(output_dir), profile)
    intro.write_text(text.replace(report.FINDINGS_MARKER, found))
    return True


TABLES_DIR = "tables"
"""Folder of the rendered book (``_build/html/tables``) that holds the pages' result tables as CSV,
so that a page can link its wide detail (:func:`spinelib.viz.csv_link`)."""


def copy_tables(output_dir: Path, src: Path) -> int:
    """Copy every result table the pages wrote (``output_dir/*.csv`` and their ``.run.json``
    provenance) to ``<src>/_extra/tables``, which the book serves at ``tables/``."""
    target = src / "_extra" / TABLES_DIR
    n = 0
    for path in sorted(Path(output_dir).glob("[0-9][0-9]*_*.csv")):
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / path.name)
        sidecar = path.with_suffix(".run.json")
        if sidecar.exists():
            shutil.copy2(sidecar, target / sidecar.name)
        n += 1
    return n


def page_table(frame: pd.DataFrame, columns: dict[str, str] | None = None, digits: int | dict[str, int] = 3,
               index: str | bool = True, percent: tuple[str, ...] = (), ci: dict[str, tuple[str, str]] | None = None):
    """A result table as a page shows it: the ``columns`` kept and renamed (old name -> header a
    reader understands, with its unit), numbers at ``digits`` decimals (per column with a dict; no
    ``8.288e-04``), the index as an ordinary first column headed ``index`` (``True`` keeps its own
    name, ``False`` drops it), so there is no stray index header. ``percent``: renamed columns
    holding fractions, shown as percentages. ``ci``: a kept column (its old name) -> its (low, high)
    columns, shown in one cell as ``0.812 (0.790–0.830)``. Returns a pandas ``Styler`` (HTML)."""
    shown = frame.copy()
    if isinstance(shown.columns, pd.MultiIndex):
        shown.columns = [" ".join(str(c) for c in col if str(c)) for col in shown.columns]
    for col, (low, high) in (ci or {}).items():
        d = digits.get((columns or {}).get(col, col), 3) if isinstance(digits, dict) else digits
        shown[col] = ["–" if pd.isna(v) else f"{v:.{d}f}" + ("" if pd.isna(lo) or pd.isna(hi) else f" ({lo:.{d}f}–{hi:.{d}f})")
                      for v, lo, hi in zip(shown[col], shown[low], shown[high])]
    if columns is not None:
        missing = [c for c in columns if c not in shown.columns]
        if missing:
            raise KeyError(f"page_table: no column(s) {missing}; the frame has {list(shown.columns)}")
        shown = shown[list(columns)].rename(columns=columns)
    if index is False or (index is True and isinstance(shown.index, pd.RangeIndex) and shown.index.name is None):
        shown = shown.reset_index(drop=True)  # a plain row counter says nothing
    else:
        levels = shown.index.nlevels
        names = [("" if n is None else str(n)) for n in shown.index.names]
        if isinstance(index, str) and levels == 1:
            names = [index]
        shown = shown.reset_index()
        shown = shown.rename(columns=dict(zip(shown.columns[:levels], names)))
    for col in percent:
        shown[col] = 100 * pd.to_numeric(shown[col], errors="coerce")
    formats = {}
    for col in shown.columns:
        if pd.api.types.is_bool_dtype(shown[col]):
            formats[col] = lambda v: "yes" if v else "no"
        elif pd.api.types.is_float_dtype(shown[col]):
            d = digits.get(col, 3) if isinstance(digits, dict) else digits
            formats[col] = (lambda d: lambda v: "–" if pd.isna(v) else f"{v:,.{d}f}")(d)
    styles = [{"selector": "td", "props": "overflow-wrap: anywhere;"},  # long names wrap instead of widening the table
              {"selector": "th", "props": "overflow-wrap: break-word;"}]
    if shown.shape[1] > 6:
        styles.append({"selector": "", "props": "font-size: 0.85em;"})
    return (shown.style.format(formats, na_rep="–").hide(axis="index").set_table_styles(styles)
            .set_table_attributes('class="dataframe page-table"'))  # the theme's table style


def shown_path(path: str | os.PathLike, root: str | os.PathLike, label: str = "output folder") -> str:
    """``path`` as a page shows it: relative to ``root`` and prefixed with ``label``
    (``"output folder/unet-aasce/fold0/best.keras"``), or only its file name when it lies elsewhere;
    never the absolute path of the machine that built the book."""
    path, root = Path(path), Path(root)
    try:
        return f"{label}/{path.resolve().relative_to(root.resolve()).as_posix()}"
    except ValueError:
        return path.name


def span(values, digits: int = 3) -> str:
    """``"0.839–0.859"``: the range of ``values`` at ``digits`` decimals, one number when both ends
    round alike, ``"–"`` when there is none (for the sentences a page writes from its numbers)."""
    v = pd.to_numeric(pd.Series(list(values), dtype=float), errors="coerce").dropna()
    if v.empty:
        return "–"
    lo, hi = f"{v.min():.{digits}f}", f"{v.max():.{digits}f}"
    return lo if lo == hi else f"{lo}–{hi}"


def csv_link(name: str, text: str | None = None):
    """An HTML link from a page (``notebooks/NN_*.html``) to one of its result tables, which
    :func:`copy_tables` puts under ``tables/`` of the rendered book: where wide detail goes."""
    from IPython.display import HTML

    import html as _html

    name = Path(name).name
    label = text or f"the full table: {name}"
    return HTML(f'<p class="csv-link">&#8595; <a href="../{TABLES_DIR}/{_html.escape(name)}" download>'
                f"{_html.escape(label)}</a> (CSV, every column, with its run record "
                f'<a href="../{TABLES_DIR}/{_html.escape(Path(name).with_suffix(".run.json").name)}">.run.json</a>)</p>')


def source_listing(*objects, brief: bool = True):
    """The source code of library functions, as a Markdown code block a page can show (the loss it
    trains with, the network it builds). ``brief``: each docstring cut after its second paragraph
    (the summary and the formula), the rest of it stays in the library."""
    import ast
    import inspect
    import textwrap

    from IPython.display import Markdown

    blocks = []
    for obj in objects:
        lines = textwrap.dedent(inspect.getsource(obj)).splitlines()
        node = ast.parse("\n".join(lines)).body[0]
        body = getattr(node, "body", [])
        if brief and body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            first, last = body[0].lineno - 1, body[0].end_lineno - 1
            doc = lines[first:last + 1]
            indent = doc[0][: len(doc[0]) - len(doc[0].lstrip())]
            blanks = [i for i, line in enumerate(doc) if not line.strip()]
            if len(blanks) >= 2:
                doc = doc[: blanks[1]] + [indent + "... (the rest of the docstring: "
                                          f"{obj.__module__}.{obj.__qualname__})", indent + '"""']
            lines = lines[:first] + doc + lines[last + 1:]
        blocks.append(f"# {obj.__module__}.{obj.__qualname__}\n" + "\n".join(lines))
    return Markdown("```python\n" + "\n\n\n".join(blocks) + "\n```")


def count_figures(notebook: str | os.PathLike) -> int:
    """Number of image outputs (``image/png`` or ``image/svg+xml``) in an executed notebook."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if any(k.startswith("image/") for k in o.get("data", {})))


def prepare_synthetic(profile_name: str, synthetic_dir: Path, seed: int = 0):
    """Generate (or reuse, when cached with the same settings) the embedded synthetic dataset."""
    from spinelib.data.synthetic.generator import generate_dataset

    prof = get_profile(profile_name)
    return generate_dataset(synthetic_dir, n_patients=prof.n_synthetic, seed=seed,
                            scale=prof.synthetic_scale)


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children (the pages' kernels)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def input_fingerprints(synthetic_dir: Path) -> dict[str, str]:
    """Fingerprints (:func:`spinelib.core.provenance.data_fingerprint`) of what the pages read and
    must never change: the synthetic dataset and each shared real dataset found on this machine."""
    from spinelib.core.config import find_dataset
    from spinelib.core.provenance import data_fingerprint

    roots = {"synthetic": Path(synthetic_dir)}
    for name in ("aasce", "spine-project-examples"):
        found = find_dataset(name)
        if found is not None:
            roots[name] = Path(found)
    return {name: data_fingerprint(root) for name, root in roots.items() if root.exists()}


def kept_pages(build_dir: Path, profile: str, seed: int, todo: list[Path]) -> dict[str, tuple[bytes, dict]]:
    """The executed pages of the last build in ``build_dir`` that a partial build (``--only``) keeps:
    those it does not run again, when that build used the same profile and seed. Name -> (the
    executed notebook, its row of the timings table or ``{}``)."""
    info_path = build_dir / "build-info.json"
    if not info_path.exists():
        return {}
    info = json.loads(info_path.read_text())
    if info.get("profile") != profile or info.get("seed") != seed:
        return {}
    timings_path = build_dir / f"timings-{profile}.csv"
    rows = {}
    if timings_path.exists():
        rows = {r["step"]: {k: v for k, v in r.items() if pd.notna(v)}
                for r in pd.read_csv(timings_path).to_dict("records")}
    again = {nb.name for nb in todo}
    kept = {}
    for name in info.get("executed", []):
        path = build_dir / "src" / "notebooks" / name
        if name not in again and path.exists():
            kept[name] = (path.read_bytes(), rows.get(name, {}))
    return kept


def execute_pages(pages: list[Path], src: Path, params: dict, profile: str, jobs: int = 1) -> list[dict]:
    """Execute ``pages`` into ``src`` (one timings row each, in book order). ``jobs > 1``: in that many
    lanes side by side (:func:`plan_lanes`), each a thread that runs its pages' kernels one after
    another; a page's CPU seconds are then not known apart from the other lane's (left out)."""
    from concurrent.futures import ThreadPoolExecutor

    lanes, last = plan_lanes(pages, jobs) if jobs > 1 else ([list(pages)], [])  # 1: in book order, as always

    def run_lane(lane: list[Path], alone: bool) -> list[dict]:
        rows = []
        for nb in lane:
            out = src / nb.relative_to(REPO_ROOT)
            print(f"[book] executing {nb.name} (profile={profile})", flush=True)
            cpu0 = children_cpu_seconds()
            secs = run_notebook(nb, out, params, cwd=nb.parent)
            cpu = children_cpu_seconds() - cpu0  # the page's kernel, reaped when papermill shut it down
            hide_injected_parameters(out)
            figures = count_figures(out)
            print(f"[book]   {nb.name} done in {secs:.0f} s" + (f" ({cpu:.0f} CPU s)" if alone else "")
                  + f", {figures} figure(s)", flush=True)
            rows.append({"step": nb.name, "seconds": round(secs, 1), "figures": figures,
                         **({"cpu_seconds": round(cpu, 1)} if alone else {})})
        return rows

    if len(lanes) > 1:
        print(f"[book] {len(lanes)} lanes side by side: " + "; ".join(", ".join(_page_key(p.name)[:-1] for p in lane)
                                                             for lane in lanes), flush=True)
    with kernel_environment(), ThreadPoolExecutor(max_workers=max(len(lanes), 1)) as pool:
        futures = [pool.submit(run_lane, lane, len(lanes) == 1) for lane in lanes]
        rows = [row for f in futures for row in f.result()]  # the first failed lane's error, after all lanes end
        rows += run_lane(last, True)
    order = {p.name: i for i, p in enumerate(pages)}
    return sorted(rows, key=lambda r: order[r["step"]])


def build(profile: str = "ci", seed: int = 0, build_dir: Path | None = None,
          notebooks: list[str] | None = None, render: bool = True, jobs: int = 1) -> pd.DataFrame:
    """Execute every notebook with ``profile`` and render the book into ``<build_dir>/html``.
    ``jobs``: pages run in that many lanes side by side (:func:`plan_lanes`; 1: one after another)."""
    get_profile(profile)  # validates the name
    build_dir = Path(build_dir or REPO_ROOT / "_build")
    src = build_dir / "src"
    synthetic_dir = default_synthetic_dir(None, profile)
    output_dir = default_output_dir(None, profile)
    t0 = time.perf_counter()
    print(f"[book] synthetic dataset -> {synthetic_dir}", flush=True)
    prepare_synthetic(profile, synthetic_dir, seed=seed)
    timings = [{"step": "synthetic data", "seconds": round(time.perf_counter() - t0, 1)}]

    todo = toc_notebooks()
    if notebooks:
        todo = [nb for nb in todo if any(key in nb.name for key in notebooks)]
    kept = kept_pages(build_dir, profile, seed, todo) if notebooks else {}
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in BOOK_FILES:
        if (REPO_ROOT / name).exists():
            shutil.copy2(REPO_ROOT / name, src / name)
    for extra in BOOK_DIRS:
        if (REPO_ROOT / extra).is_dir():
            shutil.copytree(REPO_ROOT / extra, src / extra)
    mathjax = REPO_ROOT / ".venv" / "mathjax" / "node_modules" / "mathjax" / "es5"
    if mathjax.is_dir():  # served locally: the book never fetches MathJax from a CDN
        shutil.copytree(mathjax, src / "_extra" / "mathjax")
    params = {"profile": profile, "seed": seed, "synthetic_dir": str(synthetic_dir),
              "output_dir": str(output_dir)}
    inputs = input_fingerprints(synthetic_dir)  # the pages' inputs before any page ran (tests compare after)
    for name, (content, timing) in kept.items():
        out = src / "notebooks" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(content)
        if timing:
            timings.append(timing)
    if kept:
        print(f"[book] kept {len(kept)} page(s) an earlier {profile} build executed: {', '.join(kept)}", flush=True)
    t_pages = time.perf_counter()
    timings += execute_pages(todo, src, params, profile, jobs)
    pages_wall = round(time.perf_counter() - t_pages, 1)  # with lanes, less than the pages' seconds added up
    # Notebooks in the toc that were not executed this time are copied as they are (no outputs).
    for nb in toc_notebooks():
        out = src / nb.relative_to(REPO_ROOT)
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(nb, out)
    render_intro(src, output_dir, profile)
    copy_tables(output_dir, src)
    if render:
        t1 = time.perf_counter()
        cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(src), "--path-output",
               str(build_dir.parent if build_dir.name == "_build" else build_dir), "--keep-going"]
        env = dict(os.environ)
        subprocess.run(cmd, check=True, env=env)
        timings.append({"step": "jupyter-book build", "seconds": round(time.perf_counter() - t1, 1)})
    frame = pd.DataFrame(timings, columns=["step", "seconds", "cpu_seconds", "figures"])
    frame.to_csv(build_dir / f"timings-{profile}.csv", index=False)
    (build_dir / "build-info.json").write_text(json.dumps(
        {"profile": profile, "seed": seed, "output_dir": str(output_dir), "synthetic_dir": str(synthetic_dir),
         "executed": sorted([*kept, *(nb.name for nb in todo)]), "inputs_before": inputs,
         "jobs": jobs, "pages_wall_seconds": pages_wall}, indent=1))
    print(frame.to_string(index=False))
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="ci", help="tiny | ci | paper (default ci)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="execute only notebooks whose name contains these")
    parser.add_argument("--no-render", action="store_true", help="execute notebooks, skip the HTML")
    env_jobs = os.environ.get("SPINELIB_BOOK_JOBS", "1")
    parser.add_argument("--jobs", type=int, default=int(env_jobs) if env_jobs.strip().isdigit() else None,
                        help="pages executed side by side, each lane's pages one after another (default: "
                             "$SPINELIB_BOOK_JOBS or 1); page 6 runs last, page 5 after page 4")
    args = parser.parse_args(argv)
    if args.jobs is None:
        parser.error(f"SPINELIB_BOOK_JOBS must be a whole number of lanes, got {env_jobs!r}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    build(args.profile, args.seed, notebooks=args.only, render=not args.no_render, jobs=args.jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
