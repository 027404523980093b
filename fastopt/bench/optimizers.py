"""What the benchmark runs, per optimizer, derived from the rules (:mod:`fastopt.rules`).

A rule added there is benchmarked with no change here: its name joins :data:`NAMES` (the
choices and default of ``--optimizers``), its ``bench`` hyper-parameters become its
:data:`OPTIONS`, its state roles in use with them its :data:`ACCESS` (the roofline probe's
arrays and the GB/s column), and its ``torch_name`` the class it is compared with
(:func:`torch_class`; a rule torch lacks shows '-' in the torch columns). A rule of matrices
(Muon) steps each case's elements as one wide matrix, a rule of row-sparse gradients
(SparseAdam) as an embedding table (:func:`case_shape`); both are left out of
the model-shaped and torch training steps, whose tensors are not all matrices; so is a rule of
row-sparse gradients (SparseAdam), as their gradients are dense; so are the rules outside
the engine (:data:`OUTSIDE`).
"""

from __future__ import annotations

from typing import Any

from ..rules import RULES

# The two rules outside the engine (:mod:`.outside`: Adafactor's factored second moment,
# L-BFGS's closure and history) and their benchmark options: L-BFGS one iteration a step,
# without line search, over 10 curvature pairs (SciPy's default; torch's 100 would hold 200
# vectors), at a rate that keeps the benchmark's quadratic from converging in its warm-up.
OUTSIDE: dict[str, dict[str, Any]] = {
    "Adafactor": {}, "LBFGS": {"lr": 0.1, "max_iter": 1, "history_size": 10}}
NAMES: tuple[str, ...] = (*RULES, *OUTSIDE)
# Hyper-parameters benchmarked (otherwise the defaults): the configurations people run.
OPTIONS: dict[str, dict[str, Any]] = {
    **{name: dict(rule.bench) for name, rule in RULES.items()}, **OUTSIDE}
# Arrays a step reads and writes per element with those hyper-parameters: (reads, writes).
# Every optimizer reads the parameter and the gradient and writes the parameter; the rest is
# the state roles those hyper-parameters use (SGD's momentum_buffer only with momentum).
ACCESS: dict[str, tuple[int, int]] = {
    name: rule.access(rule.check_group(rule.defaults(**rule.bench)))
    for name, rule in RULES.items()
}


def case_shape(name: str, size: int) -> tuple[int, ...]:
    """The shape a case of ``size`` elements has: one flat tensor; for a rule of matrices a
    wide matrix of at most 32 rows (the largest such divisor of ``size``), so that the time
    of its element-wise passes shows beside that of its matrix products, which grows with the
    rows squared times the columns; for a rule of row-sparse gradients an embedding table of
    rows of at most 64 elements (the largest such divisor), every row in each gradient."""
    rule = RULES[name]
    if rule.gradient == "rows":
        width = max(k for k in range(1, 65) if size % k == 0)
        return (size // width, width)
    if rule.matrix is None:
        return (size,)
    rows = max(k for k in range(1, 33) if size % k == 0)
    return (rows, size // rows)


def torch_class(name: str) -> type | None:
    """``torch.optim``'s class for optimizer ``name``: None where torch is not installed or
    has no such rule."""
    torch_name = RULES[name].torch_name if name in RULES else name  # OUTSIDE: torch's names
    if torch_name is None:
        return None
    try:
        import torch
    except ImportError:
        return None
    return getattr(torch.optim, torch_name, None)  # a rule of a later torch than this one
