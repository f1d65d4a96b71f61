"""Backend neutrality, checked without a GPU: everything runs under ``array_api_strict``.

``array_api_strict`` rejects any call outside the array API standard, so a NumPy-only call in an
op rule, the executor, an algorithm or an optimiser fails here just as it would on CuPy.  On top
of that, the ``device_like`` fixture makes strict arrays refuse the implicit conversions a GPU
array refuses (``np.asarray``, any ``np.`` function), and counts the scalar device-to-host reads
(``float()``, ``bool()``) that stall a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from helpers import ALGORITHM_OPTIONS, GRAPHS, all_graphs, rel_err
from test_ops import CASES

import pcgraph as pc
from pcgraph.algorithms import ALGORITHMS
from pcgraph.ops import OPS, Example
from pcgraph.testing import example_case, random_batch

xps = pytest.importorskip("array_api_strict")
STRICT = "array_api_strict"
Array = type(xps.asarray(0.0))


class HostReads:
    """How many times an array was read back as a Python scalar, by kind."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __len__(self) -> int:
        return len(self.calls)


@pytest.fixture
def device_like(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostReads]:
    """Strict arrays behave like device arrays: implicit NumPy conversion raises, and scalar reads
    (``float``, ``bool``, ``int``) are counted.  Explicit transfers (DLPack) still work."""

    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "implicit conversion of a backend array to NumPy (a silent device-to-host copy); "
            "use the namespace handed in, or backend.to_numpy / pc.to_numpy on purpose"
        )

    monkeypatch.setattr(Array, "__array__", refuse)
    monkeypatch.setattr(Array, "__buffer__", refuse, raising=False)
    reads = HostReads()
    for method in ("__float__", "__bool__", "__int__", "__index__", "__complex__"):
        original = getattr(Array, method)

        def counted(self: Any, _original: Any = original, _name: str = method) -> Any:
            reads.calls.append(_name)
            return _original(self)

        monkeypatch.setattr(Array, method, counted)
    yield reads


def test_the_device_like_guard_catches_implicit_conversions(device_like: HostReads) -> None:
    a = xps.asarray([1.0, 4.0])
    with pytest.raises(TypeError, match="silent device-to-host copy"):
        np.asarray(a)
    with pytest.raises(TypeError, match="silent device-to-host copy"):
        np.sqrt(a)
    np.testing.assert_array_equal(pc.to_numpy(a), [1.0, 4.0])  # the explicit way works
    assert float(a[0]) == 1.0 and device_like.calls == ["__float__"]


# ------------------------------------------------------------------ the op table
def _run_rules(xp: Any, op: Any, xs: list, g: Any, dtypes: list, lowered: dict) -> tuple:
    """Forward and every operand's VJP of ``op`` on ``xs`` with namespace ``xp``."""
    out = op.forward(xp, xs, **lowered)
    cots = [
        None if d == "int64" else op.vjp(xp, i, g, out, xs, **lowered) for i, d in enumerate(dtypes)
    ]
    return out, cots


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,index,example", CASES, ids=[f"{n}-{i}" for n, i, _ in CASES])
def test_op_rules_use_only_the_namespace_handed_in(
    name: str, index: int, example: Example, dtype: str, device_like: HostReads
) -> None:
    """Every op in ``OPS`` (new ones included): forward and each VJP under ``array_api_strict``
    agree with NumPy in the same dtype (float64: 1e-12; float32: 1e-4 relative) and keep it."""
    op = OPS[name]
    rng = np.random.default_rng((index, 3))
    case = example_case(op, index)
    xs = [
        np.asarray(x, dtype="int64" if d == "int64" else dtype)
        for x, d in zip(case.operands, case.dtypes)
    ]
    dtypes, lowered = case.dtypes, case.attrs
    g = rng.standard_normal(op.forward(np, xs, **lowered).shape).astype(dtype)
    ref_out, ref_cots = _run_rules(np, op, xs, g, dtypes, lowered)
    out, cots = _run_rules(xps, op, [xps.asarray(x) for x in xs], xps.asarray(g), dtypes, lowered)

    tol = 1e-12 if dtype == "float64" else 1e-4
    assert out.dtype == getattr(xps, dtype), f"forward gives {out.dtype} from {dtype} operands"
    assert tuple(out.shape) == ref_out.shape
    assert rel_err(pc.to_numpy(out), ref_out) <= tol, "forward differs from NumPy"
    for i, (cot, ref) in enumerate(zip(cots, ref_cots)):
        if cot is None:
            continue
        assert cot.dtype == getattr(xps, dtype), f"operand {i}: cotangent is {cot.dtype}"
        assert tuple(cot.shape) == ref.shape, f"operand {i}: cotangent shape {cot.shape}"
        assert rel_err(pc.to_numpy(cot), ref) <= tol, f"operand {i}: VJP differs from NumPy"
    # An op rule never reads an array back to the host: that would stall a GPU in every step.
    assert not device_like.calls, f"{name} reads arrays back as Python scalars: {device_like.calls}"


# ------------------------------------------------------------------ whole graphs
ALL_GRAPHS = all_graphs()  # the test graphs and the model zoo's small configurations


