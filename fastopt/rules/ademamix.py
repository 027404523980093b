"""AdEMAMix (Pagliardini et al. 2024, "The AdEMAMix Optimizer: Better, Faster, Older"), as
pytorch-optimizer implements it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .. import validation
from .base import BETAS, LR, NON_NEGATIVE, Hyper, Role, Rule, maximize
from .ported import OptionalReal, weight_decay_args, weight_decay_hypers


@dataclass(frozen=True)
class Triple(validation.Pair):
    """Three values: the first two meeting ``item``, the third ``last`` (``betas``); returned
    as a tuple. A kind of Pair, so that groups keep it as a tuple of floats as they keep
    ``betas``."""

    last: Any = None

    def __call__(self, name: str, value: Any) -> tuple[Any, Any, Any]:
        if not isinstance(value, (tuple, list)) or len(value) != 3:
            raise TypeError(f"{name}: expected three values, got {value!r}")
        return (self.item(f"{name}[0]", value[0]), self.item(f"{name}[1]", value[1]),
                self.last(f"{name}[2]", value[2]))

    def describe(self) -> str:
        return f"three values, the first two each {self.item.describe()}, the third " \
               f"{self.last.describe()}"


# β₁, β₂ in [0, 1) and β₃ in [0, 1], as pytorch-optimizer checks them.
BETAS3 = Triple(BETAS.item, validation.Real(high=1.0))


def _requires(h) -> None:
    beta1, _, beta3 = h.betas
    # The warm-up interpolates log β₁ and log β₃: both must exist, and with β₁ ≤ β₃ the
    # exponent stays in (−∞, 0] (pytorch-optimizer raises or overflows otherwise).
    if h.t_alpha_beta3 is not None and not 0 < beta1 <= beta3:
        raise ValueError(f"betas: expected 0 < betas[0] <= betas[2] with t_alpha_beta3, "
                         f"got {h.betas!r}")


def scheduled(h, t: int) -> tuple[float, float]:
    """(αₜ, β₃ₜ): warmed up over ``t_alpha_beta3`` steps, or the constants without warm-up."""
    beta1, _, beta3 = h.betas
    alpha, warmup = h.alpha, h.t_alpha_beta3
    if warmup is None:
        return alpha, beta3
    log_beta1, log_beta3 = math.log(beta1), math.log(beta3)
    beta3_t = math.exp(log_beta1 * log_beta3
                       / ((1.0 - t / warmup) * log_beta3 + (t / warmup) * log_beta1))
    return min(t * alpha / warmup, alpha), min(beta3_t, beta3)


def _kernel_args(h, t, scalars, fresh):
    beta1, beta2, _ = h.betas
    alpha, beta3 = scheduled(h, t)
    return {"lr": h.lr, "bias1": 1.0 - math.pow(beta1, t),
            "bias2_sqrt": math.sqrt(1.0 - math.pow(beta2, t)), "beta1": beta1, "beta2": beta2,
            "beta3": beta3, "alpha": alpha, "eps": h.eps, **weight_decay_args(h)}


ADEMAMIX = Rule(
    name="AdEMAMix",
    summary="Adam whose step adds a slow gradient average to the fast one",
    formula="""\
g ← g + λ p      (or p ← p · (1 − γ λ) with weight_decouple, p · (1 − λ) if also fixed_decay)
m₁ ← β₁ m₁ + (1 − β₁) g
v ← β₂ v + (1 − β₂) g²
m₂ ← β₃ₜ m₂ + (1 − β₃ₜ) g
p ← p − γ (m₁ / (1 − β₁ᵗ) + αₜ m₂) / (√v / √(1 − β₂ᵗ) + ε)
αₜ = min(t α / T, α),  β₃ₜ = min(exp(ln β₁ ln β₃ / ((1 − t/T) ln β₃ + (t/T) ln β₁)), β₃)
(T: t_alpha_beta3; αₜ = α and β₃ₜ = β₃ when it is None)""",
    hypers=(
        Hyper("lr", 1e-3, LR),
        Hyper("betas", (0.9, 0.999, 0.9999), BETAS3),
        *weight_decay_hypers(),
        Hyper("alpha", 5.0, NON_NEGATIVE),
        Hyper("t_alpha_beta3", None, OptionalReal(low_open=True)),
        Hyper("eps", 1e-8, NON_NEGATIVE),
        maximize(),
    ),
    roles=(Role("exp_avg"), Role("exp_avg_sq"), Role("exp_avg_slow")),
    kernel="ademamix",
    kernel_args=_kernel_args,
    reference="ademamix",
    source="pytorch_optimizer.AdEMAMix (pytorch-optimizer 4.1.0)",
    requires=_requires,
)

RULES = (ADEMAMIX,)
