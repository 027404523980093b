"""Batch size: full-batch gradient descent, SGD (one example per step) and mini-batch SGD
train the same logistic regression on scikit-learn's breast-cancer data; loss against epochs
and against seconds, in one PNG.

All three are ``fastopt.SGD`` with ``momentum=0``: they differ only in how many examples the
loop averages into each gradient, which trades steps per epoch against noise per step.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

import fastopt

from .common import figure, markdown_table, save, write_table
from .data import load_breast_cancer


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    batch: int | None  # None: the whole training set
    lr: float
    colour: str


METHODS = (
    Method("gradient descent", None, 0.5, "#1f77b4"),
    Method("SGD", 1, 0.01, "#d62728"),
    Method("mini-batch", 32, 0.1, "#2ca02c"),
)


@dataclasses.dataclass
class History:
    losses: list[float]  # training loss after each epoch, epoch 0 first
    seconds: list[float]  # training time (evaluation excluded) at the same points
    steps: int
    test_accuracy: float


def logistic_loss(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> float:
    z = x @ w + b[0]
    return float(np.mean(np.logaddexp(0.0, z) - y * z))  # -log σ(z) for y = 1, -log σ(-z) for 0


def train(method: Method, data: tuple[np.ndarray, ...], epochs: int, seed: int) -> History:
    x_train, y_train, x_test, y_test = (np.asarray(a, np.float64) for a in data)
    n, d = x_train.shape
    batch = method.batch or n
    flat, (w, b) = fastopt.flatten([np.zeros(d), np.zeros(1)])
    grad, (gw, gb) = fastopt.flatten([np.zeros(d), np.zeros(1)])
    opt = fastopt.SGD([flat], lr=method.lr)
    rng = np.random.default_rng(seed)
    losses, seconds, elapsed, steps = [logistic_loss(x_train, y_train, w, b)], [0.0], 0.0, 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(n)
        for i in range(0, n, batch):
            rows = order[i : i + batch]
            xb = x_train[rows]
            err = 1.0 / (1.0 + np.exp(-(xb @ w + b[0]))) - y_train[rows]  # σ(z) − y
            np.matmul(err, xb, out=gw)
            gw /= len(rows)
            gb[0] = err.mean()
            opt.step([grad])
            steps += 1
        elapsed += time.perf_counter() - start
        losses.append(logistic_loss(x_train, y_train, w, b))
        seconds.append(elapsed)
    accuracy = float(np.mean(((x_test @ w + b[0]) > 0) == (y_test > 0.5)))
    return History(losses, seconds, steps, accuracy)


def plot(histories: dict[Method, History], out: Path) -> Path:
    fig, (by_epoch, by_time) = figure(1, 2, size=(9.0, 3.6))
    for method, h in histories.items():
        label = f"{method.name} (batch {method.batch or 'all'}, lr {method.lr:g})"
        by_epoch.plot(range(len(h.losses)), h.losses, color=method.colour, label=label)
        by_time.plot(h.seconds[1:], h.losses[1:], color=method.colour, label=label)
    by_epoch.set(xlabel="epoch", ylabel="training loss (cross-entropy)", yscale="log",
                 title="loss against epochs")
    by_time.set(xlabel="seconds of training (after each epoch)", xscale="log", yscale="log",
                title="loss against time")
    by_epoch.legend(fontsize=8)
    fig.suptitle("Logistic regression on breast cancer (scikit-learn), fastopt.SGD")
    return save(fig, out, "batch_size.png")


def run(out: Path, epochs: int = 50, seed: int = 0) -> dict[str, History]:
    data = load_breast_cancer(seed)
    print(f"breast cancer: {len(data[0])} training, {len(data[2])} test examples, "
          f"{data[0].shape[1]} features; {epochs} epochs")
    histories = {}
    for method in METHODS:
        h = histories[method] = train(method, data, epochs, seed)
        print(f"{method.name:17s} {h.steps:6d} steps  loss {h.losses[0]:.4f} -> "
              f"{h.losses[-1]:.4f}  test accuracy {h.test_accuracy:.1%}  {h.seconds[-1]:.2f} s")
    plot(histories, out)
    rows = [[m.name, m.batch or len(data[0]), f"{m.lr:g}", h.steps, f"{h.losses[-1]:.4f}",
             f"{h.test_accuracy:.1%}", f"{h.seconds[-1]:.2f}"] for m, h in histories.items()]
    write_table(out, "batch_size.md", f"Logistic regression, {epochs} epochs",
                markdown_table(["method", "batch", "lr", "steps", "training loss",
                                "test accuracy", "seconds"], rows))
    return {m.name: h for m, h in histories.items()}
