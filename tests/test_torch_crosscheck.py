"""An independent check where PyTorch is installed (benchmarks only; skipped elsewhere): the zoo's
backprop gradients equal PyTorch autograd's on the same graph and weights."""

from __future__ import annotations

import pytest
from helpers import rel_err

import pcgraph as pc
from pcgraph.models import MODELS
from pcgraph.testing import random_batch

torch = pytest.importorskip("torch", reason="PyTorch is a benchmark-only dependency")
from benchmarks.torch_peer import TorchPeer  # noqa: E402

CONFIGS = {
    "mlp": {},
    "lenet": {},
    "rnn_many_to_one": {"T": 5},
    "lstm_many_to_one": {"T": 4},
    "transformer_encoder": {},
    "resnet": {"norm": None, "blocks": (1, 1), "widths": (4, 8)},
}


@pytest.mark.parametrize("name", CONFIGS)
def test_backprop_equals_pytorch_autograd(name: str) -> None:
    g = MODELS[name](**CONFIGS[name])
    prog = pc.compile(g, dtype="float64")
    params, batch = prog.init_params(0), random_batch(g, size=3)
    peer = TorchPeer(prog, params)
    theirs, ours = peer.grads(peer.feed(batch)), prog.grads(params, batch)
    assert max(rel_err(theirs[k], ours[k]) for k in ours) <= 1e-12
