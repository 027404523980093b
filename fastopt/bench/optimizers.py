"""What the benchmark runs, per optimizer, derived from the rules (:mod:`fastopt.rules`).

A rule added there is benchmarked with no change here: its name joins :data:`NAMES` (the
choices and default of ``--optimizers``), its ``bench`` hyper-parameters become its
:data:`OPTIONS`, its state roles in use with them its :data:`ACCESS` (the roofline probe's
arrays and the GB/s column), and its ``torch_name`` the class it is compared with
(:func:`torch_class`; a rule torch lacks shows '-' in the torch columns).
"""

from __future__ import annotations

from typing import Any

from ..rules import RULES

NAMES: tuple[str, ...] = tuple(RULES)
# Hyper-parameters benchmarked (otherwise the defaults): the configurations people run.
OPTIONS: dict[str, dict[str, Any]] = {name: dict(rule.bench) for name, rule in RULES.items()}
# Arrays a step reads and writes per element with those hyper-parameters: (reads, writes).
# Every optimizer reads the parameter and the gradient and writes the parameter; the rest is
# the state roles those hyper-parameters use (SGD's momentum_buffer only with momentum).
ACCESS: dict[str, tuple[int, int]] = {
    name: rule.access(rule.check_group(rule.defaults(**rule.bench)))
    for name, rule in RULES.items()
}


def torch_class(name: str) -> type | None:
    """``torch.optim``'s class for optimizer ``name``: None where torch is not installed or
    has no such rule."""
    torch_name = RULES[name].torch_name
    if torch_name is None:
        return None
    try:
        import torch
    except ImportError:
        return None
    return getattr(torch.optim, torch_name, None)  # a rule of a later torch than this one
