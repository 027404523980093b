"""A short demonstration: a small NumPy network learns a 1-D function with fastopt.Adam.

The whole model lives in one flat buffer and its gradients in another of the same layout
(both from ``fastopt.flatten``), so the optimizer sees a single segment and every step is one
kernel call over contiguous memory.
"""

from __future__ import annotations

import time

import numpy as np

import fastopt


def train(steps: int = 2000, hidden: int = 64, seed: int = 0, every: int = 200) -> float:
    """Fit ``y = sin(3x)`` on [-1, 1] with a tanh network; print the loss; return the last."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, 256, dtype=np.float32)[:, None]
    y = np.sin(3 * x)
    flat, (w1, b1, w2, b2) = fastopt.flatten([
        rng.standard_normal((1, hidden)).astype(np.float32),  # fan-in 1: unit variance
        np.zeros(hidden, np.float32),
        (rng.standard_normal((hidden, 1)) / np.sqrt(hidden)).astype(np.float32),
        np.zeros(1, np.float32),
    ])
    grad, (gw1, gb1, gw2, gb2) = fastopt.flatten([np.zeros_like(a) for a in (w1, b1, w2, b2)])
    opt = fastopt.Adam([flat], lr=1e-2)
    print(f"fastopt {fastopt.__version__}: Adam fits sin(3x) with a {hidden}-unit tanh network "
          f"({flat.size} parameters, {fastopt.get_num_threads()} threads)")
    start = time.perf_counter()
    for step in range(1, steps + 1):
        h = np.tanh(x @ w1 + b1)
        err = h @ w2 + b2 - y
        loss = float(np.mean(err**2))
        d_out = 2 * err / len(x)
        np.matmul(h.T, d_out, out=gw2)
        gb2[...] = d_out.sum(axis=0)
        d_h = (d_out @ w2.T) * (1 - h * h)
        np.matmul(x.T, d_h, out=gw1)
        gb1[...] = d_h.sum(axis=0)
        opt.step([grad])
        if step % every == 0 or step == 1:
            print(f"step {step:5d}  loss {loss:.6f}")
    print(f"{steps} steps in {time.perf_counter() - start:.2f} s")
    return loss
