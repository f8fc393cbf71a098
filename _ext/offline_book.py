"""Sphinx extension: keep the rendered book quiet and offline in a reader's browser.

- sphinx-thebe (pulled in by Jupyter Book 1) adds its inline configuration script both to the
  registry and to the already-initialised HTML builder, so every page declared
  ``const THEBE_JS_URL`` twice and the browser reported a SyntaxError. We drop duplicate scripts
  from each page. The book has no launch buttons, so thebe is never fetched from the internet.
- pydata-sphinx-theme logs "Got invalid theme mode" when no default mode is set; we set "light".
"""

from __future__ import annotations


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    if not context.get("default_mode"):
        context["default_mode"] = "light"
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = (str(getattr(script, "filename", None) or ""), repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
