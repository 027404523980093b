"""What one kernel call steps: parameters' memory (:class:`Slot`), a group's parameters of one
dtype and the segment tables over them (:class:`Run`), and the call itself (:func:`run_rule`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from .._kernels import kernels
from ..rules import Rule
from ..rules.base import Hypers
from ..rules.storage import COMPENSATION
from .matrix import matrix_step

if TYPE_CHECKING:
    from .group import Group

NO_SCALARS: Mapping[str, Any] = MappingProxyType({})  # the scalar state of a rule without any
# Tables over parts of a run kept: one per parameter (stepped one at a time in backward), and
# 32 more, since patterns of missing gradients rarely repeat widely.
_SUBSETS = 32


def run_rule(rule: Rule, kernel: int, table: Any, h: Hypers, t: int,
             scalars: Mapping[str, np.floating], fresh: frozenset[str], mask: int,
             grad_scale: float = 1.0, slots: Sequence[Slot] = ()) -> dict[str, np.floating]:
    """Step ``t`` of ``rule`` over ``table`` (gradients and state bound): the scalar state
    advanced from ``scalars``, the kernel run, reading ``grad_scale · g`` as the gradient
    (already negated to maximize); a rule of matrices also transforms each matrix (``slots``:
    the table's parameters, for their shapes) and adds the result. Returns the advanced
    scalar state."""
    advanced = rule.advance(h, t, scalars) if rule.scalars else NO_SCALARS
    args = rule.kernel_args(h, t, advanced, fresh)
    args["grad_scale"] = grad_scale
    if rule.matrix is None:
        kernels.run(table, kernel, args, mask)
    else:
        matrix_step(rule, kernel, table, args, mask, h, slots)
    return advanced


class Slot:
    """A parameter: ``size`` elements of ``dtype`` from ``address`` on, wherever that memory
    is (a NumPy array, a tensor torch owns, a slice of a flat buffer). ``array`` is the NumPy
    array when there is one: gradients are then checked against it. ``shape`` is the
    parameter's, and ``strides`` (in elements) say where its elements lie in that memory when
    not in C order (a rule of matrices sees each parameter as its matrix)."""

    __slots__ = ("address", "size", "dtype", "array", "shape", "strides")

    def __init__(self, address: int, size: int, dtype: np.dtype, array: np.ndarray | None = None,
                 shape: tuple[int, ...] | None = None, strides: tuple[int, ...] | None = None):
        self.address, self.size, self.dtype, self.array = address, size, np.dtype(dtype), array
        self.shape = (size,) if shape is None else tuple(shape)
        self.strides = strides

    @classmethod
    def of(cls, array: np.ndarray) -> Slot:
        return cls(array.ctypes.data, array.size, array.dtype, array, array.shape)


class Run:
    """A group's members of one dtype: the segments one kernel call steps, and how its
    parameters are rounded when stored (``rounding``; ``extra``: the compensation role a
    compensated update needs besides the rule's)."""

    def __init__(self, group: Group, slots: list[int]) -> None:
        self.group, self.slots = group, slots
        self.rounding = group.storage.rounding_of(group.slots[slots[0]].dtype)
        self.extra = (COMPENSATION,) if self.rounding == "kahan" else ()
        self.table = group.table(slots)
        self.subsets: dict[tuple[int, ...], Any] = {}
        self.uniform = group.same_status(slots)
        # Where the run's slots are in the group's per-parameter arrays: all of them (the
        # usual case, and the cheapest to write), a slice, or a list of indices.
        contiguous = slots == list(range(slots[0], slots[-1] + 1))
        self.everyone = contiguous and len(slots) == len(group.slots)
        self.where: slice | np.ndarray = (slice(slots[0], slots[-1] + 1) if contiguous
                                          else np.array(slots))

    def batches(self, active: Sequence[bool] | None) -> list[tuple[Any, list[int]]]:
        """(table, slots) for the run's slots that step (all, or those ``active``), one per
        step status they share: usually the whole run at once."""
        if self.uniform and (active is None or all(active[s] for s in self.slots)):
            return [(self.table, self.slots)]
        return self.batches_of(self.slots if active is None else
                               [s for s in self.slots if active[s]])

    def batches_of(self, chosen: Sequence[int]) -> list[tuple[Any, list[int]]]:
        """(table, slots) for ``chosen`` slots of the run, one per step status they share."""
        by_status: dict[tuple, list[int]] = {}
        for s in chosen:
            by_status.setdefault(self.group.status(s), []).append(s)
        return [(self.subset(slots), slots) for slots in by_status.values()]

    def subset(self, slots: list[int]) -> Any:
        if len(slots) == len(self.slots):
            return self.table
        key = tuple(slots)
        table = self.subsets.get(key)
        if table is None:
            if len(self.subsets) >= _SUBSETS + len(self.slots):
                self.subsets.clear()
            table = self.subsets[key] = self.group.table(slots)
        return table

    def point(self, role: str) -> None:
        """Point every table of the run at the (new) buffer of ``role``."""
        for table, slots in [(self.table, self.slots),
                             *((t, list(key)) for key, t in self.subsets.items())]:
            self.group.point(table, slots, role)

