"""RMSprop: gradients scaled by a running root mean square, optionally centered."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import _checks
from .._kernels import kernels
from .optimizer import Hyper, Optimizer, Scalars


class RMSprop(Optimizer):
    """RMSprop, torch.optim.RMSprop's rule and arguments::

        g ← g + λ p
        v ← α v + (1 − α) g²
        ḡ ← α ḡ + (1 − α) g;  d = √(v − ḡ²) + ε         (centered)
        d = √v + ε                                       (otherwise)
        b ← μ b + g / d;  p ← p − γ b                    (μ > 0)
        p ← p − γ g / d                                  (otherwise)
    """

    roles = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    @classmethod
    def check_group(cls, group: dict[str, Any]) -> Hyper:
        return (
            _checks.real("lr", group["lr"]),
            _checks.real("alpha", group["alpha"], below=1.0),
            _checks.real("eps", group["eps"]),
            _checks.real("weight_decay", group["weight_decay"]),
            _checks.real("momentum", group["momentum"]),
            _checks.flag("centered", group["centered"]),
            _checks.flag("maximize", group["maximize"]),
        )

    @classmethod
    def roles_used(cls, hyper: Hyper) -> tuple[str, ...]:
        momentum, centered = hyper[4], hyper[5]
        return ("square_avg",) + ("momentum_buffer",) * (momentum > 0) + ("grad_avg",) * centered

    @classmethod
    def apply(cls, table: Any, hyper: Hyper, step: int, fresh: frozenset[str],
              scalars: Scalars, grad_scale: float = 1.0) -> None:
        lr, alpha, eps, weight_decay, momentum, centered, maximize = hyper
        kernels.rmsprop(table, lr, alpha, eps, weight_decay, momentum,
                        -grad_scale if maximize else grad_scale, centered)
