"""ReduceLROnPlateau: the schedule driven by a metric rather than by the epoch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, SupportsFloat

from .. import validation
from .base import (
    NON_NEGATIVE,
    NON_NEGATIVE_INTEGER,
    HasParamGroups,
    LRScheduler,
    check_optimizer,
    current_lrs,
    per_group,
)

_FACTOR = validation.Real(high=1.0, high_open=True, exact=True)  # [0, 1): 1 would never reduce
_MODE = validation.Choice(("min", "max"))
_THRESHOLD_MODE = validation.Choice(("rel", "abs"))


class ReduceLROnPlateau(LRScheduler):
    """Multiply each group's lr by ``factor`` when a metric stops improving.

    ``step(metric)``: the metric improves on the best so far when, for mode "min", it is below
    best · (1 − threshold) ("rel") or best − threshold ("abs"); for mode "max", above
    best · (1 + threshold) or best + threshold. After more than ``patience`` epochs without
    improvement, γ ← max(γ · factor, min_lr) (skipped when that changes γ by no more than
    ``eps``), then ``cooldown`` epochs pass during which bad epochs are not counted.
    Like torch's, it does not write ``initial_lr`` into the groups.
    """

    def __init__(self, optimizer: HasParamGroups, mode: Literal["min", "max"] = "min",
                 factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 threshold_mode: Literal["rel", "abs"] = "rel", cooldown: int = 0,
                 min_lr: float | Sequence[float] = 0, eps: float = 1e-8) -> None:
        check_optimizer(optimizer)
        self.factor = _FACTOR("factor", factor)
        self.mode = _MODE("mode", mode)
        self.threshold_mode = _THRESHOLD_MODE("threshold_mode", threshold_mode)
        self.threshold = NON_NEGATIVE("threshold", threshold)
        self.patience = NON_NEGATIVE_INTEGER("patience", patience)
        self.cooldown = NON_NEGATIVE_INTEGER("cooldown", cooldown)
        self.eps = NON_NEGATIVE("eps", eps)
        self.min_lrs = per_group(NON_NEGATIVE, optimizer)("min_lr", min_lr)
        # A scalar min_lr also covers groups added later; a list cannot.
        self.default_min_lr = None if isinstance(min_lr, (list, tuple)) else min_lr
        self.optimizer = optimizer
        self.last_epoch = 0
        self.mode_worse = math.inf if self.mode == "min" else -math.inf
        self._last_lr = current_lrs(optimizer)
        self._reset()

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return a < best * (1.0 - self.threshold)
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(  # type: ignore[override]
        self, metrics: SupportsFloat, epoch: int | None = None
    ) -> None:
        """Record the metric of the epoch just finished; reduce the rates if it has plateaued."""
        current = float(metrics)
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = current_lrs(self.optimizer)

    def _reduce_lr(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"ReduceLROnPlateau: the optimizer has {len(groups)} param groups but "
                    f"min_lr lists {len(self.min_lrs)} (a group was added after the schedule "
                    "was built); set .min_lrs to one value per group"
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                group["lr"] = new
