"""What the rules ported from pytorch-optimizer share (no rule of its own): its weight-decay
switches, and a number that may be None (a switched-off option, as ADOPT's clipping)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import validation
from .base import FLAG, NON_NEGATIVE, Hyper, weight_decay_terms

RULES = ()


@dataclass(frozen=True)
class OptionalReal(validation.Real):
    """A number as :class:`~fastopt.validation.Real` checks it, or None (the option is off)."""

    def __call__(self, name: str, value: Any) -> Any:
        return None if value is None else super().__call__(name, value)

    def describe(self) -> str:
        return f"{super().describe()} or None"


def weight_decay_hypers() -> tuple[Hyper, Hyper, Hyper]:
    """pytorch-optimizer's ``weight_decay``, ``weight_decouple`` and ``fixed_decay``."""
    return (Hyper("weight_decay", 0.0, NON_NEGATIVE), Hyper("weight_decouple", False, FLAG),
            Hyper("fixed_decay", False, FLAG))


def weight_decay_args(h) -> dict[str, float]:
    """The kernels' L2 coefficient and factor on p for pytorch-optimizer's switches: g + λ p,
    or p · (1 − λ γ) when decoupled, p · (1 − λ) when the decay is also fixed."""
    l2, decay = weight_decay_terms(1.0 if h.fixed_decay else h.lr, h.weight_decay,
                                   h.weight_decouple)
    return {"weight_decay": l2, "decay": decay}
