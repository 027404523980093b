"""Row-sparse gradients (SparseAdam's): the rows of a parameter that a gradient touches, and
a block of their values.

The rows of a NumPy parameter are its sub-arrays along the first axis (a 0-d parameter is one
row of one element). A row-sparse gradient is a pair ``(indices, values)``: a 1-D integer
array of row numbers, and a C-contiguous array of the parameter's dtype and of shape
``(len(indices), *param.shape[1:])`` holding those rows, in that order. Duplicate indices are
summed, in their order (torch's ``coalesce`` of a sparse gradient). A step updates the rows
given and nothing else; it reads the arrays and never writes them.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from . import validation
from ._kernels import kernels
from .rules.storage import LOW, dtype


def _codes() -> dict[np.dtype, int]:
    """The kernels' code of each dtype gradient values may have (bfloat16 where ml_dtypes is
    installed), looked up by dtype: a step reads no dtype's name."""
    codes = {}
    for name, code in kernels.DTYPE_CODES.items():
        try:
            codes[dtype(name)] = code
        except ImportError:  # no ml_dtypes: no bfloat16 arrays either
            pass
    return codes


CODES = _codes()
_LOW = frozenset(d for d in CODES if d.name in LOW)


class Rows(NamedTuple):
    """A checked row-sparse gradient: distinct int64 row numbers, and their values."""

    indices: np.ndarray
    values: np.ndarray
    width: int  # elements per row


def rows_of(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, elements per row) of a parameter of ``shape``."""
    return (shape[0], math.prod(shape[1:])) if shape else (1, 1)


def every_row(grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A dense gradient (of one or more dimensions) as a row-sparse one: every row, in order."""
    return np.arange(len(grad), dtype=np.int64), grad


def check(name: str, grad: Any, param: np.ndarray, guard: Any = None) -> Rows:
    """``grad`` checked as a row-sparse gradient of ``param`` (TypeError or ValueError naming
    ``name`` otherwise), its duplicate rows summed; its values may not share memory with what
    ``guard`` (a kernels.MemoryGuard) holds."""
    if not isinstance(grad, (tuple, list)) or len(grad) != 2:
        dense = " (dense gradients are for the other optimizers: Adam)" if isinstance(
            grad, np.ndarray) else ""
        raise TypeError(f"{name}: expected a row-sparse gradient, a pair (indices, values), got "
                        f"{type(grad).__name__}{dense}")
    indices, values = grad
    if not isinstance(indices, np.ndarray) or indices.dtype.kind not in "iu" or indices.ndim != 1:
        raise TypeError(f"{name}[0]: expected a 1-D array of integer row numbers, got "
                        + (f"dtype {indices.dtype} and shape {indices.shape}"
                           if isinstance(indices, np.ndarray) else type(indices).__name__))
    validation.array(f"{name}[1]", values, writable=False)
    low = param.dtype == np.float32 and values.dtype in _LOW  # read as float32, as dense
    if values.dtype != param.dtype and not low:
        raise TypeError(f"{name}[1]: expected dtype {param.dtype} (its parameter's"
                        + (", or bfloat16 or float16" if param.dtype == np.float32 else "")
                        + f"), got {values.dtype}")
    count, width = rows_of(param.shape)
    shape = (len(indices), *param.shape[1:])
    if values.shape != shape:
        raise ValueError(f"{name}[1]: expected shape {shape} (a row of its parameter per index), "
                         f"got {values.shape}")
    if len(indices) and (indices.min() < 0 or indices.max() >= count):
        raise ValueError(f"{name}[0]: expected row numbers in [0, {count}), got "
                         f"{indices.min()} to {indices.max()}")
    if guard is not None and guard.shares_memory(values):
        raise ValueError(f"{name}[1]: expected memory of its own, got an array that shares "
                         "memory with a parameter or optimizer state")
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    if len(indices) > 1 and not np.all(indices[1:] > indices[:-1]):  # else distinct already
        distinct, where = np.unique(indices, return_inverse=True)
        if len(distinct) < len(indices):
            summed = np.zeros((len(distinct), *param.shape[1:]), values.dtype)
            np.add.at(summed, where, values)  # in the order of the indices
            indices, values = distinct, summed
    return Rows(indices, values, width)


def _address(a: np.ndarray) -> int:
    """Where ``a``'s elements start (not through ``a.ctypes``, whose helper objects form
    reference cycles that only the garbage collector frees)."""
    return a.__array_interface__["data"][0]


def bind(table: Any, rows: list[Rows]) -> None:
    """Point ``table`` (one segment per parameter) at these gradients, whose values are all
    of one dtype (TypeError otherwise, as for dense gradients)."""
    dtypes = {r.values.dtype for r in rows}
    if len(dtypes) > 1:
        raise TypeError(f"grads: expected the gradients of a group in one dtype, got "
                        f"{sorted(str(d) for d in dtypes)}")
    table.bind_row_addresses([_address(r.indices) for r in rows],
                             [len(r.indices) for r in rows], [r.width for r in rows],
                             [_address(r.values) for r in rows],
                             CODES[rows[0].values.dtype] if rows else -1)
