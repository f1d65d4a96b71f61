"""Pictures and exports of a graph with each node's Z-IL level: PNG, Graphviz DOT, GraphML.
Nodes marked with ``pc.layer`` (the value nodes of ``value_nodes="layers"``) have a thick border.

DOT is written directly (no pydot or Graphviz needed to write it; ``dot -Tsvg`` renders it),
GraphML through networkx, PNG with matplotlib (the ``plot`` extra) in a layered layout where
each row is one Z-IL level, the loss at the bottom.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx

from .errors import OptionError
from .files import PathLike, atomic_write, atomic_write_text
from .graph import Graph, operands_of
from .graph_file import graph_to_json, json_value
from .levels import zil_levels

FORMATS = (".png", ".dot", ".gv", ".graphml", ".json")
_COLORS = {
    "input": "#9ecae1",
    "target": "#fdd0a2",
    "param": "#a1d99b",
    "const": "#d9d9d9",
    "op": "#ffffff",
    "loss": "#fc9272",
}


def node_label(graph: Graph, name: str, levels: dict[str, int] | None = None) -> str:
    """``name``, then ``op shape`` (or ``kind shape``), then ``L<level>`` (or ``loss``), and
    ``, layer`` for a node marked with ``pc.layer``."""
    levels = zil_levels(graph) if levels is None else levels
    d = graph.nx.nodes[name]
    what = d.get("op") or d["kind"]
    shape = "(" + ",".join(str(n) for n in d["shape"]) + ("," if len(d["shape"]) == 1 else "") + ")"
    if name == graph.nx.graph.get("loss"):
        tail = "loss"
    elif name in levels:
        tail = f"L{levels[name]}"
    else:
        tail = "no level (does not reach the loss)"
    if d.get("layer"):
        tail += ", layer"  # a value node under value_nodes="layers"
    return f"{name}\n{what} {shape}\n{tail}"


def annotated(graph: Graph) -> nx.MultiDiGraph:
    """A copy of ``graph.nx`` whose node attributes are plain strings and numbers (for GraphML):
    ``label``, ``kind``, ``op``, ``shape``, ``dtype``, ``batched``, ``attrs`` (JSON), ``init``,
    ``level`` (absent for the loss and for nodes that do not reach it), ``layer`` (marked with
    ``pc.layer``); edges keep ``pos``."""
    levels = zil_levels(graph)
    out = nx.MultiDiGraph(name=graph.name, loss=str(graph.nx.graph.get("loss")))
    for name, d in graph.nx.nodes(data=True):
        attrs: dict[str, Any] = {
            "label": node_label(graph, name, levels),
            "kind": d["kind"],
            "shape": json.dumps(list(d["shape"])),
            "dtype": d["dtype"],
            "batched": bool(d["batched"]),
        }
        if d.get("op"):
            attrs["op"] = d["op"]
            attrs["attrs"] = json.dumps(json_value(d.get("attrs") or {}))
        if d["kind"] == "param":
            init = d.get("init")
            attrs["init"] = init if isinstance(init, str) else ("callable" if init else "default")
        if name in levels:
            attrs["level"] = levels[name]
        attrs["layer"] = bool(d.get("layer", False))
        out.add_node(name, **attrs)
    for src, dst, pos in graph.nx.edges(data="pos"):
        out.add_edge(src, dst, pos=int(pos))
    return out


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: Graph) -> str:
    """Graphviz DOT text of ``graph``: one node per graph node labelled with its Z-IL level,
    nodes of one level on one rank, edges labelled with the operand position when an op has
    several operands."""
    levels = zil_levels(graph)
    loss = graph.nx.graph.get("loss")
    lines = [
        f"digraph {_quote(graph.name)} {{",
        "  rankdir=LR;",
        '  node [fontname="Helvetica", fontsize=10, style=filled];',
    ]
    for name, d in sorted(graph.nx.nodes(data=True)):
        kind = "loss" if name == loss else d["kind"]
        shape = {"param": "box", "const": "note", "op": "box", "loss": "doubleoctagon"}.get(
            kind, "ellipse"
        )
        style = ', style="filled,rounded"' if kind == "op" else ""
        if d.get("layer"):  # pc.layer marks: the value nodes of value_nodes="layers"
            style += ", penwidth=2.5"
        lines.append(
            f"  {_quote(name)} [label={_quote(node_label(graph, name, levels))}, shape={shape}, "
            f'fillcolor="{_COLORS[kind]}"{style}];'
        )
    for name in sorted(graph.nx.nodes):
        ops = operands_of(graph.nx, name)
        for pos, src in enumerate(ops):
            label = f" [label={pos}]" if len(ops) > 1 else ""
            lines.append(f"  {_quote(src)} -> {_quote(name)}{label};")
    by_level: dict[int, list[str]] = {}
    for name, level in levels.items():
        by_level.setdefault(level, []).append(name)
    for level in sorted(by_level):
        members = " ".join(_quote(n) for n in sorted(by_level[level]))
        lines.append(f"  {{rank=same; {members}}}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _layered_positions(graph: Graph, levels: dict[str, int]) -> dict[str, tuple[float, float]]:
    """One row per level, the deepest at the top and the loss at the bottom; nodes of a row in
    name order, centred.  Rows (not columns) because deep graphs then grow downwards, which
    a reader scrolls, and each row stays a few labels wide."""
    loss = graph.nx.graph.get("loss")
    top = max(levels.values(), default=0)
    rows: dict[float, list[str]] = {}
    for name in sorted(graph.nx.nodes):
        if name == loss:
            y = -1.0
        elif name in levels:
            y = float(levels[name])
        else:
            y = top + 1.0  # nodes that do not reach the loss get a row of their own
        rows.setdefault(y, []).append(name)
    return {
        name: (i - (len(names) - 1) / 2.0, y)
        for y, names in rows.items()
        for i, name in enumerate(names)
    }


def draw_png(graph: Graph, path: PathLike, dpi: int = 110) -> Path:
    """A PNG picture of ``graph`` (needs matplotlib): one row per Z-IL level, the loss at the
    bottom."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise OptionError(
            "drawing a PNG needs matplotlib: pip install 'pcgraph[plot]' (or write .dot or "
            ".graphml instead)"
        ) from None
    levels = zil_levels(graph)
    pos = _layered_positions(graph, levels)
    loss = graph.nx.graph.get("loss")
    n_rows = len({y for _, y in pos.values()})
    widest = max(sum(1 for p in pos.values() if p[1] == y) for _, y in pos.values())
    size = (min(max(2.0 * widest + 1, 6.0), 60.0), min(max(0.8 * n_rows + 1, 4.0), 120.0))
    fig, ax = plt.subplots(figsize=size)
    try:
        simple = nx.DiGraph(graph.nx)
        # Arrows stop short of the label boxes, so every edge shows its head.
        nx.draw_networkx_edges(
            simple,
            pos,
            ax=ax,
            arrows=True,
            arrowstyle="-|>",
            arrowsize=12,
            edge_color="#888888",
            node_size=2500,
            min_source_margin=18,
            min_target_margin=24,
        )
        for name, (x, y) in pos.items():
            kind = "loss" if name == loss else graph.nx.nodes[name]["kind"]
            ax.text(
                x,
                y,
                node_label(graph, name, levels),
                ha="center",
                va="center",
                fontsize=7,
                bbox={
                    "boxstyle": "round",
                    "facecolor": _COLORS[kind],
                    "edgecolor": "#555555",
                    "linewidth": 2.5 if graph.nx.nodes[name].get("layer") else 1.0,
                },
            )
        ax.set_title(f"graph {graph.name!r}: rows are Z-IL levels (L0 feeds the loss)")
        ax.axis("off")
        ax.margins(0.1)
        fig.tight_layout()
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    finally:
        plt.close(fig)


def export(graph: Graph, path: PathLike) -> Path:
    """Write ``graph`` to ``path`` in the format its suffix names (``FORMATS``), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        return draw_png(graph, path)
    if suffix in (".dot", ".gv"):
        return atomic_write_text(path, to_dot(graph))
    if suffix == ".graphml":
        return atomic_write(path, lambda f: nx.write_graphml(annotated(graph), f))
    if suffix == ".json":
        return atomic_write_text(path, graph_to_json(graph))
    raise OptionError(
        f"cannot tell the format of {str(path)!r}: use a name ending in {', '.join(FORMATS)}"
    )


__all__ = ["node_label", "annotated", "to_dot", "draw_png", "export", "FORMATS"]
