"""Reference rules of the Adam family: Adam (AMSGrad, AdamW), Adamax, NAdam, RAdam. Each updates ONE
parameter array in place, with its ``state`` (a dict of arrays under torch's key names,
created on first use); see :mod:`fastopt.reference`."""

from __future__ import annotations

import math

import numpy as np

from .state import State, gradient, running_average, running_average_sq, zeros_on_first_use

__all__ = ["adam", "adamax", "nadam", "radam"]


def adam(param: np.ndarray, grad: np.ndarray, state: State, *, step: int, lr: float,
         betas: tuple[float, float], eps: float, weight_decay: float, amsgrad: bool,
         maximize: bool, decoupled_weight_decay: bool) -> None:
    """Adam, AMSGrad and AdamW (``decoupled_weight_decay=True``).

    ::

        g ← −g                                   if maximize
        if λ ≠ 0:
            Adam:  g ← g + λ p                   AdamW:  p ← p · (1 − γ λ)
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        if amsgrad:  v̂ ← max(v̂, v), and v̂ is used below in place of v
        p ← p − (γ / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)

    Bias correction is always on and ε is added after the bias-corrected root. ``step``
    is t, the 1-based count of this update; both corrections use the current betas.
    State: ``"exp_avg"`` (m), ``"exp_avg_sq"`` (v) and ``"max_exp_avg_sq"`` (v̂, when
    amsgrad), each created as zeros when first needed.
    """
    lr, eps, weight_decay = map(float, (lr, eps, weight_decay))
    beta1, beta2 = map(float, betas)
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = math.sqrt(1 - beta2**step)

    grad = gradient(param, grad, maximize=maximize, weight_decay=weight_decay, lr=lr,
                    decoupled=decoupled_weight_decay)

    exp_avg = running_average(state, "exp_avg", param, grad, beta1)
    exp_avg_sq = running_average_sq(state, "exp_avg_sq", param, grad, beta2)

    if amsgrad:
        second_moment = zeros_on_first_use(state, "max_exp_avg_sq", param)
        np.maximum(second_moment, exp_avg_sq, out=second_moment)
    else:
        second_moment = exp_avg_sq
    denom = np.sqrt(second_moment)
    denom /= bias_correction2_sqrt
    denom += eps
    param -= step_size * exp_avg / denom


def adamax(param: np.ndarray, grad: np.ndarray, state: State, *, step: int, lr: float,
           betas: tuple[float, float], eps: float, weight_decay: float, maximize: bool) -> None:
    """Adamax.

    ::

        g ← −g                                   if maximize
        g ← g + λ p                              if λ ≠ 0
        m ← β₁ m + (1 − β₁) g
        u ← max(β₂ u, |g| + ε)                   (NaN if either is NaN)
        p ← p − (γ / (1 − β₁ᵗ)) · m / u

    ``step`` is t, the 1-based count of this update; the correction uses the current β₁.
    State: ``"exp_avg"`` (m) and ``"exp_inf"`` (u), created as zeros when first needed.
    """
    lr, eps, weight_decay = map(float, (lr, eps, weight_decay))
    beta1, beta2 = map(float, betas)
    step_size = lr / (1 - beta1**step)
    grad = gradient(param, grad, maximize=maximize, weight_decay=weight_decay)

    exp_avg = running_average(state, "exp_avg", param, grad, beta1)
    exp_inf = zeros_on_first_use(state, "exp_inf", param)
    exp_inf *= beta2
    np.maximum(exp_inf, np.abs(grad) + eps, out=exp_inf)  # propagates NaN, as torch.maximum
    param -= step_size * exp_avg / exp_inf


