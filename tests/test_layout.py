"""The package's layout rules, read from the source with ``ast`` (issue 13).

- imports point down the layers of :data:`LAYERS` (a module may use its own layer and those below);
- no module of ``spinelib.paper`` imports another one (each is one page's experiments), and only
  ``paper/``, ``book`` and ``cli`` import ``spinelib.paper``;
- no private name (``_x``) is imported from, or read off, another module;
- scripts do not edit ``sys.path`` (the package is installed; ``python -m scripts.<name>``);
- no module is above 600 lines (:data:`MAX_LINES`);
- every ``spinelib`` import of the scripts, tests and notebooks names a module that exists.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "spinelib"
MAX_LINES = 600

LAYERS = {"core": 0, "geometry.cobb": 0.5, "data": 1, "geometry": 2, "cls": 3, "seg": 4, "viz": 6,
          "overlay": 6, "landmarks": 6.5, "paper": 7, "book": 8, "cli": 8}
"""Rank of each part of spinelib (the most specific name counts): core (structures, config, files,
runs, headline files) at the bottom; Cobb angles from landmarks (pure geometry, read by the label
audit) just above; the datasets; mask geometry; the networks; the plots; the landmark line
(network, training, evaluation, its long run's headlines through :mod:`spinelib.core.headlines`);
the book's pages (paper) above every reusable layer; the book builder and the command line on top."""

MAY_IMPORT_PAPER = ("spinelib.paper", "spinelib.book", "spinelib.cli")
"""The only parts of spinelib that may import :mod:`spinelib.paper` (the book's experiments)."""

TOO_LONG_FOR_NOW: dict[str, str] = {}
"""Modules allowed above :data:`MAX_LINES`, each with its reason."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(module: str) -> str | None:
    """The most specific key of :data:`LAYERS` that ``module`` falls under (None: spinelib itself)."""
    parts = module.split(".")[1:]
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    return None


def is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (REPO / rel.with_suffix(".py")).is_file() or (REPO / rel / "__init__.py").is_file()


def spinelib_imports(tree: ast.AST) -> list[tuple[str, str, int]]:
    """``(module, imported name, line)`` of every ``from spinelib... import`` (lazy ones too);
    a name that is itself a module is reported as the module with name ``""``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "spinelib":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.append((sub, "", node.lineno) if is_module(sub) else (node.module, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "spinelib"]
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_point_down_and_pages_stand_alone(path):
    me = module_name(path)
    mine = layer(me)
    for target, _, line in spinelib_imports(ast.parse(path.read_text())):
        theirs = layer(target)
        if mine is None or theirs is None:
            continue
        assert LAYERS[theirs] <= LAYERS[mine], f"{me}:{line} imports {target}, a higher layer ({theirs} > {mine})"
        if mine == theirs == "paper" and target not in ("spinelib.paper", me):
            pytest.fail(f"{me}:{line} imports {target}: the paper/ modules do not import each other")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_only_the_book_and_the_command_import_paper(path):
    """The reusable layers know nothing of the book's pages: outside ``paper/``, ``book.py`` and
    ``cli``, no module imports :mod:`spinelib.paper` (headlines are written by
    :mod:`spinelib.core.headlines`)."""
    me = module_name(path)
    if any(me == m or me.startswith(m + ".") for m in MAY_IMPORT_PAPER):
        return
    for target, _, line in spinelib_imports(ast.parse(path.read_text())):
        assert not (target == "spinelib.paper" or target.startswith("spinelib.paper.")), \
            f"{me}:{line} imports {target}: only paper/, book and cli may"


def _private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    bad = [f"{path.name}:{line} imports {name} from {module}" for module, name, line in spinelib_imports(tree)
           if name.startswith("_") and not name.startswith("__")]
    bound = {}  # names bound to spinelib modules in this file
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spinelib"):
            for a in node.names:
                if is_module(f"{node.module}.{a.name}"):
                    bound[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            bad.append(f"{path.name}:{node.lineno} reads {bound[node.value.id]}.{node.attr}")
    return bad


@pytest.mark.parametrize("path", MODULES + sorted((REPO / "scripts").glob("*.py")), ids=lambda p: p.name)
def test_no_private_name_crosses_a_module(path):
    assert not _private_uses(path)


@pytest.mark.parametrize("path", sorted((REPO / "scripts").glob("*.py")), ids=lambda p: p.name)
def test_scripts_leave_sys_path_alone(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                and node.value.id == "sys":
            pytest.fail(f"{path.name}:{node.lineno} touches sys.path; the package is installed")


def test_no_module_is_above_600_lines():
    long = {module_name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > MAX_LINES
            and module_name(p) not in TOO_LONG_FOR_NOW}
    assert not long, f"modules above {MAX_LINES} lines: {long}"


def _sources():
    for p in sorted((REPO / "scripts").glob("*.py")) + sorted((REPO / "tests").glob("*.py")):
        yield p.name, p.read_text()
    for p in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(p.read_text())["cells"]
        yield p.name, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def top_level_names(module: str) -> set[str]:
    rel = Path(*module.split("."))
    path = REPO / rel.with_suffix(".py") if (REPO / rel.with_suffix(".py")).is_file() else REPO / rel / "__init__.py"
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


@pytest.mark.parametrize("name,source", list(_sources()), ids=lambda v: v if v.endswith((".py", ".ipynb")) else "")
def test_every_spinelib_import_names_a_module_that_exists(name, source):
    for module, imported, line in spinelib_imports(ast.parse(source)):
        assert is_module(module), f"{name}:{line}: no module {module}"
        if imported:
            assert imported in top_level_names(module), f"{name}:{line}: {module} has no {imported}"


def test_the_layout_test_sees_a_violation(tmp_path):
    """The checks above can fail: a private import and an upward import are both found."""
    bad = tmp_path / "bad.py"
    bad.write_text("from spinelib.core.provenance import _read_git_head\nfrom spinelib.paper import report\n")
    assert _private_uses(bad) == ["bad.py:1 imports _read_git_head from spinelib.core.provenance"]
    targets = [layer(t) for t, _, _ in spinelib_imports(ast.parse(bad.read_text()))]
    assert LAYERS[targets[1]] > LAYERS["core"]
