"""How a group keeps its numbers: the state's storage dtype per role, and how a low-precision
parameter is rounded after its update (docs/semantics.md, "Low-precision storage").

Arithmetic is float32 for float32, bfloat16 and float16 storage, float64 for float64; these
options only say how results are stored. Every rule takes them (as keyword arguments and group
entries):

- ``state_dtype``: None (float64 state for float64 parameters, float32 for the others), one of
  ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"float64"``, ``"8bit"`` (block-quantised:
  one byte per element on the dynamic code, and a float32 scale per block of 256), or a
  mapping from role names to those (roles it leaves out take the default);
- ``rounding``: how bfloat16 and float16 parameters are stored: ``"nearest"`` (even),
  ``"stochastic"`` (bfloat16 only: unbiased, from a counter-based generator keyed by the seed,
  the step and the element), ``"kahan"`` (a compensation buffer of the parameter's dtype,
  state ``kahan_comp``); None: stochastic for bfloat16, kahan for float16;
- ``seed``: the stochastic rounding stream's seed (a group entry, so state dicts resume it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import validation

STATE_DTYPES = ("float32", "float64", "bfloat16", "float16", "8bit")
ROUNDINGS = ("nearest", "stochastic", "kahan")
COMPENSATION = "kahan_comp"  # optimi's name for the Kahan compensation buffer
LOW = ("bfloat16", "float16")


Q8 = np.dtype(np.uint8)  # the dtype of 8-bit state: its codes
BLOCK = 256  # elements per 8-bit block, each with its float32 scale


def dtype(name: str) -> np.dtype:
    """The NumPy dtype of a storage type's name (bfloat16 is ml_dtypes'; 8-bit state is kept
    as uint8 codes)."""
    if name == "8bit":
        return Q8
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise ImportError("bfloat16 storage needs the ml_dtypes package "
                              "(pip install ml_dtypes)") from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def name_of(storage: np.dtype) -> str:
    """A storage dtype's name, as ``state_dtype`` takes it."""
    return "8bit" if storage == Q8 else storage.name


