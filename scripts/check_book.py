"""Open every page of the rendered book in headless Chromium and check it as a reader meets it.

For each page listed in the navigation: no console errors or page errors, no request leaves
loopback, every image has loaded (natural width > 0), no notebook cell shows an error or a
traceback; every figure of the executed notebook is on the page; no code cell stands above the
first paragraph of prose; the text shows no absolute path of the machine that built it (``/work/``,
``/tmp/``, ``/home/``); no table is wider than the text column and no figure wider than
``FIGURE_SLACK`` times it (at the 1280 px viewport); a screenshot is saved. The navigation must list every page of ``_toc.yml`` in order,
and the search page must find "Dice". Exits non-zero naming the failing pages.

    python scripts/check_book.py [--html _build/html] [--screenshots _build/screenshots]

Needs Debian's ``chromium`` (``bash scripts/setup_env.sh --browser``) and the ``playwright``
Python package (its own browser download is never used).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def toc_pages(root: Path = ROOT) -> list[str]:
    """Page paths (``notebooks/01_data_analysis``) in the order of ``_toc.yml``, root first."""
    from spinelib.book import toc_files

    return toc_files(root)


def serve(html: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # no request log on the console
            pass

    handler = functools.partial(Quiet, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


FIGURE_SLACK = 1.3
"""A figure may be drawn at most this many times wider than the text column (it is shown scaled down
to the column; wider than this, its text becomes too small to read)."""

LAYOUT_JS = """(slack) => {
    const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
    if (!article) return [];  // a redirect page (index.html) while it navigates
    const style = getComputedStyle(article);
    const column = article.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const problems = [];
    const firstP = article.querySelector('p');
    const firstCell = article.querySelector('div.cell');
    if (firstCell && (!firstP || (firstCell.compareDocumentPosition(firstP) & Node.DOCUMENT_POSITION_FOLLOWING))) {
        problems.push('a code cell stands above the first paragraph of prose');
    }
    for (const t of article.querySelectorAll('table')) {
        const w = t.getBoundingClientRect().width;
        if (w > column + 1) {
            const head = (t.querySelector('th') || t).innerText.trim().slice(0, 60);
            problems.push(`table ${Math.round(w)} px wide in a ${Math.round(column)} px column (first header: ${JSON.stringify(head)})`);
        }
    }
    for (const img of article.querySelectorAll('.cell_output img, img')) {
        if (img.naturalWidth > slack * column) {
            problems.push(`figure ${img.naturalWidth} px wide, more than ${slack} x the ${Math.round(column)} px column: ${img.getAttribute('src')}`);
        }
    }
    return problems;
}"""


LAYOUT_PENDING: dict[str, str] = {}
"""Pages whose layout problems are reported but do not fail the check yet, each with the reason.
Remove an entry once its page passes."""


ABSOLUTE_PATH_JS = """() => {
    const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
    if (!article) return [];
    const found = article.innerText.match(/(^|[\\s'"(=`])\\/(work|tmp|home|root|kaggle\\/working)\\/[^\\s'")`]*/g) || [];
    return Array.from(new Set(found.map(s => s.trim().replace(/^['"(=`]/, '')))).slice(0, 5);
}"""


def absolute_paths(page) -> list[str]:
    """Absolute paths of the building machine (``/work/...``, ``/tmp/...``, ``/home/...``) in the
    text of the loaded page: a reader's page names files relative to the book or its results."""
    return page.evaluate(ABSOLUTE_PATH_JS)


def layout_problems(page) -> list[str]:
    """What :data:`LAYOUT_JS` finds on the loaded page: code above the prose, tables wider than the
    text column, figures wider than :data:`FIGURE_SLACK` times it."""
    return page.evaluate(LAYOUT_JS, FIGURE_SLACK)


def check_page(page, url: str, shot: Path, expected_figures: int = 0, pending_layout: str = "") -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(url, wait_until="load", timeout=60_000)
    page.wait_for_timeout(300)
    broken = page.evaluate("""() => Array.from(document.images)
        .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'))""")
    problems += [f"image did not load: {src}" for src in broken]
    shown = page.evaluate("() => document.querySelectorAll('.cell_output img').length")
    if shown < expected_figures:
        problems.append(f"the executed notebook has {expected_figures} figure(s), the page shows {shown}")
    tracebacks = page.evaluate("""() => Array.from(document.querySelectorAll(
        '.cell_output .output.traceback, .cell_output .output.error, .cell_output pre'))
        .map(e => e.innerText).filter(t => /Traceback \\(most recent call last\\)|^\\w+Error: /m.test(t))""")
    problems += [f"cell shows an error: {t[:200]!r}" for t in tracebacks]
    page.wait_for_load_state("load")  # index.html redirects to the root page
    problems += [f"the page shows a path of the machine that built it: {p!r}" for p in absolute_paths(page)]
    if not pending_layout:
        problems += layout_problems(page)
    else:
        for p in layout_problems(page):
            print(f"  pending ({pending_layout}): {p}")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=False)
    return problems


def check_book(html: Path, screenshots: Path, chromium: str = "/usr/bin/chromium") -> dict[str, list[str]]:
    from playwright.sync_api import sync_playwright

    from spinelib.book import count_figures

    if not (html / "index.html").exists():
        raise FileNotFoundError(f"{html}/index.html not found: build the book first (bash scripts/build_book.sh)")
    server, base = serve(html)
    failures: dict[str, list[str]] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            external: list[str] = []

            def route(r):
                if r.request.url.startswith(base) or r.request.url.startswith("data:"):
                    r.continue_()
                else:
                    external.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            pages = toc_pages()
            for name in pages:
                external.clear()
                page = context.new_page()
                target = "index.html" if name == toc_pages()[0] else f"{name}.html"
                executed = html.parent / "src" / f"{name}.ipynb"  # what spinelib.book executed
                expected = count_figures(executed) if executed.exists() else 0
                problems = check_page(page, f"{base}/{target}", screenshots / f"{Path(name).name}.png", expected,
                                      pending_layout=LAYOUT_PENDING.get(name, ""))
                problems += [f"request leaves the machine: {u}" for u in external]
                if name == pages[0]:
                    nav = page.evaluate("""() => Array.from(document.querySelectorAll(
                        'nav.bd-docs-nav a.reference.internal')).map(a => a.getAttribute('href'))""")
                    listed = [Path(h.split("#")[0]).with_suffix("").as_posix() for h in nav if h.split("#")[0]]
                    if listed != pages[1:]:
                        problems.append(f"navigation lists {listed}, expected {pages[1:]}")
                if problems:
                    failures[name] = problems
                page.close()
            page = context.new_page()
            page.goto(f"{base}/search.html?q=Dice", wait_until="load")
            try:
                page.wait_for_selector("#search-results ul.search li", timeout=20_000)
            except Exception:
                failures["search"] = ['the search page found nothing for "Dice"']
            page.screenshot(path=str(screenshots / "search.png"))
            browser.close()
    finally:
        server.shutdown()
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--html", default=str(ROOT / "_build" / "html"))
    parser.add_argument("--screenshots", default=str(ROOT / "_build" / "screenshots"))
    args = parser.parse_args(argv)
    failures = check_book(Path(args.html), Path(args.screenshots))
    for name, problems in failures.items():
        print(f"FAIL {name}:")
        for p in problems:
            print(f"  - {p}")
    print(f"{len(toc_pages())} pages checked, {len(failures)} with problems; screenshots in {args.screenshots}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
