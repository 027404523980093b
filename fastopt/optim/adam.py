"""Adam with bias correction, AMSGrad, and AdamW's decoupled weight decay."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .. import _checks
from .._kernels import kernels
from .optimizer import Hyper, Optimizer, Scalars


def check_adam_hyper(group: dict[str, Any]) -> tuple[float, float, float, float, float]:
    """(lr, beta1, beta2, eps, weight_decay), validated: what Adam's family has in common."""
    return (
        _checks.real("lr", group["lr"]),
        *_checks.betas("betas", group["betas"]),
        _checks.real("eps", group["eps"]),
        _checks.real("weight_decay", group["weight_decay"]),
    )


def weight_decay_terms(lr: float, weight_decay: float, decoupled: bool) -> tuple[float, float]:
    """The kernels' (L2 coefficient, factor on p): (λ, 1), or (0, 1 − γ λ) when decoupled."""
    return (0.0, 1 - lr * weight_decay) if decoupled else (weight_decay, 1.0)


class Adam(Optimizer):
    """Adam, torch.optim.Adam's rule and arguments (``decoupled_weight_decay=True`` is AdamW)::

        g ← g + λ p                      (or p ← p · (1 − γ λ), decoupled)
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        v̂ ← max(v̂, v)                    (amsgrad; v̂ replaces v below)
        p ← p − (γ / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
    """

    roles = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    @classmethod
    def check_group(cls, group: dict[str, Any]) -> Hyper:
        return (
            *check_adam_hyper(group),
            _checks.flag("amsgrad", group["amsgrad"]),
            _checks.flag("maximize", group["maximize"]),
            _checks.flag("decoupled_weight_decay", group["decoupled_weight_decay"]),
        )

    @classmethod
    def roles_used(cls, hyper: Hyper) -> tuple[str, ...]:
        return cls.roles if hyper[5] else cls.roles[:2]

    @classmethod
    def apply(cls, table: Any, hyper: Hyper, step: int, fresh: frozenset[str],
              scalars: Scalars, grad_scale: float = 1.0) -> None:
        lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled = hyper
        kernels.adam(
            table,
            lr / (1 - beta1**step),
            math.sqrt(1 - beta2**step),
            beta1,
            beta2,
            eps,
            *weight_decay_terms(lr, weight_decay, decoupled),
            -grad_scale if maximize else grad_scale,
            amsgrad,
        )


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay, torch.optim.AdamW's arguments and defaults."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
