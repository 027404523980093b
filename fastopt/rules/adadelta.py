"""Adadelta: steps scaled by running RMS of past updates over running RMS of gradients."""

from __future__ import annotations

from .base import LR, NON_NEGATIVE, UNIT, Hyper, Role, Rule, maximize, torch_optim


def _kernel_args(h, t, scalars, fresh):
    return {"lr": h.lr, "rho": h.rho, "eps": h.eps, "weight_decay": h.weight_decay}


ADADELTA = Rule(
    name="Adadelta",
    summary="steps scaled by the running RMS of past updates over that of the gradients",
    formula="""\
g ← g + λ p
v ← ρ v + (1 − ρ) g²
Δ = √(u + ε) / √(v + ε) · g
u ← ρ u + (1 − ρ) Δ²
p ← p − γ Δ""",
    hypers=(
        Hyper("lr", 1.0, LR),
        Hyper("rho", 0.9, UNIT),
        Hyper("eps", 1e-6, NON_NEGATIVE),
        Hyper("weight_decay", 0.0, NON_NEGATIVE),
        maximize(),
    ),
    roles=(Role("square_avg", nonnegative=True), Role("acc_delta", nonnegative=True)),
    **torch_optim("adadelta", "Adadelta"),
    kernel_args=_kernel_args,
    uses_step=False,
)

RULES = (ADADELTA,)
