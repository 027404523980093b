"""Cosine annealing: CosineAnnealingLR and its warm restarts (SGDR, Loshchilov & Hutter 2017)."""

from __future__ import annotations

import math

from .base import (
    LAST_EPOCH,
    NON_NEGATIVE,
    POSITIVE_INTEGER,
    HasParamGroups,
    LRScheduler,
    current_lrs,
)


class CosineAnnealingLR(LRScheduler):
    """γₑ = η + (γ₀ − η) · (1 + cos(π e / T_max)) / 2, with η = eta_min.

    Chainable, as torch's: γₑ = η + (γₑ₋₁ − η) · (1 + cos(π e/T)) / (1 + cos(π (e−1)/T)), except
    at e = T + 1 (mod 2T), where that ratio is 0/0 and the step adds (γ₀ − η)(1 − cos(π/T)) / 2.
    Past T_max the rate therefore rises again along the cosine (period 2 T_max) rather than
    staying at η.
    """

    def __init__(self, optimizer: HasParamGroups, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        self.T_max = POSITIVE_INTEGER("T_max", T_max)
        self.eta_min = NON_NEGATIVE("eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._initial:
            return current_lrs(self.optimizer)
        groups = self.optimizer.param_groups
        e, t, eta = self.last_epoch, self.T_max, self.eta_min
        if (e - 1 - t) % (2 * t) == 0:
            return [
                g["lr"] + (base - eta) * (1 - math.cos(math.pi / t)) / 2
                for base, g in zip(self.base_lrs, groups)
            ]
        ratio = (1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * (e - 1) / t))
        return [ratio * (g["lr"] - eta) + eta for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        e, t, eta = self.last_epoch, self.T_max, self.eta_min
        return [eta + (base - eta) * (1 + math.cos(math.pi * e / t)) / 2 for base in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    """SGDR: γ = η + (γ₀ − η) · (1 + cos(π T_cur / T_i)) / 2, with η = eta_min.

    T_cur counts epochs since the last restart; a restart happens when T_cur reaches T_i, and
    then T_i ← T_i · T_mult (T_0 first). Not chainable. ``step(epoch)`` accepts fractional
    epochs (e.g. ``epoch + batch / batches``), as torch's.
    """

    def __init__(self, optimizer: HasParamGroups, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        self.T_0 = POSITIVE_INTEGER("T_0", T_0)
        self.T_i = self.T_0
        self.T_mult = POSITIVE_INTEGER("T_mult", T_mult)
        self.eta_min = NON_NEGATIVE("eta_min", eta_min)
        self.T_cur: float = LAST_EPOCH("last_epoch", last_epoch)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        eta = self.eta_min
        cosine = 1 + math.cos(math.pi * self.T_cur / self.T_i)
        return [eta + (base - eta) * cosine / 2 for base in self.base_lrs]

    def step(self, epoch: float | None = None) -> None:
        """Advance one epoch, or go to ``epoch`` (a real number ≥ 0)."""
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            t_cur, t_i = self.T_cur + 1, self.T_i
            if t_cur >= t_i:
                t_cur, t_i = t_cur % t_i, t_i * self.T_mult
        else:
            epoch = NON_NEGATIVE("epoch", epoch)
            t_cur, t_i = self._position(epoch)
        self.T_cur, self.T_i = t_cur, t_i
        self.last_epoch = math.floor(epoch)
        self._set_lrs(self.get_lr())

    def _position(self, epoch: float) -> tuple[float, int]:
        """(T_cur, T_i) at ``epoch``, counted from epoch 0."""
        if epoch < self.T_0:
            return epoch, self.T_0
        if self.T_mult == 1:
            return epoch % self.T_0, self.T_0
        # Restart n starts at T_0 (T_mult^n − 1) / (T_mult − 1); torch finds n with a float log
        # (the same expression here, so both agree even where rounding decides).
        n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
        t_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
        return t_cur, self.T_0 * self.T_mult**n
