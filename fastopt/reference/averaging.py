"""Reference rules that average their iterates: ASGD. Each updates ONE parameter array in
place, with its ``state`` (a dict under torch's key names, created on first use); see
:mod:`fastopt.reference`."""

from __future__ import annotations

import numpy as np

from .state import State, gradient, zeros_on_first_use

__all__ = ["asgd"]


def asgd(param: np.ndarray, grad: np.ndarray, state: State, *, step: int, lr: float,
         lambd: float, alpha: float, t0: float, weight_decay: float, maximize: bool) -> None:
    """ASGD (torch.optim.ASGD).

    ::

        g ← −g                                   if maximize
        g ← g + λ_wd p                           if λ_wd ≠ 0   (λ_wd: weight_decay)
        p ← p · (1 − λ η)                        (λ: lambd)
        p ← p − η g
        ax ← ax + (p − ax) μ   if μ ≠ 1,   else   ax ← p
        η ← fl32(γ / (1 + λ γ t)^α);   μ ← fl32(1 / max(1, t − t0))     (double, then float32)

    η and μ are the values the previous step stored. State: ``"eta"`` and ``"mu"`` (np.float32,
    created as γ and 1 with the state) and ``"ax"`` (zeros), created when first needed.
    ``step`` is t, the 1-based count of this update.
    """
    lr, lambd, alpha, t0 = map(float, (lr, lambd, alpha, t0))
    if "ax" not in state:
        state["eta"], state["mu"] = np.float32(lr), np.float32(1.0)
    eta, mu = float(state["eta"]), float(state["mu"])
    grad = gradient(param, grad, maximize=maximize, weight_decay=float(weight_decay))
    param *= 1 - lambd * eta
    param -= eta * grad
    ax = zeros_on_first_use(state, "ax", param)
    if mu != 1:
        ax += (param - ax) * mu
    else:
        ax[...] = param
    state["eta"] = np.float32(lr / ((1 + lambd * lr * step) ** alpha))
    state["mu"] = np.float32(1 / max(1, step - t0))
