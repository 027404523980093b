"""Reference rules that step by the sign of a quantity: Rprop and Lion. Each updates ONE
parameter array in place, with its ``state`` (a dict of arrays under their owners' key names,
created on first use); see :mod:`fastopt.reference`."""

from __future__ import annotations

import numpy as np

from .state import State, gradient, running_average, zeros_on_first_use

__all__ = ["rprop", "lion"]


def torch_sign(x: np.ndarray) -> np.ndarray:
    """sign(x) as torch.sign computes it: −1, 0 or 1, and 0 for NaN (np.sign gives NaN)."""
    return (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)


def rprop(param: np.ndarray, grad: np.ndarray, state: State, *, lr: float,
          etas: tuple[float, float], step_sizes: tuple[float, float], maximize: bool) -> None:
    """Rprop (torch.optim.Rprop).

    ::

        g ← −g                                   if maximize
        s = sign(g · prev)                       (0 where g · prev is 0 or NaN, as torch)
        s ← η₊ where s > 0;  s ← η₋ where s < 0;  s ← 1 where s = 0
        step_size ← min(max(step_size · s, step_sizes[0]), step_sizes[1])
        g ← 0 where s = η₋
        p ← p − sign(g) · step_size
        prev ← g

    State: ``"prev"`` (created as zeros) and ``"step_size"`` (created filled with ``lr``) when
    first needed; ``lr`` is read only then.
    """
    etaminus, etaplus = map(float, etas)
    low, high = map(float, step_sizes)
    grad = gradient(param, grad, maximize=maximize, weight_decay=0.0)
    prev = zeros_on_first_use(state, "prev", param)
    if "step_size" not in state:
        state["step_size"] = np.full_like(param, float(lr))
    step_size = state["step_size"]

    factor = torch_sign(grad * prev)
    # In turn, as torch replaces them: an η that rounds to 0 or 1 in float32 acts as there.
    factor = np.where(factor > 0, etaplus, factor)
    factor = np.where(factor < 0, etaminus, factor)
    factor = np.where(factor == 0, 1, factor)
    step_size *= factor
    np.minimum(np.maximum(step_size, low), high, out=step_size)  # NaN stays NaN
    grad = np.where(factor == etaminus, 0, grad)
    param -= torch_sign(grad) * step_size
    prev[...] = grad


def lion(param: np.ndarray, grad: np.ndarray, state: State, *, lr: float,
         betas: tuple[float, float], weight_decay: float, maximize: bool) -> None:
    """Lion (lion-pytorch's ``Lion``).

    ::

        g ← −g                                   if maximize
        p ← p · (1 − γ λ)
        c = β₁ m + (1 − β₁) g
        p ← p − γ sign(c)                        (sign 0 for NaN, as torch)
        m ← β₂ m + (1 − β₂) g

    State: ``"exp_avg"`` (m), created as zeros when first needed.
    """
    lr, weight_decay = float(lr), float(weight_decay)
    beta1, beta2 = map(float, betas)
    grad = gradient(param, grad, maximize=maximize, weight_decay=0.0)
    param *= 1 - lr * weight_decay  # always, as lion-pytorch (× 1 when λ = 0 changes nothing)
    exp_avg = zeros_on_first_use(state, "exp_avg", param)
    interpolated = beta1 * exp_avg
    interpolated += (1 - beta1) * grad
    param -= lr * torch_sign(interpolated)
    running_average(state, "exp_avg", param, grad, beta2)
