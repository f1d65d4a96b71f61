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


def torch_rules() -> dict:
    """op name -> f(*tensors, lead=..., **canonical per-example attrs) on torch tensors."""
    torch = _torch()
    F = torch.nn.functional

    def ax(a: Any, lead: int) -> Any:
        return tuple(i + lead for i in a) if isinstance(a, tuple) else a + lead

    def sce(z: Any, y: Any, lead: int) -> Any:
        logp = F.log_softmax(z, dim=-1)
        if y.dtype == torch.int64:
            picked = torch.gather(logp, -1, y.unsqueeze(-1))
            return -picked.reshape(z.shape[0], -1).sum(1)
        return -(y * logp).reshape(z.shape[0], -1).sum(1)

    def layer_norm(x: Any, lead: int, axis: tuple, eps: float) -> Any:
        dims = ax(axis, lead)
        if dims != tuple(range(x.ndim - len(dims), x.ndim)):
            raise NotImplementedError("layer_norm over non-trailing axes")
        return F.layer_norm(x, x.shape[x.ndim - len(dims) :], eps=eps)

    def take(x: Any, lead: int, start: int, stop: int, step: int, axis: int = 0) -> Any:
        key = (slice(None),) * (axis + lead) + (slice(start, stop, step),)
        return x[key]

    return {
        "add": lambda a, b, lead: a + b,
        "sub": lambda a, b, lead: a - b,
        "mul": lambda a, b, lead: a * b,
        "div": lambda a, b, lead: a / b,
        "neg": lambda a, lead: -a,
        "relu": lambda a, lead: torch.relu(a),
        "tanh": lambda a, lead: torch.tanh(a),
        "sigmoid": lambda a, lead: torch.sigmoid(a),
        "exp": lambda a, lead: torch.exp(a),
        "log": lambda a, lead: torch.log(a),
        "gelu": lambda a, lead: F.gelu(a, approximate="tanh"),
        "identity": lambda a, lead: a,
        "matmul": lambda a, b, lead: torch.matmul(a, b),
        "linear": lambda x, w, b, lead: (
            torch.addmm(b, x, w) if x.ndim == 2 else torch.matmul(x, w) + b
        ),
        "sum": lambda a, lead, axis, keepdims: a.sum(dim=ax(axis, lead), keepdim=keepdims),
        "mean": lambda a, lead, axis, keepdims: a.mean(dim=ax(axis, lead), keepdim=keepdims),
        "softmax": lambda a, lead, axis: torch.softmax(a, dim=axis + lead),
        "reshape": lambda a, lead, shape: a.reshape(tuple(a.shape[:lead]) + shape),
        "transpose": lambda a, lead, axes: a.permute(*range(lead), *ax(axes, lead)),
        "index": lambda a, lead, i: a[(slice(None),) * lead + (i,)],
        "slice": take,
        "concat": lambda *xs, lead, axis: torch.cat(xs, dim=axis + lead),
        "mse": lambda p, y, lead: 0.5 * ((p - y) ** 2).reshape(p.shape[0], -1).sum(1),
        "softmax_cross_entropy": sce,
        "layer_norm": layer_norm,
        "conv2d": lambda x, w, lead, stride, padding, dilation, groups: F.conv2d(
            x, w, stride=stride, padding=padding, dilation=dilation, groups=groups
        ),
        "max_pool2d": lambda x, lead, kernel, stride, padding: F.max_pool2d(
            x, kernel, stride=stride, padding=padding
        ),
        "avg_pool2d": lambda x, lead, kernel, stride, padding: F.avg_pool2d(
            x, kernel, stride=stride, padding=padding
        ),
        "global_avg_pool": lambda x, lead: x.mean(dim=(-2, -1)),
    }


class TorchPeer:
    """A compiled pcgraph Program re-run in PyTorch with the same weights."""

    def __init__(self, program: Any, params: dict, lr: float = 0.01, device: str = "cpu") -> None:
        torch = _torch()
        self.torch = torch
        self.device = device
        self.c = program.compiled
        self.rules = torch_rules()
        missing = sorted({s.op for s in self.c.nodes.values() if s.op and s.op not in self.rules})
        if missing:
            raise NotImplementedError(f"no PyTorch rule for {', '.join(missing)}")
        dtype = getattr(torch, program.dtype)
        self.dtype = dtype
        self.params = {
            k: torch.tensor(np.asarray(v), dtype=dtype, device=device, requires_grad=True)
            for k, v in params.items()
        }
        self.consts = {
            n: torch.tensor(np.asarray(s.value), dtype=dtype, device=device)
            for n, s in self.c.nodes.items()
            if s.kind == "const"
        }
        self.opt = torch.optim.SGD(list(self.params.values()), lr=lr)

    def feed(self, batch: dict) -> dict:
        out = {}
        for k, v in batch.items():
            arr = np.asarray(v)
            out[k] = self.torch.from_numpy(
                arr
                if arr.dtype.kind in "iu"
                else arr.astype(np.dtype(str(self.dtype).split(".")[-1]))
            ).to(self.device)
        return out

    def loss(self, feeds: dict) -> Any:
        values = {**feeds, **self.params, **self.consts}
        for name, spec in self.c.nodes.items():
            if spec.op is None:
                continue
            values[name] = self.rules[spec.op](
                *[values[o] for o in spec.operands], lead=int(spec.batched), **spec.attrs
            )
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
        return {k: p.grad.cpu().numpy().copy() for k, p in self.params.items()}
