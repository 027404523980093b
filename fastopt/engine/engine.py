"""The engine: one rule's groups of parameters, stepped one kernel call per run of parameters
that step together, with the state every front end shares."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import clip
from .._kernels import kernels
from ..rules import Rule
from ..rules.base import Hypers
from ..rules.storage import storage_of
from .group import Group, Run, Slot
from .memo import Checked, HyperMemo

# bind(g, run, table, slots): point ``table`` (one of ``run``'s) at the gradients of group g's
# ``slots``, validating them first (raise, and nothing has changed).
Binder = Callable[[int, Run, Any, list[int]], None]


class Engine:
    """Groups of parameters under one :class:`~fastopt.rules.Rule`.

    A front end registers each group's parameters as :class:`Slot`\\ s and, at every step,
    says which of them have a gradient and how to bind it; the engine does the rest: lazy state,
    step counts and scalar state per parameter, and one kernel call per run of parameters that
    share a dtype and a step status (usually one per group).
    """

    def __init__(self, rule: Rule, step_dtype: Any = np.float64) -> None:
        self.rule = rule
        self.kernel = kernels.KERNELS.index(rule.kernel)
        self.step_dtype = np.dtype(step_dtype)
        self.groups: list[Group] = []
        self.memo = HyperMemo(rule, self.fixed)
        self.changes = [0]  # counts every change of any group's state memory (Group.version)

    def add_group(self, slots: list[Slot], h: Hypers, members: Iterable[int] | None = None) -> Group:
        """A new group over ``slots``; state is laid out over ``members`` (default: all) and
        grows to cover any other slot once it steps. Roles the rule creates with the optimizer
        (torch's Adagrad) are initialised for every slot now."""
        everyone = range(len(slots))
        at_construction = self.rule.roles_at_construction(h)
        group = Group(self.rule, slots, self.step_dtype,
                      everyone if members is None or at_construction else members, self.changes,
                      storage_of(h), len(self.groups))
        for run in group.runs:
            if at_construction:
                group.ensure(run, run.slots, at_construction, h)
        self.groups.append(group)
        return group

    def fixed(self, g: int, h: Hypers) -> None:
        """Refuse changed storage options: a group's are those it was laid out with."""
        if g < len(self.groups):
            self.groups[g].storage.check_same(f"param_groups[{g}]", storage_of(h))

    @property
    def version(self) -> int:
        """Changes whenever any group's state memory does (a front end's memory guard)."""
        return self.changes[0]

    def check(self, param_groups: Sequence[Mapping[str, Any]]) -> list[Checked]:
        """Every group's hyper-parameters checked (remembered while they stay the same)."""
        return [self.memo(g, group) for g, group in enumerate(param_groups)]

    def step(self, checked: list[Checked], bind: Binder,
             active: Sequence[Sequence[bool]] | None = None, max_norm: float | None = None,
             norm_kind: int = 0, grad_scale: float = 1.0) -> float | None:
        """One step of every group: of all its parameters, or of those ``active[g]`` marks.

        Every gradient is bound (and so validated) before anything is modified. With
        ``max_norm`` the gradients' joint norm (of ``norm_kind``) is taken over everything
        bound and the update reads them clipped; the norm is returned. ``grad_scale``
        multiplies every gradient as the kernels read it.
        """
        if active is not None:
            for group, marks in zip(self.groups, active):
                if len(group.members) < len(group.slots):
                    newcomers = [s for s, on in enumerate(marks) if on and s not in group.placed]
                    if newcomers:  # first gradients of parameters without state yet
                        group.lay_out(newcomers)
        batches: list[tuple[Group, Run, Any, list[int], Checked]] = []
        for g, (group, checks) in enumerate(zip(self.groups, checked)):
            marks = None if active is None or all(active[g]) else active[g]
            for run in group.runs:
                if marks is None and run.uniform:  # the usual case: the whole run, at once
                    bind(g, run, run.table, run.slots)
                    batches.append((group, run, run.table, run.slots, checks))
                    continue
                for table, slots in run.batches(marks):
                    bind(g, run, table, slots)
                    batches.append((group, run, table, slots, checks))
        norm = None
        if max_norm is not None:
            total = 0.0
            for batch in batches:
                total = kernels.accumulate_norm(batch[2], norm_kind, True, total)
            norm = math.sqrt(total) if norm_kind == 0 else total
            grad_scale *= clip.coefficient(norm, max_norm)
        for group, run, table, slots, (h, roles, mask, sign) in batches:
            group.step(run, table, slots, h, roles, mask, self.kernel, sign * grad_scale)
        return norm

    # ------------------------------------------------------------------ state
    def nbytes(self) -> int:
        """Bytes of state held (every role's buffers)."""
        return sum(group.nbytes() for group in self.groups)

    def settle(self) -> None:
        for group in self.groups:
            group.settle()
