"""No import cycles in the library or the napari plugin, lazy imports inside functions included.

The graph is built statically with :mod:`ast` from every ``import`` statement
anywhere in a module (top level, functions, ``if TYPE_CHECKING:`` blocks):
a cycle hidden behind a lazy import is still a cycle. An edge goes from a
module to the project module it imports (``from pkg import name`` counts as
importing ``pkg.name`` when that is a module, else ``pkg``). Importing a
submodule also runs its parent packages' ``__init__``, but an edge to a
package's ``__init__`` is only drawn when the package itself is imported, so
``segnet_domains/__init__.py`` re-exporting its submodules is no cycle.
A module that calls ``importlib.import_module`` imports every project module
it names in a string (the CLI's ``COMMAND_MODULES``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("segnet_domains", "napari_plugin")


def _modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of :data:`PACKAGES`."""
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import …`` written in ``module``."""
    if level == 0:
        return name or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports, anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
    if any(
        isinstance(n, ast.Attribute | ast.Name)
        and "import_module" in (getattr(n, "attr", None), getattr(n, "id", None))
        for n in ast.walk(tree)
    ):
        targets.update(
            n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
        )
    return {t for t in targets if t in modules and t != module}


def import_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports."""
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_closed_path(graph, comp) for comp in components]


def _closed_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One cycle through the component's first module, for the message (``a → b → a``)."""
    start, members = component[0], set(component)
    paths = [[start]]
    seen = {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & members):
            if w == start:
                return [*path, start]
            if w not in seen:
                seen.add(w)
                paths.append([*path, w])
    return [*component, start]


def test_graph_sees_lazy_imports(tmp_path: Path) -> None:
    """The walker counts imports inside functions and relative imports (so the check can fail)."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    src = tmp_path / "m.py"
    src.write_text(
        "import importlib\nNAMES = ['napari_plugin.named']\n"
        "def f():\n    from . import other\n    import segnet_domains.inference\n"
        "    importlib.import_module(NAMES[0])\n"
    )
    mods = dict.fromkeys(["segnet_domains.inference", "napari_plugin.other", "napari_plugin.named"], src)
    assert _imports("napari_plugin.m", src, {**mods, "napari_plugin.m": src}) == set(mods)


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "segnet_domains.inference" in graph
    cycles = find_cycles(graph)
    for cycle in cycles:
        print("import cycle:", " → ".join(cycle))
    assert not cycles, "import cycles: " + "; ".join(" → ".join(c) for c in cycles)
