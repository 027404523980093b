"""The cyclic schedules, stepped once per batch: CyclicLR and OneCycleLR.

Both also cycle the groups' momentum the opposite way to the rate (``cycle_momentum``, torch's
default): ``momentum`` for SGD and RMSprop, beta1 of ``betas`` for the Adam family. An
optimizer with neither (Adagrad, Adadelta) is refused unless ``cycle_momentum=False``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

from .. import validation
from .base import (
    FINITE,
    LAST_EPOCH,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INTEGER,
    UNIT,
    HasParamGroups,
    LRScheduler,
    check_optimizer,
    per_group,
)

_FLAG = validation.Flag()
_MODE = validation.Choice(("triangular", "triangular2", "exp_range"))
_SCALE_MODE = validation.Choice(("cycle", "iterations"))
_SCALE_FN = validation.Function(optional=True)
_ANNEAL_STRATEGY = validation.Choice(("cos", "linear"))


def _uses_beta1(optimizer: HasParamGroups) -> bool:
    """Whether the groups' momentum is beta1 of 'betas' (Adam family) or 'momentum' (SGD)."""
    groups = optimizer.param_groups
    if groups and all("betas" in g for g in groups):
        return True
    if groups and all("momentum" in g for g in groups):
        return False
    raise ValueError(
        "optimizer must support momentum or beta1 with `cycle_momentum` option enabled: its "
        f"param_groups have neither 'momentum' nor 'betas' ({type(optimizer).__name__}); "
        "pass cycle_momentum=False"
    )


def _set_momentum(group: dict[str, Any], use_beta1: bool, value: float) -> None:
    if use_beta1:
        group["betas"] = (value, *group["betas"][1:])
    else:
        group["momentum"] = value


def _momentum_bounds(optimizer: HasParamGroups, base_momentum: Any,
                     max_momentum: Any) -> tuple[list[Any], list[Any]]:
    """The base and the max momentum of each group, checked: two lists."""
    return (
        per_group(FINITE, optimizer)("base_momentum", base_momentum),
        per_group(FINITE, optimizer)("max_momentum", max_momentum),
    )


def _start_momentum(optimizer: HasParamGroups, use_beta1: bool, bases: Sequence[Any],
                    tops: Sequence[Any]) -> None:
    """A cycle starts at max_momentum; both bounds go into the groups, under torch's keys."""
    for group, bottom, top in zip(optimizer.param_groups, bases, tops):
        _set_momentum(group, use_beta1, top)
        group["max_momentum"] = top
        group["base_momentum"] = bottom


