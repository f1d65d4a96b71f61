"""The NumPy floor: the zoo's relu MLP trained by a hand-written NumPy backprop + SGD step.

No executor can do less work than this on NumPy; ``PreallocatedMlpStep`` adds every trick NumPy
allows (buffers made once, ``out=``, the update applied as each gradient is made), a ceiling.
"""

from __future__ import annotations

import numpy as np


def mlp_layers(params: dict) -> list[str]:
    """The zoo MLP's layer names (``fc0``, ``fc1``, ...) in order."""
    return sorted({k.split(".")[0] for k in params}, key=lambda n: int(n[2:]))


def numpy_mlp_step(params: dict, x: np.ndarray, y: np.ndarray, lr: float = 1e-3) -> float:
    """One backprop + SGD step of the relu MLP with parameters ``fc{i}.W`` (in, out) and
    ``fc{i}.b``, in place; returns the batch-mean loss (as a training loop reports it)."""
    layers = mlp_layers(params)
    acts, h = [x], x
    for i, layer in enumerate(layers):
        z = h @ params[f"{layer}.W"] + params[f"{layer}.b"]
        h = np.maximum(z, 0) if i < len(layers) - 1 else z
        acts.append(h)
    shifted = h - h.max(1, keepdims=True)
    p = np.exp(shifted)
    total = p.sum(1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))
    p /= total
    p[rows, y] -= 1
    g = p / len(y)
    for i in reversed(range(len(layers))):
        a, w = acts[i], params[f"{layers[i]}.W"]
        gw, gb = a.T @ g, g.sum(0)
        if i:
            g = (g @ w.T) * (a > 0)
        w -= lr * gw
        params[f"{layers[i]}.b"] -= lr * gb
    return loss


class PreallocatedMlpStep:
    """``numpy_mlp_step``'s arithmetic into buffers made once (``out=``), the bias gradient as a
    GEMV, the update applied as each layer's gradient is made.  A ceiling on what any NumPy
    executor can reach, not a design a general one could adopt as is (it knows the network)."""

    def __init__(self, params: dict, batch: int) -> None:
        layers = mlp_layers(params)
        self.W = [params[f"{n}.W"] for n in layers]
        self.b = [params[f"{n}.b"] for n in layers]
        f32 = self.W[0].dtype
        widths = [w.shape[1] for w in self.W]
        self.z = [np.empty((batch, n), f32) for n in widths]  # pre-activations
        self.h = [np.empty((batch, n), f32) for n in widths[:-1]]  # relu outputs
        self.g = [np.empty((batch, n), f32) for n in widths]  # cotangents of z
        self.mask = [np.empty((batch, n), f32) for n in widths[:-1]]
        self.gW = [np.empty_like(w) for w in self.W]
        self.gb = [np.empty_like(b) for b in self.b]
        self.row = np.empty((batch, 1), f32)
        self.ones = np.ones(batch, f32)
        self.rows = np.arange(batch)

    def __call__(self, x: np.ndarray, y: np.ndarray, lr: float = 1e-3) -> float:
        W, b, z, h, g = self.W, self.b, self.z, self.h, self.g
        last = len(W) - 1
        for i in range(last + 1):
            np.matmul(x if i == 0 else h[i - 1], W[i], out=z[i])
            z[i] += b[i]
            if i < last:
                np.maximum(z[i], 0, out=h[i])
        p = g[last]
        np.subtract(z[last], np.max(z[last], axis=1, keepdims=True, out=self.row), out=p)
        picked = p[self.rows, y]
        np.exp(p, out=p)
        np.sum(p, axis=1, keepdims=True, out=self.row)
        loss = float(np.mean(np.log(self.row[:, 0]) - picked))
        p /= self.row
        p[self.rows, y] -= 1
        p *= p.dtype.type(1 / len(y))
        rate = W[0].dtype.type(lr)
        for i in reversed(range(last + 1)):
            np.matmul((x if i == 0 else h[i - 1]).T, g[i], out=self.gW[i])
            np.matmul(self.ones, g[i], out=self.gb[i])
            if i:
                np.matmul(g[i], W[i].T, out=g[i - 1])
                np.greater(z[i - 1], 0, out=self.mask[i - 1])
                g[i - 1] *= self.mask[i - 1]
            self.gW[i] *= rate
            W[i] -= self.gW[i]
            self.gb[i] *= rate
            b[i] -= self.gb[i]
        return loss


def mlp_flops(sizes: tuple, batch: int) -> float:
    """FLOPs of one backprop step: forward, weight and input gradients (none into the data)."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    fwd = sum(2 * batch * a * b for a, b in pairs)
    return fwd + fwd + (fwd - 2 * batch * pairs[0][0] * pairs[0][1])
