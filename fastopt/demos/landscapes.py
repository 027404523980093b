"""Every optimizer from one start on three 2-D functions: a path per optimizer over contour
lines (one PNG per function) and a table of the steps each needs to reach a tolerance.

The functions show three things an optimizer has to cope with: an elongated quadratic
(curvatures 0.2 and 4: plain gradient descent zig-zags along the steep axis and crawls along
the flat one), Rosenbrock's curved valley, and a saddle (gradient zero along the ridge, so
escaping it depends on how small gradients are scaled up).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .common import (
    COLOURS, evaluating, figure, make_optimizer, markdown_table, save, select, step,
    write_table,
)


@dataclasses.dataclass(frozen=True)
class Landscape:
    name: str
    title: str
    f: Callable[[np.ndarray, np.ndarray], np.ndarray]  # elementwise over x and y
    grad: Callable[[np.ndarray], np.ndarray]
    start: tuple[float, float]
    done: Callable[[float], bool]  # on f(x, y): the tolerance reached
    goal: str  # the tolerance, in words, for the table
    box: tuple[float, float, float, float]  # x_min, x_max, y_min, y_max of the plot
    levels: np.ndarray
    max_steps: int
    # Per optimizer, tuned by hand to be good rather than best. Adadelta's first steps are
    # about lr·sqrt(eps / E[g²]), tiny at its default lr = 1 on these scales, hence lr = 50
    # where that is stable; on Rosenbrock's valley only its default is. Lion, ADOPT, AdEMAMix,
    # LAMB, Schedule-Free, Rprop, ASGD, LARS, Schedule-Free SGD, SparseAdam and Muon: the
    # fewest steps over lr in {1, 2, 5} x 10^-5..10^1 (Lion on the quadratic: 0.1, as 0.5's 9
    # steps land on the minimum by luck of its sign steps; LARS, whose trust ratio scales its
    # steps by 1e-3, at or near the top of that range); on the saddle, where the fewest is one
    # step (a jump off the ridge), Adam's 0.05. Adafactor:
    # its step is relative, at most 1/√t of the point's RMS, so any lr from 1 up steps alike:
    # 1 (the quadratic's fewest, 332 steps; none reaches Rosenbrock's tolerance), and on the
    # saddle Adam's 0.05. L-BFGS: its default, 1, the fewest steps on each over {1, 0.5, 0.2,
    # 0.1} (its line search sets each step's length from there).
    lrs: dict[str, float]


def quadratic_grad(p: np.ndarray) -> np.ndarray:
    return np.array([0.2 * p[0], 4.0 * p[1]])


def rosenbrock_grad(p: np.ndarray) -> np.ndarray:
    x, y = p
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


def saddle_grad(p: np.ndarray) -> np.ndarray:
    return np.array([2 * p[0], -2 * p[1]])


LANDSCAPES = {
    "quadratic": Landscape(
        "quadratic", "f(x, y) = 0.1 x² + 2 y²",
        lambda x, y: 0.1 * x**2 + 2 * y**2, quadratic_grad,
        start=(-4.5, 1.5), done=lambda f: f < 1e-6, goal="f < 1e-6",
        box=(-5, 2, -2, 2), levels=np.geomspace(1e-3, 10, 12), max_steps=2000,
        lrs={"SGD": 0.4, "Momentum": 0.05, "Nesterov": 0.05, "Adagrad": 1.0, "RMSprop": 0.05,
             "Adadelta": 50.0, "Adam": 0.2, "AMSGrad": 0.2, "Adamax": 0.3, "NAdam": 0.2,
             "Lion": 0.1, "ADOPT": 2.0, "AdEMAMix": 1.0, "LAMB": 0.1, "Schedule-Free": 2.0,
             "Adafactor": 1.0, "L-BFGS": 1.0, "Rprop": 2.0, "ASGD": 0.2, "LARS": 10.0,
             "Schedule-Free SGD": 0.2, "SparseAdam": 1.0, "Muon": 0.02},
    ),
    "rosenbrock": Landscape(
        "rosenbrock", "Rosenbrock: f(x, y) = (1 − x)² + 100 (y − x²)²",
        lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2, rosenbrock_grad,
        start=(-1.5, 2.0), done=lambda f: f < 1e-4, goal="f < 1e-4",
        box=(-2, 2, -1, 3), levels=np.geomspace(1e-2, 1e3, 14), max_steps=20000,
        lrs={"SGD": 1e-3, "Momentum": 2e-4, "Nesterov": 2e-4, "Adagrad": 0.5, "RMSprop": 1e-3,
             "Adadelta": 1.0, "Adam": 5e-2, "AMSGrad": 5e-2, "Adamax": 0.1, "NAdam": 2e-2,
             "Lion": 1e-2, "ADOPT": 2.0, "AdEMAMix": 1.0, "LAMB": 2e-2, "Schedule-Free": 0.5,
             "Adafactor": 1.0, "L-BFGS": 1.0, "Rprop": 0.5, "ASGD": 2e-3, "LARS": 20.0,
             "Schedule-Free SGD": 1e-2, "SparseAdam": 2.0, "Muon": 1e-2},
    ),
    "saddle": Landscape(
        "saddle", "saddle: f(x, y) = x² − y²",
        lambda x, y: x**2 - y**2, saddle_grad,
        start=(1.5, 1e-3), done=lambda f: f < -1.0, goal="f < −1 (escaped)",
        box=(-2, 2, -2, 2), levels=np.linspace(-4, 4, 17), max_steps=1000,
        lrs={"SGD": 0.05, "Momentum": 0.01, "Nesterov": 0.01, "Adagrad": 0.5, "RMSprop": 0.01,
             "Adadelta": 50.0, "Adam": 0.05, "AMSGrad": 0.05, "Adamax": 0.05, "NAdam": 0.05,
             "Lion": 0.05, "ADOPT": 0.05, "AdEMAMix": 0.05, "LAMB": 0.05, "Schedule-Free": 0.05,
             "Adafactor": 0.05, "L-BFGS": 1.0, "Rprop": 0.05, "ASGD": 1.0, "LARS": 50.0,
             "Schedule-Free SGD": 2.0, "SparseAdam": 0.05, "Muon": 2.0},
    ),
}


@dataclasses.dataclass
class Run:
    path: np.ndarray  # (steps + 1, 2): the start, then the point after each step
    steps_to_goal: int | None  # None: not within max_steps


def descend(land: Landscape, label: str, max_steps: int | None = None) -> Run:
    """Run one optimizer from the landscape's start until the tolerance, ``max_steps``, or the
    point leaving the plot (diverged, or far past the saddle)."""
    p = np.array(land.start, dtype=np.float64)
    opt = make_optimizer(label, [p], land.lrs[label])
    x0, x1, y0, y1 = land.box
    margin = max(x1 - x0, y1 - y0)
    path, reached = [p.copy()], None
    for k in range(1, (max_steps or land.max_steps) + 1):
        step(opt, lambda: (float(land.f(*p)), [land.grad(p)]))
        with evaluating(opt):  # the path is the points the model would be evaluated at
            point = p.copy()
        path.append(point)
        if land.done(float(land.f(*point))):
            reached = k
            break
        if not (np.isfinite(point).all() and x0 - margin < point[0] < x1 + margin
                and y0 - margin < point[1] < y1 + margin):
            break
    return Run(np.array(path), reached)


def plot(land: Landscape, runs: dict[str, Run], out: Path) -> Path:
    fig, ax = figure(size=(7.0, 5.2))
    x0, x1, y0, y1 = land.box
    gx, gy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
    ax.contour(gx, gy, land.f(gx, gy), levels=land.levels, colors="0.75", linewidths=0.7)
    for label, run in runs.items():
        ax.plot(*run.path.T, color=COLOURS[label], lw=1.4, alpha=0.9,
                label=f"{label} (lr {land.lrs[label]:g})")
        ax.plot(*run.path[-1], "o", color=COLOURS[label], ms=3)
    ax.plot(*land.start, "k*", ms=11, label="start")
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="x", ylabel="y", title=land.title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save(fig, out, f"landscape_{land.name}.png")


def run(out: Path, optimizers: list[str] | None = None, max_steps: int | None = None,
        seed: int = 0) -> dict[str, dict[str, Run]]:
    """All landscapes; returns ``{landscape: {optimizer: Run}}``. Deterministic: no
    randomness at all (``seed`` is accepted for a uniform interface)."""
    labels = select(optimizers)
    results: dict[str, dict[str, Run]] = {}
    for land in LANDSCAPES.values():
        start = time.perf_counter()
        runs = results[land.name] = {}
        for label in labels:
            runs[label] = descend(land, label, max_steps)
            r = runs[label]
            reached = f"step {r.steps_to_goal}" if r.steps_to_goal else "not reached"
            print(f"{land.name:10s} {label:13s} {land.goal}: {reached:12s} "
                  f"final f {float(land.f(*r.path[-1])):.3g}")
        print(f"{land.name}: {len(labels)} optimizers in {time.perf_counter() - start:.2f} s")
        plot(land, runs, out)
    limit = max_steps
    rows = [[label] + [
        str(results[n][label].steps_to_goal) if results[n][label].steps_to_goal
        else f"> {limit or LANDSCAPES[n].max_steps}" if len(results[n][label].path) > (
            limit or LANDSCAPES[n].max_steps) else "diverged"
        for n in LANDSCAPES] for label in labels]
    headers = ["optimizer"] + [f"{n}: {LANDSCAPES[n].goal}" for n in LANDSCAPES]
    write_table(out, "landscapes.md", "Steps to reach the tolerance (same start per landscape)",
                markdown_table(headers, rows))
    return results
