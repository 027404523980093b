"""16-bit arrays seen in float32, for the rules outside the engine (Adafactor, L-BFGS): the
values widened into a float32 copy, and float32 results stored back rounded as a parameter's
``rounding`` says (:mod:`fastopt.rules.storage`), through the kernels every rule's staging
uses, so that each element is rounded alike whatever the rule."""

from __future__ import annotations

import numpy as np

from ._kernels import kernels


def widened(a: np.ndarray) -> np.ndarray:
    """``a`` itself when of a compute dtype (float32, float64), else its values in float32."""
    if a.dtype.itemsize != 2:
        return a
    out = np.empty(a.shape, np.float32)
    kernels.widen_bits(a.reshape(-1).view(np.uint16), out.reshape(-1), a.dtype == np.float16)
    return out


def store(values: np.ndarray, to: np.ndarray, rounding: str, key: int = 0,
          comp: np.ndarray | None = None) -> None:
    """float32 ``values`` stored into the C-contiguous 16-bit array ``to`` as ``rounding``
    says (stochastically from the stream ``key``; Kahan's with the compensation ``comp``)."""
    kernels.store_rounded(values.reshape(-1), to.reshape(-1).view(np.uint16), rounding, key,
                          None if comp is None else comp.reshape(-1).view(np.uint16),
                          to.dtype == np.float16)
