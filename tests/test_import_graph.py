"""The package stays one layered house: no import circle, no deferred import of its own modules, small functions.

``lint-imports`` (the contracts in ``pyproject.toml``) checks which layer may import which. This test reads the
source with :mod:`ast` alone and checks what the contracts cannot say:

* no import circle among ``kie_async`` modules, counting every import: module level, inside functions and
  under ``TYPE_CHECKING``. ``from pkg import name`` imports ``pkg.name`` when that is a module, else ``pkg``
  (its ``__init__``); ``import pkg`` imports the ``__init__``; ``importlib.import_module("kie_async.…")`` with a
  literal name counts like an import statement. As in import-linter, ``import a.b.c`` is an edge to ``a.b.c``
  only, not to the parent packages Python runs on the way;
* an ``import`` statement inside a function or method naming a ``kie_async`` module only where it defers a
  third-party cost (``HEAVY``: rich, pyvips, ruamel, redis, mcp, jsonschema, aiohttp ...): the module it names
  loads one at import time (itself or through its own module-level imports) that the importer does not
  already load. Never for the package's own order: the circle test counts deferred imports too;
* every ``kie_async`` module an import statement names exists (none goes through an old, aliased path);
* no function longer than 80 lines, no class longer than 600 (``EXEMPT`` lists the ones allowed to be, each
  with its reason).

docs/architecture.md describes the layers; ``test_architecture_page_names_only_modules_that_exist`` keeps its
module paths true.
"""

from __future__ import annotations

import ast
import functools
import importlib
import itertools
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "kie_async"
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 600

# "module:QualifiedName" -> why it may be longer than the limit. Keep it empty: a long function is split, not
# listed. An entry that no longer needs its exemption fails the test, so the list only shrinks.
EXEMPT: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    deferred: bool  # inside a function or method body
    statement: bool  # an import statement (False: a literal importlib.import_module call)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


