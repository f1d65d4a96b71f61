"""The benchmark networks and their batches: what every contender trains, with the same weights.

Importing this module imports pcgraph (NumPy, networkx) and nothing of any other runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import pcgraph as pc

BATCHES = 8  # distinct batches a timed loop rotates through, as a training loop feeds new data


@dataclass(frozen=True)
class Network:
    """A benchmark network: ``build()`` gives its graph; ``batch`` is the batch size."""

    name: str
    build: Callable[[], pc.Graph]
    batch: int
    mlp_sizes: tuple[int, ...] = ()  # the layer widths when it is the zoo's relu MLP
    mupc: tuple[int, int] = ()  # (depth, width) when it is deep_mlp(parameterisation="mupc")

    @property
    def is_mlp(self) -> bool:
        return bool(self.mlp_sizes)

    @property
    def is_mupc(self) -> bool:
        return bool(self.mupc)


def _mlp(sizes: tuple[int, ...], batch: int) -> Network:
    from pcgraph.models import mlp

    name = f"mlp {'-'.join(map(str, sizes))} b{batch}"
    return Network(name, lambda: mlp(sizes=sizes, activation="relu"), batch, sizes)


def _mupc(layers: int, width: int, batch: int) -> Network:
    """Issue 27's deep network: jpc's muPC residual ReLU MLP of ``layers`` weight layers on
    MNIST-sized inputs, mse loss on a float target (the reproduction ``examples/reproduce/
    deep.py`` trains it at its ``FULL`` size)."""
    from pcgraph.models import deep_mlp

    depth = layers - 2
    return Network(
        f"deep_mlp mupc L{layers} w{width} b{batch}",
        lambda: deep_mlp(depth=depth, width=width, parameterisation="mupc", loss="mse"),
        batch,
        mupc=(depth, width),
    )


def networks(smoke: bool = False, device: str = "cpu") -> list[Network]:
    """The networks of the report (tiny versions with ``smoke``; on a GPU, batches of 256)."""
    from examples.reproduce import deep
    from pcgraph import models

    if smoke:
        return [
            _mlp((32, 16, 10), 8),
            Network("lenet b4", lambda: models.lenet(), 4),
            _mupc(6, 16, 8),
        ]
    if device == "gpu":
        return [
            _mlp((784, 256, 256, 10), 256),
            Network("lenet 1x28x28 b256", lambda: models.lenet(), 256),
            _mlp((784, 1024, 1024, 10), 1024),
        ]
    return [
        _mlp((784, 256, 256, 10), 64),
        _mlp((784, 256, 256, 10), 256),
        Network("lenet 1x28x28 b64", lambda: models.lenet(), 64),
        Network(
            "rnn T28 D28 H128 b64",
            lambda: models.rnn_many_to_one(T=28, D=28, H=128, classes=10),
            64,
        ),
        Network(
            "transformer T16 d64 h4 b32",
            lambda: models.transformer_encoder(T=16, d_model=64, heads=4, layers=1),
            32,
        ),
        _mupc(deep.FULL.layers, deep.FULL.width, deep.FULL.batch),
    ]


def large_networks() -> list[Network]:
    """The large graphs of ``python -m benchmarks.large``: pixel-by-pixel MNIST with the zoo's
    RNN (T = 784 steps of one pixel, about 4,700 nodes) and a 100-block residual MLP."""
    from pcgraph import models

    return [
        Network(
            "rnn pixel T784 D1 H128 b64",
            lambda: models.rnn_many_to_one(T=784, D=1, H=128, classes=10),
            64,
        ),
        Network("deep_mlp 100x64 b64", lambda: models.deep_mlp(depth=100, width=64), 64),
    ]


def find(name: str, smoke: bool = False) -> Network:
    """The network called ``name`` (``networks``' names); ValueError lists them otherwise."""
    known = networks(smoke) + ([] if smoke else networks(device="gpu") + large_networks())
    for net in known:
        if net.name == name:
            return net
    names = ", ".join(repr(n.name) for n in known)
    raise ValueError(f"no benchmark network {name!r}; the networks are {names}")


def random_batch(g: pc.Graph, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The benchmarks' batch of ``size`` examples for ``g`` (``pc.testing.random_batch``):
    standard normal float32 inputs, labels in [0, 10)."""
    return pc.testing.random_batch(g, size, seed, classes=10, dtype="float32")


def batches(net: Network, g: pc.Graph, count: int = BATCHES) -> list[dict[str, np.ndarray]]:
    """``count`` distinct batches of ``net`` (seeds 0, 1, ...): every contender gets these."""
    return [random_batch(g, net.batch, seed=i) for i in range(count)]
