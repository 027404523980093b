"""The two decays of the seeds that torch lacks: inverse time and inverse square root."""

from __future__ import annotations

import math

from .base import NON_NEGATIVE, POSITIVE, ChainableLR, HasParamGroups


class InverseTimeLR(ChainableLR):
    """Inverse-time decay: γₑ = γ₀ / (1 + k · e), with k = ``decay_rate`` ≥ 0.

    Epochs count from 0: construction leaves γ₀, the n-th ``step()`` sets γ₀ / (1 + k n).
    Chainable, like torch's smooth decays: each step multiplies ``lr`` by
    (1 + k (e − 1)) / (1 + k e), so it composes in :class:`ChainedScheduler`;
    ``step(epoch)`` uses the closed form.
    """

    def __init__(self, optimizer: HasParamGroups, decay_rate: float, last_epoch: int = -1) -> None:
        self.decay_rate = NON_NEGATIVE("decay_rate", decay_rate)
        super().__init__(optimizer, last_epoch)

    def _ratio(self, e: int) -> float | None:
        k = self.decay_rate
        return None if self._initial else (1 + k * (e - 1)) / (1 + k * e)

    def _get_closed_form_lr(self) -> list[float]:
        return [base / (1 + self.decay_rate * self.last_epoch) for base in self.base_lrs]


class InverseSqrtLR(ChainableLR):
    """Inverse-square-root decay: γ = γ₀ · d / √t, with d = ``scale`` > 0.

    t counts optimizer steps from 1: t = last_epoch + 1. So construction (epoch 0) sets
    γ₀ · d / √1 = γ₀ · d, the rate of the first optimizer step, and the n-th ``step()`` sets
    γ₀ · d / √(n + 1); nothing ever divides by √0. Chainable: × d at construction, then
    × √(e / (e + 1)) per step; ``step(epoch)`` uses the closed form.
    """

    def __init__(self, optimizer: HasParamGroups, scale: float = 1.0, last_epoch: int = -1) -> None:
        self.scale = POSITIVE("scale", scale)
        super().__init__(optimizer, last_epoch)

    def _ratio(self, e: int) -> float | None:
        if e == 0:
            return self.scale
        return None if self._initial else math.sqrt(e / (e + 1))

    def _get_closed_form_lr(self) -> list[float]:
        root = math.sqrt(self.last_epoch + 1)
        return [base * self.scale / root for base in self.base_lrs]
