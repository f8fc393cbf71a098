#!/usr/bin/env python
"""Where a page's kernel spends its time, from py-spy samples (issue 16): building TensorFlow graphs,
running them, or Python work around them.

While a book builds, attach one sampler to each page's kernel (py-spy from PyPI, in its own venv):

    py-spy record --nonblocking --idle -r 5 -f raw -o <page>.raw -p <kernel pid>

(``--idle`` keeps the samples where the main thread waits inside TensorFlow's C++ code, without
which most of a training run is missing; ``--nonblocking`` does not pause the kernel.) Then

    .venv/bin/python benchmarks/pyspy_summary.py 03=03.raw 04=04.raw --out benchmarks/book_pyspy_ci

writes ``<out>.csv`` (per page: sampled seconds by kind, and the top call sites) and ``<out>.md``.
Only samples with a ``spinelib`` frame count (the kernel's main thread doing the page's work);
a kind is decided per sample: *tracing* when the stack builds a graph (``func_graph_from_py_func``
or ``_create_concrete_function``: a ``tf.function`` or a Keras train/predict function traced for
a new model), *executing* when it runs one (``quick_execute``), *other* otherwise (NumPy, image
I/O, scikit-learn, Python). At 5 Hz a sampler loses some samples, so the shares are what to read.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

import pandas as pd

KINDS = ("tracing", "executing", "other")
TRACING = ("func_graph_from_py_func", "_create_concrete_function")


def kind_of(stack: str) -> str:
    """The kind of one sample's stack (frames joined by ``;``)."""
    if any(t in stack for t in TRACING):
        return "tracing"
    return "executing" if "quick_execute" in stack else "other"


def call_site(frames: list[str], depth: int = 1) -> str:
    """The outermost ``depth`` spinelib frames of a stack, as ``function (module.py:line)``."""
    ours = [re.sub(r"\(.*?spinelib/", "(", f) for f in frames if "spinelib/" in f]
    return " > ".join(ours[:depth])


def summarise(raw: Path, rate_hz: float = 5.0, top: int = 5) -> tuple[dict, list[dict]]:
    """``(kinds, sites)``: seconds by kind, and the ``top`` call sites with their seconds by kind."""
    kinds: collections.Counter = collections.Counter()
    sites: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "spinelib/" not in stack or not count.isdigit():
            continue
        k, n = kind_of(stack), int(count) / rate_hz
        kinds[k] += n
        sites[call_site(stack.split(";"))][k] += n
    ranked = sorted(sites.items(), key=lambda kv: -sum(kv[1].values()))[:top]
    return ({k: round(kinds[k], 1) for k in KINDS},
            [{"call site": s, **{k: round(c[k], 1) for k in KINDS}} for s, c in ranked])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("pages", nargs="+", metavar="PAGE=RAW", help="a page's name and its py-spy raw file")
    ap.add_argument("--out", type=Path, required=True, help="output path without suffix")
    ap.add_argument("--rate", type=float, default=5.0, help="the sampling rate in Hz (default: %(default)s)")
    ap.add_argument("--top", type=int, default=4, help="call sites shown per page (default: %(default)s)")
    ap.add_argument("--title", default="Where each page's kernel spends its time (py-spy samples)")
    args = ap.parse_args(argv)
    rows, lines = [], [f"# {args.title}", ""]
    for spec in args.pages:
        page, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            ap.error(f"{spec!r}: give PAGE=RAW with an existing py-spy raw file")
        kinds, sites = summarise(Path(path), args.rate, args.top)
        total = sum(kinds.values())
        if not total:
            ap.error(f"{path}: no sample has a spinelib frame (was the sampler attached to a page's kernel?)")
        rows.append({"page": page, "call site": "(all)", **kinds})
        rows.extend({"page": page, **s} for s in sites)
        lines.append(f"- **{page}**: {total:.0f} s sampled; building graphs {kinds['tracing'] / total:.0%}, "
                     f"running them {kinds['executing'] / total:.0%}, other work {kinds['other'] / total:.0%}")
    frame = pd.DataFrame(rows, columns=["page", "call site", *KINDS])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out.with_suffix(".csv"), index=False)
    lines += ["", "Seconds of samples by call site (the outermost `spinelib` frame), the largest first:", "",
              frame.to_markdown(index=False), ""]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print(f"{len(args.pages)} page(s) -> {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
