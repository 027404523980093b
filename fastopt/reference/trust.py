"""Reference rules that scale each tensor's update by a trust ratio: LAMB and LARS. Each
updates ONE parameter array in place, with its ``state`` (a dict of arrays under the oracle's
key names, created on first use); see :mod:`fastopt.reference`.

A trust ratio is a quotient of norms of whole tensors. The element-wise arithmetic is in the
parameter's dtype, as everywhere in the reference; the norms are sums of squares taken in
double precision in the one order fastopt fixes for every reduction (:func:`sum_of_squares`),
so that they are the same bits whatever the thread count or SIMD width; the ratio and the
step's coefficient are then Python floats.
"""

from __future__ import annotations

import math

import numpy as np

from .state import State, gradient, running_average_sq, zeros_on_first_use

__all__ = ["lamb", "lars"]

# fastopt's summation order: a tensor is cut into pieces of PIECE elements (the last one
# shorter); in a piece, element i is added to accumulator i % LANES, in order; the LANES
# accumulators are added in index order, and the pieces' sums in order, from 0.
PIECE = 4096
LANES = 16
# pytorch-optimizer clamps LAMB's ‖p‖ to this (``Lamb.clamp``).
MAX_WEIGHT_NORM = 10.0


def sum_of_squares(x: np.ndarray) -> float:
    """Σ x² of a whole tensor, each square and sum in double, in fastopt's order (above)."""
    squares = np.square(np.ravel(x).astype(np.float64))
    pieces = -(-squares.size // PIECE)
    # Zeros appended are exact no-ops of the sums (squares are >= 0), and make every piece
    # PIECE long, so that pieces x blocks x lanes is a reshape.
    padded = np.zeros(pieces * PIECE)
    padded[:squares.size] = squares
    lanes = np.add.accumulate(padded.reshape(pieces, PIECE // LANES, LANES), axis=1)[:, -1, :]
    total = 0.0
    for piece in lanes:
        piece_sum = float(piece[0])
        for lane in piece[1:]:
            piece_sum += float(lane)
        total += piece_sum
    return total


def lamb(param: np.ndarray, grad: np.ndarray, state: State, *, step: int, lr: float,
         betas: tuple[float, float], weight_decay: float, weight_decouple: bool,
         fixed_decay: bool, rectify: bool, degenerated_to_sgd: bool, n_sma_threshold: float,
         grad_averaging: bool, adam: bool, eps: float, maximize: bool) -> None:
    """LAMB, as pytorch-optimizer 4.1.0's ``Lamb``.

    ::

        g ← −g                                    if maximize
        p ← p · (1 − γ λ)   (1 − λ if fixed_decay)     if weight_decouple and λ ≠ 0
        m ← β₁ m + β₃ g                           β₃ = 1 − β₁ if grad_averaging, else 1
        v ← β₂ v + (1 − β₂) g²
        u = m / (√v + ε);   u ← u + λ p           if not weight_decouple and λ ≠ 0
        s = γ / (1 − β₁ᵗ)
        φ = min(‖p‖, 10);   r = 1 if adam or φ = 0 or ‖w‖ = 0, else φ / (‖w‖ + ε)
        p ← p − (s · r) · u                       with w = u

    With rectify, RAdam's ρ∞ = 2 / (1 − β₂) − 1 and ρₜ = ρ∞ − 2 t β₂ᵗ / (1 − β₂ᵗ) decide:
    once ρₜ ≥ n_sma_threshold, s = γ √((1 − β₂ᵗ)(ρₜ − 4)/(ρ∞ − 4) (ρₜ − 2)/ρₜ ρ∞/(ρ∞ − 2))
    / (1 − β₁ᵗ); before, u = m and s = γ / (1 − β₁ᵗ) if degenerated_to_sgd, else p is only
    decayed. L2 decay is not applied, and w = p − s u (the oracle's norm of the updated
    parameter). State: ``"exp_avg"`` (m) and ``"exp_avg_sq"`` (v), created when first needed.
    """
    lr, weight_decay, eps = map(float, (lr, weight_decay, eps))
    beta1, beta2 = map(float, betas)
    rate, adaptive = 1.0, True
    if rectify:
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        rho = rho_inf - 2 * step * beta2**step / (1.0 - beta2**step)
        adaptive = rho >= n_sma_threshold
        if adaptive:
            rate = math.sqrt((1.0 - beta2**step) * (rho - 4) / (rho_inf - 4) * (rho - 2) / rho
                             * rho_inf / (rho_inf - 2))
        elif not degenerated_to_sgd:
            rate = -1.0
    step_size = lr * rate / (1.0 - math.pow(beta1, step))

    grad = gradient(param, grad, maximize=maximize,
                    weight_decay=weight_decay if weight_decouple else 0.0,
                    lr=1.0 if fixed_decay else lr, decoupled=True)
    exp_avg = zeros_on_first_use(state, "exp_avg", param)
    exp_avg *= beta1
    exp_avg += (1.0 - beta1 if grad_averaging else 1.0) * grad
    exp_avg_sq = running_average_sq(state, "exp_avg_sq", param, grad, beta2)
    if rectify and step_size <= 0:
        return
    update = exp_avg / (np.sqrt(exp_avg_sq) + eps) if adaptive else exp_avg.copy()
    if not weight_decouple and not rectify and weight_decay != 0:
        update += weight_decay * param
    ratio = 1.0
    if not adam:
        weight_norm = math.sqrt(sum_of_squares(param))
        if weight_norm > MAX_WEIGHT_NORM:
            weight_norm = MAX_WEIGHT_NORM
        update_norm = math.sqrt(sum_of_squares(param - step_size * update if rectify else update))
        if weight_norm != 0 and update_norm != 0:
            ratio = weight_norm / (update_norm + eps)
    param -= (step_size * ratio) * update


def lars(param: np.ndarray, grad: np.ndarray, state: State, *, lr: float, weight_decay: float,
         momentum: float, dampening: float, trust_coefficient: float, nesterov: bool,
         maximize: bool, adapt: bool) -> None:
    """LARS, as pytorch-optimizer 4.1.0's ``LARS`` computes it for a tensor of two or more
    dimensions (every tensor here; ``adapt=False``: none).

    ::

        g ← −g                                    if maximize
        d = ‖g‖ + λ ‖p‖;   r = η ‖p‖ / d if adapt and ‖p‖ > 0 and d > 0, else 1
        g ← (g + λ p) · r                         (g + λ p only if λ ≠ 0)
        if μ ≠ 0:
            b ← μ b + (1 − τ) g                   (b from zeros)
            g ← g + μ b   if nesterov, else   g ← b
        p ← p − γ g

    State: ``"momentum_buffer"`` (b), created as zeros the first time the rule runs with μ ≠ 0.
    """
    lr, weight_decay, momentum, dampening, trust_coefficient = map(
        float, (lr, weight_decay, momentum, dampening, trust_coefficient))
    grad = gradient(param, grad, maximize=maximize, weight_decay=0.0)
    ratio = 1.0
    if adapt:
        weight_norm = math.sqrt(sum_of_squares(param))
        denominator = math.sqrt(sum_of_squares(grad)) + weight_decay * weight_norm
        if weight_norm > 0 and denominator > 0:
            ratio = trust_coefficient * weight_norm / denominator
    if weight_decay != 0:
        grad = grad + weight_decay * param
    grad = grad * ratio
    if momentum != 0:
        momentum_buffer = zeros_on_first_use(state, "momentum_buffer", param)
        momentum_buffer *= momentum
        momentum_buffer += (1 - dampening) * grad
        grad = grad + momentum * momentum_buffer if nesterov else momentum_buffer
    param -= lr * grad
