"""The rendered book, as a reader meets it in headless Chromium (runs after the book build).

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
