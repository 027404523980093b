"""Adagrad: per-element learning rates from the running sum of squared gradients."""

from __future__ import annotations

from .base import LR, NON_NEGATIVE, Hyper, Role, Rule, maximize, torch_optim


def _kernel_args(h, t, scalars, fresh):
    return {"lr": h.lr / (1 + (t - 1) * h.lr_decay), "eps": h.eps,
            "weight_decay": h.weight_decay}


ADAGRAD = Rule(
    name="Adagrad",
    summary="per-element learning rates from the running sum of squared gradients",
    formula="""\
γₜ = γ / (1 + (t − 1) η)
g ← g + λ p
s ← s + g²                       (s starts at initial_accumulator_value)
p ← p − γₜ g / (√s + ε)""",
    hypers=(
        Hyper("lr", 1e-2, LR),
        Hyper("lr_decay", 0.0, NON_NEGATIVE),
        Hyper("weight_decay", 0.0, NON_NEGATIVE),
        Hyper("initial_accumulator_value", 0.0, NON_NEGATIVE, initial_only=True),
        Hyper("eps", 1e-10, NON_NEGATIVE),
        maximize(),
    ),
    # torch creates Adagrad's state with the optimizer, not at the first step.
    roles=(Role("sum", initial=lambda h: h.initial_accumulator_value, at_construction=True,
                nonnegative=True),),
    **torch_optim("adagrad", "Adagrad"),
    kernel_args=_kernel_args,
)

RULES = (ADAGRAD,)
