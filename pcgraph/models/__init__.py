"""The model zoo: builders that return a ``pc.Graph`` for common architectures.

Every builder takes keyword arguments only, all with defaults, and returns a graph with a float
input ``"x"`` and an ``int64`` class-index target ``"y"`` whose loss is ``softmax_cross_entropy``,
unless its docstring says otherwise.  Shapes are per example (the batch axis is implicit).
Parameter names follow PyTorch's dotted style (``"layer1.0.conv1.W"``), weights use the layouts of
``spec/conventions.md``, and ``spec/models.md`` documents each model.  ``MODELS`` maps names to
builders, e.g. ``pc.models.MODELS["lenet"](classes=10)``.

Every model marks its layers' outputs with ``pc.layer`` (after the activation, and after
pooling where a block pools, as PCX's tutorials place their vodes), so predictive coding with
``value_nodes="layers"`` puts one value node per layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pcgraph as pc
from pcgraph.graph import Graph, Node

ACTIVATIONS: dict[str, Callable[[Node], Node]] = {
    "relu": pc.relu,
    "tanh": pc.tanh,
    "sigmoid": pc.sigmoid,
    "gelu": pc.gelu,
    "softplus": pc.softplus,
    "leaky_relu": pc.leaky_relu,
}


def _activation(name: str) -> Callable[[Node], Node]:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _classify(g: Graph, logits: Node) -> Graph:
    g.set_loss(pc.softmax_cross_entropy(logits, g.target("y", (), dtype="int64"), name="loss"))
    return g


def _classify_with(g: Graph, logits: Node, loss: str) -> Graph:
    """``loss="cross_entropy"``: as ``_classify``; ``"mse"``: ``mse(logits, y)`` against a float
    one-hot target ``y (classes,)`` (jpc's default loss)."""
    if loss == "cross_entropy":
        return _classify(g, logits)
    g.set_loss(pc.mse(logits, g.target("y", logits.shape), name="loss"))
    return g


def _linear(
    g: Graph, x: Node, n_out: int, name: str, init: str = "glorot_uniform", bias: bool = True
) -> Node:
    """``x @ W + b`` on the last axis as one vertex named ``name``: W ``(in, out)``, b ``(out,)``
    (a ``matmul`` vertex without ``bias``)."""
    W = g.param(f"{name}.W", (x.shape[-1], n_out), init=init)
    if not bias:
        return pc.matmul(x, W, name=name)
    return pc.linear(x, W, g.param(f"{name}.b", (n_out,)), name=name)


def _conv(
    g: Graph,
    x: Node,
    out: int,
    kernel: int,
    name: str,
    stride: int = 1,
    padding: int = 0,
    bias: bool = True,
) -> Node:
    """conv2d with He-normal weights ``(out, in, k, k)`` and, if ``bias``, a ``(out, 1, 1)`` bias."""
    w = g.param(f"{name}.W", (out, x.shape[0], kernel, kernel), init="he_normal")
    h = pc.conv2d(x, w, stride=stride, padding=padding)
    return h + g.param(f"{name}.b", (out, 1, 1)) if bias else h


def _dropout(g: Graph, x: Node, p: float) -> Node:
    """Dropout with the graph's ``"seed"`` input (created on first use); ``p == 0``: no node."""
    if p <= 0:
        return x
    seed = g.node("seed") if "seed" in g.nx else g.input("seed", (), dtype="int64")
    return pc.dropout(x, seed, p=p)


# ------------------------------------------------------------------ dense and convolutional
def mlp(
    *,
    sizes: Sequence[int] = (784, 256, 256, 10),
    activation: str = "relu",
    layers_at: str = "activation",
) -> Graph:
    """A multilayer perceptron: x ``(sizes[0],)`` -> logits ``(sizes[-1],)``.

    Layers ``fc{i}`` are ``h @ W + b``; ``activation`` (a name in ``ACTIVATIONS``) follows every
    layer but the last.  ``layers_at`` says which nodes ``pc.layer`` marks: "activation" (the
    activations' outputs, as PCX's tutorials place their vodes) or "pre-activation" (the
    ``fc{i}`` outputs, as nalonso2/ILTheory's networks: the activation then belongs to the next
    layer's prediction).
    """
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {tuple(sizes)}")
    if layers_at not in ("activation", "pre-activation"):
        raise ValueError(f"layers_at must be 'activation' or 'pre-activation', got {layers_at!r}")
    act = _activation(activation)
    g = Graph("mlp")
    h = g.input("x", (sizes[0],))
    for i, n in enumerate(sizes[1:]):
        last = i == len(sizes) - 2
        h = _linear(g, h, n, f"fc{i}", init="glorot_uniform" if last else "he_normal")
        if not last:
            h = act(pc.layer(h)) if layers_at == "pre-activation" else pc.layer(act(h))
    return _classify(g, h)


def deep_mlp(
    *,
    depth: int = 100,
    width: int = 64,
    in_features: int = 784,
    classes: int = 10,
    activation: str = "relu",
    parameterisation: str = "standard",
    loss: str = "cross_entropy",
) -> Graph:
    """A deep residual MLP: x ``(in_features,)`` -> logits ``(classes,)``.

    ``stem`` maps the input to ``width``; then ``depth`` residual blocks ``h = h + W act(h) + b``
    (``block{i}``, each output marked with ``pc.layer``), then a linear classifier ``head``.

    ``parameterisation="standard"``: the block weights start small (``normal``: std 0.01), so
    each block starts near the identity and the sum of ``depth`` blocks stays of order one.

    ``parameterisation="mupc"``: muPC (Innocenti, Achour, Buckley 2025, arXiv 2505.13124), the
    Depth-muP parameterisation as jpc builds it (``jpc.make_mlp(param_type="mupc")`` with
    ``jpc.make_skip_model``): no biases, every weight ``standard_normal`` (N(0, 1)), and the
    scale in the forward pass instead, with ``L = depth + 2`` weight layers and width ``N``:
    ``h_1 = (x @ W_1) / sqrt(in_features)`` (``stem``, marked as a layer),
    ``h_l = h_{l-1} + (act(h_{l-1}) @ W_l) / sqrt(N L)`` (``block{i}``),
    ``logits = (act(h) @ W_L) / N`` (``head``); each named node is the scaled product, its
    ``matmul`` is ``<name>.matmul``.  See ``spec/models.md``.

    ``parameterisation="sp"``: the standard parameterisation the muPC paper compares against,
    as jpc builds it (``jpc.make_mlp(param_type="sp")`` with ``jpc.make_skip_model``): the same
    layers and skips as ``"mupc"``, no biases, weights ``fan_in_uniform`` (U(+-1/sqrt(fan_in)),
    Equinox's and PyTorch's default) and no multipliers, so the residual stream grows with depth.

    ``loss="mse"``: ``mse(logits, y)`` against a float one-hot target ``y (classes,)`` instead
    of the cross-entropy on class indices (jpc's and the muPC paper's default loss).
    """
    if depth < 1 or width < 1:
        raise ValueError(f"deep_mlp needs depth >= 1 and width >= 1, got {depth}, {width}")
    if parameterisation not in ("standard", "mupc", "sp"):
        raise ValueError(
            f"parameterisation must be 'standard', 'mupc' or 'sp', got {parameterisation!r}"
        )
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
    act = _activation(activation)
    g = Graph("deep_mlp")

    def finish(logits: Node) -> Graph:
        return _classify_with(g, logits, loss)

    x = g.input("x", (in_features,))
    if parameterisation in ("mupc", "sp"):
        layers = depth + 2  # jpc's L: stem, the residual blocks, head
        mupc = parameterisation == "mupc"

        def scaled(h: Node, name: str, n_out: int, multiplier: float) -> Node:
            shape = (h.shape[-1], n_out)
            if not mupc:
                return pc.matmul(h, g.param(f"{name}.W", shape, init="fan_in_uniform"), name=name)
            W = g.param(f"{name}.W", shape, init="standard_normal")
            return pc.mul(pc.matmul(h, W, name=f"{name}.matmul"), multiplier, name=name)

        h = pc.layer(scaled(x, "stem", width, 1.0 / math.sqrt(in_features)))
        for i in range(depth):
            h = pc.layer(h + scaled(act(h), f"block{i}", width, 1.0 / math.sqrt(width * layers)))
        return finish(scaled(act(h), "head", classes, 1.0 / width))
    h = _linear(g, x, width, "stem", init="he_normal")
    for i in range(depth):
        W = g.param(f"block{i}.W", (width, width), init="normal")
        b = g.param(f"block{i}.b", (width,))
        h = pc.layer(h + pc.linear(act(h), W, b, name=f"block{i}"))
    return finish(_linear(g, h, classes, "head"))


# torch.nn.init.calculate_gain of each activation deep_cnn's muPC accepts ("linear": none).
MUPC_CONV_GAINS: dict[str, float] = {
    "linear": 1.0,
    "relu": math.sqrt(2.0),
    "leaky_relu": math.sqrt(2.0 / (1.0 + 0.01**2)),  # pcgraph's and JAX's slope 0.01
    "tanh": 5.0 / 3.0,
}


def deep_cnn(
    *,
    blocks_per_stage: int = 1,
    stages: int = 3,
    width: int = 16,
    in_shape: tuple[int, int, int] = (3, 32, 32),
    classes: int = 10,
    kernel: int = 3,
    activation: str = "relu",
    parameterisation: str = "mupc",
    loss: str = "cross_entropy",
    extra_depth: int = 0,
    adam_rates: bool = True,
) -> Graph:
    """A deep residual CNN of one-conv blocks: x ``in_shape`` (C, H, W) -> logits ``(classes,)``.

    The ResNet of the muPC authors' follow-up (Innocenti, Achour, Bogacz 2026, arXiv 2602.07697;
    jpc ``experiments/limits_paper/cnn/model.py``): ``stages`` stages, each a plain
    ``kernel``x``kernel`` convolution to ``width`` channels (``stage{s}.conv``, padding
    ``kernel // 2``), ``blocks_per_stage`` residual blocks ``h = h + conv(act(h))``
    (``stage{s}.block{i}``) and a 2x2 average pool (``stage{s}.pool``); then the flattened
    stream ``(F,)`` times ``head.W (F, classes)``.  No biases, no normalisation.  Every stage
    conv, block and pool output is marked with ``pc.layer`` (jpc's activities).

    ``parameterisation="mupc"``: Depth-muP as the authors build it, weights ``standard_normal``
    and the scales as ``mul`` nodes (``<name>`` is the scaled product, ``<name>.conv`` /
    ``head.matmul`` the raw one): stage convs ``1/sqrt(C_in k^2)``, residual branches
    ``gain(act) / sqrt(width k^2) / sqrt(L)`` with ``L = stages * blocks_per_stage + extra_depth``
    (``extra_depth``: the authors' ``additive_depth_factor``), the readout
    ``1/F``; ``activation`` one of ``MUPC_CONV_GAINS``.  With ``adam_rates`` the params carry
    the authors' per-layer Adam learning rates as ``lr_scale`` (their ``cnn/optim.py``): 1 on
    the first stage conv, ``1/sqrt(width L)`` on the residual branches, ``1/sqrt(width)`` on the
    other stage convs and the readout (for gradient descent they scale one rate by the width
    instead: ``adam_rates=False`` leaves every factor 1).  ``"sp"``: no multipliers, weights
    ``fan_in_uniform`` (Equinox's default).  ``loss="mse"``: against a float one-hot
    ``y (classes,)``.  See ``spec/models.md``.
    """
    if extra_depth < 0:
        raise ValueError(f"deep_cnn needs extra_depth >= 0, got {extra_depth}")
    if min(blocks_per_stage, stages, width, kernel) < 1 or kernel % 2 == 0:
        raise ValueError(
            "deep_cnn needs blocks_per_stage, stages, width >= 1 and an odd kernel, got "
            f"{blocks_per_stage}, {stages}, {width}, {kernel}"
        )
    if parameterisation not in ("mupc", "sp"):
        raise ValueError(f"parameterisation must be 'mupc' or 'sp', got {parameterisation!r}")
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
    if activation not in MUPC_CONV_GAINS:
        raise ValueError(
            f"unknown activation {activation!r}; choose one of {', '.join(MUPC_CONV_GAINS)}"
        )
    if min(in_shape[1:]) < 2**stages:
        raise ValueError(
            f"deep_cnn: {stages} 2x2 poolings need H, W >= {2**stages}, got {in_shape}"
        )
    act = (lambda h: h) if activation == "linear" else _activation(activation)
    mupc = parameterisation == "mupc"
    depth = stages * blocks_per_stage + extra_depth
    g = Graph("deep_cnn")

    def rate(factor: float) -> float:
        return factor if mupc and adam_rates else 1.0

    def conv(h: Node, name: str, multiplier: float, lr_scale: float = 1.0) -> Node:
        shape = (width, h.shape[0], kernel, kernel)
        if not mupc:
            W = g.param(f"{name}.W", shape, init="fan_in_uniform")
            return pc.conv2d(h, W, padding=kernel // 2, name=name)
        W = g.param(f"{name}.W", shape, init="standard_normal", lr_scale=lr_scale)
        raw = pc.conv2d(h, W, padding=kernel // 2, name=f"{name}.conv")
        return pc.mul(raw, multiplier, name=name)

    h = g.input("x", in_shape)
    branch_scale = MUPC_CONV_GAINS[activation] / math.sqrt(width * kernel**2 * depth)
    for s in range(1, stages + 1):
        stem_rate = rate(1.0 if s == 1 else 1.0 / math.sqrt(width))
        stem_scale = 1.0 / math.sqrt(h.shape[0] * kernel**2)
        h = pc.layer(conv(h, f"stage{s}.conv", stem_scale, stem_rate))
        for i in range(blocks_per_stage):
            branch = conv(
                act(h), f"stage{s}.block{i}", branch_scale, rate(1 / math.sqrt(width * depth))
            )
            h = pc.layer(h + branch)
        h = pc.layer(pc.avg_pool2d(h, 2, name=f"stage{s}.pool"))
    h = pc.flatten(h)
    features = h.shape[0]
    if mupc:
        W = g.param(
            "head.W",
            (features, classes),
            init="standard_normal",
            lr_scale=rate(1.0 / math.sqrt(width)),
        )
        logits = pc.mul(pc.matmul(h, W, name="head.matmul"), 1.0 / features, name="head")
    else:
        W = g.param("head.W", (features, classes), init="fan_in_uniform")
        logits = pc.matmul(h, W, name="head")
    return _classify_with(g, logits, loss)


def lenet(
    *,
    in_shape: tuple[int, int, int] = (1, 28, 28),
    classes: int = 10,
    channels: tuple[int, int] = (16, 32),
    kernel: int = 5,
) -> Graph:
    """LeNet-style CNN: x ``in_shape`` (C, H, W) -> logits ``(classes,)``.

    conv(channels[0], kernel) - relu - max_pool 2 - conv(channels[1], kernel) - relu - max_pool 2
    - flatten - linear; on 1x28x28 that is 16x24x24, 16x12x12, 32x8x8, 32x4x4, 512 -> 10, the
    layers of PyTorch's usual MNIST LeNet.
    """
    g = Graph("lenet")
    h = g.input("x", in_shape)
    for i, c in enumerate(channels):
        h = pc.layer(pc.max_pool2d(pc.relu(_conv(g, h, c, kernel, f"conv{i + 1}")), 2))
    return _classify(g, _linear(g, pc.flatten(h), classes, "fc"))


def alexnet_small(
    *,
    in_shape: tuple[int, int, int] = (3, 32, 32),
    classes: int = 10,
    channels: Sequence[int] = (64, 192, 384, 256, 256),
    hidden: Sequence[int] = (512, 512),
    dropout: float = 0.0,
) -> Graph:
    """A small AlexNet-style CNN for CIFAR-sized images: x ``in_shape`` -> logits ``(classes,)``.

    Five 3x3 convolutions (padding 1) with ReLU; AlexNet's overlapping max pooling (kernel 3,
    stride 2, padding 1) after the first, second and fifth; then ReLU linear layers ``hidden``
    and a classifier.  On 3x32x32: 64x16x16, 192x8x8, 384x8x8, 256x8x8, 256x4x4, 4096 -> 512 ->
    512 -> 10.  ``dropout > 0`` adds dropout before each hidden linear layer and an ``int64``
    input ``"seed"`` (per example, shape ``()``; feed a new value each step, -1 to evaluate).
    """
    if len(channels) != 5:
        raise ValueError(f"alexnet_small needs five conv widths, got {tuple(channels)}")
    g = Graph("alexnet_small")
    h = g.input("x", in_shape)
    for i, c in enumerate(channels):
        h = pc.relu(_conv(g, h, c, 3, f"features.{i}", padding=1))
        if i in (0, 1, 4):
            h = pc.max_pool2d(h, 3, stride=2, padding=1)
        h = pc.layer(h)
    h = pc.flatten(h)
    for i, n in enumerate(hidden):
        h = _linear(g, _dropout(g, h, dropout), n, f"classifier.{i}", init="he_normal")
        h = pc.layer(pc.relu(h))
    return _classify(g, _linear(g, h, classes, "classifier.out"))


# ------------------------------------------------------------------ recurrent
def rnn_many_to_one(*, T: int = 28, D: int = 28, H: int = 128, classes: int = 10) -> Graph:
    """An Elman RNN unrolled over ``T`` steps, read at the last: x ``(T, D)`` -> ``(classes,)``.

    ``h_t = tanh(x[t] @ Wx + h_{t-1} @ Wh + b)`` with ``h_0 = tanh(x[0] @ Wx + b)``; the same
    ``rnn.Wx (D, H)``, ``rnn.Wh (H, H)``, ``rnn.b (H,)`` at every step; logits ``h_T @ W + b``.
    (Row-by-row MNIST by default: T = D = 28.)
    """
    g = Graph("rnn_many_to_one")
    x = g.input("x", (T, D))
    wx = g.param("rnn.Wx", (D, H))
    wh = g.param("rnn.Wh", (H, H), init="orthogonal")
    b = g.param("rnn.b", (H,))
    h = pc.layer(pc.tanh(x[0] @ wx + b))
    for t in range(1, T):
        h = pc.layer(pc.tanh(x[t] @ wx + h @ wh + b))
    return _classify(g, _linear(g, h, classes, "fc"))


def lstm_many_to_one(*, T: int = 28, D: int = 28, H: int = 128, classes: int = 10) -> Graph:
    """An LSTM unrolled over ``T`` steps, read at the last: x ``(T, D)`` -> ``(classes,)``.

    ``z = x[t] @ Wx + h @ Wh + b`` (``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, shared over
    time) is split into gates i, f, g, o (PyTorch's order): ``c = sigmoid(f) * c +
    sigmoid(i) * tanh(g)``, ``h = sigmoid(o) * tanh(c)``, from ``h = c = 0``; the forget bias
    starts at 1.
    """
    g = Graph("lstm_many_to_one")
    x = g.input("x", (T, D))
    wx = g.param("lstm.Wx", (D, 4 * H))
    wh = g.param("lstm.Wh", (H, 4 * H))
    b = g.param("lstm.b", (4 * H,), init="lstm_bias")
    h = c = None
    for t in range(T):
        z = x[t] @ wx + b if h is None else x[t] @ wx + h @ wh + b
        i, f, cand, o = pc.split(z, 4)
        new = pc.sigmoid(i) * pc.tanh(cand)
        c = pc.layer(new if c is None else pc.sigmoid(f) * c + new)
        h = pc.layer(pc.sigmoid(o) * pc.tanh(c))
    return _classify(g, _linear(g, h, classes, "fc"))


# ------------------------------------------------------------------ residual
def _norm(g: Graph, x: Node, name: str, norm: str | None) -> Node:
    """batch_norm with a per-channel affine ``gamma, beta (C, 1, 1)``, or nothing."""
    if norm is None:
        return x
    c = x.shape[0]
    gamma = g.param(f"{name}.gamma", (c, 1, 1), init="ones")
    return pc.batch_norm(x) * gamma + g.param(f"{name}.beta", (c, 1, 1))


def _basic_block(g: Graph, x: Node, width: int, stride: int, name: str, norm: str | None) -> Node:
    bias = norm is None  # a bias before batch_norm is cancelled by its mean
    h = _conv(g, x, width, 3, f"{name}.conv1", stride=stride, padding=1, bias=bias)
    h = pc.relu(_norm(g, h, f"{name}.bn1", norm))
    h = _conv(g, h, width, 3, f"{name}.conv2", padding=1, bias=bias)
    h = _norm(g, h, f"{name}.bn2", norm)
    if stride != 1 or x.shape[0] != width:  # projection shortcut on a change of shape
        x = _conv(g, x, width, 1, f"{name}.shortcut", stride=stride, bias=bias)
        x = _norm(g, x, f"{name}.shortcut_bn", norm)
    return pc.relu(h + x)


def resnet(
    *,
    blocks: Sequence[int] = (2, 2, 2, 2),
    widths: Sequence[int] = (64, 128, 256, 512),
    in_shape: tuple[int, int, int] = (3, 32, 32),
    classes: int = 10,
    norm: str | None = "batch",
) -> Graph:
    """A CIFAR-style ResNet of basic blocks: x ``in_shape`` -> logits ``(classes,)``.

    Stem: 3x3 conv to ``widths[0]``, norm, relu.  Stage ``s`` has ``blocks[s]`` basic blocks of
    width ``widths[s]`` (conv3x3-norm-relu-conv3x3-norm, plus the shortcut, then relu); the first
    block of every stage after the first has stride 2, and a shortcut whose shape changes is a
    1x1 conv (+ norm).  Then global average pooling and a linear classifier.
    ``norm="batch"``: training-mode ``batch_norm`` with a learnt per-channel scale and shift
    (statistics of the batch at hand, also at evaluation; the convs before it have no bias);
    ``norm=None``: no normalisation, biased convs.
    """
    if norm not in (None, "batch"):
        raise ValueError(f'norm must be None or "batch", got {norm!r}')
    if len(blocks) != len(widths):
        raise ValueError(f"blocks {tuple(blocks)} and widths {tuple(widths)} differ in length")
    g = Graph("resnet")
    h = _conv(g, g.input("x", in_shape), widths[0], 3, "conv1", padding=1, bias=norm is None)
    h = pc.layer(pc.relu(_norm(g, h, "bn1", norm)))
    for s, (n, w) in enumerate(zip(blocks, widths)):
        for i in range(n):
            stride = 2 if s > 0 and i == 0 else 1
            h = pc.layer(_basic_block(g, h, w, stride, f"layer{s + 1}.{i}", norm))
    return _classify(g, _linear(g, pc.global_avg_pool(h), classes, "fc"))


def resnet18(
    *, in_shape: tuple[int, int, int] = (3, 32, 32), classes: int = 10, norm: str | None = "batch"
) -> Graph:
    """ResNet-18 for CIFAR (3x3 stem, no stem pooling): ``resnet((2, 2, 2, 2), (64, ..., 512))``."""
    return resnet(
        blocks=(2, 2, 2, 2),
        widths=(64, 128, 256, 512),
        in_shape=in_shape,
        classes=classes,
        norm=norm,
    )


# ------------------------------------------------------------------ attention
def _layer_norm(g: Graph, x: Node, name: str) -> Node:
    d = x.shape[-1]
    gamma = g.param(f"{name}.gamma", (d,), init="ones")
    return pc.layer_norm(x) * gamma + g.param(f"{name}.beta", (d,))


def _self_attention(g: Graph, x: Node, heads: int, name: str) -> Node:
    """Multi-head self-attention of ``x (T, d)``: heads as a leading axis ``(heads, T, d/heads)``."""
    t, d = x.shape
    dk = d // heads

    def split_heads(z: Node) -> Node:
        return pc.transpose(pc.reshape(z, (t, heads, dk)), (1, 0, 2))

    # No key bias: it adds q . b to every score of a query, which softmax cancels (zero gradient).
    q, k, v = (split_heads(_linear(g, x, d, f"{name}.{p}", bias=p != "k")) for p in ("q", "k", "v"))
    scores = (q @ pc.transpose(k, (0, 2, 1))) * (1.0 / math.sqrt(dk))
    o = pc.softmax(scores, axis=-1) @ v  # (heads, T, dk)
    o = pc.reshape(pc.transpose(o, (1, 0, 2)), (t, d))
    return _linear(g, o, d, f"{name}.out")


def transformer_encoder(
    *,
    T: int = 16,
    d_model: int = 64,
    heads: int = 4,
    layers: int = 1,
    classes: int = 10,
    d_ff: int | None = None,
    vocab: int | None = None,
) -> Graph:
    """A pre-norm Transformer encoder classifier: x ``(T, d_model)`` -> logits ``(classes,)``.

    With ``vocab``, ``"x"`` is instead ``int64`` tokens ``(T,)`` looked up in ``embed.E
    (vocab, d_model)``.  A learnt position table ``pos (T, d_model)`` is added; each layer is
    ``h = h + attn(ln1(h))``, ``h = h + W2 gelu(W1 ln2(h))`` (``d_ff`` default ``4 * d_model``);
    then a final layer norm, the mean over time and a linear classifier.
    """
    if d_model % heads:
        raise ValueError(f"d_model={d_model} is not divisible by heads={heads}")
    d_ff = 4 * d_model if d_ff is None else d_ff
    g = Graph("transformer_encoder")
    if vocab is None:
        h = g.input("x", (T, d_model))
    else:
        tokens = g.input("x", (T,), dtype="int64")
        h = pc.embedding(tokens, g.param("embed.E", (vocab, d_model), init="normal"))
    h = h + g.param("pos", (T, d_model), init="normal")
    for i in range(layers):
        name = f"layers.{i}"
        h = h + _self_attention(g, _layer_norm(g, h, f"{name}.ln1"), heads, f"{name}.attn")
        h = pc.layer(h)
        m = pc.gelu(_linear(g, _layer_norm(g, h, f"{name}.ln2"), d_ff, f"{name}.ff1"))
        h = pc.layer(h + _linear(g, m, d_model, f"{name}.ff2"))
    h = pc.mean(_layer_norm(g, h, "ln_f"), axis=0)
    return _classify(g, _linear(g, h, classes, "head"))


def transformer_lm(
    *,
    T: int = 32,
    vocab: int = 65,
    d_model: int = 64,
    heads: int = 8,
    blocks: int = 12,
    activation: str = "gelu",
    layer_norm: bool = True,
    parameterisation: str = "mupc",
    loss: str = "cross_entropy",
) -> Graph:
    """A causal (GPT-style) transformer language model: ``int64`` tokens x ``(T,)`` -> logits
    ``(T, vocab)``, loss ``softmax_cross_entropy`` against the next tokens, an ``int64`` target
    ``y (T,)`` (summed over positions, as jpc's ``"ce"``), or with ``loss="mse"`` ``mse`` against
    a float one-hot ``y (T, vocab)``.

    The transformer of the muPC authors' follow-up (Innocenti, Achour, Bogacz 2026, arXiv
    2602.07697; jpc ``experiments/limits_paper/transformer/model.py``), no biases anywhere:
    ``h = embedding(x, embed.E) + pos``; ``blocks`` blocks ``h = h + attn(ln1(h)) / L``,
    ``h = h + mlp(ln2(h)) / L`` (``L = blocks``; ``attn``: causal multi-head self-attention from
    one ``qkv.W (d, 3d)`` and ``out.W``; ``mlp``: ``act(h @ fc1.W) @ fc2.W``, hidden ``4d``);
    a final layer norm; ``head``: the logits.  ``layer_norm=False`` puts identities in place of
    the norms (the authors' ``use_layer_norm=False``); norms scale by a learnt ``gamma (d,)``.
    ``pc.layer`` marks the embedding, every block's output and the final norm (jpc's
    activities).

    ``parameterisation="mupc"`` (the only one): the authors' muPC for transformers, every weight
    ``gpt_normal`` (N(0, 0.02^2)), attention scores ``q k^T / d_head`` (not ``/sqrt(d_head)``),
    the readout ``(h @ head.W) / d_model`` (``head`` the ``mul`` node).  See
    ``spec/models.md``.
    """
    import numpy as np  # the causal mask's constant

    if d_model % heads:
        raise ValueError(f"d_model={d_model} is not divisible by heads={heads}")
    if min(T, vocab, blocks) < 1:
        raise ValueError(f"transformer_lm needs T, vocab, blocks >= 1, got {T}, {vocab}, {blocks}")
    if parameterisation != "mupc":
        raise ValueError(f"parameterisation must be 'mupc', got {parameterisation!r}")
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
    if activation != "linear" and activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; choose linear or one of {', '.join(ACTIVATIONS)}"
        )
    act = (lambda h: h) if activation == "linear" else ACTIVATIONS[activation]
    d, dk = d_model, d_model // heads
    g = Graph("transformer_lm")

    def dense(h: Node, n_out: int, name: str) -> Node:
        return pc.matmul(h, g.param(f"{name}.W", (h.shape[-1], n_out), init="gpt_normal"))

    def norm(h: Node, name: str) -> Node:
        if not layer_norm:
            return pc.identity(h, name=name)
        return pc.mul(pc.layer_norm(h), g.param(f"{name}.gamma", (d,), init="ones"), name=name)

    def split_heads(z: Node) -> Node:
        return pc.transpose(pc.reshape(z, (T, heads, dk)), (1, 0, 2))

    # -1e30 on the scores of later tokens (above the diagonal): softmax makes them exactly 0,
    # as the authors' -inf does (a graph constant is finite).
    future = g.const(np.triu(np.full((T, T), -1e30), k=1), name="causal_mask")
    h = pc.embedding(
        g.input("x", (T,), dtype="int64"), g.param("embed.E", (vocab, d), "gpt_normal")
    )
    h = pc.layer(h + g.param("pos", (T, d), init="gpt_normal"))
    for i in range(blocks):
        name = f"blocks.{i}"
        q, k, v = map(
            split_heads,
            pc.split(dense(norm(h, f"{name}.ln1"), 3 * d, f"{name}.attn.qkv"), 3, axis=-1),
        )
        scores = (q @ pc.transpose(k, (0, 2, 1))) * (1.0 / dk) + future
        o = pc.reshape(pc.transpose(pc.softmax(scores, axis=-1) @ v, (1, 0, 2)), (T, d))
        h = h + dense(o, d, f"{name}.attn.out") * (1.0 / blocks)
        m = dense(
            act(dense(norm(h, f"{name}.ln2"), 4 * d, f"{name}.mlp.fc1")), d, f"{name}.mlp.fc2"
        )
        h = pc.layer(h + m * (1.0 / blocks))
    h = pc.layer(norm(h, "ln_f"))
    logits = pc.mul(
        pc.matmul(h, g.param("head.W", (d, vocab), init="gpt_normal")), 1.0 / d, name="head"
    )
    if loss == "cross_entropy":
        y = g.target("y", (T,), dtype="int64")
        g.set_loss(pc.softmax_cross_entropy(logits, y, name="loss"))
    else:
        g.set_loss(pc.mse(logits, g.target("y", (T, vocab)), name="loss"))
    return g


# ------------------------------------------------------------------ generative
def autoencoder(
    *, in_shape: tuple[int, int, int] = (1, 28, 28), channels: tuple[int, int] = (16, 32)
) -> Graph:
    """A convolutional autoencoder: x ``in_shape`` -> reconstruction ``in_shape``; mse loss
    against a **float** target ``"y"`` of the input's shape (feed ``y = x`` to reconstruct).

    Encoder: two 3x3 stride-2 convs (padding 1) with ReLU: 1x28x28 -> 16x14x14 -> 32x7x7.
    Decoder: two 3x3 stride-2 transposed convs (padding 1, output_padding 1): -> 16x14x14 ->
    1x28x28, ReLU between, sigmoid at the end (data in [0, 1]).  H and W must be multiples of
    ``2 ** len(channels)``.
    """
    c, hh, ww = in_shape
    step = 2 ** len(channels)  # each encoder conv halves H and W
    if hh % step or ww % step:
        raise ValueError(f"autoencoder needs H and W divisible by {step}, got {in_shape}")
    g = Graph("autoencoder")
    h = g.input("x", in_shape)
    for i, ch in enumerate(channels):
        h = pc.layer(pc.relu(_conv(g, h, ch, 3, f"enc{i + 1}", stride=2, padding=1)))
    outs = tuple(reversed(channels[:-1])) + (c,)
    for i, ch in enumerate(outs):
        w = g.param(f"dec{i + 1}.W", (h.shape[0], ch, 3, 3), init="he_normal")
        h = pc.conv_transpose2d(h, w, stride=2, padding=1, output_padding=1)
        h = h + g.param(f"dec{i + 1}.b", (ch, 1, 1))
        h = pc.sigmoid(h) if i == len(outs) - 1 else pc.layer(pc.relu(h))
    g.set_loss(pc.mse(h, g.target("y", in_shape), name="loss"))
    return g


def generator(
    *,
    classes: int = 10,
    in_features: int = 784,
    hidden: Sequence[int] = (256,),
    activation: str = "tanh",
) -> Graph:
    """A generative MLP: a one-hot label predicts an image, top-down (generative predictive
    coding, PCX's generative mode).  Its top is the **float** target ``"y"`` ``(classes,)``
    (feed one-hot rows; ``pcgraph train`` does for a float target), its bottom the prediction
    ``image`` ``(in_features,)`` of the input ``"x"`` (the data, values in [0, 1]): the loss is
    ``mse(image, x)``, so training clamps the top to the label and the bottom to the data.

    Layers ``fc{i}`` are ``h @ W + b``, each followed by ``activation`` (``pc.layer`` marks its
    output), and the last by a sigmoid.  Generate with ``prog.infer`` clamping ``y`` and freeing
    ``image``; complete a part of an image by clamping ``image`` under a mask with ``y`` free
    (``examples/generative_mnist.py``).
    """
    act = _activation(activation)
    g = Graph("generator")
    h = g.target("y", (classes,))
    for i, n in enumerate(hidden):
        h = pc.layer(act(_linear(g, h, n, f"fc{i}", init="glorot_uniform")))
    image = pc.sigmoid(_linear(g, h, in_features, f"fc{len(hidden)}"), name="image")
    g.set_loss(pc.mse(pc.layer(image), g.input("x", (in_features,)), name="loss"))
    return g


MODELS: dict[str, Callable[..., Graph]] = {
    "mlp": mlp,
    "deep_mlp": deep_mlp,
    "deep_cnn": deep_cnn,
    "lenet": lenet,
    "alexnet_small": alexnet_small,
    "rnn_many_to_one": rnn_many_to_one,
    "lstm_many_to_one": lstm_many_to_one,
    "resnet": resnet,
    "resnet18": resnet18,
    "transformer_encoder": transformer_encoder,
    "transformer_lm": transformer_lm,
    "autoencoder": autoencoder,
    "generator": generator,
}

__all__ = ["MODELS", "ACTIVATIONS", "MUPC_CONV_GAINS", "build", *MODELS]


def build(name: str, **kwargs: Any) -> Graph:
    """``MODELS[name](**kwargs)`` with an error naming the known models."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)