def nadam(param: np.ndarray, grad: np.ndarray, state: State, *, step: int, lr: float,
          betas: tuple[float, float], eps: float, weight_decay: float, momentum_decay: float,
          decoupled_weight_decay: bool, maximize: bool) -> None:
    """NAdam (ψ: momentum_decay).

    ::

        μₜ = β₁ (1 − ½ · 0.96^(t ψ)),  μₜ₊₁ = β₁ (1 − ½ · 0.96^((t + 1) ψ))   (double)
        Πₜ = fl32(Πₜ₋₁ · fl32(μₜ)),  Π₀ = 1                        (float32, as torch)
        g ← −g                                   if maximize
        if λ ≠ 0:
            g ← g + λ p    or, decoupled,    p ← p · (1 − γ λ)
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        d = √(v / (1 − β₂ᵗ)) + ε
        p ← p − γ (1 − μₜ) / (1 − Πₜ) · g / d
        p ← p − γ μₜ₊₁ / (1 − Πₜ μₜ₊₁) · m / d

    The two coefficients are computed in double from the float32 Πₜ. ``step`` is t, the
    1-based count of this update. State: ``"mu_product"`` (Π, a np.float32, 1 before the first
    update), ``"exp_avg"`` (m) and ``"exp_avg_sq"`` (v), created when first needed.
    """
    lr, eps, weight_decay, momentum_decay = map(float, (lr, eps, weight_decay, momentum_decay))
    beta1, beta2 = map(float, betas)
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
    mu_product = state.get("mu_product", np.float32(1.0)) * np.float32(mu)
    state["mu_product"] = mu_product
    grad_coef = lr * (1.0 - mu) / (1.0 - float(mu_product))
    avg_coef = lr * mu_next / (1.0 - float(mu_product) * mu_next)
    bias_correction2 = 1 - beta2**step

    grad = gradient(param, grad, maximize=maximize, weight_decay=weight_decay, lr=lr,
                    decoupled=decoupled_weight_decay)

    exp_avg = running_average(state, "exp_avg", param, grad, beta1)
    exp_avg_sq = running_average_sq(state, "exp_avg_sq", param, grad, beta2)
    denom = np.sqrt(exp_avg_sq / bias_correction2)
    denom += eps
    param -= grad_coef * grad / denom
    param -= avg_coef * exp_avg / denom


def radam(param: np.ndarray, grad: np.ndarray, state: State, *, step: int, lr: float,
          betas: tuple[float, float], eps: float, weight_decay: float,
          decoupled_weight_decay: bool, maximize: bool) -> None:
    """RAdam.

    ::

        g ← −g                                   if maximize
        if λ ≠ 0:
            g ← g + λ p    or, decoupled,    p ← p · (1 − γ λ)
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        ρ∞ = 2 / (1 − β₂) − 1,  ρₜ = ρ∞ − 2 t β₂ᵗ / (1 − β₂ᵗ)            (double)
        if ρₜ > 5:
            r = √((ρₜ − 4)(ρₜ − 2) ρ∞ / ((ρ∞ − 4)(ρ∞ − 2) ρₜ))           (double)
            p ← p − ((((m / (1 − β₁ᵗ)) · γ) · (√(1 − β₂ᵗ) / (√v + ε))) · r)
        else:
            p ← p − (m / (1 − β₁ᵗ)) · γ

    evaluated in that order, in the parameter's dtype. ``step`` is t, the 1-based count of
    this update. State: ``"exp_avg"`` (m) and ``"exp_avg_sq"`` (v), created when first needed.
    """
    lr, eps, weight_decay = map(float, (lr, eps, weight_decay))
    beta1, beta2 = map(float, betas)
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * beta2**step / bias_correction2

    grad = gradient(param, grad, maximize=maximize, weight_decay=weight_decay, lr=lr,
                    decoupled=decoupled_weight_decay)

    exp_avg = running_average(state, "exp_avg", param, grad, beta1)
    exp_avg_sq = running_average_sq(state, "exp_avg_sq", param, grad, beta2)

    corrected = exp_avg / bias_correction1 * lr
    if rho_t > 5:
        rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                         / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        adaptive = math.sqrt(bias_correction2) / (np.sqrt(exp_avg_sq) + eps)
        param -= corrected * adaptive * rect
    else:
        param -= corrected
