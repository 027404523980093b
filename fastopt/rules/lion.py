"""Lion: sign momentum (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"),
as lion-pytorch implements it."""

from __future__ import annotations

from .. import validation
from .base import LR, NON_NEGATIVE, Hyper, Role, Rule, maximize

# lion-pytorch admits each beta in [0, 1], 1 included.
BETAS_CLOSED = validation.Pair(validation.Real(high=1.0))


def _kernel_args(h, t, scalars, fresh):
    beta1, beta2 = h.betas
    return {"lr": h.lr, "beta1": beta1, "beta2": beta2, "decay": 1.0 - h.lr * h.weight_decay}


LION = Rule(
    name="Lion",
    summary="sign momentum: steps of size γ by the sign of an interpolated momentum",
    formula="""\
p ← p · (1 − γ λ)
c = β₁ m + (1 − β₁) g
p ← p − γ sign(c)
m ← β₂ m + (1 − β₂) g""",
    hypers=(
        Hyper("lr", 1e-4, LR),
        Hyper("betas", (0.9, 0.99), BETAS_CLOSED),
        Hyper("weight_decay", 0.0, NON_NEGATIVE),
        maximize(),
    ),
    roles=(Role("exp_avg"),),
    kernel="lion",
    kernel_args=_kernel_args,
    reference="lion",
    source="lion_pytorch.Lion (lion-pytorch 0.2.5)",
    counts_steps=False,  # lion-pytorch keeps no step count
    uses_step=False,
)

RULES = (LION,)
