"""The update rules, one definition each (see :mod:`fastopt.rules.base`).

Every module of this package but ``base`` defines ``RULES``, a tuple of :class:`Rule`; they are
collected here, in alphabetical order of their names, and everything else in fastopt derives
its optimizers from this catalogue.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Hyper, Role, Rule, Scalar


def _collect() -> dict[str, Rule]:
    rules: list[Rule] = []
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            rules += importlib.import_module(f"{__name__}.{module.name}").RULES
    return {rule.name: rule for rule in sorted(rules, key=lambda rule: rule.name.casefold())}


RULES: dict[str, Rule] = _collect()

__all__ = ["RULES", "Rule", "Hyper", "Role", "Scalar"]
