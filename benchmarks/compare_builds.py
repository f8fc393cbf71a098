"""Two builds' headline numbers side by side (issue 16: a faster book must keep every headline within
its own 95 % CI of the reference build's, or better).

    python benchmarks/compare_builds.py REFERENCE_OUTPUT_DIR OTHER_OUTPUT_DIR [--out F.md] [--labels A B]

Reads ``<dir>/headlines/*.csv`` of each (``outputs/<profile>`` of a build) and writes a Markdown table:
each headline's value in both builds, the reference's 95 % CI, and whether the other build's value
lies inside that CI (``inside``), beyond it on the better side, or outside on the worse one (``lower`` /
``higher``, for a headline without a direction). A headline without a CI is compared by value only.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

KEY = ["page", "section", "quantity"]


def compare(reference, other):
    """One row per headline of ``reference`` (a :func:`spinelib.core.headlines.collect_headlines`
    frame) with ``reference``, ``ci_low``, ``ci_high``, ``other`` and ``verdict``."""
    import pandas as pd

    ref = reference.drop_duplicates(KEY, keep="last").set_index(KEY)
    oth = other.drop_duplicates(KEY, keep="last").set_index(KEY)
    rows = []
    for key, r in ref.iterrows():
        value = float(pd.to_numeric(r["ours"], errors="coerce"))
        low, high = (float(pd.to_numeric(r[c], errors="coerce")) for c in ("ci_low", "ci_high"))
        got = float(pd.to_numeric(oth.loc[key, "ours"], errors="coerce")) if key in oth.index else math.nan
        if math.isnan(got):
            verdict = "missing"
        elif math.isnan(low) or math.isnan(high):
            verdict = "same" if got == value else "no CI"
        else:
            verdict = "inside" if low <= got <= high else ("lower" if got < low else "higher")
        rows.append(dict(zip(KEY, key), reference=value, ci_low=low, ci_high=high, other=got, verdict=verdict))
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference", help="the reference build's output folder (outputs/<profile>)")
    ap.add_argument("other")
    ap.add_argument("--labels", nargs=2, default=("reference", "other"))
    ap.add_argument("--out", default=None, help="write the Markdown table here (default: print it)")
    args = ap.parse_args(argv)
    from spinelib.core.headlines import collect_headlines

    frames = []
    for folder in (args.reference, args.other):
        h = collect_headlines(folder)
        if h.empty:
            ap.error(f"no headlines under {Path(folder) / 'headlines'}")
        frames.append(h)
    table = compare(*frames)
    counts = table["verdict"].value_counts().to_dict()
    shown = table.rename(columns={"reference": args.labels[0], "other": args.labels[1]}).drop(columns="section")
    text = (f"{len(table)} headlines: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + "\n\n"
            + shown.to_markdown(index=False, floatfmt=".4g") + "\n")
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