class CyclicLR(LRScheduler):
    """Cyclical learning rate (Smith 2017), stepped once per batch.

    With c = ⌊1 + e / (up + down)⌋ the cycle and x = 1 + e / (up + down) − c ∈ [0, 1) the
    position in it, the height is h = x / r while x ≤ r (rising) and (x − 1) / (r − 1) after
    (falling), r = up / (up + down). Then γ = base_lr + (max_lr − base_lr) · h · s and, with
    ``cycle_momentum``, μ = max_momentum − (max_momentum − base_momentum) · h · s, where the
    scale s is 1 ("triangular"), 1 / 2^(c−1) ("triangular2"), gammaᵉ ("exp_range"), or
    ``scale_fn(c)`` / ``scale_fn(e)`` (``scale_mode`` "cycle" / "iterations"). μ is the groups'
    ``momentum`` (SGD, RMSprop) or beta1 of ``betas`` (Adam family), set from the constructor
    on; optimizers with neither (Adagrad) are refused unless ``cycle_momentum=False``.
    Construction sets ``lr`` to base_lr. Not chainable.
    """

    _callables = ("_scale_fn_custom",)

    def __init__(self, optimizer: HasParamGroups, base_lr: float | Sequence[float],
                 max_lr: float | Sequence[float], step_size_up: int = 2000,
                 step_size_down: int | None = None,
                 mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
                 gamma: float = 1.0, scale_fn: Callable[[float], float] | None = None,
                 scale_mode: Literal["cycle", "iterations"] = "cycle", cycle_momentum: bool = True,
                 base_momentum: float | Sequence[float] = 0.8,
                 max_momentum: float | Sequence[float] = 0.9, last_epoch: int = -1) -> None:
        check_optimizer(optimizer)
        base_lrs = per_group(NON_NEGATIVE, optimizer)("base_lr", base_lr)
        self.max_lrs = per_group(NON_NEGATIVE, optimizer)("max_lr", max_lr)
        up = float(POSITIVE("step_size_up", step_size_up))
        down = up if step_size_down is None else float(
            NON_NEGATIVE("step_size_down", step_size_down)
        )
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        if _SCALE_FN("scale_fn", scale_fn) is None:
            _MODE("mode", mode)  # with a scale_fn, mode is ignored (torch's)
        self.mode = mode
        self.gamma = POSITIVE("gamma", gamma)
        self._scale_fn_custom = scale_fn
        self.scale_mode = _SCALE_MODE("scale_mode", scale_mode)
        if scale_fn is None:
            self.scale_mode = "iterations" if mode == "exp_range" else "cycle"
        self.cycle_momentum = _FLAG("cycle_momentum", cycle_momentum)
        if self.cycle_momentum:
            self.use_beta1 = _uses_beta1(optimizer)
            self.base_momentums, self.max_momentums = _momentum_bounds(
                optimizer, base_momentum, max_momentum
            )
        last_epoch = LAST_EPOCH("last_epoch", last_epoch)

        if last_epoch == -1:
            for group, lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = lr
            if self.cycle_momentum:
                _start_momentum(optimizer, self.use_beta1, self.base_momentums, self.max_momentums)
        self.base_lrs = base_lrs
        super().__init__(optimizer, last_epoch)

    def _initial_base_lrs(self) -> list[float]:
        # torch assigns base_lr only after its construction step, which therefore starts from a
        # stale initial_lr when the groups already had one; using base_lr from epoch 0 on avoids it.
        return list(self.base_lrs)

    def scale_fn(self, x: float) -> float:
        """The amplitude scale s at cycle or iteration ``x``."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        return self.gamma**x

    def get_lr(self) -> list[float]:
        e = self.last_epoch
        cycle = math.floor(1 + e / self.total_size)
        x = 1.0 + e / self.total_size - cycle
        if x <= self.step_ratio:
            height = x / self.step_ratio
        else:
            height = (x - 1) / (self.step_ratio - 1)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else e)
        lrs = [
            base + (top - base) * height * scale for base, top in zip(self.base_lrs, self.max_lrs)
        ]
        if self.cycle_momentum:
            for group, bottom, top in zip(
                self.optimizer.param_groups, self.base_momentums, self.max_momentums
            ):
                _set_momentum(group, self.use_beta1, top - (top - bottom) * height * scale)
        return lrs


class OneCycleLR(LRScheduler):
    """1cycle (Smith & Topin 2018), stepped once per batch over ``total_steps`` steps.

    γ rises from max_lr / div_factor at step 0 to max_lr at step pct_start · total_steps − 1,
    then falls to max_lr / (div_factor · final_div_factor) at step total_steps − 1
    (``three_phase``: rises, falls back to the start over as many steps, then to the minimum).
    Each phase interpolates with pct = (e − start) / (end − start) along a cosine,
    end + (start − end)(1 + cos(π pct)) / 2, or a line, start + (end − start) pct. With
    ``cycle_momentum`` the groups' ``momentum`` or beta1 goes the opposite way between
    max_momentum and base_momentum (Adagrad refused, as in :class:`CyclicLR`).

    As in torch, ``step()`` may be called total_steps times after construction (the last one
    extrapolates one step past the schedule); one more raises ``ValueError`` and changes
    nothing. Where torch divides by zero (pct_start · total_steps = 1, or pct_start = 1 at the
    final step) an empty phase is taken as completed (pct = 1). Not chainable.
    """

    def __init__(self, optimizer: HasParamGroups, max_lr: float | Sequence[float],
                 total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: Literal["cos", "linear"] = "cos", cycle_momentum: bool = True,
                 base_momentum: float | Sequence[float] = 0.85,
                 max_momentum: float | Sequence[float] = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:
        check_optimizer(optimizer)
        if total_steps is not None:
            self.total_steps = POSITIVE_INTEGER("total_steps", total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = POSITIVE_INTEGER("epochs", epochs) * POSITIVE_INTEGER(
                "steps_per_epoch", steps_per_epoch
            )
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        pct_start = UNIT("pct_start", pct_start)
        self.anneal_strategy = _ANNEAL_STRATEGY("anneal_strategy", anneal_strategy)
        max_lrs = per_group(NON_NEGATIVE, optimizer)("max_lr", max_lr)
        div_factor = POSITIVE("div_factor", div_factor)
        final_div_factor = POSITIVE("final_div_factor", final_div_factor)
        three_phase = _FLAG("three_phase", three_phase)
        self.cycle_momentum = _FLAG("cycle_momentum", cycle_momentum)
        if self.cycle_momentum:
            self.use_beta1 = _uses_beta1(optimizer)
            base_momentums, max_momentums = _momentum_bounds(
                optimizer, base_momentum, max_momentum
            )
        last_epoch = LAST_EPOCH("last_epoch", last_epoch)
        if last_epoch != -1:
            for i, group in enumerate(optimizer.param_groups):
                for name in ("initial_lr", "max_lr", "min_lr") + (
                    ("max_momentum", "base_momentum") if self.cycle_momentum else ()
                ):
                    if name not in group:
                        raise ValueError(
                            f"optimizer.param_groups[{i}]: expected a {name!r} entry when "
                            f"resuming with last_epoch={last_epoch}, got none"
                        )

        # Each phase: (last step, lr from, lr to, momentum from, momentum to), by group keys.
        warmup_end = float(pct_start * self.total_steps) - 1
        last = self.total_steps - 1
        if three_phase:
            self._phases = [
                (warmup_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (float(2 * pct_start * self.total_steps) - 2, "max_lr", "initial_lr",
                 "base_momentum", "max_momentum"),
                (last, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self._phases = [
                (warmup_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (last, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]

        if last_epoch == -1:
            for group, top in zip(optimizer.param_groups, max_lrs):
                group["initial_lr"] = top / div_factor
                group["max_lr"] = top
                group["min_lr"] = group["initial_lr"] / final_div_factor
            if self.cycle_momentum:
                _start_momentum(optimizer, self.use_beta1, base_momentums, max_momentums)
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        e = self.last_epoch
        if e > self.total_steps:
            raise ValueError(
                f"Tried to step {e} times. The specified number of total steps is "
                f"{self.total_steps}"
            )
        start = 0.0
        for i, (end, lr_from, lr_to, mom_from, mom_to) in enumerate(self._phases):
            if e <= end or i == len(self._phases) - 1:
                pct = (e - start) / (end - start) if end != start else 1.0
                break
            start = end
        lrs = []
        for group in self.optimizer.param_groups:
            lrs.append(self._anneal(group[lr_from], group[lr_to], pct))
            if self.cycle_momentum:
                momentum = self._anneal(group[mom_from], group[mom_to], pct)
                _set_momentum(group, self.use_beta1, momentum)
        return lrs
