"""The layer rules of docs/ARCHITECTURE.md, read from the source with ``ast`` (no imports run).

Two checks: no import cycles among avatar modules (module-level imports; those only under
``TYPE_CHECKING`` do not run and are left out), and the allowed import directions between the
layers (every import, also those inside functions or under ``TYPE_CHECKING``: a lazy import is
still a dependency).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
Imports = dict[str, set[str]]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports that run when the module is imported (not in functions, not TYPE_CHECKING)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _type_checking(node):
                yield from module_level(node.body)
            yield from module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from module_level(block)
        elif isinstance(node, ast.With):
            yield from module_level(node.body)


def targets(node: ast.Import | ast.ImportFrom, package: str, known: set[str]) -> set[str]:
    """The avatar modules an import names: ``from a.b import c`` is ``a.b.c`` if that is a
    module, else ``a.b``; relative imports are resolved against ``package``."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        parent = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parent, *([node.module] if node.module else [])])
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}


def import_graph(root: Path, top: str, *, runtime_only: bool) -> Imports:
    """``module -> modules of ``top`` it imports`` for every module under ``root/top``."""
    paths = {module_name(p, root): p for p in (root / top).rglob("*.py")}
    graph: Imports = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        nodes = (
            module_level(tree.body)
            if runtime_only
            else (n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom))
        )
        found = set().union(*(targets(n, package, set(paths)) for n in nodes))
        graph[name] = {t for t in found if t == top or t.startswith(f"{top}.")}
    return graph


def cycles(graph: Imports) -> list[list[str]]:
    """Strongly connected groups of more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(group) > 1 or node in graph.get(node, ()):
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@functools.cache
def avatar_graph(runtime_only: bool) -> Imports:
    return import_graph(SRC, "avatar", runtime_only=runtime_only)


# --- no cycles ---------------------------------------------------------------------------------


def test_no_import_cycles_among_avatar_modules() -> None:
    assert cycles(avatar_graph(runtime_only=True)) == []


def test_the_cycle_finder_finds_a_cycle_and_skips_type_checking_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from demo import b\n")
    (pkg / "b.py").write_text("def f():\n    from demo import c\n")
    (pkg / "c.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    import demo.a\n")
    assert cycles(import_graph(tmp_path, "demo", runtime_only=True)) == []
    (pkg / "c.py").write_text("from . import a\n")
    (pkg / "b.py").write_text("import demo.c\n")
    assert cycles(import_graph(tmp_path, "demo", runtime_only=True)) == [
        ["demo.a", "demo.b", "demo.c"]
    ]


# --- import directions -------------------------------------------------------------------------

# The domain: everything a voice turn or a REST call runs on, below the entry points.
DOMAIN = ("pipeline", "services", "storage", "engines", "models", "audio", "system", "settings")
ENTRY = ("api", "cli", "web", "bench", "testing")
FOUNDATION = ("audio", "models", "system", "settings", "errors")

# (layer, layer it must not import, why)
RULES: list[tuple[str, str, str]] = [
    *(
        (layer, entry, "the domain knows no transport, entry point or fake")
        for layer in DOMAIN
        for entry in ENTRY
    ),  # fmt: skip
    ("storage", "services", "storage is the bottom: rows and files, no use cases"),
    ("storage", "pipeline", "storage is the bottom: rows and files, no voice loop"),
    ("storage", "engines", "storage is the bottom: rows and files, no models"),
    ("engines", "pipeline", "an engine is one capability, used by the pipeline"),
    ("engines", "services", "an engine is one capability, used by the services"),
    ("engines", "storage", "an engine is one capability: it stores nothing"),
    ("pipeline", "services", "the session records through its recorder interface"),
    ("pipeline", "storage", "the session records through its recorder interface"),
    *(
        (low, high, "the foundation serves every layer and uses none")
        for low in FOUNDATION
        for high in ("engines", "pipeline", "services", "storage")
    ),  # fmt: skip
]
PENDING: dict[tuple[str, str], str] = {}  # rules known broken, each with its reason


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "avatar"


def violations(graph: Imports, layer: str, forbidden: str) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, imported in graph.items()
        if layer_of(module) == layer
        for target in imported
        if layer_of(target) == forbidden
    )


def _case(layer: str, forbidden: str, why: str) -> object:
    marks = []
    if (layer, forbidden) in PENDING:
        marks = [pytest.mark.xfail(strict=True, reason=PENDING[layer, forbidden])]
    return pytest.param(layer, forbidden, why, marks=marks, id=f"{layer}-imports-no-{forbidden}")


@pytest.mark.parametrize(("layer", "forbidden", "why"), [_case(*rule) for rule in RULES])
def test_import_direction(layer: str, forbidden: str, why: str) -> None:
    assert violations(avatar_graph(runtime_only=False), layer, forbidden) == [], why


def test_every_layer_named_in_the_rules_exists() -> None:
    layers = {layer_of(m) for m in avatar_graph(runtime_only=False)}
    named = {name for rule in RULES for name in rule[:2]} - {"web"}  # web/ is static files
    assert named <= layers, named - layers
