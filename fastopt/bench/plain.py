"""The plain loop of each rule: the practical limit beside the roofline probe.

In cache a step's square roots and divisions, not its bytes, set the pace, so the byte probe
(:data:`.optimizers.ACCESS`) is no limit there. The limit a user could reach is the rule
written by hand as one OpenMP ``parallel for`` over the elements: ``fastopt/_kernels/plain.h``,
compiled into the kernels module with the kernels' flags and storage types. Its step scalars
are the rule's own kernel arguments (:meth:`fastopt.rules.Rule.args`), so no rule's
arithmetic is written twice in Python; a loop serves only the options it was written for
(:data:`LOOPS`), and a rule or options without one get None ('-' in the tables).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fastopt._kernels import kernels
from fastopt.rules import RULES

from .optimizers import OPTIONS

# rule -> (the loop in plain.h, the kernel arguments it takes in order, the kernel arguments
# it assumes: the options the hand-written loop leaves out)
PLAIN = {"grad_scale": 1.0}
LOOPS: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    "SGD": ("sgd", ("lr", "momentum"),
            {**PLAIN, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False, "first": False}),
    "Adagrad": ("adagrad", ("lr", "eps"), {**PLAIN, "weight_decay": 0.0}),
    "RMSprop": ("rmsprop", ("lr", "alpha", "eps"),
                {**PLAIN, "weight_decay": 0.0, "momentum": 0.0, "centered": False}),
    "Adam": ("adam", ("step_size", "bias2_sqrt", "beta1", "beta2", "eps", "decay"),
             {**PLAIN, "weight_decay": 0.0, "amsgrad": False}),
    "AdamW": ("adam", ("step_size", "bias2_sqrt", "beta1", "beta2", "eps", "decay"),
              {**PLAIN, "weight_decay": 0.0, "amsgrad": False}),
    "Adadelta": ("adadelta", ("lr", "rho", "eps"), {**PLAIN, "weight_decay": 0.0}),
    "Adamax": ("adamax", ("step_size", "beta1", "beta2", "eps"), {**PLAIN, "weight_decay": 0.0}),
    "NAdam": ("nadam", ("grad_coef", "avg_coef", "bias2", "beta1", "beta2", "eps"),
              {**PLAIN, "weight_decay": 0.0, "decay": 1.0}),
    "Lion": ("lion", ("lr", "beta1", "beta2"), {**PLAIN, "decay": 1.0}),
}


def scalars(name: str, t: int = 1, options: dict[str, Any] | None = None) -> tuple[float, ...] | None:
    """The plain loop's scalars for step ``t`` of rule ``name`` with ``options`` (default: its
    benchmark options); None where there is no loop for the rule or for those options."""
    if name not in LOOPS:
        return None
    rule = RULES[name]
    h = rule.check_group(rule.defaults(**(OPTIONS[name] if options is None else options)))
    if rule.access(h)[0] != kernels.PLAIN_ARRAYS[LOOPS[name][0]]:
        return None  # the options use other state than the loop reads
    state = rule.initial_scalars()
    for k in range(1, t + 1):
        state = rule.advance(h, k, state)
    args = rule.args(h, t, state, frozenset())
    _, takes, assumes = LOOPS[name]
    if any(args[key] != value for key, value in assumes.items()):
        return None
    return tuple(float(args[key]) for key in takes)


def plain_step(name: str, arrays: list[np.ndarray], threads: int,
               t: int = 1) -> Callable[[], None] | None:
    """One call of rule ``name``'s plain loop over ``arrays`` = [parameter, gradient, state...]
    on ``threads`` threads, with the scalars of step ``t`` (a loop's cost does not depend on
    them); None where the rule has no plain loop for its benchmark options."""
    values = scalars(name, t)
    if values is None:
        return None
    loop = LOOPS[name][0]
    return lambda: kernels.plain_loop(loop, arrays, values, threads)

