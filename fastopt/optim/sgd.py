"""Stochastic gradient descent with momentum, dampening and Nesterov momentum."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import _checks
from .._kernels import kernels
from .optimizer import Hyper, Optimizer, Scalars


class SGD(Optimizer):
    """SGD, torch.optim.SGD's rule and arguments (plain, mini-batch and full-batch gradient
    descent are SGD with ``momentum=0``; they differ only in how the gradient is averaged)::

        g ← g + λ p
        b ← g (first step),  b ← μ b + (1 − τ) g (afterwards)     if μ ≠ 0
        g ← g + μ b (nesterov),  g ← b (otherwise)                if μ ≠ 0
        p ← p − γ g
    """

    roles = ("momentum_buffer",)
    counts_steps = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    @classmethod
    def check_group(cls, group: dict[str, Any]) -> Hyper:
        lr = _checks.real("lr", group["lr"])
        momentum = _checks.real("momentum", group["momentum"])
        dampening = _checks.real("dampening", group["dampening"], below=1.0)
        weight_decay = _checks.real("weight_decay", group["weight_decay"])
        nesterov = _checks.flag("nesterov", group["nesterov"])
        maximize = _checks.flag("maximize", group["maximize"])
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError(
                "nesterov: expected momentum > 0 and dampening == 0 with Nesterov momentum, "
                f"got momentum={momentum!r}, dampening={dampening!r}"
            )
        return lr, momentum, dampening, weight_decay, nesterov, maximize

    @classmethod
    def roles_used(cls, hyper: Hyper) -> tuple[str, ...]:
        return cls.roles if hyper[1] != 0 else ()

    @classmethod
    def apply(cls, table: Any, hyper: Hyper, step: int, fresh: frozenset[str],
              scalars: Scalars, grad_scale: float = 1.0) -> None:
        lr, momentum, dampening, weight_decay, nesterov, maximize = hyper
        kernels.sgd(table, lr, momentum, dampening, weight_decay,
                    -grad_scale if maximize else grad_scale, nesterov,
                    "momentum_buffer" in fresh)
