"""The contenders of the speed report: what each one runs per training step, in its own process.

A contender's ``make`` imports its own runtime only (pcgraph, PyTorch, JAX/PCX or bare NumPy)
and returns a ``Stepper``; ``benchmarks.worker`` times it.  Every contender trains the same
network from the same weights (pcgraph's ``init_params(0)``) on the same rotating batches.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.networks import Network

LR = 1e-3  # plain SGD for every contender: the step's cost, not a tuned training run
PC_OPTIONS: dict[str, dict[str, Any]] = {
    "bp": {},
    "zil": {},
    "fpa": {},  # its default: as many sweeps as the graph is deep, rate 1
    "il": {"steps": 20, "rate": 0.1},
    "il-prox": {},  # its defaults: 25 steps at rate 0.015, alpha = the optimiser's lr
    "ipc": {"steps": 20, "rate": 0.1},  # lr: the optimiser's (train_step passes it)
}


def mupc_options(algorithm: str, batch: int) -> dict[str, Any]:
    """IL's or ePC's settings on the deep muPC network, as ``examples/reproduce/deep.py``
    trains it (issue 27): its inference steps, value nodes on the marked layers, IL at jpc's
    activity rate on the batch mean (per example: over ``batch``), ePC at its error rate."""
    from examples.reproduce import deep

    rate = deep.ACTIVITY_LR / batch if algorithm == "il" else deep.EPC_RATE["mupc"]
    return {"steps": deep.FULL.steps, "rate": rate, "value_nodes": "layers"}


@dataclass
class Stepper:
    """``step(i)`` runs training step ``i`` (on batch ``i % batches``); ``sync()`` waits for the
    device; ``info`` is reported beside the timings (e.g. peak memory)."""

    step: Callable[[int], Any]
    sync: Callable[[], Any] = lambda: None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Contender:
    name: str
    label: str  # the row label in the report
    runtime: str  # "pcgraph", "pytorch", "pcx" or "numpy": what its process imports
    make: Callable[[Network, str], Stepper]
    applies: Callable[[Network], bool] = lambda net: not net.is_mupc  # its own rows: _is_mupc
    needs: tuple[str, ...] = ()  # importable modules it needs

    def missing(self) -> str | None:
        """Why it cannot run here (None when it can), without importing anything."""
        absent = [m for m in self.needs if importlib.util.find_spec(m) is None]
        return f"{', '.join(absent)} not installed" if absent else None


# ------------------------------------------------------------------ pcgraph
def _program(net: Network, device: str) -> tuple[Any, Any, dict]:
    import pcgraph as pc

    g = net.build()
    prog = pc.compile(g, backend="cupy" if device == "gpu" else "numpy", dtype="float32")
    return prog, g, prog.init_params(0)


def _device_batches(prog: Any, net: Network, g: Any) -> list[dict]:
    from benchmarks.networks import batches

    be = prog.backend
    return [
        {k: be.asarray(v, "int64" if v.dtype.kind in "iu" else "float32") for k, v in b.items()}
        for b in batches(net, g)
    ]


def peak_step_memory(net: Network, device: str, algorithm: str) -> int:
    """Peak bytes NumPy allocates during one gradient computation, after a first one has
    lowered the schedule (CPU only: tracemalloc sees NumPy's allocations).  It measures what
    the schedule keeps alive at once, which the memory plan decides."""
    import tracemalloc

    prog, g, params = _program(net, device)
    feeds = _device_batches(prog, net, g)
    options = PC_OPTIONS[algorithm]
    prog.grads(params, feeds[0], algorithm, **options)
    tracemalloc.start()
    try:
        prog.grads(params, feeds[1], algorithm, **options)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _pcgraph(algorithm: str, mupc: bool = False, **extra: Any) -> Callable[[Network, str], Stepper]:
    """pcgraph's ``train_step`` with plain SGD and ``PC_OPTIONS``; with ``mupc``, Adam and
    ``mupc_options`` (the deep reproduction's training)."""

    def make(net: Network, device: str) -> Stepper:
        import pcgraph as pc

        info = {}
        if device == "cpu" and algorithm in ("bp", "zil"):
            info["peak_bytes"] = peak_step_memory(net, device, algorithm)
        prog, g, params = _program(net, device)
        feeds = _device_batches(prog, net, g)
        if mupc:
            opt, options = pc.optim.Adam(lr=LR), mupc_options(algorithm, net.batch)
        else:
            opt, options = pc.optim.SGD(lr=LR), {**PC_OPTIONS[algorithm], **extra}

        def step(i: int) -> float:
            return prog.train_step(
                params, feeds[i % len(feeds)], algorithm, optimizer=opt, **options
            )

        return Stepper(step, prog.backend.synchronize, info)

    return make


# ------------------------------------------------------------------ PyTorch
def _torch_threads(device: str) -> Any:
    import torch

    import benchmarks

    torch.set_num_threads(int(benchmarks.THREADS))
    if device == "gpu" and not torch.cuda.is_available():
        raise RuntimeError("PyTorch has no CUDA device here")
    return torch


def _torch_sync(torch: Any, device: str) -> Callable[[], Any]:
    return torch.cuda.synchronize if device == "gpu" else (lambda: None)


def _torch_peer(net: Network, device: str) -> Stepper:
    """pcgraph's graph interpreted op by op in PyTorch (``TorchPeer``): autograd + SGD."""
    torch = _torch_threads(device)
    from benchmarks.torch_peer import TorchPeer

    prog, g, params = _program(net, "cpu")
    from benchmarks.networks import batches

    peer = TorchPeer(prog, params, lr=LR, device="cuda" if device == "gpu" else "cpu")
    feeds = [peer.feed(b) for b in batches(net, g)]
    return Stepper(lambda i: peer.step(feeds[i % len(feeds)]), _torch_sync(torch, device))


def _torch_sequential(net: Network, device: str) -> Stepper:
    """The MLP as PyTorch users write it: ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU``,
    ``nn.CrossEntropyLoss``, ``torch.optim.SGD``; ``zero_grad``, forward, ``backward``,
    ``step``, ``loss.item()`` (a training loop logs its loss)."""
    import numpy as np

    torch = _torch_threads(device)

    _, g, params = _program(net, "cpu")
    where = "cuda" if device == "gpu" else "cpu"
    layers: list[Any] = []
    sizes = net.mlp_sizes
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.asarray(params[f"fc{i}.W"]).T.copy()))
            lin.bias.copy_(torch.from_numpy(np.asarray(params[f"fc{i}.b"])))
        layers += [lin, torch.nn.ReLU()] if i < len(sizes) - 2 else [lin]
    model = torch.nn.Sequential(*layers).to(where)
    return _torch_training(torch, net, g, device, list(model.parameters()), model)


