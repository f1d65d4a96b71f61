"""Choosing a backend, CuPy's two failure modes, and CuPy agreeing with NumPy.

The agreement tests run on a GPU with CuPy and skip elsewhere with the reason.  Everything else
runs on the CPU: the CuPy plumbing is exercised on a fake ``cupy`` module built from NumPy without
the names NumPy 2.0 introduced (as CuPy 13 lacks them), so the namespace filling is checked too.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pytest
from helpers import (
    ALGORITHM_OPTIONS,
    CUPY,
    GRAPHS,
    FakeElementwiseKernel,
    all_graphs,
    rel_err,
)
from pcgraph.backends import cupy_backend
from pcgraph.backends.namespace import array_namespace
from test_ops import CASES

import pcgraph as pc
from pcgraph.algorithms import ALGORITHMS
from pcgraph.ops import OPS, Example
from pcgraph.testing import example_case, random_batch

# Every registered algorithm is compared, so one added to the registry is covered automatically.
ALGORITHMS_TO_COMPARE = sorted(ALGORITHMS)
# The test graphs and, where pcgraph.models exists, small configurations of every zoo model.
ALL_GRAPHS = all_graphs()
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}  # relative to the largest magnitude

# What NumPy 2.x added to its main namespace; CuPy 13 mirrors NumPy 1.x and has none of them.
NUMPY2_ONLY = {
    "concat", "permute_dims", "matrix_transpose", "astype", "isdtype", "bool", "pow",
    "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "bitwise_invert",
    "bitwise_left_shift", "bitwise_right_shift", "bitwise_count", "unique_all",
    "unique_counts", "unique_inverse", "unique_values", "vecdot", "matvec", "vecmat",
    "cumulative_sum", "cumulative_prod", "unstack",
}  # fmt: skip


def fake_cupy(devices: Any = 1) -> types.ModuleType:
    """A stand-in ``cupy`` module: NumPy without ``NUMPY2_ONLY``, and a CUDA runtime reporting
    ``devices`` GPUs (an exception instance is raised instead, as with no driver)."""
    mod = types.ModuleType("cupy")
    for name in np.__all__:
        value = getattr(np, name, None)
        if (
            name not in NUMPY2_ONLY
            and value is not None
            and not isinstance(value, types.ModuleType)
        ):
            setattr(mod, name, value)
    assert not any(hasattr(mod, n) for n in NUMPY2_ONLY)

    def get_device_count() -> int:
        if isinstance(devices, Exception):
            raise devices
        return devices

    mod.ndarray = np.ndarray
    mod.asnumpy = lambda a: np.asarray(a)
    mod.ElementwiseKernel = FakeElementwiseKernel
    mod.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=get_device_count),
        Device=lambda: types.SimpleNamespace(synchronize=lambda: None),
    )
    return mod


@pytest.fixture
def fresh_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """No backend instance cached from before (a real CuPy one must not serve a fake-cupy test)."""
    monkeypatch.setattr(pc.backends, "_instances", {})


def small() -> pc.Graph:
    return GRAPHS["mlp-tanh"]()


# ------------------------------------------------------------------ choosing a backend
def test_numpy_is_the_default_and_always_available() -> None:
    assert pc.compile(small()).backend.name == "numpy"
    assert "numpy" in pc.backends.available()
    assert set(pc.backends.available()) <= set(pc.backends.names())


def test_the_environment_variable_picks_the_backend_of_compile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PCGRAPH_BACKEND", "array_api_strict")
    assert pc.compile(small()).backend.name == "array_api_strict"
    monkeypatch.setenv("PCGRAPH_BACKEND", " NumPy ")  # case and blanks do not matter
    assert pc.compile(small()).backend.name == "numpy"
    monkeypatch.setenv("PCGRAPH_BACKEND", "")  # empty: as if unset
    assert pc.compile(small()).backend.name == "numpy"


def test_override_order_compile_then_set_default_then_env_then_numpy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolve = pc.backends.resolve_name
    assert resolve() == "numpy"
    monkeypatch.setenv("PCGRAPH_BACKEND", "array_api_strict")
    assert resolve() == "array_api_strict"
    pc.set_default_backend("numpy")
    assert resolve() == "numpy"  # set_default_backend beats the environment
    assert resolve("array_api_strict") == "array_api_strict"  # compile(backend=...) beats both
    assert pc.compile(small(), backend="array_api_strict").backend.name == "array_api_strict"
    assert pc.compile(small()).backend.name == "numpy"
    pc.set_default_backend(None)  # back to the environment
    assert pc.compile(small()).backend.name == "array_api_strict"


@pytest.mark.parametrize(
    "choose,source",
    [
        (lambda mp: pc.compile(small(), backend="tpu"), r"compile\(backend=\.\.\.\)"),
        (lambda mp: pc.set_default_backend("tpu"), "set_default_backend"),
        (
            lambda mp: (mp.setenv("PCGRAPH_BACKEND", "tpu"), pc.compile(small())),
            r"\$PCGRAPH_BACKEND",
        ),
    ],
    ids=["compile", "set_default_backend", "env"],
)
def test_an_unknown_backend_names_its_source_and_lists_the_available_ones(
    monkeypatch: pytest.MonkeyPatch, choose: Any, source: str
) -> None:
    with pytest.raises(pc.BackendError, match=f"unknown backend 'tpu' \\(from {source}\\)") as e:
        choose(monkeypatch)
    assert f"available here: {', '.join(pc.backends.available())}" in str(e.value)
    assert "known: numpy, cupy" in str(e.value)


# ------------------------------------------------------------------ CuPy's failure modes
def test_cupy_not_installed_says_so_and_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, fresh_backends: None
) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    with pytest.raises(pc.BackendError) as e:
        pc.compile(small(), backend="cupy")
    message = str(e.value)
    assert "CuPy is not installed" in message and "GPU" not in message.split(";")[0]
    assert 'pip install "pcgraph[gpu]"' in message and "cupy-cuda13x" in message
    assert cupy_backend.CupyBackend.availability() == message
    assert "cupy" not in pc.backends.available()
    monkeypatch.setenv("PCGRAPH_BACKEND", "cupy")  # the same error through the env var
    with pytest.raises(pc.BackendError, match="CuPy is not installed"):
        pc.compile(small())


def test_cupy_that_fails_to_import_says_the_wheel_may_not_match_cuda(
    monkeypatch: pytest.MonkeyPatch, fresh_backends: None
) -> None:
    real_import = cupy_backend.importlib.import_module

    def broken(name: str, *args: Any) -> Any:
        if name == "cupy":
            raise ImportError("libcudart.so.12: cannot open shared object file")
        return real_import(name, *args)

    monkeypatch.setattr(cupy_backend, "_installed", lambda: True)
    monkeypatch.setattr(cupy_backend.importlib, "import_module", broken)
    with pytest.raises(
        pc.BackendError, match="installed but cannot be imported.*libcudart.*cupy-cuda13x"
    ):
        pc.compile(small(), backend="cupy")


@pytest.mark.parametrize(
    "devices",
    [0, RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")],
    ids=["zero-devices", "runtime-error"],
)
def test_cupy_without_a_gpu_says_so_and_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch, fresh_backends: None, devices: Any
) -> None:
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(devices))
    with pytest.raises(pc.BackendError) as e:
        pc.compile(small(), backend="cupy")
    message = str(e.value)
    assert "CuPy is installed but no CUDA GPU is visible" in message
    assert "nvidia-smi" in message and "PCGRAPH_BACKEND=numpy" in message
    if isinstance(devices, Exception):
        assert "cudaErrorNoDevice" in message
    assert "cupy" not in pc.backends.available()
    assert isinstance(e.value, pc.PCGraphError)


# ------------------------------------------------------------------ the CuPy plumbing, on a fake
def test_cupy_namespace_fills_only_the_missing_array_api_names() -> None:
    xp = array_namespace(fake_cupy())
    renamed = {"pow", "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh"}
    renamed |= {"bitwise_invert", "bitwise_left_shift", "bitwise_right_shift"}
    used = {"concat", "permute_dims", "matrix_transpose", "astype", "isdtype", "bool", "vecdot"}
    assert set(xp.filled) == used | renamed
    assert xp.exp is np.exp and xp.ndarray is np.ndarray  # the rest is the module's own
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(xp.matrix_transpose(a), a.T)
    np.testing.assert_array_equal(xp.permute_dims(a, (1, 0)), a.T)
    np.testing.assert_array_equal(xp.concat([a, a], axis=1), np.concatenate([a, a], axis=1))
    assert xp.astype(a, np.float32).dtype == np.float32
    np.testing.assert_array_equal(xp.vecdot(a, a), np.sum(a * a, axis=-1))
    assert xp.isdtype(np.dtype("int64"), "integral") and not xp.isdtype(a.dtype, "integral")
    assert xp.isdtype(a.dtype, ("bool", "real floating")) and xp.isdtype(a.dtype, np.float64)
    # A module that already has every name (NumPy 2, CuPy 14) is handed over untouched.
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        assert array_namespace(np) is np


def test_the_numpy_backends_fast_reductions_are_numpys_reductions() -> None:
    xp = pc.backends.get("numpy").xp
    assert {"max", "min", "sum", "mean"} <= set(xp.filled) and xp.exp is np.exp
    rng = np.random.default_rng(0)
    for a in (rng.standard_normal((5, 7)), rng.standard_normal((3, 4, 5)).astype(np.float32)):
        for axis in (None, 0, -1, (0, a.ndim - 1)):
            for keepdims in (False, True):
                for name in ("max", "min", "sum", "mean"):
                    ours = getattr(xp, name)(a, axis=axis, keepdims=keepdims)
                    theirs = getattr(np, name)(a, axis=axis, keepdims=keepdims)
                    assert np.array_equal(ours, theirs) and ours.dtype == theirs.dtype
    ints, flags = np.arange(12).reshape(3, 4), np.array([True, False, True])
    assert xp.mean(ints, axis=1).dtype == np.mean(ints, axis=1).dtype == np.float64
    assert (
        xp.sum(flags) == np.sum(flags) == 2 and xp.sum(ints, dtype=np.float32).dtype == np.float32
    )
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(xp.reshape(a, (3, 2)), np.reshape(a, (3, 2)))
    np.testing.assert_array_equal(xp.permute_dims(a, (1, 0)), a.T)


@pytest.mark.parametrize("name,index,example", CASES, ids=[f"{n}-{i}" for n, i, _ in CASES])
def test_op_rules_run_on_the_filled_cupy13_like_namespace(
    name: str, index: int, example: Example
) -> None:
    """Every op rule finds all the names it uses on a CuPy-13-like namespace (once filled)."""
    op = OPS[name]
    case = example_case(op, index)
    xs, dtypes, lowered = case.operands, case.dtypes, case.attrs
    xp = array_namespace(fake_cupy())
    out = op.forward(xp, xs, **lowered)
    np.testing.assert_array_equal(out, op.forward(np, xs, **lowered))
    g = np.random.default_rng(0).standard_normal(out.shape)
    for i, d in enumerate(dtypes):
        if d != "int64":
            np.testing.assert_array_equal(
                op.vjp(xp, i, g, out, xs, **lowered), op.vjp(np, i, g, out, xs, **lowered)
            )


def test_the_cupy_backend_runs_programs_end_to_end_on_a_fake_cupy(
    monkeypatch: pytest.MonkeyPatch, fresh_backends: None
) -> None:
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    monkeypatch.setenv("PCGRAPH_BACKEND", "cupy")
    assert "cupy" in pc.backends.available()
    g = GRAPHS["attention"]()
    prog, ref = pc.compile(g, dtype="float64"), pc.compile(g, backend="numpy", dtype="float64")
    assert isinstance(prog.backend, cupy_backend.CupyBackend)
    assert isinstance(prog.backend, pc.backends.Backend)  # the protocol, checked at runtime
    batch, params, host = random_batch(g), prog.init_params(1), ref.init_params(1)
    for p in params.values():
        assert prog.backend.is_native(p)
    grads, expected = prog.grads(params, batch), ref.grads(host, batch)
    assert all(np.array_equal(grads[k], expected[k]) for k in expected)
    opt, opt_ref = pc.optim.Adam(lr=0.01), pc.optim.Adam(lr=0.01)
    assert prog.train_step(params, batch, optimizer=opt) == ref.train_step(
        host, batch, optimizer=opt_ref
    )
    prog.backend.synchronize()
    # CuPy's Adam step is one fused kernel, NumPy's a sequence of in-place ufuncs: the same
    # arithmetic in another order, so the same parameters to rounding.
    for k in host:
        np.testing.assert_allclose(prog.backend.to_numpy(params[k]), host[k], rtol=1e-14)


# ------------------------------------------------------------------ CuPy agrees with NumPy
@pytest.fixture(params=[CUPY])
def gpu(request: pytest.FixtureRequest) -> str:
    """A GPU backend to compare with NumPy (skipped, with the reason, where none can run)."""
    return request.param


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("algorithm", ALGORITHMS_TO_COMPARE)
@pytest.mark.parametrize("name", ALL_GRAPHS)
def test_gpu_gradients_and_loss_match_numpy(
    gpu: str, name: str, algorithm: str, dtype: str
) -> None:
    g = ALL_GRAPHS[name]()
    ref, prog = pc.compile(g, backend="numpy", dtype=dtype), pc.compile(g, backend=gpu, dtype=dtype)
    options = ALGORITHM_OPTIONS.get(algorithm, {})
    batch = random_batch(g, size=8)
    host, params = ref.init_params(seed=3), prog.init_params(seed=3)
    assert all(prog.backend.is_native(p) for p in params.values())
    try:
        expected = ref.grads(host, batch, algorithm=algorithm, **options)
    except pc.PCGraphError as e:
        pytest.skip(f"{algorithm} does not run on {name} even on NumPy: {e}")
    grads = pc.to_numpy(prog.grads(params, batch, algorithm=algorithm, **options))
    tol = TOLERANCE[dtype]
    for p in expected:
        assert grads[p].dtype == expected[p].dtype
        assert rel_err(grads[p], expected[p]) <= tol, f"{p}: {rel_err(grads[p], expected[p])}"
    assert prog.loss(params, batch) == pytest.approx(ref.loss(host, batch), rel=tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,index,example", CASES, ids=[f"{n}-{i}" for n, i, _ in CASES])
def test_gpu_op_rules_match_numpy(
    gpu: str, name: str, index: int, example: Example, dtype: str
) -> None:
    op = OPS[name]
    be = pc.backends.get(gpu)
    case = example_case(op, index)
    xs, dtypes, lowered = case.operands, case.dtypes, case.attrs
    xs = [np.asarray(x, dtype="int64" if d == "int64" else dtype) for x, d in zip(xs, dtypes)]
    out = op.forward(np, xs, **lowered)
    g = np.random.default_rng(0).standard_normal(out.shape).astype(dtype)
    dev = [be.asarray(x, x.dtype.name) for x in xs]
    dev_out = op.forward(be.xp, dev, **lowered)
    tol = TOLERANCE[dtype]
    assert rel_err(be.to_numpy(dev_out), out) <= tol
    for i, d in enumerate(dtypes):
        if d != "int64":
            cot = op.vjp(be.xp, i, be.asarray(g, dtype), dev_out, dev, **lowered)
            assert cot.dtype == getattr(be.xp, dtype)
            assert rel_err(be.to_numpy(cot), op.vjp(np, i, g, out, xs, **lowered)) <= tol


@pytest.mark.parametrize("algorithm", ALGORITHMS_TO_COMPARE)
@pytest.mark.parametrize(
    "make_optimizer",
    [lambda: pc.optim.SGD(lr=0.05, momentum=0.9), lambda: pc.optim.Adam(lr=0.01)],
    ids=["sgd-momentum", "adam"],
)
def test_gpu_train_steps_match_numpy(gpu: str, algorithm: str, make_optimizer: Any) -> None:
    g = GRAPHS["residual"]()
    ref, prog = (
        pc.compile(g, backend="numpy", dtype="float64"),
        pc.compile(g, backend=gpu, dtype="float64"),
    )
    batch = random_batch(g, size=8)
    host, params = ref.init_params(seed=0), prog.init_params(seed=0)
    opt_ref, opt = make_optimizer(), make_optimizer()
    for _ in range(5):
        try:
            expected = ref.train_step(host, batch, algorithm=algorithm, optimizer=opt_ref)
        except pc.PCGraphError as e:
            pytest.skip(f"{algorithm} cannot train {g.name} even on NumPy: {e}")
        loss = prog.train_step(params, batch, algorithm=algorithm, optimizer=opt)
        assert loss == pytest.approx(expected, rel=1e-10)
    for p in host:
        assert prog.backend.is_native(params[p]), f"{p} left the GPU"
        assert rel_err(pc.to_numpy(params[p]), host[p]) <= 1e-10, p


# ------------------------------------------------------------------ the NumPy backend's allocator
@pytest.mark.parametrize("setting,expected", [(None, True), ("0", False), ("1", True)])
def test_the_numpy_backend_keeps_its_heap_unless_told_not_to(
    setting: str | None, expected: bool
) -> None:
    """glibc's mmap threshold is raised once per process, on glibc Linux, unless opted out."""
    import os
    import platform
    import subprocess

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("the heap setting applies to glibc only")
    env = {k: v for k, v in os.environ.items() if k != "PCGRAPH_KEEP_HEAP"}
    if setting is not None:
        env["PCGRAPH_KEEP_HEAP"] = setting
    code = (
        "import pcgraph as pc\n"
        "from pcgraph.backends import numpy_backend as nb\n"
        "assert nb._heap_kept is None  # nothing is done at import\n"
        "pc.compile(pc.models.mlp(sizes=(3, 2)))\n"
        "print(nb._heap_kept, nb.keep_heap())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(expected)] * 2