MODULES = source_files()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _absolute(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(importer: str, node: ast.AST) -> Iterator[tuple[str, bool]]:
    """The modules one node imports, each with whether it is an import statement."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, True
    elif isinstance(node, ast.ImportFrom):
        module = _absolute(importer, node)
        for alias in node.names:
            yield (f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module), True
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "import_module"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "importlib"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        yield node.args[0].value, False


def _walk(importer: str, node: ast.AST, deferred: bool) -> Iterator[Import]:
    for child in ast.iter_child_nodes(node):
        for target, statement in _targets(importer, child):
            if target == "kie_async" or target.startswith("kie_async."):
                yield Import(importer, target, getattr(child, "lineno", 0), deferred, statement)
        inside = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk(importer, child, inside)


@functools.cache
def _tree(module: str) -> ast.Module:
    """The parsed module, once per run (the checks below walk the same trees many times; none changes them)."""
    path = MODULES[module]
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def all_imports() -> list[Import]:
    found: list[Import] = []
    for name in MODULES:
        found.extend(_walk(name, _tree(name), deferred=False))
    return found


IMPORTS = all_imports()


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(ROOT)}:{line}"


# ------------------------------------------------------------------------------------------------ circles


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that reach one another."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(sorted(group))
    return groups


def _shortest_circle(start: str, graph: dict[str, set[str]]) -> list[str]:
    """The shortest path from ``start`` back to itself (breadth first)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in parents:
                    parents[child] = node
                    following.append(child)
        frontier = following
    return []


def _lines(numbers: list[int]) -> str:
    return ",".join(str(n) for n in sorted(set(numbers)))


def test_no_import_circle_among_kie_async_modules() -> None:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    lines: dict[tuple[str, str], list[int]] = {}
    for imp in IMPORTS:
        if imp.imported in MODULES and imp.imported != imp.importer:
            graph[imp.importer].add(imp.imported)
            lines.setdefault((imp.importer, imp.imported), []).append(imp.line)
    problems: list[str] = []
    for group in _strongly_connected(graph):
        if len(group) < 2:
            continue
        members = set(group)
        sub = {name: graph[name] & members for name in group}
        circle = _shortest_circle(group[0], sub)
        steps = " -> ".join(f"{a} (line {_lines(lines[a, b])})" for a, b in itertools.pairwise(circle))
        edges = "\n".join(f"      {_where(a, lines[a, b][0])}: {a} -> {b}" for a in group for b in sorted(sub[a]))
        problems.append(f"  circle: {steps} -> {circle[-1]}\n    the imports among these {len(group)}:\n{edges}")
    assert not problems, "import circles among kie_async modules:\n" + "\n".join(problems)


# ------------------------------------------------------------------------------------------------ deferred imports


HEAVY = frozenset({"rich", "pyvips", "ruamel", "redis", "mcp", "jsonschema", "aiohttp", "opentelemetry"})
"""Third-party packages whose import time is worth deferring (a command or a path that does not need them)."""


@functools.cache
def _heavy_at_import(name: str) -> frozenset[str]:
    """The HEAVY packages loading ``name`` imports: its own module-level imports and, in turn, those of the
    kie_async modules it imports at module level (TYPE_CHECKING blocks and function bodies run later)."""
    seen: set[str] = set()
    heavy: set[str] = set()
    todo = [name]
    while todo:
        module = todo.pop()
        if module in seen or module not in MODULES:
            continue
        seen.add(module)
        for node in _tree(module).body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            for child in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
                for target, statement in _targets(module, child):
                    top = target.split(".")[0]
                    if top in HEAVY:
                        heavy.add(top)
                    elif statement and top == "kie_async":
                        todo.append(target)
    return frozenset(heavy)


def test_function_level_imports_of_kie_async_modules_only_defer_a_third_party_cost() -> None:
    problems = []
    for imp in sorted({i for i in IMPORTS if i.deferred and i.statement}, key=lambda i: (i.importer, i.line)):
        saved = _heavy_at_import(imp.imported) - _heavy_at_import(imp.importer)
        if not saved:
            problems.append(
                f"  {_where(imp.importer, imp.line)}: {imp.importer} imports {imp.imported} inside a "
                "function, and that defers no third-party cost"
            )
    assert not problems, (
        "deferred imports of kie_async modules (import at module level; a circle they hide is cut, not hidden):\n"
        + "\n".join(problems)
    )


def test_every_kie_async_module_an_import_names_exists() -> None:
    missing = [
        f"  {_where(imp.importer, imp.line)}: {imp.importer} imports {imp.imported}, which is not a module here"
        for imp in IMPORTS
        if imp.imported not in MODULES
    ]
    assert not missing, "imports of kie_async modules that do not exist (old paths?):\n" + "\n".join(missing)


# ------------------------------------------------------------------------------------------------ sizes


def _definitions(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.AST]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}{child.name}"
            yield name, child
            yield from _definitions(child, f"{name}.")
        else:
            yield from _definitions(child, prefix)


def test_functions_and_classes_stay_short() -> None:
    too_long: list[str] = []
    used: set[str] = set()
    for module in MODULES:
        for name, node in _definitions(_tree(module), ""):
            limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
            start = getattr(node, "lineno", 0)  # the def/class line (decorators not counted)
            length = (getattr(node, "end_lineno", None) or start) - start + 1
            if length <= limit:
                continue
            key = f"{module}:{name}"
            if key in EXEMPT:
                used.add(key)
                continue
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            too_long.append(f"  {_where(module, start)}: {kind} {key} is {length} lines (limit {limit})")
    stale = sorted(set(EXEMPT) - used)
    assert not too_long, "too long (split it; EXEMPT is for reasons, not for backlog):\n" + "\n".join(too_long)
    assert not stale, f"EXEMPT lists definitions that are within the limits now (or gone): {stale}"


# ------------------------------------------------------------------------------------------------ the page


def _exists(dotted: str) -> bool:
    """A module, a folder in the package, or a name a module defines (``kie_async.pipeline.run.run_pipeline``).

    Old paths and old spellings resolve too (with a ``DeprecationWarning``), but the page must name the homes.
    """
    if dotted in MODULES or (ROOT / Path(*dotted.split("."))).is_dir():
        return True
    module, _, name = dotted.rpartition(".")
    if module not in MODULES:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # an old spelling or an old path is not a home
        try:
            value = getattr(importlib.import_module(module), name)
        except (AttributeError, ImportError, DeprecationWarning):
            return False
    return not isinstance(value, ModuleType)  # a module must be one of the files (checked above)


def test_architecture_page_names_only_modules_that_exist() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\bkie_async(?:\.[A-Za-z_][A-Za-z0-9_]*)*", page))
    assert "kie_async.core" in named  # the page does name modules: the pattern found them
    missing = sorted(name for name in named if not _exists(name))
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
