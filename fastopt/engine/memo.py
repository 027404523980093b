"""Hyper-parameters checked at every step, remembered while they stay the same objects."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import is_, itemgetter
from typing import Any

from ..rules import Rule
from ..rules.base import Hypers

_IMMUTABLE = (bool, int, float, str, type(None))
Checked = tuple[Hypers, tuple[str, ...], int, float]


def _immutable(value: Any) -> bool:
    if type(value) is tuple:
        return all(_immutable(v) for v in value)
    return type(value) in _IMMUTABLE


class HyperMemo:
    """A rule's checked hyper-parameters, the roles they use, the kernel's mask of those
    roles and the gradient's sign (−1 to maximize), per group, remembered while
    the group's values are the very objects last checked (a step checks every group, and
    schedules change values between steps).

    Only immutable values are remembered, and by identity: a list changed in place, a tensor
    ``lr`` that a schedule fills in place, or a new value equal to the old, is checked again;
    where only some values changed (a schedule's ``lr``, schedule-free's step count), only
    those are (and the checks that involve several).
    """

    def __init__(self, rule: Rule, verify: Callable[[int, Hypers], None] | None = None) -> None:
        self.rule = rule
        self.verify = verify  # verify(g, h): what the group's owner refuses besides the rule
        self.keys = tuple(h.name for h in rule.hypers if not h.optional)
        self.optional = tuple((h.name, h.default) for h in rule.hypers if h.optional)
        self.names = (*self.keys, *(name for name, _ in self.optional))  # of the values
        required = itemgetter(*self.keys) if len(self.keys) > 1 else (
            lambda group: (group[self.keys[0]],))
        every = itemgetter(*self.names) if len(self.names) > 1 else (
            lambda group: (group[self.names[0]],))

        def values(group: Mapping[str, Any]) -> tuple:
            try:  # the usual group: every value present (the front end fills in defaults)
                return every(group)
            except KeyError:  # a group may lack an optional one: it is then its default
                return (*required(group), *[group.get(k, d) for k, d in self.optional])

        self.values = required if not self.optional else values
        # group -> (its raw values, (checked hyper-parameters, roles used, their mask))
        self.memo: dict[int, tuple[tuple, Checked]] = {}

    def __call__(self, g: int, group: Mapping[str, Any]) -> Checked:
        values = self.values(group)
        checked = self.memo.get(g)
        # Identity, not equality: 1 == 1.0 == True, but a bool is no learning rate.
        if checked is not None and all(map(is_, values, checked[0])):
            return checked[1]
        if checked is not None:  # every value remembered is immutable: the new ones may not be
            changed = [i for i, (new, old) in enumerate(zip(values, checked[0])) if new is not old]
            h = self.rule.recheck(checked[1][0], group, [self.names[i] for i in changed])
            immutable = _immutable(tuple(values[i] for i in changed))
        else:
            h = self.rule.check_group(group)
            immutable = _immutable(values)
        if self.verify is not None:
            self.verify(g, h)
        roles = self.rule.roles_used(h)
        result = h, roles, self.rule.role_mask(roles), self.rule.sign(h)
        if immutable:
            self.memo[g] = (values, result)
        else:
            self.memo.pop(g, None)
        return result

    def wrote(self, g: int, group: Mapping[str, Any], entries: Mapping[str, Any]) -> None:
        """The step itself wrote ``entries`` into group ``g`` (schedule-free's progress, valid
        by construction): remember them as checked."""
        checked = self.memo.get(g)
        if checked is not None:
            h, *rest = checked[1]
            self.memo[g] = (self.values(group), (h._replace(**entries), *rest))

    def forget(self) -> None:
        self.memo.clear()
