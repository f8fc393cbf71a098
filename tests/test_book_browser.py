"""The rendered book, as a reader meets it in headless Chromium (runs after the book build): every
page loads cleanly, shows its figures, has prose before any code, and holds its tables within the
text column and its figures within 1.3 times it at 1280 px (``scripts/check_book.py``).

Skipped when ``_build/html`` or Chromium is absent, unless ``SPINELIB_REQUIRE_BOOK=1`` (CI sets it),
in which case their absence fails the test.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys

import pytest

from spinelib.core.config import REPO_ROOT

HTML = REPO_ROOT / "_build" / "html"
REQUIRED = os.environ.get("SPINELIB_REQUIRE_BOOK") == "1"


def _need(condition: bool, why: str):
    if not condition:
        (pytest.fail if REQUIRED else pytest.skip)(why)


def test_every_page_loads_cleanly_in_chromium():
    _need((HTML / "index.html").exists(), "the book is not built (bash scripts/build_book.sh)")
    _need(shutil.which("chromium") is not None, "Debian's chromium is not installed (scripts/setup_env.sh --browser)")
    _need(importlib.util.find_spec("playwright") is not None, "playwright is not installed")
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    from check_book import check_book, toc_pages

    shots = REPO_ROOT / "_build" / "screenshots"
    from spinelib.book import count_figures

    executed = sorted((HTML.parent / "src" / "notebooks").glob("*.ipynb"))
    assert executed and sum(count_figures(nb) for nb in executed) > 0, "the built book has no figure at all"
    failures = check_book(HTML, shots)
    assert not failures, "\n".join(f"{page}: {'; '.join(p)}" for page, p in failures.items())
    for name in toc_pages():
        assert (shots / f"{name.split('/')[-1]}.png").stat().st_size > 1000


def test_layout_check_catches_wide_tables_figures_and_code_first(tmp_path):
    """The layout measurements themselves, on a small page made to fail each of them, and the check
    for absolute paths of the building machine in a page's text."""
    _need(shutil.which("chromium") is not None, "Debian's chromium is not installed (scripts/setup_env.sh --browser)")
    _need(importlib.util.find_spec("playwright") is not None, "playwright is not installed")
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    from check_book import CHROMIUM_ARGS, FIGURE_SLACK, absolute_paths, layout_problems
    from playwright.sync_api import sync_playwright

    wide_png = "data:image/svg+xml," + "%3Csvg xmlns='http://www.w3.org/2000/svg' width='2000' height='10'/%3E"
    good = "<article class='bd-article' style='width:600px;padding:0'><p>Prose first.</p><div class='cell'>x</div>" \
           "<table><tr><th>a</th></tr></table></article>"
    bad = ("<article class='bd-article' style='width:600px;padding:0'><div class='cell'>code</div><p>prose</p>"
           "<table style='width:900px'><tr><th>wide</th></tr></table>"
           f"<div class='cell_output'><img src=\"{wide_png}\"></div></article>")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_content(good)
        assert layout_problems(page) == [] and absolute_paths(page) == []
        page.set_content("<article class='bd-article'><p>Weights read from /work/main/outputs/tiny/best.keras and "
                         "(/tmp/x.csv); results/aasce_unet/metrics.json is fine.</p></article>")
        assert absolute_paths(page) == ["/work/main/outputs/tiny/best.keras", "/tmp/x.csv"]
        page.set_content(bad)
        page.wait_for_timeout(200)
        found = " | ".join(layout_problems(page))
        browser.close()
    assert "code cell stands above" in found and "table 900 px wide" in found
    assert f"more than {FIGURE_SLACK} x" in found
