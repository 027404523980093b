"""Schedule-Free AdamW and SGD (Defazio et al. 2024, "The Road Less Scheduled"), as the
authors' package ``schedulefree`` 1.4.1 steps them (``AdamWScheduleFree``,
``SGDScheduleFree``).

The parameter holds y, the point where gradients are taken, in train mode, and x, the average
the model is evaluated at, in eval mode; the state holds z. Like the package, the rules keep
their step count ``k``, the sum of the averaging weights and the largest learning rate seen in
the parameter group (``progress``), with ``train_mode`` and the last ``scheduled_lr``.
"""

from __future__ import annotations

from typing import Any

from .. import validation
from .base import BETAS, LR, NON_NEGATIVE, FLAG, Hyper, Modes, Role, Rule, maximize

# The entries the package keeps in every parameter group besides the hyper-parameters.
PROGRESS = (
    Hyper("k", 0, validation.Integer(), argument=False),
    Hyper("train_mode", False, FLAG, argument=False),
    Hyper("weight_sum", 0.0, NON_NEGATIVE, argument=False),
    Hyper("lr_max", -1.0, validation.Real(low=-1.0), argument=False),
    Hyper("scheduled_lr", 0.0, NON_NEGATIVE, argument=False),
)
AVERAGING = (
    Hyper("warmup_steps", 0, validation.Integer()),
    Hyper("r", 0.0, NON_NEGATIVE),
    Hyper("weight_lr_power", 2.0, NON_NEGATIVE),
)
FORMULA = """\
k: the group's step count, from 0;  γₖ = γ · min(1, (k + 1) / warmup_steps)
γmax ← max(γmax, γₖ);  wₖ = (k + 1)^r · γmax^weight_lr_power;  W ← W + wₖ;  c = wₖ / W
{normalise}u ← u + λ y
y ← (1 − c) y + c z + γₖ (β₁ (1 − c) − 1) u        (y: the parameter in train mode)
z ← z − γₖ u                                         (z: y before the first step)
eval():  p ← x = (y − (1 − β₁) z) / β₁;   train():  p ← y = (1 − β₁) z + β₁ x"""


def _beta1(h) -> float:
    return h.betas[0] if hasattr(h, "betas") else h.momentum


def _schedule(h) -> tuple[float, float, float]:
    """This step's learning rate, the largest so far and the averaging weight c, as the package
    computes them (in double)."""
    k = h.k
    lr = h.lr * ((k + 1) / h.warmup_steps if k < h.warmup_steps else 1.0)
    lr_max = max(lr, h.lr_max)
    weight = ((k + 1) ** h.r) * (lr_max ** h.weight_lr_power)
    weight_sum = h.weight_sum + weight
    ckp1 = weight / weight_sum if weight_sum != 0 else 0.0  # the package's ZeroDivisionError
    return lr, lr_max, weight_sum, ckp1


def _progress(h) -> dict[str, Any]:
    lr, lr_max, weight_sum, _ = _schedule(h)
    return {"k": h.k + 1, "weight_sum": weight_sum, "lr_max": lr_max, "scheduled_lr": lr}


def _kernel_args(h, t, scalars, fresh):
    lr, _, _, ckp1 = _schedule(h)
    adaptive = hasattr(h, "betas")
    beta2 = h.betas[1] if adaptive else 0.0
    return {"lr": lr, "ckp1": ckp1, "y_coef": lr * (_beta1(h) * (1 - ckp1) - 1),
            "beta2": beta2, "bias2": 1 - beta2 ** (h.k + 1), "eps": h.eps if adaptive else 0.0,
            "weight_decay": h.weight_decay, "weight": 0.0, "adaptive": adaptive,
            "first": "z" in fresh, "switch": False}


def _switch(h, train: bool):
    beta1 = _beta1(h)
    return {**_kernel_args(h, 0, {}, frozenset()), "switch": True,
            "weight": 1 - beta1 if train else 1 - 1 / beta1}


def _beta1_positive(h) -> None:
    if h.betas[0] == 0:
        raise ValueError("betas[0]: expected a number in (0, 1) (eval() divides by it), got "
                         f"{h.betas[0]!r}")


def _rule(name: str, summary: str, hypers: tuple[Hyper, ...], roles: tuple[Role, ...],
          normalise: str, **fields: Any) -> Rule:
    return Rule(
        name=name, summary=summary, formula=FORMULA.format(normalise=normalise),
        hypers=(*hypers, *AVERAGING, maximize(), *PROGRESS), roles=roles,
        kernel="schedule_free", kernel_args=_kernel_args, source=f"schedulefree.{name} (schedulefree 1.4.1)",
        counts_steps=False, uses_step=False, progress=_progress,
        modes=Modes("train_mode", "z", _switch, "schedule_free_switch"), **fields)


ADAMW_SCHEDULE_FREE = _rule(
    "AdamWScheduleFree",
    "AdamW without a schedule: gradients at an interpolation of Adam-style iterates and their "
    "average, which the model is evaluated at",
    (Hyper("lr", 0.0025, LR), Hyper("betas", (0.9, 0.999), BETAS),
     Hyper("eps", 1e-8, NON_NEGATIVE), Hyper("weight_decay", 0.0, NON_NEGATIVE)),
    (Role("z", initial=None), Role("exp_avg_sq", nonnegative=True)),
    "v ← β₂ v + (1 − β₂) g²;  u = g / (√(v / (1 − β₂ᵏ⁺¹)) + ε)\n",
    reference="adamw_schedule_free", requires=_beta1_positive,
)

SGD_SCHEDULE_FREE = _rule(
    "SGDScheduleFree",
    "SGD without a schedule: gradients at an interpolation of SGD iterates and their average, "
    "which the model is evaluated at",
    (Hyper("lr", 1.0, LR),
     Hyper("momentum", 0.9, validation.Real(high=1.0, low_open=True, high_open=True)),
     Hyper("weight_decay", 0.0, NON_NEGATIVE)),
    (Role("z", initial=None),),
    "u = g;  ",
    reference="sgd_schedule_free",
)

RULES = (ADAMW_SCHEDULE_FREE, SGD_SCHEDULE_FREE)
