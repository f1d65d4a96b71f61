"""The PCX peer: pcgraph's ``il`` step on the zoo's relu MLP, written in PCX (JAX).

PCX (``pip install pcx``, https://github.com/liukidar/pcx) is the JAX predictive-coding library
of Pinchetti et al. 2024.  This module builds the same network as ``pcgraph.models.mlp`` with
the same weights and writes its inference-learning step as PCX's tutorials do, with pcgraph's
value nodes and optimisers:

- value nodes (PCX "vodes") where pcgraph has them: pcgraph makes every batched op a vertex, so
  a hidden layer ``relu(x @ W + b)`` has two value nodes, the ``linear`` output and the ``relu``
  output, each with a squared-error energy ``0.5 * ||h - u||^2``.  The output vode holds the
  one-hot label (frozen) under PCX's cross-entropy energy, which is pcgraph's clamped
  softmax-cross-entropy output vertex.  The total energy is therefore pcgraph's ``F``;
- feed-forward initialisation (PCX's ``STATUS.INIT``), then ``steps`` inference steps of plain
  ``optax.sgd(rate)`` on the value nodes, all from the same state (Jacobi, as pcgraph), on the
  energy summed over the batch (so each example's dynamics are its own, as in pcgraph);
- one ``optax.sgd(lr)`` step on the weights with the gradient of the batch-mean energy at the
  final values (PCX's ``scale_by=1/B``), which is pcgraph's ``grad = -d_theta / B``.

With those choices one PCX step computes the same update as ``prog.train_step(params, batch,
algorithm="il", steps=20, rate=0.1, optimizer=SGD(lr))``, up to float32 rounding; ``check``
measures it (a test runs it where PCX is installed).  Where this departs from PCX's tutorials:
they put one vode per layer, after the activation (half the value nodes, another energy), and
often use momentum on the vodes and Adam(W) on the weights; here both optimisers are plain SGD.

The whole step (initialisation, inference, weight update, one-hot of the integer labels) is one
``pcx.functional.jit`` function, with the inference loop a ``pcx.functional.scan``.  The timed
call includes PCX's Python-side parameter tracking around the compiled call, and blocks on the
new weights.  PCX and JAX are benchmark-only dependencies (``pip install pcx==0.6.3
"jax[cpu]==0.4.38"``, Python >= 3.11), imported only when ``benchmarks.run`` finds them; JAX's
CPU threads are set by ``PJRT_NPROC`` in ``benchmarks/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import optax
import pcx as px
import pcx.functional as pxf
import pcx.nn as pxnn
import pcx.predictive_coding as pxc
import pcx.utils as pxu


class PcxMLP(pxc.EnergyModule):
    """``pcgraph.models.mlp(sizes, activation="relu")`` as a PCX energy module, for one example
    (PCX batches by ``vmap``).  ``per_layer``: one vode per hidden layer, after the activation,
    as PCX's tutorials write it (``x = vode(act(linear(x)))``, e.g. liukidar/pcx
    examples/discriminative_experiments/MLP/mnist/PC_SE.py at 5aa614de): pcgraph's
    ``value_nodes="layers"``.  Otherwise two (the linear output, then the relu): pcgraph's
    default value nodes fc{i} and relu_{i}."""

    def __init__(self, sizes: Sequence[int], per_layer: bool = False) -> None:
        super().__init__()
        self.per_layer = px.static(per_layer)  # a static: branching on it at trace time
        self.layers = [pxnn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        per = 1 if per_layer else 2
        self.vodes = [pxc.Vode() for _ in range(per * (len(sizes) - 2))]
        self.out = pxc.Vode(pxc.ce_energy)
        # 'frozen' is PCX's convention (an attribute the inference mask tests): the output vode
        # holds the label and is not relaxed, like pcgraph's clamped output vertex.
        self.out.h.frozen = True

    def __call__(self, x: jax.Array, y: jax.Array | None) -> jax.Array:
        for i, layer in enumerate(self.layers[:-1]):
            if self.per_layer.get():
                x = self.vodes[i](jax.nn.relu(layer(x)))
            else:
                x = self.vodes[2 * i](layer(x))
                x = self.vodes[2 * i + 1](jax.nn.relu(x))
        self.out(self.layers[-1](x))
        if y is not None:
            self.out.set("h", y)
        return self.out.get("u")


# Vode values and caches are per example (vmapped over axis 0); the weights are shared.
_PER_EXAMPLE = pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0))


def _values() -> Any:
    """The inference mask: every vode value but the frozen output.  A fresh one each time:
    ``M.to`` sets the mapping on the mask itself, so a shared mask would change meaning."""
    return pxu.M_hasnot(pxc.VodeParam, frozen=True)


@pxf.vmap(_PER_EXAMPLE, in_axes=(0, 0), out_axes=0)
def _forward(x: jax.Array, y: jax.Array, *, model: PcxMLP) -> jax.Array:
    return model(x, y)


@pxf.vmap(_PER_EXAMPLE, in_axes=(0,), out_axes=(None, 0), axis_name="batch")
def _energy(x: jax.Array, *, model: PcxMLP) -> tuple[jax.Array, jax.Array]:
    logits = model(x, None)
    # Summed over the batch (psum, not pmean): its gradient in a vode is that example's own
    # energy gradient, as pcgraph's per-example errors; the weight step rescales by 1/B.
    return jax.lax.psum(model.energy(), "batch"), logits


def _initialise(x: jax.Array, y: jax.Array, model: PcxMLP, optim_h: pxu.Optim) -> None:
    """Feed-forward initialisation with the one-hot label on the output vode, and the value
    optimiser set up on the free vodes.  The status goes back to None after it, as pxf.scan
    needs the model's (static) status to be the same on entry to and exit from every step."""
    classes = model.layers[-1].nn.weight.shape[0]
    with pxu.step(model, (pxc.STATUS.INIT, None), clear_params=pxc.VodeParam.Cache):
        _forward(x, jax.nn.one_hot(y, classes, dtype=x.dtype), model=model)
    optim_h.init(_values()(model))


