"""RMSprop: gradients scaled by a running root mean square, optionally centered."""

from __future__ import annotations

from .base import FLAG, LR, NON_NEGATIVE, UNIT, Hyper, Role, Rule, maximize, torch_optim


def _kernel_args(h, t, scalars, fresh):
    return {"lr": h.lr, "alpha": h.alpha, "eps": h.eps, "weight_decay": h.weight_decay,
            "momentum": h.momentum, "centered": h.centered}


RMSPROP = Rule(
    name="RMSprop",
    summary="gradients scaled by a running root mean square, optionally centered",
    formula="""\
g ← g + λ p
v ← α v + (1 − α) g²
ḡ ← α ḡ + (1 − α) g;  d = √(v − ḡ²) + ε         (centered)
d = √v + ε                                       (otherwise)
b ← μ b + g / d;  p ← p − γ b                    (μ > 0)
p ← p − γ g / d                                  (otherwise)""",
    hypers=(
        Hyper("lr", 1e-2, LR),
        Hyper("alpha", 0.99, UNIT),
        Hyper("eps", 1e-8, NON_NEGATIVE),
        Hyper("weight_decay", 0.0, NON_NEGATIVE),
        Hyper("momentum", 0.0, NON_NEGATIVE),
        Hyper("centered", False, FLAG),
        maximize(),
    ),
    roles=(
        Role("square_avg", nonnegative=True),
        Role("momentum_buffer", used=lambda h: h.momentum > 0, when="momentum > 0"),
        Role("grad_avg", used=lambda h: h.centered, when="centered"),
    ),
    **torch_optim("rmsprop", "RMSprop"),
    kernel_args=_kernel_args,
    uses_step=False,
)

RULES = (RMSPROP,)
