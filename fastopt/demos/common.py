"""What the demos share: optional imports, the optimizers compared, figures and tables."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import fastopt
from fastopt.optim.optimizer import has_modes
from fastopt.rows import every_row

EXTRA_HINT = "pip install 'fastopt[demo]'  (or: pip install matplotlib scikit-learn)"

# Label -> (optimizer class, options other than lr). The order is the legends' and tables'.
# Only these are shown: each has a learning rate tuned in every demo (landscapes.LANDSCAPES,
# digits.LRS) and a colour of its own, and docs/gallery holds their committed output. A rule
# without an entry (AdamW today) stays out of the demos, its name refused by --optimizers as
# unknown, until it is given an entry, its learning rates and a colour: run at its defaults it
# would add untuned rows to the gallery's tables. Every optimizer steps its model's one flat
# buffer, so that LAMB's trust ratio and Adafactor's second moment (a full one: the buffer is a
# vector) are the whole model's. L-BFGS takes a closure (:func:`step`); a step of it is one
# iteration (``max_iter=1``) with torch's strong-Wolfe line search, which evaluates the model
# as often as it needs (a few times, where the others take one gradient per step), and
# remembers the last 10 curvature pairs.
# SparseAdam is given every row of the buffer (each element a row) as its row-sparse
# gradient. Muon, a rule of matrices, sees the buffer as one 1 × n matrix: its orthogonalised
# momentum is then the momentum's direction, normalised (the polar factor of a rank-one
# matrix), which shows its implementation, not what it does for a network's weight matrices;
# its default weight decay (0.1) is off, as the landscapes' minima are not at zero.
OPTIMIZERS: dict[str, tuple[type[Any], dict[str, Any]]] = {
    "SGD": (fastopt.SGD, {}),
    "Momentum": (fastopt.SGD, {"momentum": 0.9}),
    "Nesterov": (fastopt.SGD, {"momentum": 0.9, "nesterov": True}),
    "Adagrad": (fastopt.Adagrad, {}),
    "RMSprop": (fastopt.RMSprop, {}),
    "Adadelta": (fastopt.Adadelta, {}),
    "Adam": (fastopt.Adam, {}),
    "AMSGrad": (fastopt.Adam, {"amsgrad": True}),
    "Adamax": (fastopt.Adamax, {}),
    "NAdam": (fastopt.NAdam, {}),
    "Lion": (fastopt.Lion, {}),
    "ADOPT": (fastopt.ADOPT, {}),
    "AdEMAMix": (fastopt.AdEMAMix, {}),
    "LAMB": (fastopt.LAMB, {}),
    "Schedule-Free": (fastopt.AdamWScheduleFree, {}),
    "Adafactor": (fastopt.Adafactor, {}),
    "L-BFGS": (fastopt.LBFGS, {"max_iter": 1, "max_eval": 20, "history_size": 10,
                               "line_search_fn": "strong_wolfe"}),
    "Rprop": (fastopt.Rprop, {}),
    "ASGD": (fastopt.ASGD, {}),
    "LARS": (fastopt.LARS, {}),
    "Schedule-Free SGD": (fastopt.SGDScheduleFree, {}),
    "SparseAdam": (fastopt.SparseAdam, {}),
    "Muon": (fastopt.Muon, {"weight_decay": 0.0}),
}

# One colour per optimizer across every figure: matplotlib's tab10 for the first ten (kept as
# the gallery first had them), then the darkest entry of each of tab20b's five hues, its
# second blue and its second green, then tab20b's third gold, red and purple and the darkest
# blue, orange and green of tab20c.
COLOURS = dict(zip(OPTIMIZERS, [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#6b6ecf", "#8ca252",
    "#e7ba52", "#d6616b", "#ce6dbd", "#3182bd", "#e6550d", "#31a354",
], strict=True))


def make_optimizer(label: str, params: list[Any], lr: float) -> Any:
    """The optimizer ``label`` names, ready to train: a schedule-free rule starts in eval mode
    (as schedulefree's does), so it is put in train mode here; :func:`evaluating` switches."""
    cls, options = OPTIMIZERS[label]
    if _of_matrices(cls):
        params = [p.reshape(1, -1) for p in params]  # views: the steps update the arrays
    opt = cls(params, lr=lr, **options)
    if has_modes(opt):
        opt.train()
    return opt


def step(opt: Any, evaluate: Callable[[], tuple[float, list[Any]]]) -> float:
    """One step of ``opt``; ``evaluate()`` gives the loss and the gradients at the parameters'
    current values. A rule of gradients steps on one evaluation; L-BFGS calls it as often as
    its line search needs. Returns the loss where the step started."""
    if isinstance(opt, fastopt.LBFGS):
        return float(opt.step(evaluate))
    loss, grads = evaluate()
    rule = getattr(type(opt), "rule", None)
    if rule is not None and rule.gradient == "rows":  # every row, as a row-sparse gradient
        grads = [every_row(g) for g in grads]
    elif _of_matrices(type(opt)):
        grads = [g.reshape(1, -1) for g in grads]
    opt.step(grads)
    return loss


def _of_matrices(cls: type) -> bool:
    rule = getattr(cls, "rule", None)
    return rule is not None and rule.matrix is not None


@contextlib.contextmanager
def evaluating(opt: Any) -> Iterator[None]:
    """The parameters as the model is evaluated at, then back to where gradients are taken.

    A schedule-free rule (one with ``eval()``/``train()``) takes gradients at y but is evaluated
    at the average x: its parameters hold x inside the block and y again after it. The other
    rules have one point, left as it is."""
    switch = has_modes(opt)
    if switch:
        opt.eval()
    try:
        yield
    finally:
        if switch:
            opt.train()


def select(labels: Sequence[str] | None) -> list[str]:
    """The optimizers to run, in the canonical order; all of them when ``labels`` is None."""
    if labels is None:
        return list(OPTIMIZERS)
    by_name = {name.lower(): name for name in OPTIMIZERS}
    unknown = [label for label in labels if label.lower() not in by_name]
    if unknown:
        raise ValueError(f"optimizers: unknown {unknown}; choose from {list(OPTIMIZERS)}")
    wanted = {by_name[label.lower()] for label in labels}
    return [name for name in OPTIMIZERS if name in wanted]


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or exit with a message naming the extra that has it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SystemExit(
            f"fastopt demo: {purpose} needs {module.split('.')[0]}, which is not installed.\n"
            f"Install the demo extra: {EXTRA_HINT}"
        ) from None


def figure(*subplots: int, size: tuple[float, float]) -> tuple[Any, Any]:
    """A matplotlib Figure (no pyplot: no global state, no display needed) and its axes."""
    require("matplotlib", "plotting")
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots(*subplots) if subplots else fig.subplots()


def save(fig: Any, out: Path, name: str, dpi: int = 90) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, dpi=dpi, metadata={"Software": None})  # no version stamp: stable bytes
    print(f"wrote {path}")
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table with padded columns: readable in a terminal, pasteable into a README."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_table(out: Path, name: str, title: str, table: str) -> None:
    print(f"\n{title}\n{table}\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(f"{title}\n\n{table}\n")
