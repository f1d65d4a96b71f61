"""`make demo`: train a small MLP with backprop on a generated spiral data set; the loss falls."""

from __future__ import annotations

import numpy as np

import pcgraph as pc


def spirals(
    n_per_class: int = 200, classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved noisy spirals in the plane: a classic non-linear classification task."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n_per_class) + rng.normal(0, 0.2, n_per_class)
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(n_per_class, c))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def build(hidden: int = 64, classes: int = 3) -> pc.Graph:
    g = pc.Graph("spiral-mlp")
    x = g.input("x", (2,))
    y = g.target("y", (), dtype="int64")
    h = pc.tanh(x @ g.param("W1", (2, hidden)) + g.param("b1", (hidden,)))
    h = pc.tanh(h @ g.param("W2", (hidden, hidden)) + g.param("b2", (hidden,)))
    logits = h @ g.param("W3", (hidden, classes)) + g.param("b3", (classes,))
    g.set_loss(pc.softmax_cross_entropy(logits, y))
    return g


def main() -> None:
    X, Y = spirals()
    g = build()
    prog = pc.compile(g)
    params = prog.init_params(seed=0)
    rng = np.random.default_rng(0)
    lr, batch = 0.5, 32
    print(f"{prog}\ntraining with backprop on {len(X)} spiral points, batch {batch}, lr {lr}")
    for epoch in range(1, 31):
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch):
            idx = order[start : start + batch]
            grads = prog.grads(params, {"x": X[idx], "y": Y[idx]}, algorithm="bp")
            for name in params:
                params[name] = params[name] - lr * grads[name]
        if epoch % 5 == 0 or epoch == 1:
            loss = prog.loss(params, {"x": X, "y": Y})
            logits = pc.to_numpy(prog.evaluate(params, {"x": X}, g.node("add_2")))
            acc = float(np.mean(np.argmax(logits, axis=1) == Y))
            print(f"epoch {epoch:3d}  loss {loss:.4f}  accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
