"""The compiler knows no array library; backends know no graph."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARRAY_LIBRARIES = {"numpy", "cupy", "array_api_strict", "torch", "jax"}
GRAPH_SIDE = ["errors", "ops", "init", "graph", "compile", "schedule", "algorithms/pc"]


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
