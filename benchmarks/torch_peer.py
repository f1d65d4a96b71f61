"""The peer: the same pcgraph graph and weights, run by PyTorch's CPU autograd.

Each op of the table is mapped to its PyTorch function; the graph is interpreted node by node
(as an ``nn.Module.forward`` would call the same functions), then ``loss.backward()`` and a
``torch.optim.SGD`` step.  Torch is a benchmark-only dependency.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _torch() -> Any:
    import torch

    return torch


def _shift(axis: Any, lead: int) -> Any:
    return tuple(a + lead for a in axis) if isinstance(axis, tuple) else axis + lead


def torch_rules() -> dict:
    """op name -> f(args, lowered attrs) on torch tensors."""
    torch = _torch()
    F = torch.nn.functional

    def sce(z: Any, y: Any) -> Any:
        if y.dtype == torch.int64:
            logp = F.log_softmax(z, dim=-1)
            return -torch.gather(logp, -1, y.unsqueeze(-1)).reshape(z.shape[0], -1).sum(1)
        return -(y * F.log_softmax(z, dim=-1)).reshape(z.shape[0], -1).sum(1)

    rules = {
        "add": lambda a, b: a + b,
        "sub": lambda a, b: a - b,
        "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b,
        "neg": lambda a: -a,
        "relu": torch.relu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "exp": torch.exp,
        "log": torch.log,
        "identity": lambda a: a,
        "matmul": torch.matmul,
        "sum": lambda a, axis, keepdims: a.sum(dim=axis, keepdim=keepdims),
        "mean": lambda a, axis, keepdims: a.mean(dim=axis, keepdim=keepdims),
        "softmax": lambda a, axis: torch.softmax(a, dim=axis),
        "reshape": lambda a, shape, lead: a.reshape(tuple(a.shape[:lead]) + shape),
        "transpose": lambda a, axes: a.permute(*axes),
        "index": lambda a, i, lead: a[(slice(None),) * lead + (i,)],
        "slice": lambda a, start, stop, step, lead: a[(slice(None),) * lead
                                                      + (slice(start, stop, step),)],
        "concat": lambda *xs, axis: torch.cat(xs, dim=axis),
        "mse": lambda p, y: 0.5 * ((p - y) ** 2).reshape(p.shape[0], -1).sum(1),
        "softmax_cross_entropy": sce,
        "conv2d": lambda x, w, stride, padding, dilation, groups, **_: F.conv2d(
            x, w, stride=stride, padding=padding, dilation=dilation, groups=groups),
        "max_pool2d": lambda x, kernel, stride, padding, **_: F.max_pool2d(
            x, kernel, stride=stride, padding=padding),
        "avg_pool2d": lambda x, kernel, stride, padding, **_: F.avg_pool2d(
            x, kernel, stride=stride, padding=padding),
        "layer_norm": lambda x, axis, eps, **_: F.layer_norm(x, x.shape[-1:], eps=eps)
        if axis in (-1, x.ndim - 1) else None,
    }
    return rules


class TorchPeer:
    """A compiled pcgraph Program re-run in PyTorch with the same weights."""

    def __init__(self, program: Any, params: dict, lr: float = 0.01) -> None:
        torch = _torch()
        self.torch = torch
        self.c = program.compiled
        self.rules = torch_rules()
        missing = sorted({s.op for s in self.c.nodes.values() if s.op and s.op not in self.rules})
        if missing:
            raise NotImplementedError(f"no PyTorch rule for {', '.join(missing)}")
        dtype = getattr(torch, program.dtype)
        self.dtype = dtype
        self.params = {k: torch.tensor(np.asarray(v), dtype=dtype, requires_grad=True)
                       for k, v in params.items()}
        self.consts = {n: torch.tensor(np.asarray(s.value), dtype=dtype)
                       for n, s in self.c.nodes.items() if s.kind == "const"}
        self.opt = torch.optim.SGD(list(self.params.values()), lr=lr)

    def feed(self, batch: dict) -> dict:
        out = {}
        for k, v in batch.items():
            arr = np.asarray(v)
            out[k] = self.torch.from_numpy(arr if arr.dtype.kind in "iu" else
                                           arr.astype(np.dtype(str(self.dtype).split(".")[-1])))
        return out

    def loss(self, feeds: dict) -> Any:
        values = {**feeds, **self.params, **self.consts}
        for name, spec in self.c.nodes.items():
            if spec.op is None:
                continue
            values[name] = self.rules[spec.op](*[values[o] for o in spec.operands],
                                               **spec.lowered)
        return values[self.c.loss].mean()

    def step(self, feeds: dict) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(feeds)
        loss.backward()
        self.opt.step()
        return loss.item()

    def grads(self, feeds: dict) -> dict:
        for p in self.params.values():
            p.grad = None
        self.loss(feeds).backward()
        return {k: p.grad.numpy().copy() for k, p in self.params.items()}