def _torch_training(
    torch: Any,
    net: Network,
    g: Any,
    device: str,
    parameters: list,
    logits_of: Callable[[Any], Any],
) -> Stepper:
    """A PyTorch training step as users write it: ``zero_grad``, ``logits_of(x)``,
    ``nn.CrossEntropyLoss``, ``backward``, ``torch.optim.SGD`` over ``parameters``, and
    ``loss.item()`` (a training loop logs its loss), on the network's rotating batches."""
    from benchmarks.networks import batches

    where = "cuda" if device == "gpu" else "cpu"
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(parameters, lr=LR)
    feeds = [
        (torch.from_numpy(b["x"]).to(where), torch.from_numpy(b["y"]).to(where))
        for b in batches(net, g)
    ]

    def step(i: int) -> float:
        x, y = feeds[i % len(feeds)]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(logits_of(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return Stepper(step, _torch_sync(torch, device))


def _is_rnn(net: Network) -> bool:
    return net.name.startswith("rnn")


def _torch_rnn(net: Network, device: str) -> Stepper:
    """The zoo's many-to-one RNN as PyTorch users write it: ``nn.RNN`` (tanh, batch first) from
    ``h_0 = 0``, ``nn.Linear`` on the last state, ``nn.CrossEntropyLoss``, ``torch.optim.SGD``,
    with pcgraph's weights (``h_1 = tanh(x_1 Wx + b)`` is ``nn.RNN``'s first step from zero)."""
    import numpy as np

    torch = _torch_threads(device)

    _, g, params = _program(net, "cpu")
    where = "cuda" if device == "gpu" else "cpu"
    wx, wh = np.asarray(params["rnn.Wx"]), np.asarray(params["rnn.Wh"])
    rnn = torch.nn.RNN(wx.shape[0], wx.shape[1], nonlinearity="tanh", batch_first=True)
    head = torch.nn.Linear(*np.asarray(params["fc.W"]).shape)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(wx.T.copy()))
        rnn.weight_hh_l0.copy_(torch.from_numpy(wh.T.copy()))
        rnn.bias_ih_l0.copy_(torch.from_numpy(np.asarray(params["rnn.b"])))
        rnn.bias_hh_l0.zero_()
        head.weight.copy_(torch.from_numpy(np.asarray(params["fc.W"]).T.copy()))
        head.bias.copy_(torch.from_numpy(np.asarray(params["fc.b"])))
    rnn, head = rnn.to(where), head.to(where)
    parameters = [*rnn.parameters(), *head.parameters()]
    return _torch_training(torch, net, g, device, parameters, lambda x: head(rnn(x)[1][0]))


# ------------------------------------------------------------------ PCX (JAX)
def _pcx(net: Network, device: str) -> Stepper:
    """PCX's IL step with pcgraph's value nodes, 20 inference steps (``benchmarks/pcx_peer.py``)."""
    import jax

    from benchmarks.networks import batches
    from benchmarks.pcx_peer import PcxPeer

    if device == "gpu" and jax.default_backend() != "gpu":
        raise RuntimeError(f"JAX runs on {jax.default_backend()}, not a GPU")
    _, g, params = _program(net, "cpu")
    il = PC_OPTIONS["il"]
    peer = PcxPeer(net.mlp_sizes, params, net.batch, steps=il["steps"], rate=il["rate"], lr=LR)
    feeds = [peer.feed(b) for b in batches(net, g)]
    import time

    start = time.perf_counter()
    peer.step(feeds[0])  # traces and compiles: reported apart, not timed
    info = {"compile_s": time.perf_counter() - start}
    return Stepper(lambda i: peer.step(feeds[i % len(feeds)]), lambda: None, info)


# ------------------------------------------------------------------ FabricPC (JAX)
def _fabricpc(net: Network, device: str) -> Stepper:
    """FabricPC's IL step, one value node per layer, 20 inference steps
    (``benchmarks/fabricpc_peer.py``): pcgraph's ``il-layers`` row computes the same update."""
    import jax
    import jax.numpy as jnp

    from benchmarks.fabricpc_peer import FabricPCStep
    from benchmarks.networks import batches

    if device == "gpu" and jax.default_backend() != "gpu":
        raise RuntimeError(f"JAX runs on {jax.default_backend()}, not a GPU")
    _, g, params = _program(net, "cpu")
    il = PC_OPTIONS["il"]
    peer = FabricPCStep(net.mlp_sizes, params, lr=LR, steps=il["steps"], rate=il["rate"])
    feeds = [(jnp.asarray(b["x"]), jnp.asarray(b["y"])) for b in batches(net, g)]
    return _compiled_first(peer.step, feeds)


def _compiled_first(step: Callable[..., Any], feeds: list[tuple]) -> Stepper:
    """A JAX peer's ``step(*feed)`` on rotating feeds, its first call (tracing and XLA
    compilation) made here and reported apart as ``compile_s``, not timed."""
    import time

    start = time.perf_counter()
    step(*feeds[0])
    info = {"compile_s": time.perf_counter() - start}
    return Stepper(lambda i: step(*feeds[i % len(feeds)]), lambda: None, info)


def _fabricpc_mupc(algorithm: str) -> Callable[[Network, str], Stepper]:
    """FabricPC's IL (``InferenceSGD``) or ePC (``EPCInference``) training step with optax's
    Adam on the deep muPC network (``benchmarks/fabricpc_deep_peer.py``): pcgraph's
    ``il-mupc`` / ``epc-mupc`` rows compute the same update."""

    def make(net: Network, device: str) -> Stepper:
        import jax
        import jax.numpy as jnp
        import optax

        from benchmarks.fabricpc_deep_peer import FabricPCDeepStep
        from benchmarks.networks import batches

        if device == "gpu" and jax.default_backend() != "gpu":
            raise RuntimeError(f"JAX runs on {jax.default_backend()}, not a GPU")
        _, g, params = _program(net, "cpu")
        options = mupc_options(algorithm, net.batch)
        depth, width = net.mupc
        peer = FabricPCDeepStep(
            depth, width, params, algorithm, options["steps"], options["rate"], optax.adam(LR)
        )
        feeds = [(jnp.asarray(b["x"]), jnp.asarray(b["y"])) for b in batches(net, g)]
        return _compiled_first(peer.step, feeds)

    return make


# ------------------------------------------------------------------ the NumPy floor
def _floor(preallocated: bool) -> Callable[[Network, str], Stepper]:
    def make(net: Network, device: str) -> Stepper:
        import numpy as np

        from benchmarks.floor import PreallocatedMlpStep, numpy_mlp_step
        from benchmarks.networks import batches

        _, g, params = _program(net, "cpu")
        hand = {k: np.array(v) for k, v in params.items()}
        feeds = batches(net, g)
        if preallocated:
            fn = PreallocatedMlpStep(hand, net.batch)
            return Stepper(lambda i: fn(feeds[i % len(feeds)]["x"], feeds[i % len(feeds)]["y"]))
        return Stepper(
            lambda i: numpy_mlp_step(hand, feeds[i % len(feeds)]["x"], feeds[i % len(feeds)]["y"])
        )

    return make


def _is_mlp(net: Network) -> bool:
    return net.is_mlp


def _is_mupc(net: Network) -> bool:
    return net.is_mupc


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        *(
            Contender(a, f"pcgraph {a}", "pcgraph", _pcgraph(a), needs=())
            for a in ("bp", "zil", "fpa", "il", "il-prox", "ipc")
        ),
        Contender("torch", "pytorch (TorchPeer)", "pytorch", _torch_peer, needs=("torch",)),
        Contender(
            "torch-seq",
            "pytorch (nn.Sequential)",
            "pytorch",
            _torch_sequential,
            _is_mlp,
            ("torch",),
        ),
        Contender("torch-rnn", "pytorch (nn.RNN)", "pytorch", _torch_rnn, _is_rnn, ("torch",)),
        Contender("pcx", "pcx il (20 steps)", "pcx", _pcx, _is_mlp, ("pcx", "jax", "optax")),
        Contender(
            "il-layers",
            "pcgraph il (layers)",
            "pcgraph",
            _pcgraph("il", value_nodes="layers"),
            _is_mlp,
        ),
        Contender(
            "fabricpc",
            "fabricpc il (20 steps, layers)",
            "fabricpc",
            _fabricpc,
            _is_mlp,
            ("fabricpc", "jax", "optax"),
        ),
        *(
            Contender(
                f"{a}-mupc",
                f"pcgraph {a} (layers, Adam)",
                "pcgraph",
                _pcgraph(a, True),
                _is_mupc,
            )
            for a in ("il", "epc")
        ),
        *(
            Contender(
                f"fabricpc-{a}-mupc",
                f"fabricpc {a} (Adam)",
                "fabricpc",
                _fabricpc_mupc(a),
                _is_mupc,
                ("fabricpc", "jax", "optax"),
            )
            for a in ("il", "epc")
        ),
        Contender("numpy", "numpy (hand)", "numpy", _floor(False), _is_mlp),
        Contender("numpy-out", "numpy (hand, out= buffers)", "numpy", _floor(True), _is_mlp),
    )
}
