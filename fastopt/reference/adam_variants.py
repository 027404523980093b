"""Reference rules of pytorch-optimizer's Adam variants: ADOPT. Each updates ONE
parameter array in place, with its ``state`` (a dict of arrays under pytorch-optimizer's key
names, created on first use); see :mod:`fastopt.reference`."""

from __future__ import annotations

import math

import numpy as np

from .state import State, gradient, running_average_sq, zeros_on_first_use

__all__ = ["adopt"]


def _decayed(param: np.ndarray, grad: np.ndarray, *, lr: float, weight_decay: float,
             weight_decouple: bool, fixed_decay: bool, maximize: bool) -> np.ndarray:
    """g after pytorch-optimizer's maximize and weight decay: ``g ← −g`` to maximize; then
    ``g ← g + λ p``, or with ``weight_decouple`` ``p ← p · (1 − λ γ)`` (``p · (1 − λ)`` with
    ``fixed_decay``)."""
    return gradient(param, grad, maximize=maximize, weight_decay=float(weight_decay),
                    lr=1.0 if fixed_decay else float(lr), decoupled=weight_decouple)


def adopt(param: np.ndarray, grad: np.ndarray, state: State, *, step: int, lr: float,
          betas: tuple[float, float], clip_exponent: float | None, weight_decay: float,
          weight_decouple: bool, fixed_decay: bool, eps: float, maximize: bool) -> None:
    """ADOPT (pytorch-optimizer's ``ADOPT``; its ``clip_lambda`` is ``step ** clip_exponent``).

    ::

        g ← −g                                   if maximize
        g ← g + λ p    or, weight_decouple,   p ← p · (1 − γ λ)   (p · (1 − λ), fixed_decay)
        t = 1:   v ← v + g²                      (nothing else)
        t > 1:   u = g / max(√v, ε)              (v before this step's update)
                 u ← min(max(u, −tᵉ), tᵉ)        unless clip_exponent e is None
                 m ← β₁ m + (1 − β₁) u
                 p ← p − γ m
                 v ← β₂ v + ((1 − β₂) g) g

    ``step`` is t, the 1-based count of this update. State: ``"exp_avg"`` (m) and
    ``"exp_avg_sq"`` (v), created as zeros when first needed.
    """
    lr, eps = float(lr), float(eps)
    beta1, beta2 = map(float, betas)
    grad = _decayed(param, grad, lr=lr, weight_decay=weight_decay, weight_decouple=weight_decouple,
                    fixed_decay=fixed_decay, maximize=maximize)
    exp_avg = zeros_on_first_use(state, "exp_avg", param)
    exp_avg_sq = zeros_on_first_use(state, "exp_avg_sq", param)
    if step == 1:
        exp_avg_sq += grad * grad
        return
    normed = grad / np.maximum(np.sqrt(exp_avg_sq), eps)  # NaN stays NaN
    if clip_exponent is not None:
        clip = math.pow(step, float(clip_exponent))
        normed = np.minimum(np.maximum(normed, -clip), clip)
    exp_avg *= beta1
    exp_avg += (1 - beta1) * normed
    param -= lr * exp_avg
    running_average_sq(state, "exp_avg_sq", param, grad, beta2)

