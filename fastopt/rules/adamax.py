"""Adamax: Adam with the infinity norm of past gradients in place of their second moment."""

from __future__ import annotations

from .base import BETAS, LR, NON_NEGATIVE, Hyper, Role, Rule, maximize, torch_optim


def _kernel_args(h, t, scalars, fresh):
    beta1, beta2 = h.betas
    return {"step_size": h.lr / (1 - beta1**t), "beta1": beta1, "beta2": beta2,
            "eps": h.eps, "weight_decay": h.weight_decay}


ADAMAX = Rule(
    name="Adamax",
    summary="Adam with the infinity norm of past gradients in place of their second moment",
    formula="""\
g ← g + λ p
m ← β₁ m + (1 − β₁) g
u ← max(β₂ u, |g| + ε)           (NaN if either side is NaN, as torch.maximum)
p ← p − (γ / (1 − β₁ᵗ)) · m / u""",
    hypers=(
        Hyper("lr", 2e-3, LR),
        Hyper("betas", (0.9, 0.999), BETAS),
        Hyper("eps", 1e-8, NON_NEGATIVE),
        Hyper("weight_decay", 0.0, NON_NEGATIVE),
        maximize(),
    ),
    roles=(Role("exp_avg"), Role("exp_inf", nonnegative=True)),
    **torch_optim("adamax", "Adamax"),
    kernel_args=_kernel_args,
)

RULES = (ADAMAX,)
