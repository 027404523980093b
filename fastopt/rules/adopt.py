"""ADOPT (Taniguchi et al. 2024, "ADOPT: Modified Adam Can Converge with Any β₂"), as
pytorch-optimizer implements it."""

from __future__ import annotations

import math

from .base import BETAS, LR, NON_NEGATIVE, Hyper, Role, Rule, maximize
from .ported import OptionalReal, weight_decay_args, weight_decay_hypers


def _kernel_args(h, t, scalars, fresh):
    beta1, beta2 = h.betas
    clipping = h.clip_exponent is not None
    return {"lr": h.lr, "beta1": beta1, "beta2": beta2, "eps": h.eps,
            "clip": math.pow(t, h.clip_exponent) if clipping else 0.0, "first": t == 1,
            "clipping": clipping, **weight_decay_args(h)}


ADOPT = Rule(
    name="ADOPT",
    summary="Adam that normalises each gradient by the previous second moment, then averages",
    formula="""\
g ← g + λ p      (or p ← p · (1 − γ λ) with weight_decouple, p · (1 − λ) if also fixed_decay)
t = 1:  v ← v + g²
t > 1:  u = g / max(√v, ε);   u ← min(max(u, −tᵉ), tᵉ)  (e: clip_exponent, unless None)
        m ← β₁ m + (1 − β₁) u
        p ← p − γ m
        v ← β₂ v + (1 − β₂) g²""",
    hypers=(
        Hyper("lr", 1e-3, LR),
        Hyper("betas", (0.9, 0.9999), BETAS),
        # pytorch-optimizer's clip_lambda=lambda step: step ** 0.25, as data.
        Hyper("clip_exponent", 0.25, OptionalReal()),
        *weight_decay_hypers(),
        Hyper("eps", 1e-6, NON_NEGATIVE),
        maximize(),
    ),
    roles=(Role("exp_avg"), Role("exp_avg_sq")),
    kernel="adopt",
    kernel_args=_kernel_args,
    reference="adopt",
    source="pytorch_optimizer.ADOPT (pytorch-optimizer 4.1.0)",
)

RULES = (ADOPT,)
