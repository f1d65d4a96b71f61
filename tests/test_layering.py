"""The compiler knows no array library; backends know no graph."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARRAY_LIBRARIES = {"numpy", "cupy", "array_api_strict", "torch", "jax"}
GRAPH_SIDE = ["errors", "ops", "init", "graph", "levels", "compile", "schedule", "algorithms/pc"]


def imports(path: Path) -> set[str]:
    """Top-level module names imported at module level (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ("." * node.level) + (node.module or "")
            found.add(base)
    return found


def test_the_graph_side_imports_no_array_library_even_indirectly() -> None:
    allowed = {f".{m.split('/')[-1]}" for m in GRAPH_SIDE} | {
        f"pcgraph.{m.replace('/', '.')}" for m in GRAPH_SIDE
    }
    for module in GRAPH_SIDE:
        names = imports(ROOT / "pcgraph" / f"{module}.py")
        assert not {n.split(".")[0] for n in names} & ARRAY_LIBRARIES, module
        internal = {n for n in names if n.startswith(".") or n.startswith("pcgraph")}
        assert internal <= allowed, f"{module} imports {internal - allowed} from outside"


def test_backends_know_no_graph() -> None:
    for path in (ROOT / "backends").glob("*.py"):
        names = imports(path)
        graphy = {
            n
            for n in names
            if n in ("networkx",)
            or n.startswith("pcgraph.")
            and n not in ("pcgraph.errors",)
            and not n.startswith("pcgraph.backends")
        }
        assert not graphy, f"{path.name} imports {graphy}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "backends":  # installed as pcgraph.backends (package-dir in pyproject.toml)
        parts = ["pcgraph", *parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class _AllImports(ast.NodeVisitor):
    """The pcgraph modules a module imports anywhere: at module level and inside functions
    (a lazy import is still a dependency), but not under ``if TYPE_CHECKING:``."""

    def __init__(self, module: str, is_package: bool, known: set[str]) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.known, self.found = known, set()

    def _add(self, name: str) -> None:
        while name and name not in self.known:
            name = name.rpartition(".")[0]
        if name:
            self.found.add(name)

    def visit_If(self, node: ast.If) -> None:
        if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.startswith("pcgraph."):
                self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")[: len(self.package.split(".")) - (node.level - 1)]
            name = ".".join(base + ([node.module] if node.module else []))
        else:
            name = node.module or ""
        if name.startswith("pcgraph.") or (name == "pcgraph" and node.level):
            for alias in node.names:
                self._add(f"{name}.{alias.name}")


def test_no_module_imports_itself_back_even_lazily() -> None:
    """The import graph of pcgraph's modules is acyclic, counting imports inside functions.
    Imports of the package root (``import pcgraph as pc``: the public DSL, as user code such as
    the zoo writes it) are not edges: the root re-exports everything by design."""
    import networkx as nx

    paths = [*(ROOT / "pcgraph").rglob("*.py"), *(ROOT / "backends").rglob("*.py")]
    modules = {_module_name(p): p for p in paths}
    edges = nx.DiGraph()
    for module, path in modules.items():
        visitor = _AllImports(module, path.name == "__init__.py", set(modules))
        visitor.visit(ast.parse(path.read_text()))
        edges.add_edges_from((module, dep) for dep in visitor.found if dep != module)
    cycles = sorted(nx.simple_cycles(edges), key=len)
    assert not cycles, f"import cycles: {cycles[:5]}"
