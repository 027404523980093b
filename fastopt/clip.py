"""Gradient clipping: by global norm (as ``torch.nn.utils.clip_grad_norm_``) and by value.

The norm is the same whatever the thread count or SIMD width: it is accumulated in double
precision in a fixed order (see ``_kernels/norms.pxi``). ``Optimizer.step(grads,
max_norm=...)`` fuses clipping with the update: one pass reads the gradients for the norm and
the update folds the clipping coefficient into its reading of the gradient, instead of a
separate pass that rewrites every gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import groupby
from typing import Any

import numpy as np

from . import validation
from ._kernels import kernels
from .flat import first_overlap

# norm_type -> the kernel's reduction: sum of squares, sum of |g|, max |g|
_KINDS = {2.0: 0, 1.0: 1, math.inf: 2}


def norm_kind(norm_type: Any) -> int:
    if isinstance(norm_type, (bool, np.bool_)) or float(norm_type) not in _KINDS:
        raise ValueError(f"norm_type: expected 1, 2 or inf, got {norm_type!r}")
    return _KINDS[float(norm_type)]


def total_norm(tables: Sequence[Any], kind: int, *, of_grads: bool) -> float:
    """The norm over every segment of ``tables``, combined in order."""
    total = 0.0
    for table in tables:
        total = kernels.accumulate_norm(table, kind, of_grads, total)
    return math.sqrt(total) if kind == 0 else total


def coefficient(norm: float, max_norm: float) -> float:
    """torch's clipping factor: ``min(max_norm / (norm + 1e-6), 1)`` (NaN for a NaN norm)."""
    return min(max_norm / (norm + 1e-6), 1.0) if norm == norm else math.nan


def _tables(grads: Any, *, writable: bool) -> list[Any]:
    """One segment table per run of consecutive arrays of one dtype (order is kept)."""
    if not isinstance(grads, (list, tuple)):
        raise TypeError(f"grads: expected a list of arrays, got {type(grads).__name__}")
    grads = [validation.array(f"grads[{i}]", g, writable=writable) for i, g in enumerate(grads)]
    if writable:
        overlap = first_overlap(grads)
        if overlap is not None:
            raise ValueError(
                f"grads[{overlap[1]}]: expected memory of its own, got an array sharing memory "
                f"with grads[{overlap[0]}] (it would be clipped twice)"
            )
    return [kernels.SegmentTable.of_arrays(list(run)) for _, run in groupby(grads, key=lambda g: g.dtype)]


def grad_norm(grads: Sequence[np.ndarray], norm_type: float = 2.0) -> float:
    """The ``norm_type``-norm (1, 2 or inf) of all ``grads`` taken together, in double."""
    kind = norm_kind(norm_type)
    return total_norm(_tables(grads, writable=False), kind, of_grads=False)


def abs_max(v: np.ndarray) -> Any:
    """max |v| in v's dtype (NaN if any element is), in one compiled pass without a
    temporary (torch's ``v.abs().max()``)."""
    return v.dtype.type(grad_norm([v], math.inf))


def clip_grad_norm_(
    grads: Sequence[np.ndarray],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Scale ``grads`` in place so their joint norm is at most about ``max_norm``.

    Multiplies every gradient by ``min(max_norm / (norm + 1e-6), 1)``, as torch does, and
    returns the norm before clipping. With ``error_if_nonfinite``, a NaN or infinite norm
    raises ``RuntimeError`` and leaves the gradients untouched.
    """
    max_norm = validation.real("max_norm", max_norm)
    kind = norm_kind(norm_type)
    error_if_nonfinite = validation.flag("error_if_nonfinite", error_if_nonfinite)
    tables = _tables(grads, writable=True)
    norm = total_norm(tables, kind, of_grads=False)
    if error_if_nonfinite and not math.isfinite(norm):
        raise RuntimeError(
            f"the total norm of order {norm_type} of the gradients is {norm}, so they cannot "
            "be clipped; error_if_nonfinite=False would clip them anyway"
        )
    factor = coefficient(norm, max_norm)
    for table in tables:
        kernels.scale(table, factor)
    return norm


def clip_grad_value_(grads: Sequence[np.ndarray], clip_value: float) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place (NaN stays)."""
    clip_value = validation.real("clip_value", clip_value)
    for table in _tables(grads, writable=True):
        kernels.clamp(table, clip_value)


__all__ = ["grad_norm", "clip_grad_norm_", "clip_grad_value_"]
