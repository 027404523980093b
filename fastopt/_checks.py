"""Validation of arguments, shared by the optimizers and the functional API.

Every check raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right kind, wrong
value) with a message naming the argument, what was expected and what was given.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def real(name: str, value: Any, *, below: float = math.inf, upper_open: bool = False) -> float:
    """A finite real number ``x`` with ``0 <= x <= below`` (``< below`` if ``upper_open``)."""
    # Checked at every step: plain floats and ints skip the (slow) abstract-class checks.
    if type(value) is not float and type(value) is not int and (
        isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)
    ):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    x = float(value)
    if not (0.0 <= x < below if upper_open else 0.0 <= x <= below) or x == math.inf:
        bound = f"[0, {below:g}{')' if upper_open else ']'}" if below != math.inf else ">= 0"
        raise ValueError(f"{name}: expected a finite number {bound}, got {value!r}")
    return x


def flag(name: str, value: Any) -> bool:
    if type(value) is not bool and not isinstance(value, np.bool_):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def betas(name: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name}: expected a pair (beta1, beta2), got {value!r}")
    return (
        real(f"{name}[0]", value[0], below=1.0, upper_open=True),
        real(f"{name}[1]", value[1], below=1.0, upper_open=True),
    )


def step_count(name: str, value: Any) -> int:
    """A step count: a whole number >= 0 (torch keeps it as a float; an integral one is fine)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a whole number, got {type(value).__name__}")
    if not float(value).is_integer() or value < 0:
        raise ValueError(f"{name}: expected a whole number >= 0, got {value!r}")
    return int(value)


def representable(
    name: str, value: Any, dtype: type[np.floating], low: float, high: float
) -> np.floating:
    """A real number in [low, high] that ``dtype`` holds exactly, returned as that type (a
    rounded value would not be the state that was saved)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    x = float(value)
    if not low <= x <= high:
        raise ValueError(f"{name}: expected a number in [{low:g}, {high:g}], got {value!r}")
    if float(dtype(x)) != x:
        raise ValueError(
            f"{name}: expected a value that {np.dtype(dtype).name} holds exactly, got {value!r}"
        )
    return dtype(x)


def array(name: str, a: Any, *, writable: bool = True) -> np.ndarray:
    """A C-contiguous, aligned float32/float64 ndarray (writable unless told otherwise)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {a.dtype}")
    if not (a.flags.c_contiguous and a.flags.aligned):
        raise ValueError(
            f"{name}: expected a C-contiguous, aligned array, got strides {a.strides} "
            "(a copy would not be the caller's array)"
        )
    if writable and not a.flags.writeable:
        raise ValueError(f"{name}: expected a writable array, got a read-only one")
    return a


def like(name: str, a: Any, reference: np.ndarray, reference_name: str, **kw: Any) -> np.ndarray:
    """An array as :func:`array` with exactly the shape and dtype of ``reference``."""
    array(name, a, **kw)
    if a.dtype != reference.dtype:
        raise TypeError(f"{name}: expected dtype {reference.dtype} ({reference_name}'s), got {a.dtype}")
    if a.shape != reference.shape:
        raise ValueError(f"{name}: expected shape {reference.shape} ({reference_name}'s), got {a.shape}")
    return a
