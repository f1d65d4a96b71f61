"""A training step applies everything or nothing: what it would touch is checked first."""

from __future__ import annotations

import types

import numpy as np
import pytest
from helpers import mlp

import pcgraph as pc
from pcgraph.testing import random_batch


def setup(dtype: str = "float32"):  # noqa: ANN201
    g = mlp()
    prog = pc.compile(g, dtype=dtype)
    return prog, prog.init_params(0), random_batch(g, size=8)


def _snapshot(params: dict, opt: pc.optim.Optimizer) -> tuple:
    return {k: v.copy() for k, v in params.items()}, {
        k: (v.copy() if hasattr(v, "copy") else v) for k, v in opt.state.items()
    }


def _unchanged(params: dict, opt: pc.optim.Optimizer, before: tuple) -> bool:
    p0, s0 = before
    same_params = all(np.array_equal(params[k], p0[k]) for k in p0)
    same_state = opt.state.keys() == s0.keys() and all(
        np.array_equal(opt.state[k], s0[k]) for k in s0
    )
    return same_params and same_state


def test_a_read_only_parameter_is_refused_before_anything_changes() -> None:
    prog, params, batch = setup()
    opt = pc.optim.SGD(lr=0.1, momentum=0.9)
    prog.train_step(params, batch, optimizer=opt)
    params["W2"].flags.writeable = False
    before = _snapshot(params, opt)
    with pytest.raises(pc.FeedError, match="param 'W2' is a read-only array"):
        prog.train_step(params, batch, optimizer=opt)
    assert _unchanged(params, opt, before)


def test_a_read_only_mapping_of_parameters_is_refused_before_anything_changes() -> None:
    prog, params, batch = setup()
    opt = pc.optim.Adam(lr=0.1)
    before = _snapshot(params, opt)
    with pytest.raises(pc.FeedError, match="read-only mappingproxy"):
        prog.train_step(types.MappingProxyType(params), batch, optimizer=opt)
    assert _unchanged(params, opt, before)


@pytest.mark.parametrize("make", [lambda: pc.optim.SGD(lr=0.1, momentum=0.9), pc.optim.Adam])
def test_optimiser_state_of_the_wrong_shape_is_refused_before_anything_changes(make) -> None:  # noqa: ANN001
    prog, params, batch = setup()
    opt = make()
    prog.train_step(params, batch, optimizer=opt)
    key = next(k for k in opt.state if k.endswith("/W1"))
    opt.state[key] = np.zeros((2, 2), dtype=np.float32)
    before = _snapshot(params, opt)
    with pytest.raises(pc.OptionError, match=rf"state entry '{key}' .* shape \(2, 2\)"):
        prog.train_step(params, batch, optimizer=opt)
    assert _unchanged(params, opt, before)


def test_optimiser_state_for_another_dtype_or_parameter_is_refused() -> None:
    prog, params, batch = setup()
    opt = pc.optim.SGD(lr=0.1, momentum=0.9)
    prog.train_step(params, batch, optimizer=opt)
    opt.state["v/W0"] = opt.state["v/W0"].astype(np.float64)
    with pytest.raises(pc.OptionError, match="dtype float64"):
        prog.train_step(params, batch, optimizer=opt)
    opt.state["v/W0"] = opt.state["v/W0"].astype(np.float32)
    opt.state["v/nope"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(pc.OptionError, match="no parameter 'nope'"):
        prog.train_step(params, batch, optimizer=opt)


@pytest.mark.parametrize(
    "data, match",
    [
        (None, "needs a state_dict"),
        ({"type": "Adam", "state": {}}, "for 'Adam', not SGD"),
        ({"type": "SGD", "state": [1, 2]}, "'state' must be a mapping"),
        ({"type": "SGD", "state": {"step": -1}}, "'step' must be an int >= 0"),
        ({"type": "SGD", "state": {"step": True}}, "'step' must be an int >= 0"),
        ({"type": "SGD", "state": {"step": 1, "m/W0": np.zeros(2)}}, "unknown entry 'm/W0'"),
        ({"type": "SGD", "state": {"step": 1, "v/W0": "zeros"}}, "must be a float array"),
    ],
)
def test_malformed_optimiser_state_is_refused_when_loaded(data: object, match: str) -> None:
    opt = pc.optim.SGD(lr=0.1, momentum=0.9)
    with pytest.raises(pc.OptionError, match=match):
        opt.load_state_dict(data)  # type: ignore[arg-type]
    assert opt.state == {"step": 0}


def test_a_checkpoint_whose_optimiser_state_does_not_fit_the_graph_is_refused(tmp_path) -> None:  # noqa: ANN001
    prog, params, batch = setup()
    opt = pc.optim.Adam(lr=0.1)
    prog.train_step(params, batch, optimizer=opt)
    state = opt.state_dict()
    state["state"]["m/W1"] = np.zeros((3, 3), dtype=np.float32)
    path = pc.save(tmp_path / "ck.npz", params, state, program=prog)
    with pytest.raises(pc.FileFormatError, match=r"optimiser state 'm/W1' has shape \(3, 3\)"):
        pc.load(path, prog)
    state["state"]["m/W1"] = np.zeros((5, 4), dtype=np.float32)
    state["state"]["m/ghost"] = np.zeros(2, dtype=np.float32)
    path = pc.save(tmp_path / "ck2.npz", params, state, program=prog)
    with pytest.raises(pc.FileFormatError, match="no param 'ghost'"):
        pc.load(path, prog)