def _pair(name: str, dtype: str = "float64") -> tuple[pc.Program, pc.Program, dict]:
    g = ALL_GRAPHS[name]()
    return (
        pc.compile(g, backend="numpy", dtype=dtype),
        pc.compile(g, backend=STRICT, dtype=dtype),
        random_batch(g, size=5),
    )


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("name", ALL_GRAPHS)
def test_whole_graph_gradients_match_numpy(
    name: str, algorithm: str, device_like: HostReads
) -> None:
    """Forward and backward of every test graph and zoo model, for every algorithm, equal NumPy
    to 1e-12 in float64 under the strict namespace, and ``grads`` reads no scalar back."""
    ref, prog, batch = _pair(name)
    options = ALGORITHM_OPTIONS.get(algorithm, {})
    params = prog.init_params(seed=1)
    assert all(type(p) is Array for p in params.values()), "init_params returns backend arrays"
    try:
        expected = ref.grads(ref.init_params(seed=1), batch, algorithm=algorithm, **options)
    except pc.PCGraphError as e:
        pytest.skip(f"{algorithm} does not run on {name} even on NumPy: {e}")
    reads_before = len(device_like)
    grads = prog.grads(params, batch, algorithm=algorithm, **options)
    assert len(device_like) == reads_before, f"grads read back scalars: {device_like.calls}"
    assert set(grads) == set(expected)
    for p in expected:
        assert type(grads[p]) is Array, f"the gradient of {p} is not a backend array"
        assert rel_err(pc.to_numpy(grads[p]), expected[p]) <= 1e-12, p


@pytest.mark.parametrize("name", GRAPHS)
def test_loss_and_evaluate_match_numpy(name: str, device_like: HostReads) -> None:
    ref, prog, batch = _pair(name)
    params = prog.init_params(seed=2)
    host = ref.init_params(seed=2)
    assert prog.loss(params, batch) == pytest.approx(ref.loss(host, batch), rel=1e-12)
    out = prog.evaluate(params, batch, prog.loss_node)
    assert type(out) is Array
    np.testing.assert_allclose(
        pc.to_numpy(out), ref.evaluate(host, batch, ref.loss_node), rtol=1e-12
    )
    # NumPy parameters are accepted too (moved to the backend on the way in).
    assert prog.loss(host, batch) == pytest.approx(ref.loss(host, batch), rel=1e-12)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize(
    "make_optimizer",
    [lambda: pc.optim.SGD(lr=0.1, momentum=0.9, nesterov=True), lambda: pc.optim.Adam(lr=0.01)],
    ids=["sgd-nesterov", "adam"],
)
def test_train_step_follows_numpy_and_keeps_backend_arrays(
    make_optimizer: Any, algorithm: str, device_like: HostReads
) -> None:
    ref, prog, batch = _pair("residual")
    host, params = ref.init_params(seed=0), prog.init_params(seed=0)
    opt_ref, opt = make_optimizer(), make_optimizer()
    for _ in range(3):
        expected = ref.train_step(host, batch, algorithm=algorithm, optimizer=opt_ref)
        reads_before = len(device_like)
        loss = prog.train_step(params, batch, algorithm=algorithm, optimizer=opt)
        # At most the finiteness check and the returned loss: one sync per step, not per array.
        assert len(device_like) - reads_before <= 2, device_like.calls[reads_before:]
        assert loss == pytest.approx(expected, rel=1e-12)
    for p in host:
        assert type(params[p]) is Array, f"{p} left the backend"
        assert rel_err(pc.to_numpy(params[p]), host[p]) <= 1e-12, p
    state = pc.to_numpy(opt.state_dict())  # optimiser state comes back to the host too
    assert state["state"]["step"] == 3
    assert all(isinstance(v, np.ndarray) for k, v in state["state"].items() if k != "step")


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_a_numpy_batch_is_moved_to_the_backend_once_per_step(
    monkeypatch: pytest.MonkeyPatch, algorithm: str
) -> None:
    _, prog, batch = _pair("mlp-tanh")
    params = prog.init_params(seed=0)
    moved: list[str] = []
    be = prog.backend
    original = be.asarray

    def spy(x: Any, dtype: str) -> Any:
        moved.append(type(x).__module__.split(".")[0])
        return original(x, dtype)

    monkeypatch.setattr(be, "asarray", spy)
    opt = pc.optim.SGD(lr=0.1)
    for step in range(1, 4):
        prog.train_step(params, batch, algorithm=algorithm, optimizer=opt)
        assert moved == ["numpy"] * (len(batch) * step), "each feed moved once per step"
    moved.clear()
    on_device = {
        k: original(v, "int64" if v.dtype.kind in "iu" else "float64") for k, v in batch.items()
    }
    prog.train_step(params, on_device, algorithm=algorithm, optimizer=opt)
    prog.grads(params, on_device, algorithm=algorithm, **ALGORITHM_OPTIONS.get(algorithm, {}))
    assert moved == [], "arrays already on the backend are not copied"


def test_to_numpy_brings_back_arrays_and_dicts_of_them(device_like: HostReads) -> None:
    prog = pc.compile(GRAPHS["mlp-tanh"](), backend=STRICT, dtype="float32")
    params = prog.init_params(seed=0)
    host = pc.to_numpy(params)
    assert set(host) == set(params)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in host.values())
    np.testing.assert_array_equal(host["W0"], pc.to_numpy(params["W0"]))
    # A copy: updating the parameters in place afterwards does not change what came back.
    before = host["b0"].copy()
    params["b0"] += 1.0
    np.testing.assert_array_equal(host["b0"], before)
    assert not device_like.calls
