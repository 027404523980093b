"""Reference L-BFGS (torch.optim.LBFGS, torch 2.13): one ``step(closure)`` of ONE parameter
array in place, with its ``state`` (torch's keys, created on first use); see
:mod:`fastopt.reference`. fastopt's own L-BFGS (:mod:`fastopt.lbfgs`: the two-loop recursion
and the parameter updates in compiled passes) is checked against it.

Every vector operation is NumPy's, in the parameter's dtype, each product and sum rounded once
(no fused multiply-add). The two-loop recursion's dot products are taken in double and rounded
to the parameter's dtype, the rounding fastopt documents for its compiled passes; the others
(y·s, y·y, g·d) are NumPy's, as fastopt takes them. The strong-Wolfe search is
:func:`fastopt.line_search.strong_wolfe`. It is shared, not rewritten: it is plain NumPy with no
compiled pass to check, and tests/test_lbfgs_torch.py checks it against torch's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..line_search import strong_wolfe
from .state import State

__all__ = ["lbfgs"]


def _dot(a: np.ndarray, b: np.ndarray) -> np.floating:
    """a·b summed in double, rounded to a's dtype."""
    return a.dtype.type(np.dot(a.astype(np.float64), b.astype(np.float64)))


def lbfgs(param: np.ndarray, closure: Callable[[], tuple[Any, np.ndarray]], state: State, *,
          lr: float, max_iter: int, max_eval: int, tolerance_grad: float,
          tolerance_change: float, history_size: int, line_search_fn: str | None) -> Any:
    """L-BFGS (torch.optim.LBFGS), up to ``max_iter`` iterations on one parameter; returns the
    first evaluation's loss. ``closure()`` evaluates at ``param``'s current values and returns
    ``(loss, grad)``, ``grad`` of ``param``'s shape.

    ::

        d ← −g                                           first iteration of all
        y ← g − g_prev,  s ← t·d                         later ones:
        if y·s > 1e-10: remember (y, s, ρ = 1/(y·s)) (the oldest forgotten past history_size)
                        and H ← (y·s)/(y·y)
        q ← −g;  for the pairs newest first:  α_i ← ρ_i s_i·q,  q ← q − α_i y_i
        d ← H q; for the pairs oldest first:  β_i ← ρ_i y_i·d,  d ← d + (α_i − β_i) s_i
        t ← min(1, 1/Σ|g|)·lr on the first iteration of all, else lr
        stop if g·d > −tolerance_change; else x ← x + t·d (t from the line search if any),
        and stop on max_iter, max_eval, max|g| ≤ tolerance_grad, max|t·d| ≤ tolerance_change
        or |loss − loss_prev| < tolerance_change
    """
    x = param.reshape(-1)  # a view: param is C-contiguous

    def evaluate() -> tuple[float, np.ndarray]:
        loss, grad = closure()
        return float(loss), np.array(grad, dtype=param.dtype).reshape(-1)

    state.setdefault("func_evals", 0)
    state.setdefault("n_iter", 0)
    first_loss, g = evaluate()
    loss, evals = first_loss, 1
    state["func_evals"] += 1
    if np.max(np.abs(g)) <= tolerance_grad:
        return first_loss
    d, t = state.get("d"), state.get("t")
    old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
    h_diag, prev_grad, prev_loss = state.get("H_diag"), state.get("prev_flat_grad"), state.get(
        "prev_loss")
    for it in range(1, max_iter + 1):
        state["n_iter"] += 1
        if state["n_iter"] == 1:
            d, old_dirs, old_stps, ro, h_diag = -g, [], [], [], 1
        else:
            y, s = g - prev_grad, d * t
            ys = np.dot(y, s)
            if ys > 1e-10:
                if len(old_dirs) == history_size:
                    old_dirs, old_stps, ro = old_dirs[1:], old_stps[1:], ro[1:]
                old_dirs, old_stps, ro = [*old_dirs, y], [*old_stps, s], [*ro, 1.0 / ys]
                h_diag = ys / np.dot(y, y)
            al = state.setdefault("al", [None] * history_size)
            q = -g
            for i in range(len(old_dirs) - 1, -1, -1):
                al[i] = _dot(old_stps[i], q) * ro[i]
                q = q + (-al[i]) * old_dirs[i]
            d = q * h_diag
            for i in range(len(old_dirs)):
                be_i = _dot(old_dirs[i], d) * ro[i]
                d = d + (al[i] - be_i) * old_stps[i]
        prev_grad, prev_loss = g.copy(), loss
        t = min(1.0, 1.0 / np.sum(np.abs(g))) * lr if state["n_iter"] == 1 else lr
        gtd = np.dot(g, d)
        if gtd > -tolerance_change:
            break
        used = 0
        if line_search_fn is not None:
            start = x.copy()

            def along(t: Any, d: np.ndarray = d) -> tuple[float, np.ndarray]:
                x[...] = start + param.dtype.type(t) * d
                try:
                    return evaluate()
                finally:
                    x[...] = start

            loss, g, t, used = strong_wolfe(along, t, d, loss, g, gtd, max_ls=max_eval - evals)
            x[...] = x + param.dtype.type(t) * d
            converged = np.max(np.abs(g)) <= tolerance_grad
        else:
            x[...] = x + param.dtype.type(t) * d
            converged = False
            if it != max_iter:  # the last point is evaluated by the next step
                loss, g = evaluate()
                converged = np.max(np.abs(g)) <= tolerance_grad
                used = 1
        evals += used
        state["func_evals"] += used
        if it == max_iter or evals >= max_eval or converged:
            break
        if np.max(np.abs(d * param.dtype.type(t))) <= tolerance_change:
            break
        if abs(loss - prev_loss) < tolerance_change:
            break
    state.update({"d": d, "t": t, "old_dirs": old_dirs, "old_stps": old_stps, "ro": ro,
                  "H_diag": h_diag, "prev_flat_grad": prev_grad, "prev_loss": prev_loss})
    return first_loss
