"""muPC for the zoo's residual CNN and transformer: ``deep_cnn(parameterisation="mupc" | "sp")``
and ``transformer_lm`` against the muPC authors' own CNN (Innocenti, Achour, Bogacz 2026, "On the Infinite Width and
Depth Limits of Predictive Coding Networks", arXiv 2602.07697), transcribed line by line into
PyTorch from thebuckleylab/jpc, commit 7d6cc05: ``experiments/limits_paper/cnn/model.py``
(``ScaledConv2d``, ``ResNetBlock``, ``Readout``, ``ResNet``) and the PC step of
``experiments/limits_paper/cnn/test_theory.py`` (``train_pcn``: ``init_activities_with_ffwd``,
gradient descent on the activities with ``optax.sgd(activity_lr * batch_size)`` on
``jpc.pc_energy_fn(loss="ce")``, then ``update_pc_params``).  jpc is not on PyPI and needs JAX;
its autodiff becomes PyTorch's.  The transformer: ``experiments/limits_paper/transformer/model.py``
(same commit), below."""

from __future__ import annotations

import math

import numpy as np
import pytest

import pcgraph as pc

torch = pytest.importorskip("torch", reason="the jpc transcription runs on PyTorch autograd")
F = pytest.importorskip("torch.nn.functional")

C, SIDE, N, CLASSES, PER_STAGE, BATCH, K = 2, 8, 3, 4, 2, 3, 3
STAGES = 3  # the authors' ResNet has three stages: n_res_blocks = 3 * PER_STAGE


