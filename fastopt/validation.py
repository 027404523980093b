"""The one vocabulary of argument checks: hyper-parameters, schedule arguments, arrays.

A constraint is data (``Real(high=1.0, high_open=True)``, ``Flag()``, ``Pair(Real())``) and is
called with the argument's name and value: it returns the value in canonical form or raises
``TypeError`` (the wrong kind of thing) or ``ValueError`` (the right kind, a wrong value) with a
message naming the argument, what was expected and what was given. Rules, schedules, clipping
and the front ends all check through these, so one argument is refused alike everywhere.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _storage_dtypes() -> tuple[np.dtype, ...]:
    """The dtypes parameters may have: float32, float64, float16, and ml_dtypes' bfloat16
    where ml_dtypes is installed."""
    try:
        import ml_dtypes
    except ImportError:
        return (*FLOAT_DTYPES, np.dtype(np.float16))
    return (*FLOAT_DTYPES, np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


STORAGE_DTYPES = _storage_dtypes()


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _real_value(name: str, value: Any) -> Any:
    """``value`` if it is a real number; the number held by a one-element tensor or array (torch
    accepts ``lr=torch.tensor(0.01)``); otherwise TypeError."""
    if isinstance(value, numbers.Real) and not _is_bool(value):
        return value
    size = getattr(value, "numel", None) or getattr(value, "size", None)
    dtype = getattr(value, "dtype", None)
    if size is not None and dtype is not None and not _is_bool(value):
        count = size() if callable(size) else size
        kind = getattr(dtype, "is_floating_point", None)
        floating = kind if isinstance(kind, bool) else np.dtype(dtype).kind in "fiu"
        if count == 1 and floating and "bool" not in str(dtype):
            return float(value.item() if hasattr(value, "item") else value)
        if count != 1:
            raise ValueError(f"{name}: expected a number or a one-element tensor, got "
                             f"{count} elements")
    raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")


@dataclass(frozen=True)
class Real:
    """A finite real number in an interval (by default ``>= 0``).

    Returns it as a Python float, or unchanged with ``exact=True`` (schedules keep the user's
    numbers, so that their arithmetic is torch's to the last bit).
    """

    low: float = 0.0
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    exact: bool = False

    def __call__(self, name: str, value: Any) -> Any:
        # Checked at every step: plain floats skip the abstract-class checks.
        if type(value) is not float and type(value) is not int:
            value = _real_value(name, value)
        x = float(value)
        if not (self._above(x) and self._below(x)) or math.isinf(x):
            raise ValueError(f"{name}: expected {self.describe()}, got {value!r}")
        return value if self.exact else x

    def _above(self, x: float) -> bool:
        return x > self.low if self.low_open else x >= self.low

    def _below(self, x: float) -> bool:
        return x < self.high if self.high_open else x <= self.high

    def describe(self) -> str:
        low, high = math.isfinite(self.low), math.isfinite(self.high)
        if low and high:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"a number in {left}{self.low:g}, {self.high:g}{right}"
        if low:
            return f"a finite number {'>' if self.low_open else '>='} {self.low:g}"
        if high:
            return f"a finite number {'<' if self.high_open else '<='} {self.high:g}"
        return "a finite number"


@dataclass(frozen=True)
class Integer:
    """A whole number ``>= minimum`` (and ``<= maximum``, if given; a bool is not one)."""

    minimum: int = 0
    maximum: int | None = None

    def __call__(self, name: str, value: Any) -> int:
        if not isinstance(value, numbers.Integral) or _is_bool(value):
            raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            raise ValueError(f"{name}: expected {self.describe()}, got {value!r}")
        return int(value)

    def describe(self) -> str:
        if self.maximum is not None:
            return f"an integer from {self.minimum} to {self.maximum}"
        return f"an integer >= {self.minimum}"


@dataclass(frozen=True)
class Flag:
    """A bool (NumPy's included); 0 and 1 are refused: they are no switch."""

    def __call__(self, name: str, value: Any) -> bool:
        if type(value) is not bool and not isinstance(value, np.bool_):
            raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
        return bool(value)

    def describe(self) -> str:
        return "True or False"


@dataclass(frozen=True)
class Choice:
    """One of a few strings."""

    options: tuple[str, ...]

    def __call__(self, name: str, value: Any) -> str:
        if value not in self.options:
            raise ValueError(
                f"{name}: expected one of {', '.join(map(repr, self.options))}, got {value!r}")
        return value

    def describe(self) -> str:
        return "one of " + ", ".join(map(repr, self.options))


@dataclass(frozen=True)
class Optional:
    """None, or a value ``item`` admits."""

    item: Any

    def __call__(self, name: str, value: Any) -> Any:
        return None if value is None else self.item(name, value)

    def describe(self) -> str:
        return f"None or {self.item.describe()}"


@dataclass(frozen=True)
class Pair:
    """Two values, each meeting ``item`` (``betas``); returned as a tuple."""

    item: Any

    def __call__(self, name: str, value: Any) -> tuple[Any, Any]:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"{name}: expected a pair, got {value!r}")
        return self.item(f"{name}[0]", value[0]), self.item(f"{name}[1]", value[1])

    def describe(self) -> str:
        return f"a pair, each {self.item.describe()}"


@dataclass(frozen=True)
class Tuple(Pair):
    """``count`` values, each meeting ``item`` (Muon's three ``ns_coefficients``); returned as
    a tuple. A kind of Pair, so that groups keep it as a tuple of floats as they keep
    ``betas``."""

    count: int = 2

    def __call__(self, name: str, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, (tuple, list)) or len(value) != self.count:
            raise TypeError(f"{name}: expected a tuple of {self.count}, got {value!r}")
        return tuple(self.item(f"{name}[{i}]", v) for i, v in enumerate(value))

    def describe(self) -> str:
        return f"a tuple of {self.count}, each {self.item.describe()}"


@dataclass(frozen=True)
class Function:
    """A callable: a user's function (``lr_lambda``, ``scale_fn``), or ``None`` if optional."""

    optional: bool = False

    def __call__(self, name: str, value: Any) -> Any:
        if self.optional and value is None:
            return None
        if not callable(value):
            raise TypeError(f"{name}: expected {self.describe()}, got {type(value).__name__}")
        return value

    def describe(self) -> str:
        return "a function or None" if self.optional else "a function"


@dataclass(frozen=True)
class ListOf:
    """Any iterable but a string (``milestones``), each item meeting ``item``; returned as a list.

    Items are named by their index (``milestones[2]``), as :class:`Pair` names its two.
    """

    item: Any

    def __call__(self, name: str, value: Any) -> list[Any]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise TypeError(f"{name}: expected {self.describe()}, got {type(value).__name__}")
        return [self.item(f"{name}[{i}]", v) for i, v in enumerate(value)]

    def describe(self) -> str:
        return f"a list, each {self.item.describe()}"


@dataclass(frozen=True)
class PerGroup:
    """One value per parameter group, each meeting ``item``; returned as a list of ``groups``.

    A single value stands for every group; a list or tuple must hold exactly one per group
    (torch's schedules take ``max_lr=0.1`` and ``max_lr=[0.1, 0.01]`` alike).
    """

    item: Any
    groups: int

    def __call__(self, name: str, value: Any) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            return [self.item(name, value)] * self.groups
        if len(value) != self.groups:
            raise ValueError(f"{name}: expected one value per param group ({self.groups}), "
                             f"got {len(value)} values")
        return [self.item(f"{name}[{i}]", v) for i, v in enumerate(value)]

    def describe(self) -> str:
        return f"{self.item.describe()}, or a list of {self.groups} (one per param group)"


def step_count(name: str, value: Any) -> int:
    """A step count: a whole number >= 0 (torch keeps it as a float; an integral one is fine)."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a whole number, got {type(value).__name__}")
    if not math.isfinite(value) or not float(value).is_integer() or value < 0:
        raise ValueError(f"{name}: expected a whole number >= 0, got {value!r}")
    return int(value)


def representable(name: str, value: Any, dtype: type[np.floating], low: float,
                  high: float) -> np.floating:
    """A real number in [low, high] that ``dtype`` holds exactly, returned as that type (a
    rounded value would not be the state that was saved)."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    x = float(value)
    if not low <= x <= high:
        raise ValueError(f"{name}: expected a number in [{low:g}, {high:g}], got {value!r}")
    if float(dtype(x)) != x:
        raise ValueError(
            f"{name}: expected a value that {np.dtype(dtype).name} holds exactly, got {value!r}")
    return dtype(x)


def array(name: str, a: Any, *, writable: bool = True,
          dtypes: Sequence[np.dtype] | None = None) -> np.ndarray:
    """A C-contiguous, aligned ndarray of float32, float64, float16 or bfloat16 (or of one of
    ``dtypes``), writable unless told otherwise."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
    if dtypes is not None and a.dtype not in dtypes:
        raise TypeError(f"{name}: expected dtype {' or '.join(map(str, dtypes))}, got {a.dtype}")
    if dtypes is None and a.dtype not in STORAGE_DTYPES:
        raise TypeError(f"{name}: expected dtype float32, float64, float16 or bfloat16, got "
                        f"{a.dtype}")
    if not (a.flags.c_contiguous and a.flags.aligned):
        raise ValueError(
            f"{name}: expected a C-contiguous, aligned array, got strides {a.strides} "
            "(a copy would not be the caller's array)")
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


real = Real()  # a finite number >= 0: the most common constraint, callable as a function
flag = Flag()


def as_array(value: Any) -> np.ndarray:
    """A saved state value as a NumPy array: a tensor of torch's state dict (detached, on the
    host) or anything ``numpy.asarray`` takes."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def param_groups(params: Any) -> list[Any]:
    """The parameter groups an optimizer's ``params`` argument gives: a list of group dicts, or
    one group of the arrays listed (torch's two forms)."""
    if isinstance(params, (np.ndarray, dict)):
        raise TypeError("params: expected a list of arrays or of parameter-group dicts, "
                        f"got {type(params).__name__}")
    groups = list(params)
    if not groups:
        raise ValueError("params: expected at least one parameter, got an empty list")
    return groups if isinstance(groups[0], dict) else [{"params": groups}]


def numbered_groups(groups: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``param_groups`` of torch's state-dict layout: each group's hyper-parameters, with
    its ``params`` replaced by their indices, counted on across the groups."""
    numbered, start = [], 0
    for group in groups:
        count = len(group["params"])
        numbered.append({**{k: v for k, v in group.items() if k != "params"},
                         "params": list(range(start, start + count))})
        start += count
    return numbered
