"""Adamax: Adam with the infinity norm of past gradients in place of their second moment."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import _checks
from .._kernels import kernels
from .adam import check_adam_hyper
from .optimizer import Hyper, Optimizer, Scalars


class Adamax(Optimizer):
    """Adamax, torch.optim.Adamax's rule and arguments::

        g ← g + λ p
        m ← β₁ m + (1 − β₁) g
        u ← max(β₂ u, |g| + ε)           (NaN if either side is NaN, as torch.maximum)
        p ← p − (γ / (1 − β₁ᵗ)) · m / u
    """

    roles = ("exp_avg", "exp_inf")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        maximize=maximize)
        super().__init__(params, defaults)

    @classmethod
    def check_group(cls, group: dict[str, Any]) -> Hyper:
        return (*check_adam_hyper(group), _checks.flag("maximize", group["maximize"]))

    @classmethod
    def apply(cls, table: Any, hyper: Hyper, step: int, fresh: frozenset[str],
              scalars: Scalars, grad_scale: float = 1.0) -> None:
        lr, beta1, beta2, eps, weight_decay, maximize = hyper
        kernels.adamax(table, lr / (1 - beta1**step), beta1, beta2, eps, weight_decay,
                       -grad_scale if maximize else grad_scale)
