"""Adafactor, torch.optim.Adafactor's rule: each matrix's second moment factored into a row and
a column vector, so that its state is rows + cols numbers rather than rows × cols.

Per parameter p of n elements at its step t (torch 2.13's single-tensor code, in the order it
evaluates; γ = lr, τ = beta2_decay, λ = weight_decay, (ε₁, ε₂) = eps)::

    β̂ = t^τ,   ρ = min(γ, 1/√t),   α = ρ · max(ε₂, ‖p‖ / √n)
    p ← p · (1 − γλ)                                        (when λ ≠ 0)
    2 or more dimensions, per matrix (the last two, rows × cols):
        R ← lerp(R, Σ_j g² / cols, β̂),   C ← lerp(C, Σ_i g² / rows, β̂)
        V = R Cᵀ / max(mean(R), ε₁)
    fewer:  V ← lerp(V, g², β̂)
    U = g / √max(V, ε₁²)                                    (−g to maximize)
    p ← p − α / max(1, ‖U‖ / (√n d)) · U

ε₁ = None is the machine epsilon of the dtype of a group's first parameter with a gradient
(torch resolves it once per group). The three passes over p and g are compiled
(``_kernels/factored.pxi``); R and C, rows + cols numbers, are updated here. State entries
are torch's: ``step`` and ``row_var`` (shape ``[..., rows, 1]``) with ``col_var``
(``[..., 1, cols]``), or ``variance`` (the parameter's shape).

Storage (fastopt.rules.storage, as every rule's): a bfloat16 or float16 parameter, or a
gradient of another dtype than its parameter's, is stepped in float32 on a copy of its values,
then stored rounded as ``rounding`` says (``kahan_comp`` holding Kahan's compensation); the
state is float32 by default, or ``state_dtype`` (bfloat16, float16), rounded to nearest. 8-bit
state is refused: the factored state is a row and a column per matrix, not blocks of elements.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from . import validation
from ._kernels import kernels
from .stored import store, widened
from .rules.storage import COMPENSATION, Storage, refuse_8bit
from .rules.storage import hypers as storage_hypers

STORAGE_HYPERS = storage_hypers()  # every rule's storage options, their defaults and checks
STORAGE_DEFAULTS = {h.name: h.default for h in STORAGE_HYPERS}
DEFAULTS = {"lr": 1e-2, "beta2_decay": -0.8, "eps": (None, 1e-3), "d": 1.0,
            "weight_decay": 0.0, "maximize": False, **STORAGE_DEFAULTS}
ROLES = ("row_var", "col_var", "variance")
ARRAYS = (*ROLES, COMPENSATION)  # the state arrays a parameter may have, by name
_refuse_8bit = refuse_8bit("Adafactor", "its factored state is a row and a column per matrix, "
                                        "not blocks of a tensor's elements")


class Hypers(NamedTuple):
    lr: float
    beta2_decay: float
    eps1: float | None
    eps2: float
    d: float
    weight_decay: float
    maximize: bool
    storage: Storage


def check_hypers(group: Mapping[str, Any]) -> Hypers:
    """A group's hyper-parameters, checked (torch's bounds: lr, ε and λ ≥ 0, τ ≤ 0, d ≥ 1);
    the storage options a group leaves out are the defaults."""
    eps = group["eps"]
    if not isinstance(eps, (tuple, list)) or len(eps) != 2:
        raise TypeError(f"eps: expected a pair (eps1 or None, eps2), got {eps!r}")
    storage = group_storage(group)
    return Hypers(
        lr=validation.Real()("lr", group["lr"]),
        beta2_decay=validation.Real(low=-math.inf, high=0.0)("beta2_decay", group["beta2_decay"]),
        eps1=validation.Optional(validation.Real())("eps[0]", eps[0]),
        eps2=validation.Real()("eps[1]", eps[1]),
        d=validation.Real(low=1.0)("d", group["d"]),
        weight_decay=validation.Real()("weight_decay", group["weight_decay"]),
        maximize=validation.Flag()("maximize", group["maximize"]),
        storage=storage,
    )


def group_storage(group: Mapping[str, Any]) -> Storage:
    """A group's storage options, checked (the defaults where it has none)."""
    storage = Storage(**{h.name: h.check(h.name, group.get(h.name, h.default))
                         for h in STORAGE_HYPERS})
    _refuse_8bit(storage)
    return storage


def check_storage(stored: Storage, dtypes: list[np.dtype]) -> None:
    """Refuse storage options that parameters of these dtypes cannot have, saying why."""
    stored.check(ROLES, dtypes)