@pxf.jit(static_argnums=0)
def _train_step(
    steps: int,
    x: jax.Array,
    y: jax.Array,
    *,
    model: PcxMLP,
    optim_w: pxu.Optim,
    optim_h: pxu.Optim,
) -> jax.Array:
    _initialise(x, y, model, optim_h)

    def inference_step(_: Any, *, model: PcxMLP, optim_h: pxu.Optim) -> tuple[tuple, None]:
        # An SGD step of every free vode value, all from the same state (Jacobi, as pcgraph).
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            _, g = pxf.value_and_grad(_values().to([False, True]), has_aux=True)(_energy)(
                x, model=model
            )
        optim_h.step(model, g["model"])
        return (), None

    # A scan, not a Python loop: both are PCX idioms, but the unrolled loop ran 1.5x (b64) to
    # 2x (b256) slower and compiled 8x longer here (jaxlib 0.4.38, XLA:CPU).
    pxf.scan(inference_step, length=steps)(model=model, optim_h=optim_h)
    optim_h.clear()
    learning = pxf.value_and_grad(pxu.M(pxnn.LayerParam).to([False, True]), has_aux=True)
    with pxu.step(model, clear_params=pxc.VodeParam.Cache):
        (energy, _), g = learning(_energy)(x, model=model)
    optim_w.step(model, g["model"], scale_by=1.0 / x.shape[0])
    return energy


@pxf.jit(static_argnums=0)
def _ipc_step(
    steps: int,
    x: jax.Array,
    y: jax.Array,
    *,
    model: PcxMLP,
    optim_w: pxu.Optim,
    optim_h: pxu.Optim,
) -> jax.Array:
    """Incremental PC as PCX's ``train_on_batch_ipc`` writes it (liukidar/pcx
    examples/autoencoders/linear/pc_decoder.py at 3bc008af): after the feed-forward
    initialisation, ``steps`` times one gradient of the energy in the free vodes and the weights
    together, then a step of each optimiser; no separate learning step."""
    _initialise(x, y, model, optim_h)
    both = _values() | pxu.M(pxnn.LayerParam)
    energy = None
    for _ in range(steps):
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            (energy, _), g = pxf.value_and_grad(both.to([False, True]), has_aux=True)(_energy)(
                x, model=model
            )
        optim_h.step(model, g["model"], allow_none=True)
        optim_w.step(model, g["model"], scale_by=1.0 / x.shape[0], allow_none=True)
    optim_h.clear()
    return energy


