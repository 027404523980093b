"""SGD with momentum, dampening and Nesterov momentum, as torch.optim.SGD."""

from __future__ import annotations

from .base import FLAG, LR, NON_NEGATIVE, UNIT, Hyper, Role, Rule, maximize, torch_optim


def _requires(h) -> None:
    if h.nesterov and (h.momentum == 0 or h.dampening != 0):
        raise ValueError(
            "nesterov: expected momentum > 0 and dampening == 0 with Nesterov momentum, "
            f"got momentum={h.momentum!r}, dampening={h.dampening!r}")


def _kernel_args(h, t, scalars, fresh):
    return {"lr": h.lr, "momentum": h.momentum, "dampening": h.dampening,
            "weight_decay": h.weight_decay, "nesterov": h.nesterov,
            "first": "momentum_buffer" in fresh}


SGD = Rule(
    name="SGD",
    summary="stochastic gradient descent with momentum, dampening and Nesterov momentum "
            "(plain, mini-batch and full-batch gradient descent are SGD with momentum 0)",
    formula="""\
g ← g + λ p
b ← g (first step),  b ← μ b + (1 − τ) g (afterwards)     if μ ≠ 0
g ← g + μ b (nesterov),  g ← b (otherwise)                if μ ≠ 0
p ← p − γ g""",
    hypers=(
        Hyper("lr", 1e-3, LR),
        Hyper("momentum", 0.0, NON_NEGATIVE),
        Hyper("dampening", 0.0, UNIT),
        Hyper("weight_decay", 0.0, NON_NEGATIVE),
        Hyper("nesterov", False, FLAG),
        maximize(),
    ),
    roles=(Role("momentum_buffer", used=lambda h: h.momentum != 0, when="momentum ≠ 0"),),
    **torch_optim("sgd", "SGD"),
    kernel_args=_kernel_args,
    counts_steps=False,
    requires=_requires,
    bench={"lr": 0.01, "momentum": 0.9},
)

RULES = (SGD,)