def state_shapes(shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The state arrays of a parameter of ``shape``, by torch's names, with their shapes."""
    if len(shape) > 1:
        return {"row_var": (*shape[:-1], 1), "col_var": (*shape[:-2], 1, shape[-1])}
    return {"variance": tuple(shape)}


def state_dtypes(param: np.dtype, stored: Storage) -> dict[str, np.dtype]:
    """The storage dtype of each state array of a parameter of dtype ``param``."""
    dtypes = {key: stored.state(key, param) for key in ROLES}
    if stored.rounding_of(param) == "kahan":
        dtypes[COMPENSATION] = param
    return dtypes


def new_state(param: np.ndarray, stored: Storage = Storage()) -> dict[str, Any]:
    """A parameter's state before its first step (torch's: zeros, step 0), in the storage
    dtypes of ``stored``; a Kahan-rounded parameter's compensation beside it."""
    shapes = {**state_shapes(param.shape), COMPENSATION: param.shape}
    return {"step": 0.0, **{key: np.zeros(shapes[key], dtype)
                            for key, dtype in state_dtypes(param.dtype, stored).items()
                            if key in shapes}}


def check_laid_out(where: str, have: Mapping[str, np.dtype], param: np.dtype,
                   stored: Storage) -> None:
    """Refuse storage options other than those a parameter's state was made with (``have``:
    its state arrays' dtypes by name): a step does not convert state."""
    want = {k: d for k, d in state_dtypes(param, stored).items()
            if k in have or k == COMPENSATION}
    if want != dict(have):
        shown = {k: str(d) for k, d in have.items()}
        raise ValueError(f"{where}: its state was made as {shown}; the optimizer keeps a "
                         "parameter's state as it was created, so its group's state_dtype "
                         "and rounding cannot change")


def machine_eps(dtype: np.dtype) -> float:
    """The machine epsilon of a parameter dtype (bfloat16's is ml_dtypes', 2⁻⁷)."""
    if dtype.name == "bfloat16":
        import ml_dtypes

        return float(ml_dtypes.finfo(dtype).eps)
    return float(np.finfo(dtype).eps)


def group_eps1(h: Hypers, first: np.dtype) -> float:
    """ε₁, or the machine epsilon of ``first``, the group's first stepped parameter's dtype."""
    return machine_eps(first) if h.eps1 is None else h.eps1


def step_param(param: np.ndarray, grad: np.ndarray, state: dict[str, Any], h: Hypers,
               eps1: float) -> None:
    """One Adafactor step of ``param`` (C-contiguous float32 or float64) from ``grad`` (its
    shape and dtype): ``state``'s arrays (C-contiguous, of :func:`state_shapes`) and its
    ``step`` (a float) are updated in place."""
    t = state["step"] + 1.0
    state["step"] = t
    n = param.size
    if n == 0:  # nothing to update (torch divides by √n = 0 here)
        return
    weight = t ** h.beta2_decay
    rho = min(h.lr, 1 / t ** 0.5)
    dtype = param.dtype.type
    if param.ndim > 1:
        rows, cols = param.shape[-2:]
        batch = n // (rows * cols)
        row_sq, col_sq = np.empty(batch * rows), np.empty(batch * cols)
        p_sq = kernels.adafactor_moments(param, grad, (row_sq, col_sq), 0.0, batch, rows)
        row_var = state["row_var"].reshape(batch * rows)
        col_var = state["col_var"].reshape(batch * cols)
        lerp_(row_var, (row_sq / cols).astype(dtype), weight)
        lerp_(col_var, (col_sq / rows).astype(dtype), weight)
        means = np.maximum(row_var.reshape(batch, rows).mean(axis=1), dtype(eps1))
        variance: Any = (row_var, col_var, means)
    else:
        variance = state["variance"].reshape(n)
        p_sq = kernels.adafactor_moments(param, grad, variance, weight, 1, 1)
    eps1_sq = eps1 * eps1
    u_sq = kernels.adafactor_update(param, grad, variance, eps1_sq, False)
    alpha = max(h.eps2, math.sqrt(p_sq) / n ** 0.5) * rho
    denom = max(1.0, math.sqrt(u_sq) / (n ** 0.5 * h.d))
    decay = 1 - h.lr * h.weight_decay if h.weight_decay != 0 else 1.0
    scale = (alpha if h.maximize else -alpha) / denom
    kernels.adafactor_update(param, grad, variance, eps1_sq, True, decay, scale)


def step_stored(param: np.ndarray, grad: np.ndarray, state: dict[str, Any], h: Hypers,
                eps1: float, key: int) -> None:
    """One Adafactor step of ``param`` of any storage dtype, from ``grad`` of any (its shape),
    ``state`` in the dtypes of :func:`state_dtypes`: the float32 (float64) step of
    :func:`step_param` on float32 copies of what is stored in 16 bits, widened and stored by
    the kernels as every rule's: the state rounded to nearest, the parameter as its rounding
    says (stochastically from the stream ``key``). Arrays of the compute dtype are stepped
    where they are."""
    work = widened(param)
    values = {k: widened(v) if isinstance(v, np.ndarray) else v
              for k, v in state.items() if k != COMPENSATION}
    step_param(work, widened(grad), values, h, eps1)
    for k, v in values.items():
        if isinstance(v, np.ndarray) and v is not state[k]:
            store(v, state[k], "nearest")
        else:
            state[k] = v
    if work is not param:
        store(work, param, h.storage.rounding_of(param.dtype), key, state.get(COMPENSATION))


def lerp_(start: np.ndarray, end: np.ndarray, weight: float) -> None:
    """start ← lerp(start, end, w) in start's dtype, by torch's formula (the lerp of
    ``_kernels/elementwise.pxi``)."""
    w = start.dtype.type(weight)
    diff = end - start
    if abs(w) < 0.5:
        start += w * diff
    else:
        np.subtract(end, diff * (1 - w), out=start)
