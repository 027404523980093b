"""The optimizer base class: parameter groups, flat state buffers, steps and state dicts.

A subclass is one update rule. It names its state roles (in kernel order) and its per-group
scalar state, its defaults, how to validate a group's hyper-parameters, which roles a group
needs, how its scalars advance and how to call its kernel for one group; everything else lives
here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate
from operator import is_
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from .. import _checks, clip
from .._kernels import kernels
from ..flat import Layout, first_overlap

Hyper = tuple  # a group's validated hyper-parameters, in the order the subclass defines
Scalars = dict[str, np.floating]  # a group's scalar state by name
_NOTHING: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class GroupScalar:
    """A scalar of optimizer state that a rule keeps besides its arrays (NAdam's mu_product).

    torch keeps such a value per parameter; fastopt steps a group's parameters together, so one
    value serves the whole group, as with the step count. ``state_dict()`` repeats it in every
    parameter's entry, like ``"step"``; ``load_state_dict()`` requires one value per group, in
    [low, high] and exactly representable in ``dtype``, the precision the rule keeps it in.
    """

    initial: float
    dtype: type[np.floating]
    low: float
    high: float

    def start(self) -> np.floating:
        return self.dtype(self.initial)

    def check(self, name: str, value: Any) -> np.floating:
        return _checks.representable(name, value, self.dtype, self.low, self.high)


class HyperMemo:
    """A rule's ``check_group(group)`` and the roles it uses, per group, remembered while the
    group's values stay those last checked (a step checks every group, and schedules change
    values between steps).

    Only hashable (immutable) values are remembered, and by identity: a list changed in
    place, or a new value equal to the old, is checked again.
    """

    def __init__(self, rule: type[Optimizer], keys: tuple[str, ...]) -> None:
        self.rule = rule
        self.keys = keys
        # group -> (its raw hyper-parameter values, (validated hyper, roles used))
        self.memo: dict[int, tuple[tuple, tuple[Hyper, tuple[str, ...]]]] = {}

    def __call__(self, g: int, group: dict[str, Any]) -> tuple[Hyper, tuple[str, ...]]:
        values = tuple([group[key] for key in self.keys])
        checked = self.memo.get(g)
        # Identity, not equality: 1 == 1.0 == True, but a bool is no learning rate.
        if checked is not None and all(map(is_, values, checked[0])):
            return checked[1]
        hyper = self.rule.check_group(group)
        result = hyper, self.rule.roles_used(hyper)
        try:
            hash(values)
        except TypeError:
            self.memo.pop(g, None)
        else:
            self.memo[g] = (values, result)
        return result


class Optimizer:
    """Base class of fastopt's optimizers (torch.optim's interface over NumPy arrays).

    Parameters are the caller's arrays, updated in place. Each state role is one zeroed,
    64-byte-aligned buffer over all parameters; each group has a segment table, so a step is
    one kernel call per group whatever the number of arrays.
    """

    roles: ClassVar[tuple[str, ...]] = ()  # state arrays, in the kernel's role order
    counts_steps: ClassVar[bool] = True  # whether state dicts carry "step" (SGD's do not)
    # Scalar state kept per group, in state-dict order (advanced by ``advance``).
    scalars: ClassVar[Mapping[str, GroupScalar]] = MappingProxyType({})

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self._buffers: dict[str, np.ndarray] = {}  # role -> uint8 buffer over all parameters
        self._views: dict[str, list[np.ndarray]] = {}  # role -> one view per parameter
        self._grad_views: list[np.ndarray] | None = None
        self._steps: list[int] = []  # per group
        self._hyper = HyperMemo(type(self), tuple(self.defaults))
        self._scalars: list[Scalars] = []  # per group
        self._live: list[set[str]] = []  # per group: roles that hold state
        if isinstance(params, np.ndarray) or isinstance(params, dict):
            raise TypeError(
                "params: expected a list of arrays or of parameter-group dicts, "
                f"got {type(params).__name__}"
            )
        groups = list(params)
        if not groups:
            raise ValueError("params: expected at least one parameter, got an empty list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self._add_groups(groups)

    # ----------------------------------------------------------------- subclass interface
    @classmethod
    def check_group(cls, group: dict[str, Any]) -> Hyper:
        """Validate a group's hyper-parameters; return them as the tuple ``apply`` takes."""
        raise NotImplementedError

    @classmethod
    def roles_used(cls, hyper: Hyper) -> tuple[str, ...]:
        """The state roles a step with these hyper-parameters reads and writes."""
        return cls.roles

    @classmethod
    def advance(cls, hyper: Hyper, step: int, scalars: Scalars) -> Scalars:
        """A group's scalar state for step ``step`` from its value after the step before."""
        return scalars

    @classmethod
    def apply(
        cls,
        table: Any,
        hyper: Hyper,
        step: int,
        fresh: frozenset[str],
        scalars: Scalars,
        grad_scale: float = 1.0,
    ) -> None:
        """Run the kernel over one group; ``step`` counts from 1, ``fresh`` names the roles
        that were just initialised for this step, ``scalars`` holds the scalar state already
        advanced to this step, and the kernel reads ``grad_scale · g`` (the gradient-clipping
        coefficient) in place of ``g``."""
        raise NotImplementedError

    @classmethod
    def initial_scalars(cls) -> Scalars:
        return {name: spec.start() for name, spec in cls.scalars.items()}

    @classmethod
    def normalise(cls, group: dict[str, Any], hyper: Hyper) -> None:
        """Store validated values in their canonical form (a new or loaded group only)."""
        if "betas" in group:  # a tuple of floats, as torch stores it, whatever was passed
            group["betas"] = tuple(float(beta) for beta in group["betas"])

    @classmethod
    def initial_value(cls, role: str, group: dict[str, Any]) -> float:
        """The value state role ``role`` starts from in ``group``."""
        return 0.0

    @classmethod
    def roles_at_construction(cls, hyper: Hyper) -> tuple[str, ...]:
        """The state roles a group holds from its construction on, before any step."""
        return ()

    # ----------------------------------------------------------------- groups and buffers
    @property
    def _params(self) -> list[np.ndarray]:
        return [p for group in self.param_groups for p in group["params"]]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyper-parameters (as torch's)."""
        self._add_groups([param_group])

    def _add_groups(self, new_groups: list[Any]) -> None:
        """Validate ``new_groups`` completely, then add them (a failure changes nothing)."""
        groups = []
        params = self._params
        for g, raw in enumerate(new_groups, start=len(self.param_groups)):
            if not isinstance(raw, dict):
                raise TypeError(f"param_groups[{g}]: expected a dict, got {type(raw).__name__}")
            if "params" not in raw:
                raise ValueError(f"param_groups[{g}]: expected a 'params' entry, got keys {sorted(raw)}")
            group = dict(raw)
            arrays = group["params"]
            if isinstance(arrays, dict):
                raise TypeError(f"param_groups[{g}]['params']: expected a list of arrays, got dict")
            arrays = [arrays] if isinstance(arrays, np.ndarray) else list(arrays)
            if not arrays:
                raise ValueError(f"param_groups[{g}]['params']: expected at least one array, got none")
            for a in arrays:
                _checks.array(f"params[{len(params)}]", a)
                if a.dtype != arrays[0].dtype:
                    raise TypeError(
                        f"params[{len(params)}]: expected dtype {arrays[0].dtype} like the other "
                        f"parameters of its group, got {a.dtype} (put each dtype in a group of its own)"
                    )
                params.append(a)
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            group["params"] = arrays
            self.normalise(group, self.check_group(group))
            groups.append(group)
        overlap = first_overlap(params)
        if overlap is not None:
            i, j = overlap
            raise ValueError(
                f"params[{j}]: expected memory of its own, got an array sharing memory with "
                f"params[{i}] (a parameter may appear once only)"
            )
        self._rebuild(self.param_groups + groups)
        for group in groups:
            self._steps.append(0)
            self._scalars.append(self.initial_scalars())
            self._live.append(set())
            self._ensure_roles(len(self._steps) - 1, self.roles_at_construction(self.check_group(group)))

    def _rebuild(self, groups: list[dict[str, Any]]) -> None:
        """Lay out ``groups``; move existing state and gradients into the new buffers."""
        old_views = self._views
        old_grads = self._grad_views
        params = [p for group in groups for p in group["params"]]
        self._layout = Layout(params)
        self._tables = [kernels.SegmentTable(group["params"]) for group in groups]
        sizes = [len(group["params"]) for group in groups]
        self._starts = [0, *accumulate(sizes)][:-1]
        self._nparams = sum(sizes)
        self.param_groups = groups
        self._buffers, self._views = {}, {}
        for role, views in old_views.items():
            self._allocate(role)
            for new, old in zip(self._views[role], views):
                new[...] = old
        if old_grads is not None:
            self._grad_views = self._layout.zeros()[1]
            for new, old in zip(self._grad_views, old_grads):
                new[...] = old
        self._guard = kernels.MemoryGuard(params + list(self._buffers.values()))

    def _allocate(self, role: str) -> None:
        buffer, views = self._layout.zeros()
        self._buffers[role] = buffer
        self._views[role] = views
        index = self.roles.index(role)
        for g, table in enumerate(self._tables):
            table.set_state(index, self._group_views(role, g))

    def _group_views(self, role: str, g: int) -> list[np.ndarray]:
        start = self._starts[g]
        return self._views[role][start : start + len(self.param_groups[g]["params"])]

    def _ensure_roles(self, g: int, needed: Sequence[str]) -> frozenset[str]:
        """Initialise the roles in ``needed`` that group ``g`` does not hold yet."""
        live = self._live[g]
        if live.issuperset(needed):
            return _NOTHING
        fresh = frozenset(needed) - live
        for role in fresh:
            if role not in self._buffers:
                self._allocate(role)
                self._guard = kernels.MemoryGuard(self._params + list(self._buffers.values()))
            value = self.initial_value(role, self.param_groups[g])
            for view in self._group_views(role, g):
                view.fill(value)
            self._live[g].add(role)
        return fresh

    # ----------------------------------------------------------------- stepping
    @property
    def grads(self) -> list[np.ndarray]:
        """Gradient arrays, one per parameter: views into one flat buffer owned by the
        optimizer. Write gradients into them in place; ``step()`` then reads them."""
        if self._grad_views is None:
            self._grad_views = self._layout.zeros()[1]
        return list(self._grad_views)

    def zero_grad(self) -> None:
        """Set every array of :attr:`grads` to zero, in place."""
        for view in self.grads:
            view.fill(0)

    def step(
        self,
        grads: Sequence[np.ndarray] | None = None,
        *,
        max_norm: float | None = None,
        norm_type: float = 2.0,
    ) -> float | None:
        """Update every parameter in place from ``grads`` (default: :attr:`grads`).

        ``grads`` lists one gradient per parameter in parameter order (group 0's first), each
        of its parameter's shape and dtype, C-contiguous and sharing no memory with any
        parameter or state. Everything is validated before anything is modified.

        With ``max_norm``, the gradients are clipped first as by
        :func:`fastopt.clip_grad_norm_` (their joint ``norm_type``-norm over all groups) and
        the norm before clipping is returned; the gradient arrays themselves are not changed:
        the update reads them scaled.
        """
        if max_norm is not None:
            max_norm = _checks.real("max_norm", max_norm)
            kind = clip.norm_kind(norm_type)
        if grads is None:
            grads = self.grads
        elif type(grads) is not list and not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads: expected a list of arrays, got {type(grads).__name__}")
        if len(grads) != self._nparams:
            raise ValueError(
                f"grads: expected {self._nparams} arrays (one per parameter), got {len(grads)}"
            )
        grads = tuple(grads)  # hold the arrays for the whole step
        checked = [self._hyper(g, group) for g, group in enumerate(self.param_groups)]
        for table, start in zip(self._tables, self._starts):
            table.bind_grads(grads, start, self._guard)
        norm, grad_scale = None, 1.0
        if max_norm is not None:
            norm = clip.total_norm(self._tables, kind, of_grads=True)
            grad_scale = clip.coefficient(norm, max_norm)
        steps, live, scalars = self._steps, self._live, self._scalars
        for g, (table, (hyper, roles)) in enumerate(zip(self._tables, checked)):
            fresh = _NOTHING if live[g].issuperset(roles) else self._ensure_roles(g, roles)
            steps[g] += 1
            scalars[g] = self.advance(hyper, steps[g], scalars[g])
            self.apply(table, hyper, steps[g], fresh, scalars[g], grad_scale)
        return norm

    # ----------------------------------------------------------------- state dicts
    def state_dict(self) -> dict[str, Any]:
        """torch's layout: ``{"state": {index: {...}}, "param_groups": [{..., "params": [...]}]}``.

        Fresh containers and copies of every array, each call.
        """
        state: dict[int, dict[str, Any]] = {}
        groups = []
        for g, group in enumerate(self.param_groups):
            start = self._starts[g]
            indices = list(range(start, start + len(group["params"])))
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": indices})
            if not self._live[g] and not (self.counts_steps and self._steps[g]):
                continue  # no state yet (torch has no entry either)
            for k, i in enumerate(indices):
                entry: dict[str, Any] = {"step": self._steps[g]} if self.counts_steps else {}
                entry.update(self._scalars[g])  # NumPy scalars: immutable, no copy needed
                for role in self.roles:
                    if role in self._live[g]:
                        entry[role] = self._group_views(role, g)[k].copy()
                state[i] = entry
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`. Validates everything first: a bad dict raises
        ``ValueError``/``TypeError`` and leaves the optimizer exactly as it was."""
        groups, plans = self._check_state_dict(state_dict)
        for group, current in zip(groups, self.param_groups):
            group["params"] = current["params"]
        self.param_groups = groups
        for g, (group, (step, scalars, arrays)) in enumerate(zip(groups, plans)):
            self._live[g] = set()
            self._ensure_roles(g, (*arrays, *self.roles_at_construction(self.check_group(group))))
            for role, sources in arrays.items():
                for view, source in zip(self._group_views(role, g), sources):
                    view[...] = source
            self._steps[g] = step
            self._scalars[g] = scalars

    def _check_state_dict(self, sd: Any) -> tuple[list[dict[str, Any]], list[Any]]:
        if not isinstance(sd, dict) or set(sd) != {"state", "param_groups"}:
            raise ValueError(
                "state_dict: expected a dict with keys 'state' and 'param_groups', got "
                + (f"keys {sorted(sd, key=str)}" if isinstance(sd, dict) else type(sd).__name__)
            )
        saved_groups, state = sd["param_groups"], sd["state"]
        if not isinstance(saved_groups, list) or not isinstance(state, dict):
            raise TypeError("state_dict: expected 'param_groups' to be a list and 'state' a dict")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict['param_groups']: expected {len(self.param_groups)} groups, "
                f"got {len(saved_groups)}"
            )
        groups, plans, seen = [], [], set()
        for g, (saved, current) in enumerate(zip(saved_groups, self.param_groups)):
            where = f"state_dict['param_groups'][{g}]"
            if not isinstance(saved, dict) or not isinstance(saved.get("params"), list):
                raise ValueError(f"{where}: expected a dict with a list 'params'")
            if len(saved["params"]) != len(current["params"]):
                raise ValueError(
                    f"{where}['params']: expected {len(current['params'])} parameters, "
                    f"got {len(saved['params'])}"
                )
            missing = set(self.defaults) - set(saved)
            if missing:
                raise ValueError(f"{where}: missing hyper-parameters {sorted(missing)}")
            group = dict(saved)
            hyper = self.check_group(group)
            self.normalise(group, hyper)
            entries = []
            for k, index in enumerate(saved["params"]):
                if index in seen:
                    raise ValueError(f"{where}['params'][{k}]: parameter index {index!r} appears twice")
                seen.add(index)
                entries.append(state.get(index))
            plans.append(self._check_group_state(where, g, hyper, entries, current["params"]))
            groups.append(group)
        unknown = set(state) - seen
        if unknown:
            raise ValueError(f"state_dict['state']: entries {sorted(unknown, key=str)} belong to no parameter")
        return groups, plans

    def _check_group_state(
        self, where: str, g: int, hyper: Hyper, entries: list[Any], params: list[np.ndarray]
    ) -> tuple[int, Scalars, dict[str, list[np.ndarray]]]:
        """Validate one group's saved per-parameter states; return (step, scalars,
        role -> arrays)."""
        if all(entry is None for entry in entries):
            return 0, self.initial_scalars(), {}
        if any(not isinstance(entry, dict) for entry in entries):
            raise ValueError(
                f"{where}: expected a state dict for every parameter of the group or for none "
                "(fastopt steps a group's parameters together)"
            )
        keys = set(entries[0])
        allowed = set(self.roles) | set(self.scalars) | ({"step"} if self.counts_steps else set())
        if not keys <= allowed:
            raise ValueError(f"{where}: unknown state entries {sorted(keys - allowed)}; expected some of {sorted(allowed)}")
        # A rule that counts steps has all its state from its first step on; SGD's momentum
        # buffer may be absent (it then starts as the next gradient). Scalars always come along.
        required = {"step", *self.roles_used(hyper)} if self.counts_steps else set()
        required |= set(self.scalars)
        if not keys >= required:
            raise ValueError(f"{where}: state entries {sorted(required - keys)} are missing")
        steps = set()
        scalars: dict[str, set[np.floating]] = {name: set() for name in self.scalars}
        arrays: dict[str, list[np.ndarray]] = {role: [] for role in self.roles if role in keys}
        for entry, param in zip(entries, params):
            if set(entry) != keys:
                raise ValueError(f"{where}: every parameter of a group must have the same state entries")
            if self.counts_steps:
                steps.add(_checks.step_count(f"{where} state 'step'", entry["step"]))
            for name, spec in self.scalars.items():
                scalars[name].add(spec.check(f"{where} state '{name}'", entry[name]))
            for role in arrays:
                arrays[role].append(_checks.like(f"{where} state '{role}'", entry[role], param, "its parameter", writable=False))
        if len(steps) > 1:
            raise ValueError(f"{where}: expected one step count for the whole group, got {sorted(steps)}")
        for name, values in scalars.items():
            if len(values) > 1:
                raise ValueError(
                    f"{where}: expected one '{name}' for the whole group (fastopt steps a "
                    f"group's parameters together), got {sorted(map(float, values))}"
                )
        return (steps.pop() if steps else 0), {k: v.pop() for k, v in scalars.items()}, arrays

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for g, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {g}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])

