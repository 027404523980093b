"""NAdam: Adam with Nesterov momentum and a schedule on the momentum coefficient."""

from __future__ import annotations

import numpy as np

from .base import (BETAS, FLAG, LR, NON_NEGATIVE, Hyper, Role, Rule, Scalar, maximize, torch_optim,
                   weight_decay_terms)

# From this beta1 on, μₜ may round to 1 in float32, where Π is kept: with a large enough
# momentum_decay Π then stays 1 and 1 − Πₜ is zero (torch raises ZeroDivisionError midway
# through its step). Refused whatever momentum_decay: such a beta1 is of no use in training.
BETA1_BELOW = 1.0 - 2.0**-25


def momentum_coefficient(beta1: float, momentum_decay: float, t: int) -> float:
    """μₜ = β₁ (1 − ½ · 0.96^(t ψ)), in double, as torch computes it."""
    return beta1 * (1.0 - 0.5 * (0.96 ** (t * momentum_decay)))


def _requires(h) -> None:
    if h.betas[0] >= BETA1_BELOW:
        raise ValueError(
            "betas[0]: expected a number below 1 - 2**-25 (NAdam keeps the product of its "
            f"momentum coefficients in float32, where a larger one is 1), got {h.betas[0]!r}")


def _advance_mu_product(h, t, value):
    return value * np.float32(momentum_coefficient(h.betas[0], h.momentum_decay, t))


def _kernel_args(h, t, scalars, fresh):
    beta1, beta2 = h.betas
    mu = momentum_coefficient(beta1, h.momentum_decay, t)
    mu_next = momentum_coefficient(beta1, h.momentum_decay, t + 1)
    product = float(scalars["mu_product"])
    l2, decay = weight_decay_terms(h.lr, h.weight_decay, h.decoupled_weight_decay)
    return {"grad_coef": h.lr * (1.0 - mu) / (1.0 - product),
            "avg_coef": h.lr * mu_next / (1.0 - product * mu_next),
            "bias2": 1 - beta2**t, "beta1": beta1, "beta2": beta2, "eps": h.eps,
            "weight_decay": l2, "decay": decay}


NADAM = Rule(
    name="NAdam",
    summary="Adam with Nesterov momentum and a schedule on the momentum coefficient",
    formula="""\
μₜ = β₁ (1 − ½ · 0.96^(t ψ)),   Πₜ = Πₜ₋₁ μₜ  (Π₀ = 1; ψ: momentum_decay)
g ← g + λ p                      (or p ← p · (1 − γ λ), decoupled)
m ← β₁ m + (1 − β₁) g
v ← β₂ v + (1 − β₂) g²
d = √(v / (1 − β₂ᵗ)) + ε
p ← p − γ (1 − μₜ) / (1 − Πₜ) · g / d − γ μₜ₊₁ / (1 − Πₜ μₜ₊₁) · m / d

Πₜ (state mu_product) is kept in float32 whatever the parameters' dtype,
Πₜ = fl32(Πₜ₋₁ · fl32(μₜ)), as torch keeps it; the coefficients are computed from it in double.""",
    hypers=(
        Hyper("lr", 2e-3, LR),
        Hyper("betas", (0.9, 0.999), BETAS),
        Hyper("eps", 1e-8, NON_NEGATIVE),
        Hyper("weight_decay", 0.0, NON_NEGATIVE),
        Hyper("momentum_decay", 4e-3, NON_NEGATIVE),
        Hyper("decoupled_weight_decay", False, FLAG),
        maximize(),
    ),
    roles=(Role("exp_avg"), Role("exp_avg_sq", nonnegative=True)),
    scalars=(Scalar("mu_product", 1.0, np.float32, 0.0, 1.0, _advance_mu_product),),
    **torch_optim("nadam", "NAdam"),
    kernel_args=_kernel_args,
    requires=_requires,
)

RULES = (NADAM,)
