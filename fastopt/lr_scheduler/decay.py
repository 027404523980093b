"""Step decays, warm-up factors and the smooth decays: StepLR, MultiStepLR, ConstantLR,
LinearLR, ExponentialLR and PolynomialLR, all chainable and all with a closed form."""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable

from .. import validation
from .base import NON_NEGATIVE, POSITIVE_INTEGER, UNIT, ChainableLR, HasParamGroups

# (0, 1]: from a rate of 0 the chainable ratio γₑ / γₑ₋₁ cannot climb back.
_START_FACTOR = validation.Real(high=1.0, low_open=True, exact=True)
_MILESTONES = validation.ListOf(validation.Integer(0))


class StepLR(ChainableLR):
    """γₑ = γ₀ · gamma^⌊e / step_size⌋ (chainable: × gamma when e is a multiple of step_size)."""

    def __init__(self, optimizer: HasParamGroups, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.step_size = POSITIVE_INTEGER("step_size", step_size)
        self.gamma = NON_NEGATIVE("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def _ratio(self, e: int) -> float | None:
        return self.gamma if e != 0 and e % self.step_size == 0 else None

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(ChainableLR):
    """γₑ = γ₀ · gamma^(number of milestones ≤ e) (chainable: × gamma at each milestone).

    ``milestones`` must be non-decreasing integers ≥ 0; a milestone listed k times multiplies by
    gamma^k, as in torch.
    """

    def __init__(self, optimizer: HasParamGroups, milestones: Iterable[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        values = _MILESTONES("milestones", milestones)
        if values != sorted(values):
            raise ValueError(f"milestones: expected a non-decreasing list, got {values}")
        self.milestones = Counter(values)
        self.gamma = NON_NEGATIVE("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def _ratio(self, e: int) -> float | None:
        return self.gamma ** self.milestones[e] if e in self.milestones else None

    def _get_closed_form_lr(self) -> list[float]:
        passed = bisect_right(sorted(self.milestones.elements()), self.last_epoch)
        return [base * self.gamma**passed for base in self.base_lrs]


class ConstantLR(ChainableLR):
    """γₑ = γ₀ · factor for e < total_iters, γ₀ from then on.

    Chainable: × factor at construction, × 1/factor at e = total_iters. With ``factor = 0``
    (where torch divides by zero) the rate at total_iters is γ₀ itself.
    """

    def __init__(self, optimizer: HasParamGroups, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1) -> None:
        self.factor = UNIT("factor", factor)
        self.total_iters = POSITIVE_INTEGER("total_iters", total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.factor == 0 and self.last_epoch == self.total_iters:
            return list(self.base_lrs)  # where torch's ratio is 1 / 0
        return super().get_lr()

    def _ratio(self, e: int) -> float | None:
        if e == 0:
            return self.factor
        return 1.0 / self.factor if e == self.total_iters else None

    def _get_closed_form_lr(self) -> list[float]:
        reached = self.last_epoch >= self.total_iters
        return [base * (self.factor + reached * (1 - self.factor)) for base in self.base_lrs]


class LinearLR(ChainableLR):
    """γₑ = γ₀ · (s + (f − s) · min(e, total_iters) / total_iters): a linear warm-up or decay.

    ``s = start_factor`` in (0, 1], ``f = end_factor`` in [0, 1]. Chainable: × s at construction,
    then × γₑ/γₑ₋₁ = 1 + (f − s) / (total_iters · s + (e − 1)(f − s)) up to total_iters.
    """

    def __init__(self, optimizer: HasParamGroups, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0, total_iters: int = 5, last_epoch: int = -1) -> None:
        self.start_factor = _START_FACTOR("start_factor", start_factor)
        self.end_factor = UNIT("end_factor", end_factor)
        self.total_iters = POSITIVE_INTEGER("total_iters", total_iters)
        super().__init__(optimizer, last_epoch)

    def _ratio(self, e: int) -> float | None:
        if e == 0:
            return self.start_factor
        if self._initial or e > self.total_iters:
            return None
        span = self.end_factor - self.start_factor
        return 1.0 + span / (self.total_iters * self.start_factor + (e - 1) * span)

    def _get_closed_form_lr(self) -> list[float]:
        progress = min(self.total_iters, self.last_epoch) / self.total_iters
        span = self.end_factor - self.start_factor
        return [base * (self.start_factor + span * progress) for base in self.base_lrs]


# ------------------------------------------------------------------------------------------
# Smooth decays
# ------------------------------------------------------------------------------------------


class ExponentialLR(ChainableLR):
    """γₑ = γ₀ · gammaᵉ (chainable: × gamma per step)."""

    def __init__(self, optimizer: HasParamGroups, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = NON_NEGATIVE("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def _ratio(self, e: int) -> float | None:
        return None if self._initial else self.gamma

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma**self.last_epoch for base in self.base_lrs]


class PolynomialLR(ChainableLR):
    """γₑ = γ₀ · (1 − min(e, total_iters) / total_iters)^power.

    Chainable: × ((1 − e/T) / (1 − (e − 1)/T))^power per step up to T = total_iters; 0 after T.
    """

    def __init__(self, optimizer: HasParamGroups, total_iters: int = 5, power: float = 1.0,
                 last_epoch: int = -1) -> None:
        self.total_iters = POSITIVE_INTEGER("total_iters", total_iters)
        self.power = NON_NEGATIVE("power", power)
        super().__init__(optimizer, last_epoch)

    def _ratio(self, e: int) -> float | None:
        t = self.total_iters
        if self._initial or e > t:
            return None
        return ((1.0 - e / t) / (1.0 - (e - 1) / t)) ** self.power

    def _get_closed_form_lr(self) -> list[float]:
        remaining = 1.0 - min(self.total_iters, self.last_epoch) / self.total_iters
        return [base * remaining**self.power for base in self.base_lrs]


