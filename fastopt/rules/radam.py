"""RAdam: Adam whose adaptive step is rectified while its variance estimate is unreliable."""

from __future__ import annotations

import math

from .base import (BETAS, FLAG, LR, NON_NEGATIVE, Hyper, Role, Rule, maximize, torch_optim,
                   weight_decay_terms)


def _kernel_args(h, t, scalars, fresh):
    beta1, beta2 = h.betas
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
    rectified = rho_t > 5.0
    rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                     / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) if rectified else 0.0
    l2, decay = weight_decay_terms(h.lr, h.weight_decay, h.decoupled_weight_decay)
    return {"lr": h.lr, "bias1": 1 - beta1**t, "bias2_sqrt": math.sqrt(1 - beta2**t),
            "rect": rect, "rectified": rectified, "beta1": beta1, "beta2": beta2, "eps": h.eps,
            "weight_decay": l2, "decay": decay}


RADAM = Rule(
    name="RAdam",
    summary="Adam with the adaptive step rectified while the variance estimate is unreliable",
    formula="""\
g ← g + λ p                      (or p ← p · (1 − γ λ), decoupled)
m ← β₁ m + (1 − β₁) g
v ← β₂ v + (1 − β₂) g²
ρ∞ = 2 / (1 − β₂) − 1;   ρₜ = ρ∞ − 2 t β₂ᵗ / (1 − β₂ᵗ)
r = √((ρₜ − 4)(ρₜ − 2) ρ∞ / ((ρ∞ − 4)(ρ∞ − 2) ρₜ))
p ← p − ((((m / (1 − β₁ᵗ)) · γ) · (√(1 − β₂ᵗ) / (√v + ε))) · r)     if ρₜ > 5
p ← p − (m / (1 − β₁ᵗ)) · γ                                          otherwise""",
    hypers=(
        Hyper("lr", 1e-3, LR),
        Hyper("betas", (0.9, 0.999), BETAS),
        Hyper("eps", 1e-8, NON_NEGATIVE),
        Hyper("weight_decay", 0.0, NON_NEGATIVE),
        Hyper("decoupled_weight_decay", False, FLAG),
        maximize(),
    ),
    roles=(Role("exp_avg"), Role("exp_avg_sq", nonnegative=True)),
    **torch_optim("radam", "RAdam"),
    kernel_args=_kernel_args,
)

RULES = (RADAM,)
