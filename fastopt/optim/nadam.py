"""NAdam: Adam with Nesterov momentum and a schedule on the momentum coefficient."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import _checks
from .._kernels import kernels
from .adam import check_adam_hyper, weight_decay_terms
from .optimizer import GroupScalar, Hyper, Optimizer, Scalars

# From this beta1 on, μₜ may round to 1 in float32, where Π is kept: with a large enough
# momentum_decay Π then stays 1 and 1 − Πₜ is zero (torch raises ZeroDivisionError midway
# through its step). Refused whatever momentum_decay: such a beta1 is of no use in training.
_BETA1_BELOW = 1.0 - 2.0**-25


def momentum_coefficient(beta1: float, momentum_decay: float, step: int) -> float:
    """μₜ = β₁ (1 − ½ · 0.96^(t ψ)), in double, as torch computes it."""
    return beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))


class NAdam(Optimizer):
    """NAdam, torch.optim.NAdam's rule and arguments::

        μₜ = β₁ (1 − ½ · 0.96^(t ψ)),   Πₜ = Πₜ₋₁ μₜ  (Π₀ = 1; ψ: momentum_decay)
        g ← g + λ p                      (or p ← p · (1 − γ λ), decoupled)
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        d = √(v / (1 − β₂ᵗ)) + ε
        p ← p − γ (1 − μₜ) / (1 − Πₜ) · g / d − γ μₜ₊₁ / (1 − Πₜ μₜ₊₁) · m / d

    Πₜ (state ``mu_product``, one per group) is kept in float32 whatever the parameters'
    dtype, Πₜ = fl32(Πₜ₋₁ · fl32(μₜ)), as torch keeps it; the coefficients are computed from
    it in double.
    """

    roles = ("exp_avg", "exp_avg_sq")
    scalars = {"mu_product": GroupScalar(initial=1.0, dtype=np.float32, low=0.0, high=1.0)}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    @classmethod
    def check_group(cls, group: dict[str, Any]) -> Hyper:
        hyper = (
            *check_adam_hyper(group),
            _checks.real("momentum_decay", group["momentum_decay"]),
            _checks.flag("decoupled_weight_decay", group["decoupled_weight_decay"]),
            _checks.flag("maximize", group["maximize"]),
        )
        if hyper[1] >= _BETA1_BELOW:
            raise ValueError(
                f"betas[0]: expected a number below 1 - 2**-25 (NAdam keeps the product of its "
                f"momentum coefficients in float32, where a larger one is 1), got {hyper[1]!r}"
            )
        return hyper

    @classmethod
    def advance(cls, hyper: Hyper, step: int, scalars: Scalars) -> Scalars:
        mu = momentum_coefficient(hyper[1], hyper[5], step)
        return {"mu_product": scalars["mu_product"] * np.float32(mu)}  # float32 × float32

    @classmethod
    def apply(cls, table: Any, hyper: Hyper, step: int, fresh: frozenset[str],
              scalars: Scalars, grad_scale: float = 1.0) -> None:
        lr, beta1, beta2, eps, weight_decay, momentum_decay, decoupled, maximize = hyper
        mu = momentum_coefficient(beta1, momentum_decay, step)
        mu_next = momentum_coefficient(beta1, momentum_decay, step + 1)
        product = float(scalars["mu_product"])
        kernels.nadam(
            table,
            lr * (1.0 - mu) / (1.0 - product),
            lr * mu_next / (1.0 - product * mu_next),
            1 - beta2**step,
            beta1,
            beta2,
            eps,
            *weight_decay_terms(lr, weight_decay, decoupled),
            -grad_scale if maximize else grad_scale,
        )
