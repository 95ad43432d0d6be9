"""headscope's import graph: no cycles, and imports point down the layers of shared/ARCHITECTURE.md.

The graph is built with `ast` from every `import` / `from ... import` in the package, lazy ones inside functions
included (a lazy import is still a dependency: it only hides a cycle until the function runs); imports under
`if TYPE_CHECKING:` are left out (they never run). `from pkg import name` is an edge to `pkg.name` when that is
a module, else to the package `pkg` (its `__init__`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import headscope

ROOT = Path(headscope.__file__).parent
PKG = "headscope"

# Layers, top to bottom (ARCHITECTURE.md): a module may import its own layer's modules or lower layers only.
LAYERS: dict[str, int] = {
    "app": 6,
    "cli": 5,
    "batch": 4,
    **dict.fromkeys(("probes", "localist", "circuits", "features", "steering", "decoding"), 3),
    **dict.fromkeys(("attention", "kernels"), 2),
    "models": 1,
    **dict.fromkeys(("errors", "checks", "registry", "selection", "assets", "codec", "files", "progress"), 0),
    "session": 0,  # the session file's format, UI-free (app/session.py maps it onto the app's components)
    **dict.fromkeys(("data", "ioi"), 0),  # shared data helpers (text corpus, IOI name lists)
}
# Documented exceptions to the layer direction (importer, imported): each says why in the comment beside it.
ALLOWED_UPWARD: set[tuple[str, str]] = {
    # `headscope serve` starts the app: the one command whose work IS the UI (imported lazily inside the command).
    ("headscope.cli.serve", "headscope.app.main"),
}
# Cycles someone is fixing (none left: constrained ↔ smc and catalog ↔ saes ↔ discrete are gone). Strict: any
# other cycle fails, and so does one of these once it is gone (then delete it here).
KNOWN_CYCLES: list[frozenset[str]] = []


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import node, descending into functions and classes but not into `if TYPE_CHECKING:` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            stack.append(child)


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _targets(module: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: set[str] = set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == PKG)
            continue
        base = _resolve(module, path.name == "__init__.py", node)
        if base.split(".")[0] != PKG:
            continue
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            out.add(sub if sub in known else base)
    return {t for t in out if t in known and t != module}


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _targets(m, p, set(mods)) for m, p in mods.items()}


def _sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _one_cycle(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first), to print."""
    members, start = set(comp), comp[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_the_graph_sees_lazy_imports_and_skips_type_checking(tmp_path):
    code = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from headscope.app import jobs\n"
        "def f():\n    from headscope.batch import cluster\n    import headscope.cli.common\n"
        "from . import errors\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(code)
    known = {"headscope.app.jobs", "headscope.batch.cluster", "headscope.cli.common", "headscope.errors"}
    got = _targets("headscope.mod", path, known)
    assert got == {"headscope.batch.cluster", "headscope.cli.common", "headscope.errors"}
    assert _sccs({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _one_cycle({"a": {"b"}, "b": {"a", "c"}, "c": set()}, ["a", "b"]) == ["a", "b", "a"]


def test_no_import_cycles():
    graph = import_graph()
    comps = _sccs(graph)
    unknown = [c for c in comps if frozenset(c) not in KNOWN_CYCLES]
    lines = [" -> ".join(_one_cycle(graph, c)) + f"   ({len(c)} modules: {', '.join(c)})" for c in unknown]
    assert not unknown, "import cycles:\n" + "\n".join(lines)
    gone = [sorted(c) for c in KNOWN_CYCLES if sorted(c) not in comps]
    assert not gone, f"these known cycles are fixed: remove them from KNOWN_CYCLES: {gone}"


def test_known_cycles_are_gone():
    assert not _sccs(import_graph())


def test_imports_point_down_the_layers():
    bad = []
    for mod, targets in import_graph().items():
        for t in sorted(targets):
            lo, hi = _layer(mod), _layer(t)
            if lo is None or hi is None or hi <= lo:
                continue
            if not any(mod.startswith(a) and t.startswith(b) for a, b in ALLOWED_UPWARD):
                bad.append(f"{mod} -> {t}")
    assert not bad, (
        "imports against the layer direction (app → cli → batch → capabilities → ...):\n" + "\n".join(bad)
    )


def test_every_module_has_a_layer():
    missing = sorted({m.split(".")[1] for m in import_graph() if "." in m} - set(LAYERS))
    assert not missing, f"give these a layer in LAYERS: {missing}"
