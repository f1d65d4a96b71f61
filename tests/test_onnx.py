"""ONNX import and export, without PyTorch: models written with ``onnx.helper`` for every
supported operator and attribute variant, imported with ``pc.from_onnx`` and run against
onnxruntime (float32 to 1e-5; float64 to 1e-10 where onnxruntime has float64 kernels), their
backprop gradients against central finite differences; bad and hostile files refused with typed
errors; ``pc.to_onnx`` of zoo models run in onnxruntime equal to pcgraph's forward."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from helpers import check_program_grads

import pcgraph as pc

onnx = pytest.importorskip("onnx", reason="the ONNX tests need onnx (pip install 'pcgraph[onnx]')")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

B = 3  # batch size fed to the imported models


def _ort():  # noqa: ANN202
    return pytest.importorskip("onnxruntime", reason="the forward checks need onnxruntime")


ELEM = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}


class Builder:
    """A small ONNX model in one dtype: inputs with a dynamic batch axis ``N``."""

    def __init__(self, dtype: type = np.float32, seed: int = 0) -> None:
        self.dtype = dtype
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.inputs, self.feeds = [], [], [], {}

    def input(self, name: str, shape: tuple, ids: int = 0, batch: object = "N") -> str:
        if ids:
            elem = TensorProto.INT64
            self.feeds[name] = self.rng.integers(0, ids, size=(B, *shape))
        else:
            elem = ELEM[self.dtype]
            self.feeds[name] = self.rng.standard_normal((B, *shape)).astype(self.dtype)
        self.inputs.append(helper.make_tensor_value_info(name, elem, [batch, *shape]))
        return name

    def weight(self, name: str, shape: tuple, scale: float = 0.5, positive: bool = False) -> str:
        w = self.rng.standard_normal(shape) * scale
        if positive:
            w = np.abs(w) + 0.5
        self.inits.append(numpy_helper.from_array(w.astype(self.dtype), name))
        return name

    def const(self, value: object, name: str, dtype: object = None) -> str:
        array = np.asarray(value, dtype=dtype or self.dtype)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list, outputs: list | str, **attrs: object) -> str:
        outs = [outputs] if isinstance(outputs, str) else outputs
        self.nodes.append(
            helper.make_node(op, inputs, outs, name=f"{op}_{len(self.nodes)}", **attrs)
        )
        return outs[0]

    def model(self, outputs: list[str], opset: int = 18) -> onnx.ModelProto:
        outs = [helper.make_tensor_value_info(o, ELEM[self.dtype], None) for o in outputs]
        graph = helper.make_graph(self.nodes, "test", self.inputs, outs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m


# ------------------------------------------------------------------ the models, one per feature
def mlp_gemm(b: Builder) -> list[str]:
    x = b.input("x", (5,))
    h = b.node("Gemm", [x, b.weight("W1", (4, 5)), b.weight("b1", (4,))], "h", transB=1)
    r = b.node("Relu", [h], "r")
    z = b.node(
        "Gemm", [r, b.weight("W2", (4, 3)), b.weight("b2", (1, 3))], "z", alpha=0.7, beta=1.3
    )
    return [b.node("Softmax", [z], "p", axis=-1)]


def matmul_elementwise(b: Builder) -> list[str]:
    x = b.input("x", (2, 4))
    h = b.node("Add", [b.node("MatMul", [x, b.weight("W", (4, 3))], "m"), b.weight("c", (3,))], "a")
    t = b.node("Tanh", [h], "t")
    s = b.node("Sigmoid", [b.node("Sub", [t, b.const(0.25, "k1")], "s0")], "s")
    d = b.node("Div", [s, b.weight("den", (2, 1), positive=True)], "d")
    m = b.node("Mul", [d, b.weight("g", (1, 3))], "mm")
    v = b.node("MatMul", [b.weight("L", (2, 2)), m], "left")  # an unbatched left operand
    return [b.node("MatMul", [v, b.weight("v", (3,))], "vec")]  # a vector right operand


def unary_ops(b: Builder) -> list[str]:
    x = b.input("x", (6,))
    p = b.node("Add", [b.node("Abs", [x], "abs"), b.const(0.5, "half")], "pos")
    outs = [
        b.node("Log", [p], "log"),
        b.node("Sqrt", [p], "sqrt"),
        b.node("Exp", [b.node("Neg", [x], "neg")], "exp"),
        b.node("LeakyRelu", [x], "leaky", alpha=0.2),
        b.node("Softplus", [x], "softplus"),
        b.node("Clip", [x, b.const(-0.5, "lo"), b.const(0.7, "hi")], "clip"),
        b.node("Pow", [p, b.const(3.0, "three")], "pow"),
        b.node("Max", [x, b.weight("mx", (6,))], "max"),
        b.node("Min", [x, b.weight("mn", (6,))], "min"),
        b.node("Reciprocal", [p], "recip"),
        b.node("Sum", [x, p, b.weight("s", (6,))], "sum"),
        b.node("Identity", [b.node("Dropout", [x], "drop")], "ident"),
        b.node("LogSoftmax", [x], "logsoftmax", axis=1),
        b.node("Erf", [b.node("Mul", [x, b.weight("e", (6,))], "xe")], "erf"),
    ]
    total = outs[0]
    for o in outs[1:]:
        total = b.node("Add", [total, o], f"acc_{o}")
    return [total]


def conv_net(b: Builder) -> list[str]:
    x = b.input("x", (4, 9, 9))
    c = b.node(
        "Conv",
        [x, b.weight("cw", (6, 2, 3, 3)), b.weight("cb", (6,))],
        "conv",
        group=2,
        strides=[2, 1],
        pads=[1, 2, 1, 2],
        dilations=[1, 2],
        kernel_shape=[3, 3],
    )
    r = b.node("Relu", [c], "relu")
    m = b.node("MaxPool", [r], "pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    a = b.node(
        "AveragePool",
        [m],
        "avg",
        kernel_shape=[2, 2],
        strides=[1, 1],
        pads=[1, 1, 1, 1],
        count_include_pad=1,
    )
    c2 = b.node("Conv", [a, b.weight("cw2", (3, 6, 1, 1))], "conv2")  # no bias, defaults
    g = b.node("GlobalAveragePool", [c2], "gap")
    f = b.node("Flatten", [g], "flat", axis=1)
    return [b.node("Gemm", [f, b.weight("fw", (3, 2)), b.weight("fb", (2,))], "logits")]


def conv_transpose(b: Builder) -> list[str]:
    x = b.input("x", (4, 5, 5))
    up = b.node(
        "ConvTranspose",
        [x, b.weight("tw", (4, 3, 3, 3)), b.weight("tb", (6,))],
        "up",
        group=2,
        strides=[2, 2],
        pads=[1, 1, 1, 1],
        output_padding=[1, 0],
        dilations=[1, 1],
    )
    return [b.node("Sigmoid", [up], "out")]


def batch_norm_inference(b: Builder) -> list[str]:
    x = b.input("x", (3, 4, 4))
    y = b.node(
        "BatchNormalization",
        [
            x,
            b.weight("gamma", (3,)),
            b.weight("beta", (3,)),
            b.weight("mean", (3,)),
            b.weight("var", (3,), positive=True),
        ],
        "bn",
        epsilon=1e-3,
    )
    return [b.node("Relu", [y], "out")]


def layer_norm_gelu(b: Builder) -> list[str]:
    x = b.input("x", (3, 8))
    ln = b.node(
        "LayerNormalization",
        [x, b.weight("ls", (8,)), b.weight("lb", (8,))],
        "ln",
        axis=-1,
        epsilon=1e-4,
    )
    g1 = b.node("Gelu", [ln], "gelu_exact")
    g2 = b.node("Gelu", [ln], "gelu_tanh", approximate="tanh")
    ln2 = b.node(
        "LayerNormalization",
        [b.node("Add", [g1, g2], "gsum"), b.weight("ls2", (3, 8))],
        "ln2",
        axis=1,
    )
    return [ln2]


def erf_gelu(b: Builder) -> list[str]:
    """GELU as PyTorch's TorchScript exporter writes it: x * 0.5 * (1 + erf(x / sqrt 2))."""
    x = b.input("x", (7,))
    e = b.node("Erf", [b.node("Div", [x, b.const(math.sqrt(2), "sqrt2")], "xs")], "erf")
    h = b.node(
        "Mul",
        [
            b.node("Mul", [x, b.node("Add", [e, b.const(1.0, "one")], "e1")], "xe"),
            b.const(0.5, "h"),
        ],
        "gelu",
    )
    return [b.node("MatMul", [h, b.weight("W", (7, 3))], "out")]


