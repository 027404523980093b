"""Adadelta: steps scaled by running RMS of past updates over running RMS of gradients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import _checks
from .._kernels import kernels
from .optimizer import Hyper, Optimizer, Scalars


class Adadelta(Optimizer):
    """Adadelta, torch.optim.Adadelta's rule and arguments::

        g ← g + λ p
        v ← ρ v + (1 − ρ) g²
        Δ = √(u + ε) / √(v + ε) · g
        u ← ρ u + (1 − ρ) Δ²
        p ← p − γ Δ
    """

    roles = ("square_avg", "acc_delta")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    @classmethod
    def check_group(cls, group: dict[str, Any]) -> Hyper:
        return (
            _checks.real("lr", group["lr"]),
            _checks.real("rho", group["rho"], below=1.0),
            _checks.real("eps", group["eps"]),
            _checks.real("weight_decay", group["weight_decay"]),
            _checks.flag("maximize", group["maximize"]),
        )

    @classmethod
    def apply(cls, table: Any, hyper: Hyper, step: int, fresh: frozenset[str],
              scalars: Scalars, grad_scale: float = 1.0) -> None:
        lr, rho, eps, weight_decay, maximize = hyper
        kernels.adadelta(table, lr, rho, eps, weight_decay, -grad_scale if maximize else grad_scale)