def authors_resnet(
    weights: list, param_type: str, act_fn: str, additive_depth_factor: int = 0
) -> list:
    """``ResNet(width=N, n_res_blocks=3 * PER_STAGE, kernel_size=3, stride=1, padding=1,
    use_bias=False, scale_non_res_layers=False, in_channels=C, input_size=SIDE)`` as a list of its
    ``layers`` (each a function of a batch), with the given weights in Equinox's layouts: conv
    ``(out, in, k, k)``, readout ``(out, in)``."""
    depth = STAGES * PER_STAGE + additive_depth_factor
    depth_scaling = 1 / math.sqrt(depth) if param_type == "mupc" else 1.0
    act = {"linear": lambda z: z, "relu": torch.relu, "tanh": torch.tanh}[act_fn]
    it = iter(weights)

    def scaled_conv(W: torch.Tensor, depth_scale: float, gain_act: str) -> object:
        # ScaledConv2d: width_scaling = gain / sqrt(in_channels * kernel_size ** 2) under mupc.
        if param_type == "mupc":
            gain = torch.nn.init.calculate_gain(gain_act) if gain_act != "linear" else 1.0
            width_scaling = gain / math.sqrt(W.shape[1] * K**2)
        else:
            width_scaling = 1.0
        scaling = width_scaling * depth_scale
        return lambda z: scaling * F.conv2d(z, W, stride=1, padding=1)

    layers = []
    for _ in range(STAGES):
        layers.append(scaled_conv(next(it), 1.0, "linear"))  # stage conv: act_fn "linear"
        for _ in range(PER_STAGE):
            conv = scaled_conv(next(it), depth_scaling, act_fn)
            layers.append(lambda z, conv=conv: conv(act(z)) + z)  # ResNetBlock
        layers.append(lambda z: F.avg_pool2d(z, kernel_size=2, stride=2))
    in_features = N * (SIDE // 2**STAGES) ** 2
    W = next(it)
    scaling = 1 / in_features if param_type == "mupc" else 1.0
    layers.append(lambda z: scaling * (z.reshape(z.shape[0], -1) @ W.T))  # Readout: ravel
    return layers


def jpc_ffwd(layers: list, x: torch.Tensor) -> list:
    """``init_activities_with_ffwd`` (param_type "sp", no skip model): every layer's output."""
    zs = [layers[0](x)]
    for f in layers[1:]:
        zs.append(f(zs[-1]))
    return zs


def jpc_energy(layers: list, zs: list, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``pc_energy_fn(params=(model, None), loss="ce")`` (param_type "sp": every scaling 1,
    the model's own multipliers do the work); the output activity is unused (y is)."""
    logits = layers[-1](zs[-2])
    energies = [-(y * torch.log_softmax(logits, dim=-1)).sum()]  # jax.nn: axis=-1
    for act_l, net_l in zip(range(1, len(zs) - 1), range(1, len(layers) - 1)):
        energies.append(0.5 * ((zs[act_l] - layers[net_l](zs[act_l - 1])) ** 2).sum())
    energies.append(0.5 * ((zs[0] - layers[0](x)) ** 2).sum())
    return sum(energies) / y.shape[0]


def names() -> list[str]:
    """pcgraph's parameters in the order the authors' ResNet creates its layers."""
    out = []
    for s in range(1, STAGES + 1):
        out += [f"stage{s}.conv.W", *(f"stage{s}.block{i}.W" for i in range(PER_STAGE))]
    return [*out, "head.W"]


def authors_adam_rates(param_type: str, lr: float) -> list[float]:
    """``cnn/optim.py``'s ``configure_cnn_param_optim(optim_id="adam")``: under muPC the first
    layer at ``lr``, the ResNet blocks at ``lr / sqrt(width depth)``, the other stage convs
    and the readout at ``lr / sqrt(width)``; under sp ``lr`` everywhere.  In ``names()`` order."""
    if param_type == "sp":
        return [lr] * len(names())
    depth = STAGES * PER_STAGE
    rates = [lr / math.sqrt(N * depth) if ".block" in n else lr / math.sqrt(N) for n in names()]
    return [lr, *rates[1:]]


def setup(param_type: str, activation: str = "relu", extra_depth: int = 0) -> tuple:
    g = pc.models.deep_cnn(
        extra_depth=extra_depth,
        blocks_per_stage=PER_STAGE,
        width=N,
        in_shape=(C, SIDE, SIDE),
        classes=CLASSES,
        activation=activation,
        parameterisation=param_type,
    )
    prog = pc.compile(g, dtype="float64")
    params = {k: np.asarray(v) for k, v in prog.init_params(seed=5).items()}
    rng = np.random.default_rng(6)
    batch = {"x": rng.normal(size=(BATCH, C, SIDE, SIDE)), "y": rng.integers(0, CLASSES, BATCH)}
    weights = [torch.tensor(params[n]) for n in names()]
    weights[-1] = weights[-1].T  # Equinox's Linear weight is (out, in)
    return g, prog, params, batch, weights


def test_mupc_weights_are_standard_normal_with_no_biases() -> None:
    _, _, params, _, _ = setup("mupc")
    assert sorted(params) == sorted(names())
    big = pc.compile(pc.models.deep_cnn(width=64, in_shape=(3, 8, 8)))
    w = np.asarray(big.init_params(seed=0)["stage2.block0.W"], dtype=np.float64)
    assert abs(w.std() - 1.0) < 0.01 and abs(w.mean()) < 0.01


def test_sp_weights_are_equinox_conv_default_uniform() -> None:
    _, _, params, _, _ = setup("sp")
    bound = 1 / math.sqrt(N * K**2)  # Equinox Conv2d: U(+-1/sqrt(in_channels * k * k))
    assert np.abs(params["stage2.block1.W"]).max() <= bound
    assert np.abs(params["stage2.block1.W"]).max() > 0.5 * bound


@pytest.mark.parametrize(
    ("param_type", "activation", "extra_depth"),
    [
        ("mupc", "relu", 0),
        ("mupc", "tanh", 0),
        ("mupc", "linear", 4),  # the README's CNN run: additive_depth_factor 4
        ("sp", "relu", 0),
        ("sp", "tanh", 0),
        ("sp", "linear", 0),
    ],
)
def test_forward_pass_equals_the_authors_resnet(
    param_type: str, activation: str, extra_depth: int
) -> None:
    g, prog, params, batch, weights = setup(param_type, activation, extra_depth)
    layers = authors_resnet(weights, param_type, activation, extra_depth)
    zs = jpc_ffwd(layers, torch.tensor(batch["x"]))
    np.testing.assert_allclose(
        prog.evaluate(params, batch, "head"), zs[-1].numpy(), rtol=1e-12, atol=1e-14
    )
    # jpc's activities are pcgraph's value nodes: every stage conv, block and pool output.
    marked = [n for n in g.nx if g.nx.nodes[n].get("layer")]
    assert len(marked) == len(zs) - 1
    for node, z in zip(marked, zs):
        np.testing.assert_allclose(
            prog.evaluate(params, batch, node), z.numpy(), rtol=1e-12, atol=1e-14, err_msg=node
        )


@pytest.mark.parametrize("param_type", ["mupc", "sp"])
def test_one_pc_step_equals_the_authors(param_type: str) -> None:
    """``train_pcn``'s step: ``steps`` SGD steps on the activities at ``activity_lr *
    batch_size`` on the batch-mean energy (pcgraph IL at ``rate = activity_lr``: its dynamics
    are per example), then the weights' energy gradient at the final activities and one Adam
    step at the authors' per-layer rates (``Graph.param(lr_scale=)``)."""
    _, prog, params, batch, weights = setup(param_type)
    # activity_lr 0.3: the README's CNN setting; 30 steps carry the signal through 12 layers.
    steps, activity_lr, param_lr = 30, 0.3, 0.01
    x = torch.tensor(batch["x"])
    y = F.one_hot(torch.tensor(batch["y"]), CLASSES).double()

    layers = authors_resnet(weights, param_type, "relu")
    zs = [z.detach().requires_grad_(True) for z in jpc_ffwd(layers, x)]
    for _ in range(steps):
        grads = torch.autograd.grad(jpc_energy(layers, zs, y, x), zs[:-1])
        lr = activity_lr * BATCH
        zs = [*((z - lr * g).detach().requires_grad_(True) for z, g in zip(zs, grads)), zs[-1]]
    leaves = [W.clone().requires_grad_(True) for W in weights]
    wgrads = torch.autograd.grad(
        jpc_energy(authors_resnet(leaves, param_type, "relu"), zs, y, x), leaves
    )
    wgrads = [*wgrads[:-1], wgrads[-1].T]  # back to pcgraph's (in, out) readout

    options = {"steps": steps, "rate": activity_lr, "value_nodes": "layers"}
    got = prog.grads(params, batch, "il", **options)
    for n, g in zip(names(), wgrads):
        np.testing.assert_allclose(got[n], g.numpy(), rtol=1e-10, atol=1e-13, err_msg=n)
    # optax.scale_by_adam then the per-layer rates, after one step: the bias-corrected moments
    # are g and g^2, so each weight moves by its layer's rate times g / (|g| + eps).
    trained = {k: v.copy() for k, v in params.items()}
    prog.train_step(trained, batch, "il", optimizer=pc.optim.Adam(lr=param_lr), **options)
    rates = authors_adam_rates(param_type, param_lr)
    for n, g, lr in zip(names(), wgrads, rates):
        expected = params[n] - lr * g.numpy() / (np.abs(g.numpy()) + 1e-8)
        np.testing.assert_allclose(trained[n], expected, rtol=1e-10, atol=1e-12, err_msg=n)


def _stream_rms(blocks_per_stage: int, param_type: str, seed: int = 0) -> float:
    """The rms of the residual stream after the last block of the last stage, at init."""
    g = pc.models.deep_cnn(
        blocks_per_stage=blocks_per_stage,
        width=16,
        in_shape=(3, 16, 16),
        parameterisation=param_type,
    )
    prog = pc.compile(g, dtype="float64")
    x = np.random.default_rng(seed).normal(size=(8, 3, 16, 16))
    (stream,) = g.nx.predecessors("stage3.pool")
    h = np.asarray(prog.evaluate(prog.init_params(seed=seed), {"x": x}, stream))
    return float(np.sqrt((h**2).mean()))


def test_mupc_keeps_the_residual_stream_of_order_one_at_any_depth() -> None:
    """Depth-muP's point: with branches scaled by 1/sqrt(L) the stream after 3 x 32 blocks is
    of the size it has after 3 x 1; the standard parameterisation's grows with depth."""
    mupc = {b: _stream_rms(b, "mupc") for b in (1, 32)}
    sp = {b: _stream_rms(b, "sp") for b in (1, 32)}
    assert all(0.2 < r < 5 for r in mupc.values()), mupc
    assert 0.5 < mupc[32] / mupc[1] < 2, mupc
    assert sp[32] / sp[1] > 10, sp


@pytest.mark.parametrize(
    "bad",
    [
        {"parameterisation": "standard"},
        {"activation": "gelu"},
        {"kernel": 2},
        {"in_shape": (3, 4, 4)},
        {"loss": "hinge"},
        {"extra_depth": -1},
    ],
)
def test_bad_settings_are_refused_by_name(bad: dict) -> None:
    with pytest.raises(ValueError, match=str(next(iter(bad.values())))):
        pc.models.deep_cnn(**bad)


# ------------------------------------------------------------------ the transformer
# ``experiments/limits_paper/transformer/model.py`` (commit 7d6cc05): ``Transformer(vocab_size,
# seq_len, n_embd, n_blocks, n_heads, param_type="mupc", use_softmax=True, use_bias=False)``;
# ``train.py``'s PC step is the CNN's (``optax.sgd(activity_lr * batch_size)`` on the activities).
SEQ, VOCAB, D_MODEL, HEADS, BLOCKS = 5, 6, 4, 2, 2


def authors_transformer(p: dict, act_fn: str, use_layer_norm: bool, n_blocks: int) -> list:
    """The authors' ``Transformer.layers`` as functions of a batch, weights ``p`` by pcgraph's
    names (pcgraph's ``(in, out)`` is Equinox's ``Linear.weight`` transposed)."""
    act = {"linear": lambda z: z, "gelu": lambda z: F.gelu(z, approximate="tanh")}[act_fn]
    d_head = D_MODEL // HEADS

    def layer_norm(name: str) -> object:  # eqx.nn.LayerNorm(eps=1e-5, use_bias=False), per token
        if not use_layer_norm:
            return lambda z: z  # eqx.nn.Identity
        w = p[f"{name}.gamma"]

        def ln(z: torch.Tensor) -> torch.Tensor:
            mean = z.mean(-1, keepdim=True)
            var = ((z - mean) ** 2).mean(-1, keepdim=True)
            return (z - mean) * torch.rsqrt(var + 1e-5) * w

        return ln

    def attention(z: torch.Tensor, name: str) -> torch.Tensor:  # CausalSelfAttention.forward
        B, T, N = z.shape
        q, k, v = torch.split(z @ p[f"{name}.qkv.W"], N, dim=-1)
        q, k, v = (u.reshape(B, T, HEADS, d_head).transpose(1, 2) for u in (q, k, v))
        attn = torch.einsum("bhtd,bhsd->bhts", q, k) * (1 / d_head)  # mupc: 1/d_head
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        attn = torch.softmax(torch.where(causal, attn, float("-inf")), dim=-1)
        out = torch.einsum("bhts,bhsd->bhtd", attn, v).transpose(1, 2).reshape(B, T, N)
        return out @ p[f"{name}.out.W"]

    def block(i: int) -> object:
        name, depth_scaling = f"blocks.{i}", 1 / n_blocks
        ln1, ln2 = layer_norm(f"{name}.ln1"), layer_norm(f"{name}.ln2")

        def f(z: torch.Tensor) -> torch.Tensor:
            z = z + depth_scaling * attention(ln1(z), f"{name}.attn")
            mlp = act(ln2(z) @ p[f"{name}.mlp.fc1.W"]) @ p[f"{name}.mlp.fc2.W"]
            return z + depth_scaling * mlp

        return f

    embed = lambda idx: p["embed.E"][idx] + p["pos"][torch.arange(idx.shape[1])]  # noqa: E731
    head = lambda z: (1 / D_MODEL) * (z @ p["head.W"])  # noqa: E731  LMHead, mupc scaling
    return [embed, *(block(i) for i in range(n_blocks)), layer_norm("ln_f"), head]


def setup_lm(activation: str = "gelu", layer_norm: bool = True, blocks: int = BLOCKS) -> tuple:
    g = pc.models.transformer_lm(
        T=SEQ,
        vocab=VOCAB,
        d_model=D_MODEL,
        heads=HEADS,
        blocks=blocks,
        activation=activation,
        layer_norm=layer_norm,
    )
    prog = pc.compile(g, dtype="float64")
    rng = np.random.default_rng(8)
    # Weights well away from the init's std 0.02, so every term of the step is of order one.
    params = {k: v + 0.3 * rng.normal(size=v.shape) for k, v in prog.init_params(seed=7).items()}
    batch = {"x": rng.integers(0, VOCAB, (BATCH, SEQ)), "y": rng.integers(0, VOCAB, (BATCH, SEQ))}
    return g, prog, params, batch


@pytest.mark.parametrize(("activation", "layer_norm"), [("gelu", True), ("linear", False)])
def test_transformer_forward_pass_equals_the_authors(activation: str, layer_norm: bool) -> None:
    g, prog, params, batch = setup_lm(activation, layer_norm)
    weights = {k: torch.tensor(v) for k, v in params.items()}
    zs = jpc_ffwd(
        authors_transformer(weights, activation, layer_norm, BLOCKS), torch.tensor(batch["x"])
    )
    np.testing.assert_allclose(
        prog.evaluate(params, batch, "head"), zs[-1].numpy(), rtol=1e-12, atol=1e-14
    )
    marked = [n for n in g.nx if g.nx.nodes[n].get("layer")]
    assert len(marked) == len(zs) - 1 == BLOCKS + 2
    for node, z in zip(marked, zs):
        np.testing.assert_allclose(
            prog.evaluate(params, batch, node), z.numpy(), rtol=1e-12, atol=1e-14, err_msg=node
        )


def test_transformer_mupc_weights_are_gpt_normal_and_norms_ones() -> None:
    prog = pc.compile(pc.models.transformer_lm(d_model=64, blocks=1))
    params = prog.init_params(seed=0)
    w = np.asarray(params["blocks.0.mlp.fc1.W"], dtype=np.float64)
    assert abs(w.std() - 0.02) < 0.001
    assert (np.asarray(params["ln_f.gamma"]) == 1).all()
    assert not any(k.endswith(".b") or k.endswith(".beta") for k in params)  # no biases


@pytest.mark.parametrize("layer_norm", [True, False])
def test_transformer_pc_step_equals_the_authors(layer_norm: bool) -> None:
    g, prog, params, batch = setup_lm("gelu", layer_norm)
    steps, activity_lr, param_lr = 12, 0.2, 0.01
    x = torch.tensor(batch["x"])
    y = F.one_hot(torch.tensor(batch["y"]), VOCAB).double()
    weights = {k: torch.tensor(v) for k, v in params.items()}
    layers = authors_transformer(weights, "gelu", layer_norm, BLOCKS)
    zs = [z.detach().requires_grad_(True) for z in jpc_ffwd(layers, x)]
    for _ in range(steps):
        grads = torch.autograd.grad(jpc_energy(layers, zs, y, x), zs[:-1])
        lr = activity_lr * BATCH
        zs = [*((z - lr * g).detach().requires_grad_(True) for z, g in zip(zs, grads)), zs[-1]]
    leaves = {k: w.clone().requires_grad_(True) for k, w in weights.items()}
    energy = jpc_energy(authors_transformer(leaves, "gelu", layer_norm, BLOCKS), zs, y, x)
    wgrads = dict(zip(leaves, torch.autograd.grad(energy, list(leaves.values()))))

    options = {"steps": steps, "rate": activity_lr, "value_nodes": "layers"}
    got = prog.grads(params, batch, "il", **options)
    assert sorted(got) == sorted(wgrads)
    for n, g_ in wgrads.items():
        assert np.abs(g_.numpy()).max() > 1e-6, n  # the signal reached every layer
        np.testing.assert_allclose(got[n], g_.numpy(), rtol=1e-10, atol=1e-13, err_msg=n)
    trained = {k: v.copy() for k, v in params.items()}
    prog.train_step(trained, batch, "il", optimizer=pc.optim.Adam(lr=param_lr), **options)
    for n, g_ in wgrads.items():
        expected = params[n] - param_lr * g_.numpy() / (np.abs(g_.numpy()) + 1e-8)
        np.testing.assert_allclose(trained[n], expected, rtol=1e-10, atol=1e-12, err_msg=n)


def _lm_stream(blocks: int) -> tuple[float, float]:
    """At init: the rms of the stream after the last block, and of what the blocks added to
    the embedding (over tokens and examples)."""
    g = pc.models.transformer_lm(T=8, vocab=11, d_model=32, heads=4, blocks=blocks)
    prog = pc.compile(g, dtype="float64")
    params = prog.init_params(seed=0)
    batch = {"x": np.random.default_rng(0).integers(0, 11, (4, 8))}
    embedding, *_, last, _ = [n for n in g.nx if g.nx.nodes[n].get("layer")]
    h0, h = (np.asarray(prog.evaluate(params, batch, n)) for n in (embedding, last))
    return float(np.sqrt((h**2).mean())), float(np.sqrt(((h - h0) ** 2).mean()))


def test_transformer_stream_stays_of_order_one_and_blocks_add_one_over_sqrt_depth() -> None:
    """The 1/L branch multiplier: the stream keeps its size at any depth, and L independent
    branches of size ~1/L add up to ~1/sqrt(L): 32 blocks add a quarter of what 2 do (a
    1/sqrt(L) multiplier would add the same, none sqrt(L) more, 4x)."""
    (rms_2, added_2), (rms_32, added_32) = _lm_stream(2), _lm_stream(32)
    embedding_rms = 0.02 * math.sqrt(2)  # token + position entries, each N(0, 0.02^2)
    assert all(0.5 < r / embedding_rms < 2 for r in (rms_2, rms_32)), (rms_2, rms_32)
    assert 3 < added_2 / added_32 < 5.3, (added_2, added_32)


@pytest.mark.parametrize(
    "bad", [{"parameterisation": "sp"}, {"activation": "swish"}, {"heads": 3}, {"loss": "l1"}]
)
def test_transformer_bad_settings_are_refused_by_name(bad: dict) -> None:
    with pytest.raises(ValueError, match=str(next(iter(bad.values())))):
        pc.models.transformer_lm(**bad)