def reshape_shape_subgraph(b: Builder) -> list[str]:
    """x.view(x.size(0), -1) as the TorchScript exporter writes it, then transposes."""
    x = b.input("x", (2, 3, 4))
    s = b.node("Shape", [x], "shape")
    n = b.node("Gather", [s, b.const(0, "zero", np.int64)], "n", axis=0)
    nn = b.node("Unsqueeze", [n, b.const([0], "ax0", np.int64)], "n1")
    target = b.node("Concat", [nn, b.const([-1], "minus1", np.int64)], "target", axis=0)
    flat = b.node("Reshape", [x, target], "flat")
    back = b.node("Reshape", [flat, b.const([0, 4, 6], "s3", np.int64)], "back")
    t = b.node("Transpose", [back], "t", perm=[0, 2, 1])
    u = b.node("Unsqueeze", [t, b.const([1], "ax1", np.int64)], "u")
    sq = b.node("Squeeze", [u, b.const([1], "ax1b", np.int64)], "sq")
    sm = b.node(
        "Softmax",
        [
            sq,
        ],
        "sm",
        axis=1,
    )
    return [b.node("ReduceSum", [sm, b.const([2], "ax2", np.int64)], "red", keepdims=0)]


def attention(b: Builder) -> list[str]:
    """Multi-head self-attention with the batch first: (N, T, d) -> heads -> (N, T, d)."""
    T, d, h = 4, 6, 2
    x = b.input("x", (T, d))
    shape4 = b.const([0, T, h, d // h], "shape4", np.int64)
    heads = []
    for k in "qkv":
        p = b.node("MatMul", [x, b.weight(f"W{k}", (d, d))], f"{k}_proj")
        heads.append(
            b.node(
                "Transpose",
                [b.node("Reshape", [p, shape4], f"{k}_4d")],
                f"{k}_h",
                perm=[0, 2, 1, 3],
            )
        )
    q, k, v = heads
    kt = b.node("Transpose", [k], "kt", perm=[0, 1, 3, 2])
    scores = b.node(
        "Div", [b.node("MatMul", [q, kt], "qk"), b.const(math.sqrt(d // h), "scale")], "scores"
    )
    attn = b.node("MatMul", [b.node("Softmax", [scores], "a", axis=-1), v], "av")
    merged = b.node(
        "Reshape",
        [
            b.node("Transpose", [attn], "at", perm=[0, 2, 1, 3]),
            b.const([0, T, d], "shape3", np.int64),
        ],
        "merged",
    )
    return [b.node("ReduceMean", [merged, b.const([1], "axt", np.int64)], "pooled", keepdims=0)]


def batch_merged_with_heads(b: Builder) -> list[str]:
    """PyTorch's MultiheadAttention layout: (T, N, d) -> (T, N * h, d/h) -> (N * h, T, d/h),
    the batch merged with the heads through shape arithmetic, and back."""
    T, d, h = 3, 4, 2
    x = b.input("x", (T, d))
    tb = b.node("Transpose", [x], "tbd", perm=[1, 0, 2])
    s = b.node("Shape", [tb], "shape")
    n = b.node("Gather", [s, b.const(1, "one_i", np.int64)], "n", axis=0)
    nh = b.node("Mul", [n, b.const(h, "heads", np.int64)], "nh")
    target = b.node(
        "Concat",
        [
            b.const([T], "t1", np.int64),
            b.node("Unsqueeze", [nh, b.const([0], "a0", np.int64)], "nh1"),
            b.const([d // h], "hd", np.int64),
        ],
        "target",
        axis=0,
    )
    r = b.node(
        "Reshape", [b.node("MatMul", [tb, b.weight("W", (d, d))], "proj"), target], "split_heads"
    )
    q = b.node("Transpose", [r], "q", perm=[1, 0, 2])  # (N*h, T, hd)
    scores = b.node("MatMul", [q, b.node("Transpose", [q], "kT", perm=[0, 2, 1])], "scores")
    o = b.node("MatMul", [b.node("Softmax", [scores], "a", axis=-1), q], "o")  # (N*h, T, hd)
    back = b.node(
        "Reshape",
        [b.node("Transpose", [o], "o_t", perm=[1, 0, 2]), b.const([T, -1, d], "tnd", np.int64)],
        "tnd_out",
    )
    return [b.node("Transpose", [back], "out", perm=[1, 0, 2])]


def embedding(b: Builder) -> list[str]:
    ids = b.input("ids", (5,), ids=7)
    e = b.node("Gather", [b.weight("E", (7, 4)), ids], "emb", axis=0)
    first = b.node("Gather", [e, b.const(0, "zero", np.int64)], "first", axis=1)  # e[:, 0]
    pooled = b.node("ReduceMean", [e, b.const([1], "ax", np.int64)], "pooled", keepdims=0)
    return [b.node("Add", [pooled, first], "out")]


def split_slice_concat(b: Builder) -> list[str]:
    x = b.input("x", (6, 5))
    p1, p2, q1, q2 = "p1", "p2", "q1", "q2"
    b.node("Split", [x], [p1, p2], axis=1, num_outputs=2)
    b.node("Split", [x, b.const([2, 3], "sizes", np.int64)], [q1, q2], axis=2)
    sl = b.node(
        "Slice",
        [
            x,
            b.const([1, 0], "st", np.int64),
            b.const([100, 5], "en", np.int64),
            b.const([1, 2], "axs", np.int64),
            b.const([2, 2], "sp", np.int64),
        ],
        "sl",
    )  # x[:, 1::2, 0:5:2]
    c = b.node("Concat", [p1, p2], "c", axis=1)
    d = b.node("Concat", [q2, q1], "d", axis=-1)
    return [b.node("Add", [c, d], "cd"), b.node("Tanh", [sl], "slt")]


def fixed_batch(b: Builder) -> list[str]:
    """A model exported with a fixed batch size: its reshapes name that size."""
    x = b.input("x", (2, 6), batch=B)
    flat = b.node("Reshape", [x, b.const([B, 12], "s", np.int64)], "flat")
    two = b.node("Reshape", [flat, b.const([B, 3, -1], "s2", np.int64)], "two")
    return [b.node("Flatten", [b.node("Relu", [two], "r")], "f", axis=1)]


def recurrent(kind: str, layout: int = 0, **attrs: object):  # noqa: ANN201
    """An ONNX RNN/GRU/LSTM over a (N, T, D) input, with bias and an initial state given."""
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[kind]
    T, D, H = 4, 3, 5

    def build(b: Builder) -> list[str]:
        x = b.input("x", (T, D))
        h0 = b.input("h0", (1, H))  # (N, 1, H): the batch first, transposed below
        seq = x if layout else b.node("Transpose", [x], "x_tbd", perm=[1, 0, 2])
        init = h0 if layout else b.node("Transpose", [h0], "h0_t", perm=[1, 0, 2])
        inputs = [seq, b.weight("W", (1, gates * H, D)), b.weight("R", (1, gates * H, H))]
        inputs += [b.weight("B", (1, 2 * gates * H)), "", init]
        outs = ["y", "y_h"] + (["y_c"] if kind == "LSTM" else [])
        b.node(kind, inputs, outs, hidden_size=H, layout=layout, **attrs)
        # many-to-one, as a classifier reads it: the last step of Y, and Y_h (batch first)
        if layout:
            last = b.node("Gather", ["y", b.const(T - 1, "last_index", np.int64)], "last", axis=1)
            states = ["y_h"] + (["y_c"] if kind == "LSTM" else [])
        else:
            last = b.node("Gather", ["y", b.const(T - 1, "last_index", np.int64)], "last0", axis=0)
            last = b.node("Transpose", [last], "last", perm=[1, 0, 2])
            states = [b.node("Transpose", [o], f"{o}_b", perm=[1, 0, 2]) for o in outs[1:]]
        return [b.node("Tanh", [last], "out")] + [
            b.node("Identity", [o], f"{o}_out") for o in states
        ]

    return build


def batch_sized_constants(b: Builder) -> list[str]:
    """zeros(batch, 5) @ R + b and 2 * ones(batch, 5), as PyTorch's dynamo exporter writes an
    RNN's zero initial state: constants as large as the batch."""
    x = b.input("x", (5,))
    n = b.node("Gather", [b.node("Shape", [x], "shape"), b.const(0, "zero", np.int64)], "n", axis=0)
    n1 = b.node("Unsqueeze", [n, b.const([0], "ax0", np.int64)], "n1")
    shape = b.node("Concat", [n1, b.const([5], "five", np.int64)], "shape2", axis=0)
    zeros = b.node("Expand", [b.const(0.0, "z"), shape], "zeros")
    twos = b.node("Expand", [b.const(2.0, "two"), shape], "twos")
    h = b.node(
        "Add", [b.node("MatMul", [zeros, b.weight("R", (5, 5))], "zR"), b.weight("c", (5,))], "zRc"
    )
    x0 = b.node("MatMul", [b.node("Sub", [x, zeros], "x0"), "R"], "xR")  # R read by x too
    h = b.node("Add", [h, x0], "h")
    return [b.node("Tanh", [b.node("Mul", [h, twos], "h2")], "out")]


CASES = {
    "mlp-gemm": mlp_gemm,
    "matmul-elementwise": matmul_elementwise,
    "unary-ops": unary_ops,
    "conv-pool": conv_net,
    "conv-transpose": conv_transpose,
    "batch-norm-inference": batch_norm_inference,
    "layer-norm-gelu": layer_norm_gelu,
    "erf-gelu": erf_gelu,
    "reshape-shape-subgraph": reshape_shape_subgraph,
    "attention": attention,
    "batch-merged-with-heads": batch_merged_with_heads,
    "embedding": embedding,
    "split-slice-concat": split_slice_concat,
    "fixed-batch": fixed_batch,
    "batch-sized-constants": batch_sized_constants,
    "rnn": recurrent("RNN"),
    "gru": recurrent("GRU", linear_before_reset=1),
    "gru-reset-after": recurrent("GRU"),
    "lstm": recurrent("LSTM"),
    "lstm-batch-first": recurrent("LSTM", layout=1),
}
OPSETS = {"layer-norm-gelu": 20}
# onnxruntime runs no batch-first (layout=1) recurrence: its reference is the same network
# (same weights and feeds) written sequence-first.
REFERENCE = {"lstm-batch-first": "lstm"}


def _build(case: str, dtype: type) -> tuple[onnx.ModelProto, dict]:
    b = Builder(dtype)
    outputs = CASES[case](b)
    return b.model(outputs, opset=OPSETS.get(case, 18)), b.feeds


def _session(model: onnx.ModelProto):  # noqa: ANN202
    ort = _ort()
    try:
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime has no float64 kernel for some operators
        if "NOT_IMPLEMENTED" in str(e) or "Could not find an implementation" in str(e):
            pytest.skip(f"onnxruntime has no kernel for this model in this dtype: {str(e)[:120]}")
        raise


def _run(model: onnx.ModelProto, feeds: dict) -> list:
    try:
        return _session(model).run(None, feeds)
    except Exception as e:  # some kernels refuse float64 only when run
        if "support double" in str(e) or "NOT_IMPLEMENTED" in str(e):
            pytest.skip(f"onnxruntime has no kernel for this model in this dtype: {str(e)[:120]}")
        raise


def _imported(model: onnx.ModelProto, dtype: str) -> tuple[pc.Graph, dict, pc.Program]:
    g, params = pc.from_onnx(model, loss="mse")
    return g, params, pc.compile(g, dtype=dtype)


@pytest.mark.parametrize(
    "dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-10)], ids=["float32", "float64"]
)
@pytest.mark.parametrize("case", CASES)
def test_forward_equals_onnxruntime(case: str, dtype: type, tol: float) -> None:
    model, feeds = _build(case, dtype)
    expected = _run(_build(REFERENCE.get(case, case), dtype)[0], feeds)
    g, params, prog = _imported(model, np.dtype(dtype).name)
    assert len(g.outputs) == len(expected)
    for name, want in zip(g.outputs, expected):
        got = pc.to_numpy(prog.evaluate(params, feeds, name))
        assert got.shape == want.shape, name
        scale = max(1.0, float(np.max(np.abs(want))))
        assert np.max(np.abs(got - want)) <= tol * scale, f"{case} output {name}"


@pytest.mark.parametrize("case", CASES)
def test_backprop_through_the_imported_graph_matches_finite_differences(case: str) -> None:
    model, feeds = _build(case, np.float64)
    g, params, prog = _imported(model, "float64")
    out = g.node(g.outputs[0])
    rng = np.random.default_rng(1)
    batch = {**feeds, g.targets[0]: rng.standard_normal((B, *out.shape))}
    check_program_grads(prog, params, batch, directions=2)


def test_parameters_are_the_initializers_and_init_params_returns_them() -> None:
    model, _ = _build("mlp-gemm", np.float32)
    g, params = pc.from_onnx(model, loss="softmax_cross_entropy")
    assert sorted(params) == ["W1", "W2", "b1", "b2"] and sorted(g.params) == sorted(params)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for name, value in params.items():
        np.testing.assert_array_equal(value, inits[name])
    prog = pc.compile(g, dtype="float64")
    for name, value in pc.to_numpy(prog.init_params(seed=5)).items():
        np.testing.assert_array_equal(value, inits[name].astype(np.float64))
    assert g.inputs == ["x"] and g.node("x").shape == (5,)
    assert g.targets == ["y"] and g.node("y").dtype == "int64" and g.outputs == ["p"]


def test_zil_equals_bp_on_an_imported_conv_net() -> None:
    model, feeds = _build("conv-pool", np.float64)
    g, params = pc.from_onnx(model, loss="softmax_cross_entropy")
    prog = pc.compile(g, dtype="float64")
    batch = {**feeds, "y": np.array([0, 1, 1])}
    bp = pc.to_numpy(prog.grads(params, batch, algorithm="bp"))
    zil = pc.to_numpy(prog.grads(params, batch, algorithm="zil"))
    for name in bp:
        np.testing.assert_allclose(zil[name], bp[name], rtol=0, atol=1e-12)


def test_training_mode_batch_norm_normalises_with_the_batch_statistics() -> None:
    b = Builder(np.float64)
    x = b.input("x", (2, 3, 3))
    inputs = [
        x,
        b.weight("gamma", (2,)),
        b.weight("beta", (2,)),
        b.weight("rm", (2,)),
        b.weight("rv", (2,), positive=True),
    ]
    b.node(
        "BatchNormalization",
        inputs,
        ["normed", "running_mean", "running_var"],
        epsilon=1e-5,
        training_mode=1,
    )
    model = b.model(["normed"], opset=15)
    g, params, prog = _imported(model, "float64")
    got = pc.to_numpy(prog.evaluate(params, b.feeds, g.outputs[0]))
    v = b.feeds["x"]
    mean, var = v.mean(axis=(0, 2, 3), keepdims=True), v.var(axis=(0, 2, 3), keepdims=True)
    want = (v - mean) / np.sqrt(var + 1e-5) * params["gamma"].reshape(2, 1, 1) + params[
        "beta"
    ].reshape(2, 1, 1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    check_program_grads(prog, params, {**b.feeds, "y": np.ones((B, 2, 3, 3))}, directions=2)


def test_a_file_on_disk_imports_as_the_model_does(tmp_path) -> None:  # noqa: ANN001
    model, feeds = _build("mlp-gemm", np.float32)
    path = tmp_path / "mlp.onnx"
    path.write_bytes(model.SerializeToString())
    g, params = pc.from_onnx(path)
    assert g.outputs == ["p"] and g.loss is None and sorted(params) == ["W1", "W2", "b1", "b2"]


# ------------------------------------------------------------------ refused: typed errors
def _one_node(op: str, attrs: dict | None = None) -> onnx.ModelProto:
    b = Builder()
    x = b.input("x", (2, 6, 6))
    weights = [b.weight("w", (2, 2, 3, 3))] if op == "Conv" else []
    b.node(op, [x, *weights], "y", **(attrs or {}))
    return b.model(["y"])


def test_an_unsupported_operator_names_the_node_and_lists_what_is_supported() -> None:
    with pytest.raises(pc.UnsupportedOperatorError) as e:
        pc.from_onnx(_one_node("Hardmax"))
    message = str(e.value)
    assert "Hardmax_0" in message and "'Hardmax'" in message
    assert "Supported operators:" in message and "Conv" in message and "MatMul" in message
    assert isinstance(e.value, pc.FileFormatError) and e.value.__cause__ is None


@pytest.mark.parametrize(
    "attrs,named",
    [
        ({"auto_pad": "SAME_UPPER"}, "auto_pad"),
        ({"pads": [1, 0, 0, 1]}, "pads"),
    ],
)
def test_an_unsupported_attribute_is_named(attrs: dict, named: str) -> None:
    with pytest.raises(pc.UnsupportedOperatorError, match=named):
        pc.from_onnx(_one_node("Conv", attrs))


def test_pooling_with_ceil_mode_or_without_counting_padding_is_refused() -> None:
    with pytest.raises(pc.UnsupportedOperatorError, match="ceil_mode"):
        pc.from_onnx(_one_node("MaxPool", {"kernel_shape": [2, 2], "ceil_mode": 1}))
    with pytest.raises(pc.UnsupportedOperatorError, match="count_include_pad"):
        pc.from_onnx(_one_node("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}))


def test_unsupported_recurrent_attributes_are_named() -> None:
    b = Builder()
    x = b.input("x", (4, 3), batch="N")
    xt = b.node("Transpose", [x], "xt", perm=[1, 0, 2])
    w, r = b.weight("W", (2, 8, 3)), b.weight("R", (2, 8, 2))
    b.node("LSTM", [xt, w, r], ["y"], hidden_size=2, direction="bidirectional")
    with pytest.raises(pc.UnsupportedOperatorError, match="direction"):
        pc.from_onnx(b.model(["y"]))


def test_ops_across_the_batch_axis_are_refused() -> None:
    b = Builder()
    x = b.input("x", (4,))
    b.node("Softmax", [x], "y", axis=0)
    with pytest.raises(pc.UnsupportedOperatorError, match="batch axis"):
        pc.from_onnx(b.model(["y"]))
    b = Builder()
    x = b.input("x", (6,))
    b.node("Reshape", [x, b.const([2, -1], "s", np.int64)], "y")  # splits the batch axis
    with pytest.raises(pc.UnsupportedOperatorError, match="batch"):
        pc.from_onnx(b.model(["y"]))


def test_a_dynamic_per_example_axis_is_refused() -> None:
    b = Builder()
    b.inputs.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 3]))
    b.node("Relu", ["x"], "y")
    with pytest.raises(pc.UnsupportedOperatorError, match="axis 1 has no fixed size"):
        pc.from_onnx(b.model(["y"]))


def test_bad_files_get_typed_errors(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(pc.FileFormatError, match="no such file"):
        pc.from_onnx(tmp_path / "missing.onnx")
    with pytest.raises(pc.FileFormatError, match="not a regular file"):
        pc.from_onnx(tmp_path)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe not protobuf \x00" * 10)
    with pytest.raises(pc.FileFormatError, match="not an ONNX model"):
        pc.from_onnx(junk)
    model, _ = _build("mlp-gemm", np.float32)
    big = tmp_path / "big.onnx"
    big.write_bytes(model.SerializeToString())
    with pytest.raises(pc.FileFormatError, match="larger than 100 bytes"):
        pc.from_onnx(big, max_bytes=100)
    with pytest.raises(pc.FileFormatError, match="loss"):
        pc.from_onnx(model, loss="hinge")


def test_a_node_reading_an_unknown_value_is_refused() -> None:
    b = Builder()
    b.input("x", (3,))
    b.node("Add", ["x", "nowhere"], "y")
    with pytest.raises(pc.FileFormatError, match="nowhere"):
        pc.from_onnx(b.model(["y"]))


def test_external_data_outside_the_model_folder_is_refused(tmp_path) -> None:  # noqa: ANN001
    model, _ = _build("mlp-gemm", np.float32)
    (tmp_path / "secret").write_bytes(b"\x00" * 80)
    inside = tmp_path / "models"
    inside.mkdir()
    w = next(t for t in model.graph.initializer if t.name == "W1")
    w.ClearField("float_data")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="../secret")
    path = inside / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(pc.FileFormatError, match="outside the model's folder"):
        pc.from_onnx(path)
    # ... while external data beside the model loads.
    (inside / "w1.bin").write_bytes(np.arange(20, dtype=np.float32).tobytes())
    w.external_data[0].value = "w1.bin"
    path.write_bytes(model.SerializeToString())
    _, params = pc.from_onnx(path)
    np.testing.assert_array_equal(params["W1"], np.arange(20, dtype=np.float32).reshape(4, 5))


def test_a_folded_constant_too_large_is_refused() -> None:
    b = Builder()
    x = b.input("x", (3,))
    big = b.node("ConstantOfShape", [b.const([1 << 20, 1 << 20], "s", np.int64)], "big")
    b.node("Add", [x, big], "y")
    with pytest.raises(pc.FileFormatError, match="too large"):
        pc.from_onnx(b.model(["y"]))


def test_without_the_onnx_package_the_error_names_the_extra(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(pc.MissingDependencyError, match=r"pip install \"pcgraph\[onnx\]\""):
        pc.from_onnx("model.onnx")


# ------------------------------------------------------------------ export
ZOO = {
    "mlp": {"sizes": (6, 5, 3), "activation": "gelu"},
    "lenet": {"in_shape": (1, 12, 12), "classes": 3, "channels": (2, 3), "kernel": 3},
    "resnet": {"blocks": (1, 1), "widths": (2, 3), "in_shape": (2, 6, 6), "classes": 3},
    "transformer_encoder": {"T": 4, "d_model": 8, "heads": 2, "layers": 1, "classes": 3, "d_ff": 6},
    "autoencoder": {"in_shape": (1, 8, 8), "channels": (2, 3)},
}


# The batch_norm of resnet is written with reductions over the batch axis (onnxruntime has no
# training-mode BatchNormalization), which the importer does not read back.
READ_BACK = {"mlp", "lenet", "transformer_encoder", "autoencoder"}


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float64", 1e-10)])
@pytest.mark.parametrize("key", ZOO)
def test_export_round_trip_runs_in_onnxruntime_as_in_pcgraph(
    key: str,
    dtype: str,
    tol: float,
    tmp_path,  # noqa: ANN001
) -> None:
    from pcgraph.models import MODELS

    g = MODELS[key](**ZOO[key])
    prog = pc.compile(g, dtype=dtype)
    params = prog.init_params(seed=1)
    x = np.random.default_rng(0).standard_normal((B, *g.node("x").shape)).astype(dtype)
    out = prog.prediction_node()
    path = pc.to_onnx(prog, params, tmp_path / f"{key}.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == [out]
    want = pc.to_numpy(prog.evaluate(params, {"x": x}, out))
    scale = max(1.0, float(np.max(np.abs(want))))
    got = _session(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)
    if key in READ_BACK:  # imported back: the same function again, dense layers as linear
        g2, params2 = pc.from_onnx(path, loss="mse")
        ops = lambda graph: sorted(op for _, op in graph.nx.nodes(data="op") if op == "linear")  # noqa: E731
        assert ops(g2) == ops(g)
        prog2 = pc.compile(g2, dtype=dtype)
        again = pc.to_numpy(prog2.evaluate(params2, {"x": x}, g2.outputs[0]))
        np.testing.assert_allclose(again, want, rtol=0, atol=tol * scale)


def test_export_refuses_an_op_without_an_onnx_form(tmp_path) -> None:  # noqa: ANN001
    g = pc.Graph("drop")
    x = g.input("x", (4,))
    h = pc.dropout(x @ g.param("W", (4, 3)), g.input("seed", (), dtype="int64"), p=0.5)
    g.set_loss(pc.mse(h, g.target("y", (3,))))
    prog = pc.compile(g)
    with pytest.raises(pc.UnsupportedOperatorError, match="dropout"):
        pc.to_onnx(prog, prog.init_params(), tmp_path / "d.onnx", outputs=[h.name])
    assert not (tmp_path / "d.onnx").exists()


def test_one_number_initializers_are_constants_unless_chosen_trainable() -> None:
    b = Builder(np.float64)
    x = b.input("x", (4,))
    h = b.node("Mul", [b.node("MatMul", [x, b.weight("W", (4, 1))], "m"), b.weight("s", (1,))], "h")
    b.node("Add", [h, b.weight("c", (1,))], "out")
    model = b.model(["out"])
    _, params = pc.from_onnx(model)
    assert sorted(params) == ["W"]
    _, params = pc.from_onnx(model, trainable=["W", "c"])
    assert sorted(params) == ["W", "c"]
    with pytest.raises(pc.FileFormatError, match="nope"):
        pc.from_onnx(model, trainable=["nope"])


# ------------------------------------------------------------------ the command line
def test_cli_trains_an_onnx_model_and_exports_the_run(tmp_path, capsys) -> None:  # noqa: ANN001
    from pcgraph import cli

    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    b = Builder()
    x = b.input("x", (64,))
    h = b.node(
        "Relu",
        [b.node("Gemm", [x, b.weight("W1", (16, 64), 0.1), b.weight("b1", (16,))], "h0", transB=1)],
        "h",
    )
    b.node("Gemm", [h, b.weight("W2", (16, 10), 0.1), b.weight("b2", (10,))], "logits")
    path = tmp_path / "mine.onnx"
    path.write_bytes(b.model(["logits"]).SerializeToString())
    run = tmp_path / "run"
    argv = ["train", "--graph", str(path), "--data", "digits", "--algorithm", "zil"]
    argv += ["--epochs", "1", "--limit", "128", "--no-plot", "--out", str(run)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert cli.main(["verify", "--graph", str(path)]) == 0
    out = tmp_path / "trained.onnx"
    assert cli.main(["export", "--run", str(run), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    g, params = pc.from_onnx(out, loss="softmax_cross_entropy")
    prog = pc.compile(g)
    ckpt = pc.load(
        run / "checkpoint.npz", pc.compile(pc.from_onnx(path, loss="softmax_cross_entropy")[0])
    )
    np.testing.assert_array_equal(params["W1"], pc.to_numpy(ckpt.params["W1"]))  # trained weights
    assert not np.array_equal(params["W1"], numpy_helper.to_array(b.inits[0]))  # not the start
    feeds = {"x": np.random.default_rng(0).random((5, 64)).astype(np.float32)}
    theirs = _session(onnx.load(out)).run(None, feeds)[0]
    ours = pc.to_numpy(prog.evaluate(params, feeds, g.outputs[0]))
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-5)


def test_cli_refuses_model_args_for_an_onnx_graph(tmp_path, capsys) -> None:  # noqa: ANN001
    from pcgraph import cli

    model, _ = _build("mlp-gemm", np.float32)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    assert cli.main(["schedule", "--graph", str(path), "--model-args", "a=1"]) == 2
    assert "--model-args cannot apply to an ONNX model" in capsys.readouterr().err


def test_shapes_beyond_the_graph_limits_are_refused_before_anything_is_allocated() -> None:
    b = Builder()
    b.inputs.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1 << 40]))
    b.node("Relu", ["x"], "y")
    with pytest.raises(pc.FileFormatError, match="more than"):
        pc.from_onnx(b.model(["y"]))


def test_a_reshape_that_contradicts_its_operand_names_the_node() -> None:
    b = Builder()
    x = b.input("x", (6,))
    b.node("Reshape", [x, b.const([0, 4], "s", np.int64)], "y")
    with pytest.raises(pc.FileFormatError, match=r"node .Reshape_0. \(Reshape\): cannot reshape"):
        pc.from_onnx(b.model(["y"]))
