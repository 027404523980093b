"""Schedules given by the user's functions of the epoch: LambdaLR and MultiplicativeLR."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .. import validation
from .base import HasParamGroups, LRScheduler, check_optimizer, current_lrs, per_group


class _LambdaScheduler(LRScheduler):
    """A schedule given by one function of the epoch for all groups, or one per group."""

    _callables = ("lr_lambdas",)

    def __init__(self, optimizer: HasParamGroups,
                 lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
                 last_epoch: int = -1) -> None:
        check_optimizer(optimizer)
        self.lr_lambdas = per_group(validation.Function(), optimizer)("lr_lambda", lr_lambda)
        super().__init__(optimizer, last_epoch)


class LambdaLR(_LambdaScheduler):
    """γₑ = γ₀ · f(e), with one function ``f`` for all groups or one per group.

    Not chainable: each step writes the formula's value.
    """

    def get_lr(self) -> list[float]:
        return [base * f(self.last_epoch) for f, base in zip(self.lr_lambdas, self.base_lrs)]


class MultiplicativeLR(_LambdaScheduler):
    """γₑ = γₑ₋₁ · f(e) for e ≥ 1 (γ unchanged at construction); one ``f`` or one per group."""

    def get_lr(self) -> list[float]:
        if self._initial:
            return current_lrs(self.optimizer)
        groups = self.optimizer.param_groups
        return [g["lr"] * f(self.last_epoch) for f, g in zip(self.lr_lambdas, groups)]
