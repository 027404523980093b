"""Rprop: resilient backpropagation, a step size per element adapted to the gradient's sign."""

from __future__ import annotations

from .. import validation
from .base import LR, Hyper, Role, Rule, maximize, torch_optim

ETAS = validation.Pair(validation.Real(low_open=True))  # each > 0; _requires orders them
STEP_SIZES = validation.Pair(validation.Real())


def _requires(h) -> None:
    etaminus, etaplus = h.etas
    if not etaminus < 1.0 < etaplus:
        raise ValueError(f"etas: expected 0 < etas[0] < 1 < etas[1] (the factors that shrink "
                         f"and grow a step size), got {h.etas!r}")


def _kernel_args(h, t, scalars, fresh):
    (etaminus, etaplus), (low, high) = h.etas, h.step_sizes
    return {"etaminus": etaminus, "etaplus": etaplus, "step_size_min": low,
            "step_size_max": high}


RPROP = Rule(
    name="Rprop",
    summary="resilient backpropagation: per-element step sizes grown or shrunk by the "
            "gradient's sign changes",
    formula="""\
s = sign(g · prev)               (0 where g · prev is 0 or NaN)
s ← η₊ where s > 0,  η₋ where s < 0,  1 where s = 0          (etas = (η₋, η₊))
step_size ← min(max(step_size · s, step_sizes[0]), step_sizes[1])   (starts at γ)
g ← 0 where s = η₋
p ← p − sign(g) · step_size
prev ← g""",
    hypers=(
        # lr only fills step_size when it is created: the functional form takes no lr.
        Hyper("lr", 1e-2, LR, initial_only=True),
        Hyper("etas", (0.5, 1.2), ETAS),
        Hyper("step_sizes", (1e-6, 50.0), STEP_SIZES),
        maximize(),
    ),
    # torch creates step_size filled with the group's lr when the parameter first steps.
    roles=(Role("prev"), Role("step_size", initial=lambda h: h.lr)),
    **torch_optim("rprop", "Rprop"),
    kernel_args=_kernel_args,
    uses_step=False,
    requires=_requires,
)

RULES = (RPROP,)
