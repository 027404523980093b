"""Reference SparseAdam, as torch.optim.SparseAdam computes it (``torch.optim._functional.
sparse_adam``). It updates ONE parameter in place, with its ``state`` (``exp_avg``,
``exp_avg_sq``), from a row-sparse gradient ``(indices, values)`` (:mod:`fastopt.rows`); see
:mod:`fastopt.reference`."""

from __future__ import annotations

import math

import numpy as np

from .state import State, is_coalesced, zeros_on_first_use

__all__ = ["sparse_adam"]


def _coalesced(indices: np.ndarray, values: np.ndarray,
               width: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct row numbers and their rows (n, width): duplicates summed in their order, as
    torch's coalesce."""
    values = values.reshape(len(indices), width)
    if is_coalesced(indices):
        return indices, values
    distinct, where = np.unique(indices, return_inverse=True)
    summed = np.zeros((len(distinct), values.shape[1]), values.dtype)
    np.add.at(summed, where, values)
    return distinct, summed


def sparse_adam(param: np.ndarray, grad: tuple[np.ndarray, np.ndarray], state: State, *,
                step: int, lr: float, betas: tuple[float, float], eps: float,
                maximize: bool) -> None:
    """SparseAdam, for the rows r the gradient has (the others and their moments untouched).

    ::

        g ← −g                                   if maximize
        m_r ← m_r + (g_r − m_r)(1 − β₁)
        v_r ← v_r + (g_r² − v_r)(1 − β₂)
        p_r ← p_r + (−γ √(1 − β₂ᵗ) / (1 − β₁ᵗ)) · (m_r / (√v_r + ε))

    with each new moment computed as torch does, its increment added to its old value.
    ``step`` is t, the 1-based count of this update. State: ``"exp_avg"`` (m) and
    ``"exp_avg_sq"`` (v), created as zeros when first needed.
    """
    beta1, beta2 = map(float, betas)
    step_size = float(lr) * math.sqrt(1 - beta2**step) / (1 - beta1**step)
    indices, values = grad
    shape = (param.shape[0], math.prod(param.shape[1:])) if param.ndim else (1, 1)  # the rows
    rows, g = _coalesced(np.asarray(indices, np.int64), values, shape[1])
    if maximize:
        g = -g
    param_rows = param.reshape(shape)
    exp_avg = zeros_on_first_use(state, "exp_avg", param).reshape(shape)
    exp_avg_sq = zeros_on_first_use(state, "exp_avg_sq", param).reshape(shape)
    old_avg, old_sq = exp_avg[rows], exp_avg_sq[rows]
    avg_update = (g - old_avg) * (1 - beta1)
    sq_update = (g * g - old_sq) * (1 - beta2)
    exp_avg[rows] = old_avg + avg_update
    exp_avg_sq[rows] = old_sq + sq_update
    denom = np.sqrt(sq_update + old_sq) + float(eps)
    param_rows[rows] += -step_size * ((avg_update + old_avg) / denom)
