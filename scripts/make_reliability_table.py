"""Run the bad-input corpus (spinelib.data.bad_inputs) and write its table into docs/reliability.md.

Usage::

    .venv/bin/python -m scripts.make_reliability_table           # from the repository root: run the corpus, rewrite the page
    .venv/bin/python -m scripts.make_reliability_table --check   # exit 1 if the page is out of date

Every case is made afresh in a temporary folder and run by
:func:`spinelib.data.bad_inputs.corpus.run_case` (the same function tests/test_bad_inputs.py uses),
inside ``assert_unchanged`` over its input tree; the counts on the page are what this run observed,
not what the table declares. The script exits with status 1 if any case deviates
from its decided behaviour or changed an input file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "reliability.md"
TABLE_START, TABLE_END = "<!-- reliability-table:start -->", "<!-- reliability-table:end -->"
COUNTS_START, COUNTS_END = "<!-- reliability-counts:start -->", "<!-- reliability-counts:end -->"

OUTCOME_WORDS = {
    "error": "clear error",
    "excluded": "patient excluded",
    "ignored": "ignored, with reason",
    "problem": "audit problem",
    "warned": "skipped, with warning",
    "loaded": "loaded",
}


def _cell(text: str, limit: int = 170) -> str:
    line = " ".join(text.split())
    if len(line) > limit:
        line = line[: limit - 3].rstrip() + "..."
    return line.replace("|", "\\|")


def run_corpus() -> tuple[list[dict], dict]:
    """Run every case; returns (rows, counts)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from spinelib.core.provenance import InputsChangedError

    from spinelib.data.bad_inputs import corpus

    rows, changed, failed = [], 0, 0
    for case in corpus.CASES:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            status, message, seconds = "ok", "", float("nan")
            try:
                result = corpus.run_case(case, workdir)
                message, seconds = result.message, result.seconds
            except InputsChangedError as e:
                status, message, changed = "input changed", str(e), changed + 1
            except AssertionError as e:
                status, message, failed = "deviates", str(e), failed + 1
            message = message.replace(str(workdir) + os.sep, "").replace(str(workdir), ".")
        rows.append({"kind": case.kind, "outcome": case.outcome, "behaviour": case.behaviour,
                     "message": message, "status": status, "seconds": seconds})
    ok = [r for r in rows if r["status"] == "ok"]
    counts = {
        "kinds": len(rows),
        "errors": sum(r["outcome"] == "error" for r in rows),
        "errors_clear": sum(r["outcome"] == "error" for r in ok),
        "reported": sum(r["outcome"] in ("excluded", "ignored", "problem", "warned") for r in ok),
        "loaded": sum(r["outcome"] == "loaded" for r in ok),
        "deviations": failed,
        "inputs_changed": changed,
    }
    return rows, counts


def render(rows: list[dict], counts: dict) -> tuple[str, str]:
    table = ["| Input | Outcome | Decided behaviour | What the reader sees (this run) |",
             "| --- | --- | --- | --- |"]
    for r in rows:
        outcome = OUTCOME_WORDS[r["outcome"]] + ("" if r["status"] == "ok" else f" (**{r['status']}**)")
        seen = f"`{_cell(r['message'])}`" if r["message"] else "(value checked)"
        table.append(f"| {_cell(r['kind'])} | {outcome} | {_cell(r['behaviour'], 200)} | {seen} |")
    c = counts
    summary = "\n".join([
        "| Count | Value |",
        "| --- | --- |",
        f"| kinds of input tried | {c['kinds']} |",
        f"| errors, each naming the file (or parameter) and the problem | {c['errors_clear']} of {c['errors']} |",
        f"| skips reported (excluded, ignored, audit problem or warning, each with a reason) | {c['reported']} |",
        f"| odd inputs loaded, with the value checked | {c['loaded']} |",
        f"| deviations from the decided behaviour | {c['deviations']} |",
        f"| input files changed by a loader | {c['inputs_changed']} |",
    ])
    return "\n".join(table), summary


def _replace(text: str, start: str, end: str, body: str) -> str:
    if start not in text or end not in text:
        raise SystemExit(f"{PAGE}: markers {start} ... {end} not found")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the page is out of date")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    rows, counts = run_corpus()
    seconds = time.perf_counter() - t0
    table, summary = render(rows, counts)
    text = PAGE.read_text(encoding="utf-8")
    new = _replace(_replace(text, TABLE_START, TABLE_END, table), COUNTS_START, COUNTS_END, summary)
    print(summary)
    print(f"corpus ran in {seconds:.1f} s ({max(rows, key=lambda r: r['seconds'] if r['seconds'] == r['seconds'] else 0)['kind']} slowest)")
    bad = [r for r in rows if r["status"] != "ok"]
    for r in bad:
        print(f"{r['status'].upper()}: {r['kind']}: {r['message']}", file=sys.stderr)
    if args.check:
        if new != text:
            print(f"{PAGE} is out of date: run python -m scripts.make_reliability_table", file=sys.stderr)
            return 1
    elif new != text:
        from spinelib.core.imageio import atomic_write_bytes

        atomic_write_bytes(PAGE, new.encode("utf-8"))
        print(f"wrote {PAGE}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
