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
from .group import Group
from .memo import Checked, HyperMemo
from .runs import Run, Slot

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

    def add_group(self, slots: list[Slot], h: Hypers, members: Iterable[int] | None = None,
                  starts: Mapping[str, Any] | None = None) -> Group:
        """A new group over ``slots``; state is laid out over ``members`` (default: all) and
        grows to cover any other slot once it steps. Roles the rule creates with the optimizer
        (torch's Adagrad) are initialised for every slot now. ``starts``: checked values of
        hyper-parameters that the group's initial state takes instead of the group's own."""
        everyone = range(len(slots))
        at_construction = self.rule.roles_at_construction(h)
        group = Group(self.rule, slots, self.step_dtype,
                      everyone if members is None or at_construction else members, self.changes,
                      storage_of(h), len(self.groups))
        if starts:
            group.starts = dict(starts)
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
             norm_kind: int = 0, grad_scale: float = 1.0,
             check_finite: bool = False) -> float | None:
        """One step of every group: of all its parameters, or of those ``active[g]`` marks.

        Every gradient is bound (and so validated) before anything is modified. ``grad_scale``
        multiplies every gradient as the kernels read it (1 / a loss scale unscales). With
        ``max_norm`` or ``check_finite``, a first pass takes the joint norm (of ``norm_kind``)
        of everything bound, as read (times ``grad_scale``), and returns it: with
        ``check_finite`` a non-finite norm (an infinite or NaN gradient element) skips the
        step, leaving parameters, state and step counts as they were; with ``max_norm`` the
        update reads the gradients clipped. A rule with modes steps in train
        mode only (RuntimeError otherwise, and nothing changes).
        """
        modes = self.rule.modes
        if modes is not None:
            for g, (h, *_) in enumerate(checked):
                if not getattr(h, modes.flag):
                    raise RuntimeError(
                        f"{self.rule.name}: step() in eval mode (param_groups[{g}]"
                        f"['{modes.flag}'] is False): call train() before training steps and "
                        "eval() before evaluating, as the parameters hold different points in "
                        "each")
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
        if max_norm is not None or check_finite:
            total = 0.0
            for batch in batches:
                total = kernels.accumulate_norm(batch[2], norm_kind, True, total)
            # Every norm kind is homogeneous: the norm of the gradients as read is the scale
            # times the norm of the gradients bound (an infinite or NaN element stays so).
            norm = (math.sqrt(total) if norm_kind == 0 else total) * abs(grad_scale)
            if check_finite and not math.isfinite(norm):
                for batch in batches:
                    batch[2].unbind()
                return norm
            if max_norm is not None:
                grad_scale *= clip.coefficient(norm, max_norm)
        self._run(batches, grad_scale)
        return norm

    def step_slots(self, checked: list[Checked], bind: Binder,
                   chosen: Mapping[int, Sequence[int]]) -> None:
        """One step of the ``chosen`` slots only (group index -> slots), each as :meth:`step`
        would step it among all: for stepping parameters as their gradients arrive (in
        backward), without visiting the others."""
        batches: list[tuple[Group, Run, Any, list[int], Checked]] = []
        for g, slots in chosen.items():
            group = self.groups[g]
            newcomers = [s for s in slots if s not in group.placed]
            if newcomers:
                group.lay_out(newcomers)
            by_run: dict[int, tuple[Run, list[int]]] = {}
            for s in slots:
                run = group.run_of[s]
                by_run.setdefault(id(run), (run, []))[1].append(s)
            for run, mine in by_run.values():
                for table, batch in run.batches_of(mine):
                    bind(g, run, table, batch)
                    batches.append((group, run, table, batch, checked[g]))
        self._run(batches, 1.0)

    def _run(self, batches: list[tuple[Group, Run, Any, list[int], Checked]],
             grad_scale: float) -> None:
        for group, run, table, slots, (h, roles, mask, sign) in batches:
            group.step(run, table, slots, h, roles, mask, self.kernel, sign * grad_scale)

    def advance(self, param_groups: Sequence[dict[str, Any]], checked: list[Checked]) -> None:
        """After a step, write into every group the entries the step advanced (a rule that
        keeps its step count in the group: schedule-free), whether or not any of its
        parameters had a gradient, as the schedulefree package does."""
        if self.rule.progress is not None:
            for g, (group, (h, *_)) in enumerate(zip(param_groups, checked)):
                entries = self.rule.progress(h)
                group.update(entries)
                self.memo.wrote(g, group, entries)

    def switch(self, checked: list[Checked], train: bool) -> None:
        """Move every group not in train mode (``train``) or eval mode into it: one pass over
        each of its parameters that has been stepped (the rule's :class:`~fastopt.rules.base.
        Modes`). The front end then sets the groups' flag."""
        modes = self.rule.modes
        mask = 1 << self.rule.slot(modes.needs)
        for group, (h, *_) in zip(self.groups, checked):
            if getattr(h, modes.flag) == train:
                continue
            args = modes.switch(h, train)
            args["grad_scale"] = 1.0
            marks = [modes.needs in live for live in group.live]
            for run in group.runs:
                for table, slots in run.batches(marks):
                    table.bind_self()
                    if run.rounding == "stochastic":  # the stream of the slots' last step
                        table.set_stream(h.seed, int(group.steps[slots[0]]))
                    kernels.run(table, self.kernel, args, mask)

    # ------------------------------------------------------------------ state
    def nbytes(self) -> int:
        """Bytes of state held (every role's buffers)."""
        return sum(group.nbytes() for group in self.groups)

    def settle(self) -> None:
        for group in self.groups:
            group.settle()
