"""ASGD: averaged stochastic gradient descent (Polyak and Juditsky 1992), as torch.optim.ASGD."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .. import validation
from .base import LR, NON_NEGATIVE, Hyper, Hypers, Role, Rule, Scalar, maximize, torch_optim

ANY = validation.Real(low=-math.inf)  # torch takes any alpha and t0


class Advanced(dict):
    """The scalar state after a step, with the state before it in ``before``."""

    __slots__ = ("before",)


@dataclass(frozen=True)
class SteppedByStoredScalars(Rule):
    """A rule whose step reads its scalar state as the previous step left it and only then
    stores the next values (torch's ASGD steps with the η and μ stored at its last step).

    The engine hands ``kernel_args`` the scalar state after the step (the values NAdam's step
    reads); this keeps the values before it on that mapping, as ``scalars.before``.
    """

    def advance(self, h: Hypers, t: int, scalars: Mapping[str, np.floating]) -> Advanced:
        advanced = Advanced(super().advance(h, t, scalars))
        advanced.before = scalars
        return advanced


def _advance_eta(h, t, value):
    return np.float32(h.lr / ((1 + h.lambd * h.lr * t) ** h.alpha))


def _advance_mu(h, t, value):
    return np.float32(1 / max(1, t - h.t0))


def _kernel_args(h, t, scalars, fresh):
    if "ax" in fresh:  # the state is created at this step: torch starts it at η = γ, μ = 1
        eta, mu = float(np.float32(h.lr)), 1.0
    else:
        eta, mu = float(scalars.before["eta"]), float(scalars.before["mu"])
    return {"eta": eta, "decay": 1 - h.lambd * eta, "mu": mu, "weight_decay": h.weight_decay,
            "average": mu != 1}


ASGD = SteppedByStoredScalars(
    name="ASGD",
    summary="SGD with a decaying step size and a running average of the iterates",
    formula="""\
g ← g + λ_wd p                   (λ_wd: weight_decay)
p ← p · (1 − λ η)                (λ: lambd)
p ← p − η g
ax ← ax + (p − ax) μ   if μ ≠ 1,   else   ax ← p
η ← γ / (1 + λ γ t)^α;   μ ← 1 / max(1, t − t0)

η (state eta, γ when the state is created) and μ (state mu, 1 at first) are kept in
float32 whatever the parameters' dtype, as torch keeps them; a step reads the values
the previous step stored, then stores the next ones.""",
    hypers=(
        Hyper("lr", 1e-2, LR),
        Hyper("lambd", 1e-4, NON_NEGATIVE),
        Hyper("alpha", 0.75, ANY),
        Hyper("t0", 1e6, ANY),
        Hyper("weight_decay", 0.0, NON_NEGATIVE),
        maximize(),
    ),
    roles=(Role("ax"),),
    # eta's initial value is never read: a step that creates the state starts from γ.
    scalars=(Scalar("eta", 0.0, np.float32, 0.0, math.inf, _advance_eta),
             Scalar("mu", 1.0, np.float32, 0.0, 1.0, _advance_mu)),
    **torch_optim("asgd", "ASGD"),
    kernel_args=_kernel_args,
)

RULES = (ASGD,)
