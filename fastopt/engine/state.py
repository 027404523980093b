"""Checking one parameter's saved state against a rule, whoever saved it.

A state entry is torch's per-parameter dict: ``step`` (for rules that count steps), scalar
state (NAdam's ``mu_product``) and one array per state role in use (for a role kept in 8 bits,
its codes and, under ``<role>_absmax``, its blocks' scales). The front ends turn their
own objects into numbers and arrays (``number``, ``array``); what an entry must hold is checked
here, once, for both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from .. import validation
from ..rules import Rule
from ..rules.base import Hypers
from ..rules.storage import COMPENSATION, scale_key


class Loaded(NamedTuple):
    """A checked entry: the step count, the scalar state, and the arrays by role."""

    step: int
    scalars: dict[str, np.floating]
    arrays: dict[str, Any]


EMPTY = Loaded(0, {}, {})


def check_entry(rule: Rule, where: str, entry: Any, h: Hypers,
                number: Callable[[str, Any], Any],
                array: Callable[[str, str, Any], Any], strict: bool = True,
                counts_steps: bool | None = None) -> Loaded:
    """Check a parameter's entry for steps with hyper-parameters ``h``, in a group that counts
    steps if ``counts_steps`` (default: if the rule does; see ``Group.counts_steps``).

    ``number(name, value)`` returns the plain number a value holds (a 0-d tensor's, say);
    ``array(name, role, value)`` returns the value as the front end will copy it, or raises.
    Keys the rule does not know are refused if ``strict``, else left to their owner (torch
    lets tools keep their own entries in an optimizer's state). Raises ValueError/TypeError
    naming ``where`` and the entry's key.
    """
    if not isinstance(entry, Mapping):
        raise TypeError(f"{where}: expected a dict, got {type(entry).__name__}")
    counts_steps = rule.counts_steps if counts_steps is None else counts_steps
    keys = (*rule.role_names, COMPENSATION, *map(scale_key, rule.role_names))
    allowed = {*keys, *(s.name for s in rule.scalars), *(("step",) if counts_steps else ())}
    if not allowed & set(entry):
        if strict and entry:
            raise ValueError(f"{where}: unknown state entries {sorted(entry, key=str)}; "
                             f"expected some of {sorted(allowed)}")
        return EMPTY
    unknown = set(entry) - allowed
    if unknown and strict:
        raise ValueError(f"{where}: unknown state entries {sorted(unknown, key=str)}; expected "
                         f"some of {sorted(allowed)}")
    step = 0
    if counts_steps:
        if "step" not in entry:
            raise ValueError(f"{where}: the state entry 'step' is missing")
        step = validation.step_count(f"{where}['step']", number(f"{where}['step']", entry["step"]))
    scalars = {}
    for spec in rule.scalars:
        name = f"{where}[{spec.name!r}]"
        if spec.name in entry:
            scalars[spec.name] = spec.check(name, number(name, entry[spec.name]))
        elif step:
            raise ValueError(f"{where}: the state entry {spec.name!r} is missing")
    arrays = {key: array(f"{where}[{key!r}]", key, entry[key])
              for key in keys if entry.get(key) is not None}
    # A rule that counts steps has all its state from its first step on; SGD's momentum
    # buffer may be absent (it then starts as the next gradient).
    missing = set(rule.roles_used(h)) - set(arrays) if step else set()
    if missing:
        raise ValueError(f"{where}: the state entries {sorted(missing)} are missing")
    return Loaded(step, scalars, arrays)
