"""Reference rules of pytorch-optimizer's Adam variants: ADOPT, AdEMAMix. Each updates ONE
parameter array in place, with its ``state`` (a dict of arrays under pytorch-optimizer's key
names, created on first use); see :mod:`fastopt.reference`."""

from __future__ import annotations

import math

import numpy as np

from .state import State, gradient, running_average, running_average_sq, zeros_on_first_use

__all__ = ["adopt", "ademamix"]


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


def ademamix(param: np.ndarray, grad: np.ndarray, state: State, *, step: int, lr: float,
             betas: tuple[float, float, float], weight_decay: float, weight_decouple: bool,
             fixed_decay: bool, alpha: float, t_alpha_beta3: float | None, eps: float,
             maximize: bool) -> None:
    """AdEMAMix (pytorch-optimizer's ``AdEMAMix``).

    ::

        αₜ = α,  β₃ₜ = β₃                         without warm-up (t_alpha_beta3 T is None)
        αₜ = min(t α / T, α)
        β₃ₜ = min(exp(ln β₁ ln β₃ / ((1 − t/T) ln β₃ + (t/T) ln β₁)), β₃)      (double)
        g ← −g                                   if maximize
        g ← g + λ p    or, weight_decouple,   p ← p · (1 − γ λ)   (p · (1 − λ), fixed_decay)
        m₁ ← β₁ m₁ + (1 − β₁) g
        v ← β₂ v + ((1 − β₂) g) g
        m₂ ← β₃ₜ m₂ + (1 − β₃ₜ) g
        d = √v / √(1 − β₂ᵗ) + ε
        p ← p − (γ (m₁ / (1 − β₁ᵗ) + αₜ m₂)) / d

    ``step`` is t, the 1-based count of this update. State: ``"exp_avg"`` (m₁),
    ``"exp_avg_sq"`` (v) and ``"exp_avg_slow"`` (m₂), created as zeros when first needed.
    """
    lr, eps, alpha = float(lr), float(eps), float(alpha)
    beta1, beta2, beta3 = map(float, betas)
    if t_alpha_beta3 is not None:
        warmup = float(t_alpha_beta3)
        log_beta1, log_beta3 = math.log(beta1), math.log(beta3)
        beta3 = min(math.exp(log_beta1 * log_beta3 / ((1.0 - step / warmup) * log_beta3
                                                      + (step / warmup) * log_beta1)), beta3)
        alpha = min(step * alpha / warmup, alpha)
    bias_correction1 = 1.0 - math.pow(beta1, step)
    bias_correction2_sqrt = math.sqrt(1.0 - math.pow(beta2, step))
    grad = _decayed(param, grad, lr=lr, weight_decay=weight_decay, weight_decouple=weight_decouple,
                    fixed_decay=fixed_decay, maximize=maximize)
    exp_avg = running_average(state, "exp_avg", param, grad, beta1)
    exp_avg_sq = running_average_sq(state, "exp_avg_sq", param, grad, beta2)
    exp_avg_slow = running_average(state, "exp_avg_slow", param, grad, beta3)
    denom = np.sqrt(exp_avg_sq)
    denom /= bias_correction2_sqrt
    denom += eps
    update = exp_avg / bias_correction1
    update += alpha * exp_avg_slow
    param -= lr * update / denom
