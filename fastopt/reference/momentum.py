"""Reference rules of the SGD family and of the per-element learning rates: SGD, Adagrad,
RMSprop, Adadelta. Each updates ONE parameter array in place, with its ``state`` (a dict of
arrays under torch's key names, created on first use); see :mod:`fastopt.reference`."""

from __future__ import annotations

import numpy as np

from .state import State, gradient, running_average, running_average_sq, zeros_on_first_use

__all__ = ["sgd", "adagrad", "rmsprop", "adadelta"]


def sgd(param: np.ndarray, grad: np.ndarray, state: State, *, lr: float, momentum: float,
        dampening: float, weight_decay: float, nesterov: bool, maximize: bool) -> None:
    """SGD with optional momentum (heavy ball) and Nesterov momentum.

    ::

        g ← −g                       if maximize
        g ← g + λ p                  if λ ≠ 0
        if μ ≠ 0:
            b ← g                    on the first step with μ ≠ 0
            b ← μ b + (1 − τ) g      afterwards          (τ: dampening)
            g ← g + μ b   if nesterov, else   g ← b
        p ← p − γ g

    ``state["momentum_buffer"]`` (b) is created, as a copy of g, the first time the rule
    runs with μ ≠ 0.
    """
    lr, momentum, dampening, weight_decay = map(float, (lr, momentum, dampening, weight_decay))
    grad = gradient(param, grad, maximize=maximize, weight_decay=weight_decay)
    if momentum != 0:
        momentum_buffer = state.get("momentum_buffer")
        if momentum_buffer is None:
            # A copy: g may still be the caller's gradient array.
            state["momentum_buffer"] = momentum_buffer = np.array(grad, dtype=param.dtype)
        else:
            momentum_buffer *= momentum
            momentum_buffer += (1 - dampening) * grad
        if nesterov:
            grad = grad + momentum * momentum_buffer
        else:
            grad = momentum_buffer
    param -= lr * grad


def adagrad(param: np.ndarray, grad: np.ndarray, state: State, *, step: int, lr: float,
            lr_decay: float, weight_decay: float, eps: float, maximize: bool) -> None:
    """Adagrad.

    ::

        γₜ = γ / (1 + (t − 1) η)         (η: lr_decay; in double precision)
        g ← −g                           if maximize
        g ← g + λ p                      if λ ≠ 0
        s ← s + g²
        p ← p − γₜ g / (√s + ε)

    ``state["sum"]`` (s) must exist: the optimizer creates it, filled with
    ``initial_accumulator_value``, when the parameter is added. ``step`` is t, the
    1-based count of this update.
    """
    lr, lr_decay, weight_decay, eps = map(float, (lr, lr_decay, weight_decay, eps))
    decayed_lr = lr / (1 + (step - 1) * lr_decay)
    grad = gradient(param, grad, maximize=maximize, weight_decay=weight_decay)
    state_sum = state["sum"]
    state_sum += grad * grad
    std = np.sqrt(state_sum)
    std += eps
    param -= decayed_lr * grad / std


def rmsprop(param: np.ndarray, grad: np.ndarray, state: State, *, lr: float, alpha: float,
            eps: float, weight_decay: float, momentum: float, centered: bool,
            maximize: bool) -> None:
    """RMSprop, optionally centred and with momentum.

    ::

        g ← −g                                   if maximize
        g ← g + λ p                              if λ ≠ 0
        v ← α v + (1 − α) g²
        if centered:  ḡ ← α ḡ + (1 − α) g;   d = √(v − ḡ²) + ε
        else:         d = √v + ε
        if μ > 0:     b ← μ b + g / d;   p ← p − γ b
        else:         p ← p − γ g / d

    State: ``"square_avg"`` (v), ``"grad_avg"`` (ḡ, when centered) and
    ``"momentum_buffer"`` (b, when μ > 0), each created as zeros when first needed.
    """
    lr, alpha, eps, weight_decay, momentum = map(float, (lr, alpha, eps, weight_decay, momentum))
    grad = gradient(param, grad, maximize=maximize, weight_decay=weight_decay)

    square_avg = running_average_sq(state, "square_avg", param, grad, alpha)

    if centered:
        grad_avg = running_average(state, "grad_avg", param, grad, alpha)
        denom = np.sqrt(square_avg - grad_avg * grad_avg)
    else:
        denom = np.sqrt(square_avg)
    denom += eps

    if momentum > 0:
        momentum_buffer = zeros_on_first_use(state, "momentum_buffer", param)
        momentum_buffer *= momentum
        momentum_buffer += grad / denom
        param -= lr * momentum_buffer
    else:
        param -= lr * grad / denom


def adadelta(param: np.ndarray, grad: np.ndarray, state: State, *, lr: float, rho: float,
             eps: float, weight_decay: float, maximize: bool) -> None:
    """Adadelta.

    ::

        g ← −g                                   if maximize
        g ← g + λ p                              if λ ≠ 0
        v ← ρ v + (1 − ρ) g²
        Δ = √(u + ε) / √(v + ε) · g
        u ← ρ u + (1 − ρ) Δ²
        p ← p − γ Δ

    State: ``"square_avg"`` (v) and ``"acc_delta"`` (u), created as zeros when first needed.
    """
    lr, rho, eps, weight_decay = map(float, (lr, rho, eps, weight_decay))
    grad = gradient(param, grad, maximize=maximize, weight_decay=weight_decay)

    square_avg = running_average_sq(state, "square_avg", param, grad, rho)
    acc_delta = zeros_on_first_use(state, "acc_delta", param)
    delta = np.sqrt(acc_delta + eps)
    delta /= np.sqrt(square_avg + eps)
    delta *= grad
    acc_delta *= rho
    acc_delta += (1 - rho) * delta * delta
    param -= lr * delta