class PcxPeer:
    """PCX's IL training step on the relu MLP ``sizes``, from pcgraph's weights ``fc{i}.W``
    (in, out) and ``fc{i}.b``."""

    def __init__(
        self,
        sizes: Sequence[int],
        params: dict,
        batch: int,
        steps: int = 20,
        rate: float = 0.1,
        lr: float = 1e-3,
        per_layer: bool = False,
        dtype: str = "float32",
    ) -> None:
        self.steps, self.dtype = steps, dtype
        self.model = PcxMLP(sizes, per_layer)
        for i, layer in enumerate(self.model.layers):
            # Equinox stores W as (out, in): the transpose of pcgraph's.
            layer.nn.weight.set(jax.numpy.asarray(np.asarray(params[f"fc{i}.W"]).T))
            layer.nn.bias.set(jax.numpy.asarray(np.asarray(params[f"fc{i}.b"])))
        # The vodes get their (per-example) shapes from one forward pass at the batch size; the
        # status is back to None after it, as after every step (no retracing on the 2nd call).
        with pxu.step(self.model, (pxc.STATUS.INIT, None), clear_params=pxc.VodeParam.Cache):
            _forward(
                jax.numpy.zeros((batch, sizes[0]), dtype),
                jax.numpy.zeros((batch, sizes[-1]), dtype),
                model=self.model,
            )
        # Optim takes a constructor: optim_h is re-initialised inside every step (PCX's pattern).
        self.optim_h = pxu.Optim(lambda: optax.sgd(rate))
        self.optim_w = pxu.Optim(lambda: optax.sgd(lr), pxu.M(pxnn.LayerParam)(self.model))

    def feed(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        """The batch as device arrays, once (the timed step does not pay the transfer)."""
        x = jax.device_put(np.asarray(batch["x"], dtype=self.dtype))
        y = jax.device_put(np.asarray(batch["y"]).astype(np.int32))
        return x, y

    def step(self, feeds: tuple[jax.Array, jax.Array]) -> jax.Array:
        """One IL step; returns after the new weights exist (JAX dispatches asynchronously)."""
        energy = _train_step(
            self.steps, *feeds, model=self.model, optim_w=self.optim_w, optim_h=self.optim_h
        )
        # The raw parameter arrays (not ``weights()``, whose transposes would be more work).
        new = [p.get() for layer in self.model.layers for p in (layer.nn.weight, layer.nn.bias)]
        jax.block_until_ready((energy, new))
        return energy

    def ipc_step(self, feeds: tuple[jax.Array, jax.Array]) -> jax.Array:
        """One incremental-PC step (``steps`` value and weight steps)."""
        energy = _ipc_step(
            self.steps, *feeds, model=self.model, optim_w=self.optim_w, optim_h=self.optim_h
        )
        jax.block_until_ready(energy)
        return energy

    def weights(self) -> dict[str, jax.Array]:
        """The weights in pcgraph's names and layout."""
        out = {}
        for i, layer in enumerate(self.model.layers):
            out[f"fc{i}.W"] = layer.nn.weight.get().T
            out[f"fc{i}.b"] = layer.nn.bias.get()
        return out


def check(sizes: Sequence[int] = (32, 16, 16, 10), batch: int = 8, steps: int = 20) -> float:
    """Largest relative difference between the weight step of one PCX IL step and pcgraph's
    ``il`` gradient, from the same float32 weights and batch (PCX run with ``lr=1``, so its
    step is its gradient)."""
    import pcgraph as pc
    from benchmarks.networks import random_batch
    from pcgraph.models import mlp

    g = mlp(sizes=tuple(sizes), activation="relu")
    prog = pc.compile(g, dtype="float32")
    params = prog.init_params(0)
    data = random_batch(g, batch)
    ours = prog.grads(params, data, algorithm="il", steps=steps, rate=0.1)
    peer = PcxPeer(sizes, params, batch, steps=steps, lr=1.0)
    peer.step(peer.feed(data))
    after = peer.weights()
    worst = 0.0
    for k, grad in ours.items():
        theirs = np.asarray(params[k]) - np.asarray(after[k])
        worst = max(worst, float(np.max(np.abs(theirs - grad)) / (np.max(np.abs(grad)) + 1e-30)))
    return worst


def check_float64(algorithm: str, sizes: Sequence[int] = (12, 9, 7, 10), batch: int = 6) -> float:
    """Largest difference between PCX and pcgraph, in float64, on the relu MLP with one vode per
    layer (PCX's tutorial model; pcgraph's ``value_nodes="layers"``): the weights after one
    step of ``"il"`` (20 steps at rate 0.1, then SGD) or ``"ipc"`` (10 steps, lr 0.05), both
    with plain SGD.  JAX's 64-bit mode must be on before anything is traced."""
    import pcgraph as pc
    from benchmarks.networks import random_batch
    from pcgraph.models import mlp

    assert jax.config.jax_enable_x64, "set jax_enable_x64 before importing this check"
    g = mlp(sizes=tuple(sizes), activation="relu")
    prog = pc.compile(g, dtype="float64")
    params = prog.init_params(0)
    data = random_batch(g, batch)
    data = {k: np.asarray(v, dtype=np.float64) if k == "x" else v for k, v in data.items()}
    steps, lr = (20, 0.5) if algorithm == "il" else (10, 0.05)
    peer = PcxPeer(
        sizes, params, batch, steps=steps, rate=0.1, lr=lr, per_layer=True, dtype="float64"
    )
    feeds = peer.feed(data)
    peer.step(feeds) if algorithm == "il" else peer.ipc_step(feeds)
    ours = {k: np.array(v) for k, v in params.items()}
    prog.train_step(
        ours,
        data,
        algorithm=algorithm,
        optimizer=pc.optim.SGD(lr=lr),
        steps=steps,
        rate=0.1,
        value_nodes="layers",
    )
    after = peer.weights()
    return max(float(np.max(np.abs(np.asarray(after[k]) - ours[k]))) for k in ours)
