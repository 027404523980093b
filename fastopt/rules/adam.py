"""Adam with bias correction, AMSGrad, and AdamW's decoupled weight decay."""

from __future__ import annotations

import math

from .base import (BETAS, FLAG, LR, NON_NEGATIVE, Hyper, Role, Rule, maximize, torch_optim,
                   weight_decay_terms)


def _kernel_args(h, t, scalars, fresh):
    beta1, beta2 = h.betas
    l2, decay = weight_decay_terms(h.lr, h.weight_decay, h.decoupled_weight_decay)
    return {"step_size": h.lr / (1 - beta1**t), "bias2_sqrt": math.sqrt(1 - beta2**t),
            "beta1": beta1, "beta2": beta2, "eps": h.eps, "weight_decay": l2, "decay": decay,
            "amsgrad": h.amsgrad}


ADAM = Rule(
    name="Adam",
    summary="Adam with bias correction; AMSGrad, and decoupled weight decay (AdamW)",
    formula="""\
g ← g + λ p                      (or p ← p · (1 − γ λ), decoupled)
m ← β₁ m + (1 − β₁) g
v ← β₂ v + (1 − β₂) g²
v̂ ← max(v̂, v)                    (amsgrad; v̂ replaces v below)
p ← p − (γ / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)""",
    hypers=(
        Hyper("lr", 1e-3, LR),
        Hyper("betas", (0.9, 0.999), BETAS),
        Hyper("eps", 1e-8, NON_NEGATIVE),
        Hyper("weight_decay", 0.0, NON_NEGATIVE),
        Hyper("amsgrad", False, FLAG),
        maximize(),
        Hyper("decoupled_weight_decay", False, FLAG, keyword_only=True),
    ),
    roles=(Role("exp_avg"), Role("exp_avg_sq", nonnegative=True),
           Role("max_exp_avg_sq", used=lambda h: h.amsgrad, when="amsgrad", nonnegative=True)),
    **torch_optim("adam", "Adam"),
    kernel_args=_kernel_args,
)

ADAMW = ADAM.variant(
    "AdamW",
    summary="Adam with decoupled weight decay",
    source="torch.optim.AdamW",
    torch_name="AdamW",
    defaults={"weight_decay": 1e-2},
    fixed={"decoupled_weight_decay": True},
)

RULES = (ADAM, ADAMW)
