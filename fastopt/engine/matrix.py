"""A step of a rule of matrices (one with a :class:`~fastopt.rules.base.MatrixStep`: Muon).

Three passes, each where its arithmetic belongs:

1. the rule's kernel, element-wise, updates the rule's state and writes each parameter's matrix
   input (Muon: its momentum, or the Nesterov blend) into a work buffer of the compute dtype,
   laid out as the parameters are: it runs over the parameters' table redirected there
   (``SegmentTable.with_params``), so the parameters themselves are not touched;
2. the rule's ``transform`` turns each parameter's work matrix, in place, into its update
   (Muon: the Newton–Schulz iteration through BLAS matrix products, times its learning rate);
3. the ``axpy`` kernel adds the updates over the parameters' own table without its state
   (``SegmentTable.without_state``: 8-bit state loaded and stored again would drift),
   ``p ← decay · p + update``, storing low-precision parameters as their storage options say,
   as every rule's kernel does.

The work buffer is allocated per step: the matrix products cost far more than its pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._kernels import kernels
from ..flat import aligned_offsets, aligned_zeros

if TYPE_CHECKING:
    from ..rules import Rule
    from ..rules.base import Hypers
    from .runs import Slot

AXPY = kernels.KERNELS.index("axpy")


def matrix_step(rule: Rule, kernel: int, table: Any, args: dict[str, Any], mask: int,
                h: Hypers, slots: Sequence[Slot]) -> None:
    """One step of ``rule`` over ``table`` (gradients and state bound), whose segments are the
    parameters ``slots`` (see the module docstring)."""
    compute = np.dtype(np.float64 if slots[0].dtype == np.float64 else np.float32)
    storage = kernels.DTYPE_CODES[compute.name]
    offsets, nbytes = aligned_offsets([slot.size * compute.itemsize for slot in slots])
    work = aligned_zeros(nbytes)
    addresses = [work.ctypes.data + offset for offset in offsets]
    kernels.run(table.with_params(addresses, storage), kernel, args, mask)
    for slot, offset in zip(slots, offsets):
        rule.matrix.transform(h, matrix_view(work, offset, slot, compute))
    params = table.without_state()
    params.bind_grad_addresses(addresses, storage)
    kernels.run(params, AXPY, {"decay": rule.matrix.decay(h), "scale": 1.0}, 0)


def matrix_view(buffer: np.ndarray, offset: int, slot: Slot, dtype: np.dtype) -> np.ndarray:
    """The slice of ``buffer`` (bytes) from ``offset`` on that holds ``slot``'s elements, seen
    as the parameter's matrix: its shape, its elements where the parameter's lie."""
    flat = buffer[offset:offset + slot.size * dtype.itemsize].view(dtype)
    if slot.strides is None:
        return flat.reshape(slot.shape)
    return np.lib.stride_tricks.as_strided(
        flat, slot.shape, [stride * dtype.itemsize for stride in slot.strides])