def blocks(n: int) -> int:
    """8-bit blocks of n elements."""
    return -(-n // BLOCK)


def scale_key(role: str) -> str:
    """The state entry of an 8-bit role's block scales (each block's largest magnitude)."""
    return f"{role}_absmax"


def state_nbytes(storage: np.dtype, n: int) -> int:
    """Bytes of n elements of state: 8-bit codes are followed, on a 4-byte boundary, by one
    float32 scale per block."""
    if storage == Q8:
        return -(-n // 4) * 4 + 4 * blocks(n)
    return n * storage.itemsize


def dynamic_code(signed: bool) -> np.ndarray:
    """The 256 values of the 8-bit dynamic code, sorted, as float32 (bitsandbytes' dynamic
    map, from Dettmers' 8-bit approximations; here each value is computed in double and
    rounded once).

    For decades k = 0 .. 6, the midpoints of ``2^(k+s) + 1`` evenly spaced points from 0.1
    to 1, times ``10^(k − 6)`` (``s`` = 0 signed, 1 unsigned), the signed code with each
    negated too; then 0 and 1. The code's resolution is relative, as moments need: about 1%
    of a value near 1, the same share of smaller ones down to 10⁻⁶ of a block's largest."""
    values = [0.0, 1.0]
    for k in range(7):
        points = 2 ** (k + (0 if signed else 1)) + 1
        ends = [0.1 + 0.9 * j / (points - 1) for j in range(points)]
        means = [(a + b) / 2 * 10.0 ** (k - 6) for a, b in zip(ends, ends[1:])]
        values += means + ([-m for m in means] if signed else [])
    code = np.sort(np.array(values, dtype=np.float32))
    assert code.size == 256
    return code


@dataclass(frozen=True)
class StateDtype:
    """A ``state_dtype`` option: None, a storage type's name, or a mapping from role names to
    such; returned hashable (None, a name, or sorted (role, name) pairs)."""

    def __call__(self, name: str, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Mapping):
            for role, dtype_name in value.items():
                validation.Choice(STATE_DTYPES)(f"{name}[{role!r}]", _name(dtype_name))
            return tuple(sorted((str(role), _name(v)) for role, v in value.items()))
        return validation.Choice(STATE_DTYPES)(name, _name(value))

    def describe(self) -> str:
        return "None, a dtype name or a mapping from roles to dtype names"


def _name(value: Any) -> Any:
    """A dtype given as a NumPy or torch dtype, by its name."""
    if isinstance(value, str):
        return value
    text = str(value).removeprefix("torch.")
    try:
        return np.dtype(value).name if not text.startswith("bfloat16") else "bfloat16"
    except TypeError:
        return text


ROUNDING = validation.Optional(validation.Choice(ROUNDINGS))


@dataclass(frozen=True)
class Storage:
    """A group's storage options, checked against its parameters' dtypes."""

    state_dtype: Any = None
    rounding: str | None = None
    seed: int = 0

    def state(self, role: str, param: np.dtype) -> np.dtype:
        """The storage dtype of ``role`` for a parameter of dtype ``param``."""
        if role == COMPENSATION:
            return param
        chosen = dict(self.state_dtype) if isinstance(self.state_dtype, tuple) else {}
        name = chosen.get(role, self.state_dtype if isinstance(self.state_dtype, str) else None)
        if name is None:
            return np.dtype(np.float64) if param == np.float64 else np.dtype(np.float32)
        return dtype(name)

    def rounding_of(self, param: np.dtype) -> str:
        if param.name not in LOW:
            return "nearest"
        if self.rounding is None:
            return "stochastic" if param.name == "bfloat16" else "kahan"
        return self.rounding

    def check(self, roles: tuple[str, ...], params: list[np.dtype]) -> None:
        """Refuse options these parameters cannot have, saying why."""
        if isinstance(self.state_dtype, tuple):
            unknown = {role for role, _ in self.state_dtype} - set(roles)
            if unknown:
                raise ValueError(f"state_dtype: no state roles {sorted(unknown)}; the rule's "
                                 f"are {list(roles)}")
        for param in dict.fromkeys(params):
            wide = param == np.float64
            for role in roles:
                if (self.state(role, param) == np.float64) != wide:
                    raise ValueError(
                        f"state_dtype: float64 state goes with float64 parameters and only "
                        f"with them, got {name_of(self.state(role, param))} state for "
                        f"{param.name} parameters")
            rounding = self.rounding
            if rounding not in (None, "nearest") and param.name not in LOW:
                raise ValueError(f"rounding: {rounding!r} is for bfloat16 and float16 "
                                 f"parameters, got {param.name} ones")
            if rounding == "stochastic" and param.name == "float16":
                raise ValueError("rounding: 'stochastic' is for bfloat16 parameters; float16 "
                                 "ones take 'kahan' or 'nearest'")


    def check_same(self, where: str, other: Storage) -> None:
        """Refuse storage options other than these: state buffers are laid out, and
        compensation buffers kept, for the options an optimizer was made with."""
        for name in ("state_dtype", "rounding"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                raise ValueError(f"{where}['{name}']: the optimizer keeps its state as it was "
                                 f"created, with {name}={_shown(mine)}, got {_shown(theirs)}")


def _shown(value: Any) -> Any:
    return dict(value) if isinstance(value, tuple) else value


def storage_of(h: Any) -> Storage:
    """The storage options of checked hyper-parameters ``h``."""
    return Storage(h.state_dtype, h.rounding, h.seed)


def hypers() -> tuple:
    """The storage options as keyword-only hyper-parameters, which every rule takes."""
    from .base import Hyper

    # All three are the optimizer classes' (the functional API steps float32 and float64
    # arrays as they are), and fixed once a group's state is laid out but for the seed.
    return (Hyper("state_dtype", None, StateDtype(), keyword_only=True, optional=True),
            Hyper("rounding", None, ROUNDING, keyword_only=True, optional=True),
            Hyper("seed", 0, validation.Integer(0, 2**64 - 1), keyword_only=True, optional=True))
