"""The update rules, one definition each (see :mod:`fastopt.rules.base`).

Every module of this package but ``base`` (what a rule is) and ``storage`` (the storage options
every rule takes) defines ``RULES``, a tuple of :class:`Rule`; they are collected here, in
alphabetical order of their names, and everything else in fastopt derives its optimizers from
this catalogue.
"""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np

from . import storage
from .base import Hyper, Role, Rule, Scalar


def _collect() -> dict[str, Rule]:
    rules: list[Rule] = []
    for module in pkgutil.iter_modules(__path__):
        if module.name not in ("base", "storage"):
            rules += importlib.import_module(f"{__name__}.{module.name}").RULES
    return {rule.name: rule for rule in sorted(rules, key=lambda rule: rule.name.casefold())}


RULES: dict[str, Rule] = _collect()


def table() -> str:
    """The catalogue as a Markdown table (the README's, between its ``<!-- rules -->``
    markers): class, rule, arguments with their defaults, state per parameter, source."""
    rows = ["| class | rule | arguments (defaults) | state per parameter | as in |",
            "|---|---|---|---|---|"]
    shared = {h.name for h in storage.hypers()}  # every rule's: said once, under the table
    for rule in RULES.values():
        arguments = ", ".join(f"{h.name}={h.default!r}" for h in rule.arguments
                              if h.name not in shared)
        state = [*(["`step`"] if rule.counts_steps else []),
                 *(f"`{s.name}` ({np.dtype(s.dtype).name})" for s in rule.scalars),
                 *(f"`{r.name}`" + (f" ({r.when})" if r.when else "") for r in rule.roles)]
        rows.append(f"| `{rule.name}` | {rule.summary} | `{arguments}` | {', '.join(state)} "
                    f"| `{rule.source}` |")
    return "\n".join(rows)


__all__ = ["RULES", "Rule", "Hyper", "Role", "Scalar", "table"]
