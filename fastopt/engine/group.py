"""A parameter group as the engine keeps it: its parameters' memory, its state, its tables.

Each state role of a group is one zeroed, 64-byte-aligned buffer laid out over the group's
*members* (the parameters that have ever been stepped, or all of them where the front end says
so), each member's slice starting on a cache line. Step counts and scalar state are kept per
parameter, as torch keeps them; parameters whose counts agree (the usual case) are stepped
together by one kernel call over a segment table of their own memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .._kernels import kernels
from ..flat import aligned_offsets, aligned_zeros
from ..rules import Rule
from ..rules.base import Hypers
from ..rules.storage import COMPENSATION, Q8, Storage, blocks, scale_key, state_nbytes
from .runs import NO_SCALARS, Run, Slot, run_rule

_NOTHING: frozenset[str] = frozenset()


class Group:
    """A group's parameters (``slots``) and their state, for one rule."""

    def __init__(self, rule: Rule, slots: list[Slot], step_dtype: np.dtype,
                 members: Iterable[int], changes: list[int] | None = None,
                 storage: Storage = Storage(), index: int = 0) -> None:
        storage.check(rule.role_names, [slot.dtype for slot in slots])
        self.rule = rule
        self.slots = slots
        self.storage = storage
        self.index = index  # the group's place in its engine: its parameters' rounding streams
        self.starts: dict[str, Any] = {}  # what initial state takes instead of h (Engine.add_group)
        self.roles = (*rule.role_names, COMPENSATION)  # every role a buffer may be laid out for
        # A stochastically rounded parameter's stream is keyed by its step, so it is counted
        # (and saved) even where the rule itself keeps no count (SGD's).
        self.counts_steps = rule.counts_steps or any(
            storage.rounding_of(slot.dtype) == "stochastic" for slot in slots)
        n = len(slots)
        self.steps = np.zeros(n, step_dtype)
        self.scalars = {s.name: np.full(n, s.initial, s.dtype) for s in rule.scalars}
        self.live: list[frozenset[str]] = [_NOTHING] * n
        self.changes = [0] if changes is None else changes  # shared with the engine's groups
        self._version = 0
        self.members: list[int] = []
        self.placed: set[int] = set()  # the members, for membership tests
        self.offsets: dict[str, dict[int, int]] = {}  # role -> member -> byte offset
        self.buffers: dict[str, np.ndarray] = {}
        self.runs: list[Run] = []
        self.lay_out(members)

    @property
    def version(self) -> int:
        """Changes whenever state moves, or a parameter gains or loses state."""
        return self._version

    def changed(self) -> None:
        self._version += 1
        self.changes[0] += 1

    # ------------------------------------------------------------------ status
    def status(self, s: int) -> tuple:
        return (float(self.steps[s]), *(float(v[s]) for v in self.scalars.values()), self.live[s])

    def same_status(self, slots: Sequence[int]) -> bool:
        return len({self.status(s) for s in slots}) <= 1

    def has_state(self, s: int) -> bool:
        """Whether the parameter has state, as torch would have an entry for it."""
        return bool(self.live[s]) or (self.counts_steps and self.steps[s] > 0)

    # ------------------------------------------------------------------ layout
    def lay_out(self, members: Iterable[int]) -> None:
        """Lay the state buffers out over ``members`` (added to the current ones), carrying
        every member's state over; rebuild the tables."""
        members = sorted(set(self.members) | set(members))
        if members == self.members and self.runs:
            return
        offsets, nbytes = {}, {}
        for role in self.roles:
            starts, nbytes[role] = aligned_offsets([self.nbytes_of(s, role) for s in members])
            offsets[role] = dict(zip(members, starts))
        buffers = {}
        for role, old in self.buffers.items():
            new = buffers[role] = aligned_zeros(nbytes[role])
            for s in self.members:
                a, b, size = offsets[role][s], self.offsets[role][s], self.nbytes_of(s, role)
                new[a:a + size] = old[b:b + size]
        self.members, self.placed, self.offsets = members, set(members), offsets
        self.buffers, self.buffer_nbytes = buffers, nbytes
        self.rebuild()
        self.changed()

    def dtype_of(self, s: int, role: str) -> np.dtype:
        """The storage dtype of parameter ``s``'s ``role``."""
        return self.storage.state(role, self.slots[s].dtype)

    def nbytes_of(self, s: int, role: str) -> int:
        return state_nbytes(self.dtype_of(s, role), self.slots[s].size)

    def signed(self, role: str) -> bool:
        """Whether 8-bit state of ``role`` takes the signed code."""
        return role == COMPENSATION or not self.rule.role(role).nonnegative

    def rebuild(self) -> None:
        """New tables over the members' current memory (after a parameter moved)."""
        dtypes = dict.fromkeys(self.slots[s].dtype for s in self.members)
        self.runs = [Run(self, [s for s in self.members if self.slots[s].dtype == dtype])
                     for dtype in dtypes]
        self.run_of = {s: run for run in self.runs for s in run.slots}

    def table(self, slots: list[int]) -> Any:
        chosen = [self.slots[s] for s in slots]
        arrays = [slot.array for slot in chosen]
        table = kernels.SegmentTable([slot.address for slot in chosen],
                                     [slot.size for slot in chosen],
                                     kernels.DTYPE_CODES[chosen[0].dtype.name],
                                     None if any(a is None for a in arrays) else arrays)
        if self.storage.rounding_of(chosen[0].dtype) == "stochastic":
            table.set_rounding(kernels.ROUNDING["stochastic"])
            table.set_stream(self.storage.seed, 0, [self.index << 32 | s for s in slots])
        for role in self.buffers:
            self.point(table, slots, role)
        return table

    def point(self, table: Any, slots: list[int], role: str) -> None:
        base = self.buffers[role].ctypes.data
        addresses = [base + self.offsets[role][s] for s in slots]
        if role == COMPENSATION:
            if self.storage.rounding_of(self.slots[slots[0]].dtype) == "kahan":
                table.set_rounding(kernels.ROUNDING["kahan"], addresses)
            return
        dtype = self.dtype_of(slots[0], role)
        table.set_state(self.rule.slot(role), addresses,
                        kernels.Q8_CODES[self.signed(role)] if dtype == Q8
                        else kernels.DTYPE_CODES[dtype.name])

    def view(self, s: int, role: str) -> np.ndarray:
        """Parameter ``s``'s values of ``role`` as stored: 1-D, of the role's storage dtype
        (8-bit state: its codes)."""
        start, dtype = self.offsets[role][s], self.dtype_of(s, role)
        return self.buffers[role][start:start + self.slots[s].size * dtype.itemsize].view(dtype)

    def scales(self, s: int, role: str) -> np.ndarray:
        """The float32 block scales of parameter ``s``'s 8-bit ``role``, after its codes."""
        size = self.slots[s].size
        start = self.offsets[role][s] + -(-size // 4) * 4
        return self.buffers[role][start:start + 4 * blocks(size)].view(np.float32)

    def views(self, s: int, role: str) -> dict[str, np.ndarray]:
        """Parameter ``s``'s arrays of ``role`` as its state entry holds them: the values, or,
        kept in 8 bits, the codes and (under ``scale_key(role)``) the blocks' scales."""
        if self.dtype_of(s, role) == Q8:
            return {role: self.view(s, role), scale_key(role): self.scales(s, role)}
        return {role: self.view(s, role)}

    def accepts(self, s: int, key: str) -> tuple[tuple[np.dtype, ...], tuple[int, ...] | None]:
        """The dtypes and the shape (None: the parameter's) that a loaded state entry's array
        under ``key`` may have: the role's storage; for 8-bit state, its codes, or float32
        values to quantise; an 8-bit role's scales: float32, one per block."""
        for role in self.roles:
            if key == scale_key(role) and self.dtype_of(s, role) == Q8:
                return (np.dtype(np.float32),), (blocks(self.slots[s].size),)
        if key not in self.roles:
            return (), None
        dtype = self.dtype_of(s, key)
        return ((Q8, np.dtype(np.float32)) if dtype == Q8 else (dtype,)), None

    def check_loaded(self, s: int, where: str, keys: Iterable[str], codes: Iterable[str]) -> None:
        """Refuse a loaded entry (its arrays' ``keys``; ``codes``: those holding uint8) that has
        an 8-bit role's codes without their scales, or scales without codes."""
        keys, codes = set(keys), set(codes)
        for role in self.roles:
            if self.dtype_of(s, role) != Q8 or not {role, scale_key(role)} & keys:
                continue
            if (role in codes) != (scale_key(role) in keys):
                raise ValueError(f"{where}: 8-bit state {role!r} takes its codes with their "
                                 f"scales ({scale_key(role)!r}), or float32 values alone")

    def put_loaded(self, s: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Copy a checked entry's arrays (NumPy, in the parameter's memory order) in."""
        for key, value in arrays.items():
            if key in self.roles:
                if self.dtype_of(s, key) == Q8 and value.dtype != Q8:
                    self.put(s, key, value.reshape(-1))
                else:
                    self.view(s, key)[...] = value.reshape(-1)
            else:
                role = next(r for r in self.roles if scale_key(r) == key)
                self.scales(s, role)[...] = value

    def put(self, s: int, role: str, values: np.ndarray) -> None:
        """Set parameter ``s``'s ``role`` to ``values`` (1-D, its size; rounded to nearest,
        or quantised, into the role's storage)."""
        if self.dtype_of(s, role) == Q8:
            kernels.quantize(np.ascontiguousarray(values, np.float32), self.view(s, role),
                             self.scales(s, role), self.signed(role))
        else:
            self.view(s, role)[...] = values

    def fill(self, s: int, role: str, value: float) -> None:
        """Set every element of parameter ``s``'s ``role`` to ``value``."""
        if self.dtype_of(s, role) == Q8:  # every block is quantised alike
            codes, scales = np.zeros(1, np.uint8), np.zeros(1, np.float32)
            kernels.quantize(np.full(1, value, np.float32), codes, scales, self.signed(role))
            self.view(s, role).fill(codes[0])
            self.scales(s, role).fill(scales[0])
        else:
            self.view(s, role).fill(value)

    def nbytes(self) -> int:
        return sum(buffer.nbytes for buffer in self.buffers.values())

    # ------------------------------------------------------------------ stepping
    def ensure(self, run: Run, slots: list[int], roles: tuple[str, ...], h: Hypers) -> frozenset[str]:
        """Give ``slots`` (which share their status) every role in ``roles``: a buffer for the
        group where there is none yet, filled with the role's initial value for these slots.
        Returns the roles just initialised."""
        live = self.live[slots[0]]
        if live.issuperset(roles):
            return _NOTHING
        fresh = frozenset(roles) - live
        for role in fresh:
            zeroed = self.allocate(role)
            value = 0.0 if role == COMPENSATION else self.rule.role(role).start(
                h._replace(**self.starts) if self.starts else h)
            # None: the parameter's own value, which the kernel copies in (schedule-free's z).
            # Zeroed 8-bit codes are the code's first value, not its zero.
            if value is not None and (value != 0 or not zeroed
                                      or self.dtype_of(slots[0], role) == Q8):
                for s in slots:
                    self.fill(s, role, value)
        joined = live | fresh
        for s in slots:
            self.live[s] = joined
        self.changed()
        return fresh

    def allocate(self, role: str) -> bool:
        """A buffer for ``role`` over the members, if there is none; whether it is new (and
        so zeros)."""
        if role in self.buffers:
            return False
        self.buffers[role] = aligned_zeros(self.buffer_nbytes[role])
        for run in self.runs:
            run.point(role)
        return True

    def step(self, run: Run, table: Any, slots: list[int], h: Hypers, roles: tuple[str, ...],
             mask: int, kernel: int, grad_scale: float) -> None:
        """One kernel call over ``slots`` (bound to ``table``, gradients bound), reading
        ``grad_scale · g`` as the gradient (negated already, to maximize)."""
        first = slots[0]
        if run.extra:
            roles = roles + run.extra
        fresh = _NOTHING if self.live[first].issuperset(roles) else self.ensure(run, slots, roles, h)
        steps = self.steps
        t = int(steps.item(first)) + 1
        if run.rounding == "stochastic":
            table.set_stream(h.seed, t)
        before = {name: v[first] for name, v in self.scalars.items()} if self.scalars else NO_SCALARS
        scalars = run_rule(self.rule, kernel, table, h, t, before, fresh, mask, grad_scale,
                           () if self.rule.matrix is None else [self.slots[s] for s in slots])
        if t == 1 and self.counts_steps and not fresh:
            self.changed()  # its first count gives a parameter state without a new role
        if table is run.table and run.uniform:  # the whole run, as one (the usual case)
            if run.everyone:
                if self.counts_steps:
                    steps.fill(t)
                for name, value in scalars.items():
                    self.scalars[name].fill(value)
                return
            if self.counts_steps:
                steps[run.where] = t
            for name, value in scalars.items():
                self.scalars[name][run.where] = value
            return
        where = np.array(slots)
        if self.counts_steps:
            steps[where] = t
        for name, value in scalars.items():
            self.scalars[name][where] = value
        # After part of the run stepped, its statuses differ (at least until the rest steps
        # too): said without comparing them all, which stepping one parameter at a time
        # would pay per parameter. The run's next whole step finds out (Run.batches).
        run.uniform = len(slots) == len(run.slots) and self.same_status(run.slots)

    # ------------------------------------------------------------------ state
    def entry(self, s: int) -> tuple[int, dict[str, np.floating], dict[str, np.ndarray]]:
        """(step, scalars, role -> view) of parameter ``s``."""
        arrays: dict[str, np.ndarray] = {}
        for role in self.roles:
            if role in self.live[s]:
                arrays.update(self.views(s, role))
        return int(self.steps[s]), {name: v[s] for name, v in self.scalars.items()}, arrays

    def load(self, s: int, step: int, scalars: Mapping[str, Any], roles: Iterable[str]) -> None:
        """Set parameter ``s``'s status; the front end then copies the arrays of ``roles`` in
        (:meth:`put_loaded`; buffers are allocated here, the values are the caller's)."""
        roles = frozenset(roles)
        if roles and s not in self.placed:
            self.lay_out([s])
        for role in roles:
            self.allocate(role)
        self.steps[s] = step
        for name, spec in zip(self.scalars, self.rule.scalars):
            self.scalars[name][s] = scalars.get(name, spec.start())
        self.live[s] = roles
        self.changed()

    def settle(self) -> None:
        """Recompute which runs step as one after statuses were set from outside."""
        for run in self.runs:
            run.uniform = self.same_status(run.slots)
