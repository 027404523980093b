"""Adagrad: per-element learning rates from the running sum of squared gradients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import _checks
from .._kernels import kernels
from .optimizer import Hyper, Optimizer, Scalars


class Adagrad(Optimizer):
    """Adagrad, torch.optim.Adagrad's rule and arguments::

        γₜ = γ / (1 + (t − 1) η)
        g ← g + λ p
        s ← s + g²                       (s starts at initial_accumulator_value)
        p ← p − γₜ g / (√s + ε)
    """

    roles = ("sum",)

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps,
                        maximize=maximize)
        super().__init__(params, defaults)

    @classmethod
    def check_group(cls, group: dict[str, Any]) -> Hyper:
        _checks.real("initial_accumulator_value", group["initial_accumulator_value"])
        return (
            _checks.real("lr", group["lr"]),
            _checks.real("lr_decay", group["lr_decay"]),
            _checks.real("weight_decay", group["weight_decay"]),
            _checks.real("eps", group["eps"]),
            _checks.flag("maximize", group["maximize"]),
        )

    @classmethod
    def apply(cls, table: Any, hyper: Hyper, step: int, fresh: frozenset[str],
              scalars: Scalars, grad_scale: float = 1.0) -> None:
        lr, lr_decay, weight_decay, eps, maximize = hyper
        kernels.adagrad(table, lr / (1 + (step - 1) * lr_decay), eps, weight_decay,
                        -grad_scale if maximize else grad_scale)

    # torch creates Adagrad's state with the optimizer, not at the first step.
    @classmethod
    def roles_at_construction(cls, hyper: Hyper) -> tuple[str, ...]:
        return cls.roles

    @classmethod
    def initial_value(cls, role: str, group: dict[str, Any]) -> float:
        return float(group["initial_accumulator_value"])
