"""pcgraph: predictive coding (IL, Z-IL) and backprop on explicit computational graphs.

import pcgraph as pc
g = pc.Graph("mlp")
x = g.input("x", (784,))
...
prog = pc.compile(g)
"""

from __future__ import annotations

import importlib.util
import os
import sys


def _bind_backends_package() -> None:
    """In a source tree that was not installed, map ``pcgraph.backends`` to ``<root>/backends``
    as the installed package does (``package-dir`` in pyproject.toml)."""
    if importlib.util.find_spec(__name__ + ".backends") is not None:
        return
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "backends")
    spec = importlib.util.spec_from_file_location(
        __name__ + ".backends", os.path.join(root, "__init__.py"), submodule_search_locations=[root]
    )
    if spec is None or spec.loader is None:
        raise ImportError("pcgraph.backends is missing: reinstall pcgraph")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_bind_backends_package()

from . import backends, compare, data, distributed, init, optim, schedule, sweep, testing, train  # noqa: E402
from .backends import set_default_backend  # noqa: E402
from .checkpoint import Checkpoint, load, save  # noqa: E402
from .compile import UnusedParameterWarning  # noqa: E402
from .errors import (  # noqa: E402
    BackendError,
    FeedError,
    FileFormatError,
    GraphError,
    MissingDependencyError,
    NumericalError,
    OptionError,
    PCGraphError,
    ShapeError,
    UnsupportedOperatorError,
)
from .graph import DSL, Graph, Node, dsl_function, flatten, layer, one_hot, split  # noqa: E402
from .graph_file import (  # noqa: E402
    fingerprint,
    graph_from_json,
    graph_to_json,
    load_graph,
    save_graph,
)
from .onnx import from_onnx, to_onnx  # noqa: E402  (imports onnx only when called)
from .ops import OPS  # noqa: E402
from .program import Program, compile  # noqa: E402

globals().update(DSL)  # pc.relu, pc.matmul, pc.softmax_cross_entropy, ... one per op in the table


def __getattr__(name: str) -> object:
    """``pc.<op>`` for an op registered after import (``pc.ops.register``), as for the table's."""
    if name in OPS:
        return DSL.setdefault(name, dsl_function(OPS[name]))
    raise AttributeError(f"module 'pcgraph' has no attribute {name!r}")


from . import models  # noqa: E402  (the zoo builds on the DSL functions bound just above)


def to_numpy(x):  # noqa: ANN001, ANN201
    """Host NumPy copies of backend arrays (one, or a dict / list / tuple of them), any backend."""
    return backends.to_numpy(x)


__version__ = "0.1.0"
__all__ = [
    "Graph",
    "Node",
    "Program",
    "compile",
    "flatten",
    "layer",
    "split",
    "one_hot",
    "to_numpy",
    "set_default_backend",
    "backends",
    "compare",
    "distributed",
    "sweep",
    "init",
    "optim",
    "schedule",
    "testing",
    "train",
    "models",
    "data",
    "save",
    "load",
    "save_graph",
    "graph_to_json",
    "graph_from_json",
    "Checkpoint",
    "load_graph",
    "fingerprint",
    "OPS",
    "UnusedParameterWarning",
    "PCGraphError",
    "GraphError",
    "ShapeError",
    "FeedError",
    "BackendError",
    "OptionError",
    "NumericalError",
    "FileFormatError",
    "UnsupportedOperatorError",
    "MissingDependencyError",
    "from_onnx",
    "to_onnx",
    *DSL,
]
